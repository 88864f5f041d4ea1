//! The approval rules: which parties have yet to approve, whether every party has, and
//! whether an approval is recorded at all.

use std::collections::BTreeMap;

use arbiter_proto::InstanceState;

use super::Refusal;
use crate::manifest::Manifest;

/// The names of the parties whose identity is not among `approvals` (identity → when it
/// approved), in manifest order.
pub fn missing_approvals(manifest: &Manifest, approvals: &BTreeMap<String, String>) -> Vec<String> {
    manifest
        .parties
        .iter()
        .filter(|p| !approvals.contains_key(p.identity.as_str()))
        .map(|p| p.name.clone())
        .collect()
}

/// Whether every party's identity is among `approved`.
pub fn approvals_complete<'a>(
    manifest: &Manifest,
    approved: impl IntoIterator<Item = &'a str> + Clone,
) -> bool {
    manifest
        .party_identities()
        .all(|p| approved.clone().into_iter().any(|a| a == p.as_str()))
}

/// Whether `caller` may approve an instance in `state`: parties only, and not once it is
/// destroyed (an approval while it is being destroyed is recorded and changes nothing).
///
/// # Errors
/// [`Refusal::NotAPartyToApprove`] or [`Refusal::Destroyed`].
pub fn approval_accepted(
    manifest: &Manifest,
    caller: &str,
    state: InstanceState,
) -> Result<(), Refusal> {
    if !manifest.is_party(caller) {
        return Err(Refusal::NotAPartyToApprove {
            caller: caller.to_owned(),
        });
    }
    if state == InstanceState::Destroyed {
        return Err(Refusal::Destroyed);
    }
    Ok(())
}
