//! The evaluation rules: the trigger (all slots, a threshold, or an evaluator's explicit
//! request once every slot is filled), the move to `evaluating`, what follows an
//! evaluation (the next round, or `evaluated` after the last), giving up a round that did
//! not complete, and which rounds resume after a restart.

use arbiter_proto::InstanceState;

use super::Refusal;
use crate::manifest::Manifest;

/// Whether an automatic trigger is met: the instance is `open` and at least the trigger's
/// count of slots is filled (`filled`: how many slots hold an input). Never for an
/// `explicit` trigger.
pub fn automatic_trigger_met(state: InstanceState, manifest: &Manifest, filled: usize) -> bool {
    state == InstanceState::Open
        && manifest
            .automatic_trigger_count()
            .is_some_and(|needed| filled >= needed)
}

/// Whether the round can be evaluated with the inputs in the slots `filled`: for an
/// automatic trigger, at least its count of them; for `explicit`, every slot.
pub fn round_ready(manifest: &Manifest, filled: &[&str]) -> bool {
    match manifest.automatic_trigger_count() {
        Some(needed) => filled.len() >= needed,
        None => manifest
            .slots
            .keys()
            .all(|slot| filled.contains(&slot.as_str())),
    }
}

/// Whether `caller` may ask for the evaluation of an instance in `state`: only with an
/// `explicit` trigger, only one of its evaluators, only while it is `open`. A stranger
/// (neither a party nor an operator) asking about an automatic instance learns only that
/// it is not a party.
///
/// # Errors
/// [`Refusal::NotAParty`], [`Refusal::AutomaticTrigger`], [`Refusal::NotAnEvaluator`] or
/// [`Refusal::NotOpenForEvaluation`].
pub fn evaluation_request_allowed(
    manifest: &Manifest,
    caller: &str,
    caller_is_operator: bool,
    state: InstanceState,
) -> Result<(), Refusal> {
    if manifest.automatic_trigger_count().is_some() {
        if !manifest.is_party(caller) && !caller_is_operator {
            return Err(Refusal::NotAParty {
                caller: caller.to_owned(),
            });
        }
        return Err(Refusal::AutomaticTrigger);
    }
    if !manifest.is_evaluator(caller) {
        return Err(Refusal::NotAnEvaluator {
            caller: caller.to_owned(),
        });
    }
    if state != InstanceState::Open {
        return Err(Refusal::NotOpenForEvaluation { state });
    }
    Ok(())
}

/// The slots an explicit evaluation still needs, given the slots `filled`.
///
/// # Errors
/// [`Refusal::SlotsMissing`] naming the empty slots in manifest order.
pub fn missing_slots(manifest: &Manifest, filled: &[&str]) -> Result<(), Refusal> {
    let slots: Vec<String> = manifest
        .slots
        .keys()
        .map(|s| s.as_str())
        .filter(|s| !filled.contains(s))
        .map(str::to_owned)
        .collect();
    if slots.is_empty() {
        Ok(())
    } else {
        Err(Refusal::SlotsMissing { slots })
    }
}

/// What to do when an evaluation of a round is about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluationStart {
    /// Move to (or stay) `evaluating` and run the round.
    Begin,
    /// A resumed round whose trigger is no longer met: back to `open`, nothing runs.
    Reopen,
    /// The instance is not where the evaluation expected it (another evaluation, a
    /// destruction, another round): nothing changes.
    Skip,
}

/// Whether the evaluation of `target_round` starts, for an instance in `state` at `round`.
/// A fresh evaluation starts from `open`; one `resuming` after a crash from `evaluating`.
/// `ready` is [`round_ready`] on the inputs present at the same commit.
pub fn evaluation_start(
    state: InstanceState,
    round: u64,
    target_round: u64,
    resuming: bool,
    ready: bool,
) -> EvaluationStart {
    let from = if resuming {
        InstanceState::Evaluating
    } else {
        InstanceState::Open
    };
    if state != from || round != target_round {
        return EvaluationStart::Skip;
    }
    if ready {
        EvaluationStart::Begin
    } else if resuming {
        EvaluationStart::Reopen
    } else {
        EvaluationStart::Skip
    }
}

/// The state an instance returns to when the evaluation of `target_round` did not
/// complete: `open` at the same round if it is still `evaluating` that round (nothing was
/// stored, the round is not used up), else none (it moved on: leave it).
pub fn abandoned_round(
    state: InstanceState,
    round: u64,
    target_round: u64,
) -> Option<InstanceState> {
    (state == InstanceState::Evaluating && round == target_round).then_some(InstanceState::Open)
}

/// Whether a finished evaluation's result is stored: only if the instance is still
/// `evaluating` (`None`: it is gone). A destruction requested meanwhile wins.
pub fn result_may_be_stored(state: Option<InstanceState>) -> bool {
    state == Some(InstanceState::Evaluating)
}

/// The state and round after `round` was evaluated: the next round `open`, or `evaluated`
/// (staying at the last round) once the manifest's rounds are used up.
pub fn after_evaluation(manifest: &Manifest, round: u64) -> (InstanceState, u64) {
    if round >= manifest.rounds {
        (InstanceState::Evaluated, round)
    } else {
        (InstanceState::Open, round + 1)
    }
}

/// At start: whether an `open` instance at `round` whose inputs were submitted in
/// `input_rounds` is evaluated now. Its automatic trigger is met, by at least one input of
/// this round (inputs kept from earlier rounds alone do not trigger it again). An
/// `explicit` request is never resumed across a restart.
pub fn resume_triggered(manifest: &Manifest, round: u64, input_rounds: &[u64]) -> bool {
    manifest
        .automatic_trigger_count()
        .is_some_and(|needed| input_rounds.len() >= needed)
        && input_rounds.contains(&round)
}
