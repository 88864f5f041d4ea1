//! The rules for inputs: who may fill a slot, when inputs are accepted (state, approvals,
//! window), the submitter's function condition, the check at commit that the instance did
//! not move on meanwhile, resubmission, and withdrawal.

use std::collections::BTreeMap;

use arbiter_proto::InstanceState;
use time::OffsetDateTime;

use super::Refusal;
use super::approvals::missing_approvals;
use crate::manifest::{Approval, Manifest, Resubmission, Slot};

/// Whether `caller` may submit into `slot`: the slot's spec if so. For a slot the
/// manifest does not have, a stranger (neither a party nor an operator) is refused as
/// such, so that the answer does not tell strangers which slots exist.
///
/// # Errors
/// [`Refusal::NotAParty`], [`Refusal::NoSuchSlot`] or [`Refusal::MayNotProvide`].
pub fn submitter_allowed<'m>(
    manifest: &'m Manifest,
    caller: &str,
    slot: &str,
    caller_is_operator: bool,
) -> Result<&'m Slot, Refusal> {
    let Some(spec) = manifest.slot(slot) else {
        if !manifest.is_party(caller) && !caller_is_operator {
            return Err(Refusal::NotAParty {
                caller: caller.to_owned(),
            });
        }
        return Err(Refusal::NoSuchSlot {
            slot: slot.to_owned(),
        });
    };
    if !manifest.can_provide(caller, slot) {
        return Err(Refusal::MayNotProvide {
            caller: caller.to_owned(),
            slot: slot.to_owned(),
        });
    }
    Ok(spec)
}

/// Whether an instance in `state` accepts inputs at `now`, in this order: the state (only
/// `open` accepts), then, with `explicit` approval, every party's approval (`approvals`:
/// identity → when it approved), then the window (open from `opens` inclusive until
/// `closes` exclusive).
///
/// # Errors
/// [`Refusal::Evaluating`], [`Refusal::Destroyed`], [`Refusal::Closed`],
/// [`Refusal::AwaitingApproval`], [`Refusal::WindowNotOpen`] or [`Refusal::WindowClosed`].
pub fn inputs_accepted(
    state: InstanceState,
    manifest: &Manifest,
    approvals: &BTreeMap<String, String>,
    now: OffsetDateTime,
) -> Result<(), Refusal> {
    match state {
        InstanceState::Open => {}
        InstanceState::Evaluating => return Err(Refusal::Evaluating),
        InstanceState::Destroying | InstanceState::Destroyed => return Err(Refusal::Destroyed),
        InstanceState::Evaluated => {
            return Err(Refusal::Closed {
                rounds: manifest.rounds,
            });
        }
    }
    if manifest.approval == Approval::Explicit {
        let missing = missing_approvals(manifest, approvals);
        if !missing.is_empty() {
            return Err(Refusal::AwaitingApproval { missing });
        }
    }
    if let Some(opens) = manifest.window.opens
        && now < opens.get()
    {
        return Err(Refusal::WindowNotOpen { opens });
    }
    if let Some(closes) = manifest.window.closes
        && now >= closes.get()
    {
        return Err(Refusal::WindowClosed { closes });
    }
    Ok(())
}

/// The submitter's condition "use only with function `expected`" against the instance's
/// function measurement `actual`.
///
/// # Errors
/// [`Refusal::FunctionMismatch`] when the input is conditioned on another function.
pub fn function_condition(expected: Option<&str>, actual: &str) -> Result<(), Refusal> {
    match expected {
        Some(expected) if expected != actual => Err(Refusal::FunctionMismatch {
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// At commit: the instance must still be `open` at the round the input was checked (and
/// encrypted) for.
///
/// # Errors
/// [`Refusal::SubmissionStateChanged`] naming the state and round it moved to.
pub fn submission_still_current(
    state: InstanceState,
    round: u64,
    checked_round: u64,
) -> Result<(), Refusal> {
    if state != InstanceState::Open || round != checked_round {
        return Err(Refusal::SubmissionStateChanged { state, round });
    }
    Ok(())
}

/// What happens to a submission into a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResubmissionOutcome {
    /// The submission is stored (the slot was empty, or `last` replaces what it held).
    Store,
    /// `first`: the input the slot holds stays; this submission is discarded.
    KeepExisting,
}

/// The resubmission policy applied to a submission into `slot`, which holds an input
/// accepted at `existing` (or nothing).
///
/// # Errors
/// [`Refusal::AlreadySubmitted`] when the slot is filled and the policy is `reject`.
pub fn resubmission(
    policy: Resubmission,
    slot: &str,
    existing: Option<&str>,
) -> Result<ResubmissionOutcome, Refusal> {
    let Some(accepted_at) = existing else {
        return Ok(ResubmissionOutcome::Store);
    };
    match policy {
        Resubmission::Reject => Err(Refusal::AlreadySubmitted {
            slot: slot.to_owned(),
            accepted_at: accepted_at.to_owned(),
        }),
        Resubmission::First => Ok(ResubmissionOutcome::KeepExisting),
        Resubmission::Last => Ok(ResubmissionOutcome::Store),
    }
}

/// Whether `caller` may withdraw from `slot` of an instance in `state`: only a provider of
/// the slot, only while the instance is `open`.
///
/// # Errors
/// [`Refusal::MayNotProvide`] or [`Refusal::NotOpenForWithdrawal`].
pub fn withdrawal_allowed(
    manifest: &Manifest,
    caller: &str,
    slot: &str,
    state: InstanceState,
) -> Result<(), Refusal> {
    if !manifest.can_provide(caller, slot) {
        return Err(Refusal::MayNotProvide {
            caller: caller.to_owned(),
            slot: slot.to_owned(),
        });
    }
    if state != InstanceState::Open {
        return Err(Refusal::NotOpenForWithdrawal { state });
    }
    Ok(())
}

/// At commit: the instance must still be `open` at the round the withdrawal was checked
/// for (an evaluation may have used the input meanwhile).
///
/// # Errors
/// [`Refusal::NotOpenForWithdrawal`] or [`Refusal::WithdrawalStateChanged`].
pub fn withdrawal_still_current(
    state: InstanceState,
    current: u64,
    round: u64,
    slot: &str,
) -> Result<(), Refusal> {
    if state != InstanceState::Open {
        return Err(Refusal::NotOpenForWithdrawal { state });
    }
    if current != round {
        return Err(Refusal::WithdrawalStateChanged {
            round,
            current,
            slot: slot.to_owned(),
        });
    }
    Ok(())
}

/// Whether the input in `slot`, submitted by `submitter` (none: the slot is empty), is
/// `caller`'s to withdraw.
///
/// # Errors
/// [`Refusal::InputOfAnother`] or [`Refusal::NoInput`].
pub fn withdrawal_target(caller: &str, slot: &str, submitter: Option<&str>) -> Result<(), Refusal> {
    match submitter {
        Some(s) if s == caller => Ok(()),
        Some(_) => Err(Refusal::InputOfAnother {
            slot: slot.to_owned(),
        }),
        None => Err(Refusal::NoInput {
            slot: slot.to_owned(),
        }),
    }
}
