//! The lifecycle of a computation instance as pure rules: whether an input, a withdrawal,
//! an approval, an evaluation request or a destruction request is accepted, when a round
//! is ready to evaluate, what state follows an evaluation, when the destruction policy is
//! due, and which state transitions are legal.
//!
//! Every rule is a function of its inputs — the instance's [`InstanceState`] and round,
//! the [`Manifest`](crate::manifest::Manifest), the approvals and inputs present, and
//! `now` as a parameter — so none reads a clock or a database. The daemon's engine reads
//! the store, calls these rules and turns a [`Refusal`] into its API error: the refusal's
//! [`code`](Refusal::code) and [`message`](Refusal::message) are the API's.

mod approvals;
mod destruction;
mod evaluation;
mod inputs;
mod refusal;
#[cfg(test)]
mod tests;
mod transitions;

pub use approvals::{approval_accepted, approvals_complete, missing_approvals};
pub use destruction::{destruction_due, destruction_may_begin, destruction_request_allowed};
pub use evaluation::{
    EvaluationStart, abandoned_round, after_evaluation, automatic_trigger_met,
    evaluation_request_allowed, evaluation_start, missing_slots, result_may_be_stored,
    resume_triggered, round_ready,
};
pub use inputs::{
    ResubmissionOutcome, function_condition, inputs_accepted, resubmission,
    submission_still_current, submitter_allowed, withdrawal_allowed, withdrawal_still_current,
    withdrawal_target,
};
pub use refusal::{Refusal, RefusalKind};
pub use transitions::transition_allowed;

pub use arbiter_proto::InstanceState;
