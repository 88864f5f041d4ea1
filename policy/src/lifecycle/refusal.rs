//! [`Refusal`]: why a lifecycle rule refused a request, with the API's error code, the
//! kind of refusal (forbidden, not found, conflict) and the message a caller reads.

use std::fmt;

use arbiter_proto::InstanceState;

use crate::manifest::Timestamp;

/// The kind of a refusal, which the API maps to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The caller's identity may not do this.
    Forbidden,
    /// The thing asked for does not exist.
    NotFound,
    /// The request conflicts with the instance's state or manifest.
    Conflict,
}

/// Why a lifecycle rule refused a request. Each variant names the rule that refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The caller is not a party (nor an operator, where operators may look).
    NotAParty {
        /// The caller's identity.
        caller: String,
    },
    /// Only parties approve a manifest.
    NotAPartyToApprove {
        /// The caller's identity.
        caller: String,
    },
    /// The manifest has no such slot.
    NoSuchSlot {
        /// The slot asked for.
        slot: String,
    },
    /// The caller is not one of the slot's providers.
    MayNotProvide {
        /// The caller's identity.
        caller: String,
        /// The slot.
        slot: String,
    },
    /// The instance is being evaluated: inputs wait for the evaluation to finish.
    Evaluating,
    /// The instance is destroyed (or being destroyed).
    Destroyed,
    /// The instance evaluated its last round.
    Closed {
        /// The manifest's number of rounds.
        rounds: u64,
    },
    /// An `explicit` approval manifest lacks some parties' approvals.
    AwaitingApproval {
        /// The names of the parties that have not approved, in manifest order.
        missing: Vec<String>,
    },
    /// The input window has not opened yet.
    WindowNotOpen {
        /// When it opens.
        opens: Timestamp,
    },
    /// The input window has closed.
    WindowClosed {
        /// When it closed.
        closes: Timestamp,
    },
    /// The input is conditioned on another function than the instance runs.
    FunctionMismatch {
        /// The measurement the input was conditioned on.
        expected: String,
        /// The instance's function measurement.
        actual: String,
    },
    /// The instance left the state and round an input was checked against.
    SubmissionStateChanged {
        /// Its state now.
        state: InstanceState,
        /// Its round now.
        round: u64,
    },
    /// The slot already holds an input and the manifest rejects resubmissions.
    AlreadySubmitted {
        /// The slot.
        slot: String,
        /// When the input it holds was accepted.
        accepted_at: String,
    },
    /// Inputs are withdrawn only while the instance is open.
    NotOpenForWithdrawal {
        /// Its state.
        state: InstanceState,
    },
    /// The round of the input to withdraw was evaluated meanwhile.
    WithdrawalStateChanged {
        /// The round the withdrawal was checked against.
        round: u64,
        /// The instance's round now.
        current: u64,
        /// The slot.
        slot: String,
    },
    /// The input in the slot was submitted by another identity.
    InputOfAnother {
        /// The slot.
        slot: String,
    },
    /// The slot holds no input.
    NoInput {
        /// The slot.
        slot: String,
    },
    /// Evaluation is automatic: its trigger is not `explicit`.
    AutomaticTrigger,
    /// The caller is not one of the manifest's evaluators.
    NotAnEvaluator {
        /// The caller's identity.
        caller: String,
    },
    /// Only an open instance is evaluated on request.
    NotOpenForEvaluation {
        /// Its state.
        state: InstanceState,
    },
    /// An explicit evaluation needs every slot filled.
    SlotsMissing {
        /// The empty slots, in manifest order.
        slots: Vec<String>,
    },
    /// The caller is not one of the manifest's destroyers.
    NotADestroyer {
        /// The caller's identity.
        caller: String,
    },
}

impl Refusal {
    /// The kind of refusal.
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::NotAParty { .. }
            | Refusal::NotAPartyToApprove { .. }
            | Refusal::MayNotProvide { .. }
            | Refusal::InputOfAnother { .. }
            | Refusal::NotAnEvaluator { .. }
            | Refusal::NotADestroyer { .. } => RefusalKind::Forbidden,
            Refusal::NoSuchSlot { .. } | Refusal::NoInput { .. } => RefusalKind::NotFound,
            _ => RefusalKind::Conflict,
        }
    }

    /// The API's machine-readable code (for forbidden and not-found refusals, the code of
    /// their kind).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotAParty { .. }
            | Refusal::NotAPartyToApprove { .. }
            | Refusal::MayNotProvide { .. }
            | Refusal::InputOfAnother { .. }
            | Refusal::NotAnEvaluator { .. }
            | Refusal::NotADestroyer { .. } => "forbidden",
            Refusal::NoSuchSlot { .. } | Refusal::NoInput { .. } => "not_found",
            Refusal::Evaluating => "evaluating",
            Refusal::Destroyed => "destroyed",
            Refusal::Closed { .. } => "closed",
            Refusal::AwaitingApproval { .. } => "awaiting_approval",
            Refusal::WindowNotOpen { .. } => "window_not_open",
            Refusal::WindowClosed { .. } => "window_closed",
            Refusal::FunctionMismatch { .. } => "function_mismatch",
            Refusal::SubmissionStateChanged { .. } | Refusal::WithdrawalStateChanged { .. } => {
                "state_changed"
            }
            Refusal::AlreadySubmitted { .. } => "already_submitted",
            Refusal::NotOpenForWithdrawal { .. } | Refusal::NotOpenForEvaluation { .. } => {
                "not_open"
            }
            Refusal::AutomaticTrigger => "automatic_trigger",
            Refusal::SlotsMissing { .. } => "slots_missing",
        }
    }

    /// The message a caller reads, about instance `id`.
    pub fn message(&self, id: &str) -> String {
        match self {
            Refusal::NotAParty { caller } => {
                format!("identity {caller} is not a party of instance {id}")
            }
            Refusal::NotAPartyToApprove { caller } => {
                format!("identity {caller} is not a party of instance {id}; only parties approve")
            }
            Refusal::NoSuchSlot { slot } => format!("instance {id} has no slot `{slot}`"),
            Refusal::MayNotProvide { caller, slot } => {
                format!("identity {caller} may not provide slot `{slot}` of instance {id}")
            }
            Refusal::Evaluating => {
                format!("instance {id} is being evaluated; try again when it finishes")
            }
            Refusal::Destroyed => format!("instance {id} is destroyed"),
            Refusal::Closed { rounds } => {
                format!("instance {id} has completed its {rounds} round(s)")
            }
            Refusal::AwaitingApproval { missing } => format!(
                "the manifest needs every party's approval first; missing: {}",
                missing.join(", ")
            ),
            Refusal::WindowNotOpen { opens } => format!("the input window opens at {opens}"),
            Refusal::WindowClosed { closes } => format!("the input window closed at {closes}"),
            Refusal::FunctionMismatch { expected, actual } => format!(
                "the input is conditioned on function {expected} but instance {id} runs \
                 {actual}; the input was refused and deleted"
            ),
            Refusal::SubmissionStateChanged { state, round } => format!(
                "instance {id} moved to {state} (round {round}) meanwhile; submit again for the \
                 new round"
            ),
            Refusal::AlreadySubmitted { slot, accepted_at } => format!(
                "slot `{slot}` already holds an input (accepted {accepted_at}); the manifest \
                 rejects resubmissions"
            ),
            Refusal::NotOpenForWithdrawal { state } => {
                format!("instance {id} is {state}; inputs can be withdrawn only while it is open")
            }
            Refusal::WithdrawalStateChanged {
                round,
                current,
                slot,
            } => format!(
                "instance {id} moved to round {current} meanwhile: round {round} was evaluated \
                 with the input in slot `{slot}`; nothing was withdrawn"
            ),
            Refusal::InputOfAnother { slot } => {
                format!("the input in slot `{slot}` was submitted by another identity")
            }
            Refusal::NoInput { slot } => format!("slot `{slot}` holds no input"),
            Refusal::AutomaticTrigger => {
                format!("instance {id} evaluates automatically; its trigger is not `explicit`")
            }
            Refusal::NotAnEvaluator { caller } => {
                format!("identity {caller} is not one of the evaluators of instance {id}")
            }
            Refusal::NotOpenForEvaluation { state } => {
                format!("instance {id} is {state}; it cannot be evaluated now")
            }
            Refusal::SlotsMissing { slots } => {
                format!("slots not yet filled: {}", slots.join(", "))
            }
            Refusal::NotADestroyer { caller } => {
                format!("identity {caller} is not one of the destroyers of instance {id}")
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message("(this instance)"))
    }
}

impl std::error::Error for Refusal {}
