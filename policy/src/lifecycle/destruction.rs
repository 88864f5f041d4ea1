//! The destruction rules: who may ask for destruction, when it may begin, and when the
//! manifest's destruction policy makes it due (after the last evaluation, after the first
//! read of a result, at a deadline, or on request).

use arbiter_proto::InstanceState;
use time::OffsetDateTime;

use super::Refusal;
use super::transitions::transition_allowed;
use crate::manifest::{DestructionPolicy, Manifest};

/// Whether `caller` may ask for the destruction of the instance: one of the manifest's
/// destroyers.
///
/// # Errors
/// [`Refusal::NotADestroyer`].
pub fn destruction_request_allowed(manifest: &Manifest, caller: &str) -> Result<(), Refusal> {
    if manifest.is_destroyer(caller) {
        Ok(())
    } else {
        Err(Refusal::NotADestroyer {
            caller: caller.to_owned(),
        })
    }
}

/// Whether an instance in `state` is (again) marked `destroying`: any state but
/// `destroyed`. Marking one already `destroying` again is harmless, so a request repeated
/// after a crash resumes the destruction.
pub fn destruction_may_begin(state: InstanceState) -> bool {
    transition_allowed(state, InstanceState::Destroying)
}

/// Whether the manifest's destruction policy makes the destruction of an instance in
/// `state` due at `now`. `result_read`: a result was read (now, or at some earlier time).
/// Never for an instance already destroyed.
///
/// - `after_evaluation`: once the last round is evaluated;
/// - `after_first_read`: once a result was read;
/// - `at`: from the deadline on (inclusive);
/// - `on_request`: only when a destroyer's request left it `destroying`.
pub fn destruction_due(
    policy: DestructionPolicy,
    state: InstanceState,
    result_read: bool,
    now: OffsetDateTime,
) -> bool {
    if state == InstanceState::Destroyed {
        return false;
    }
    match policy {
        DestructionPolicy::AfterEvaluation => state == InstanceState::Evaluated,
        DestructionPolicy::AfterFirstRead => result_read,
        DestructionPolicy::At(at) => now >= at.get(),
        DestructionPolicy::OnRequest => state == InstanceState::Destroying,
    }
}
