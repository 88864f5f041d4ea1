//! Unit tests of every lifecycle rule, at its boundaries: the window's opening and closing
//! instants, the last round, a duplicate input, the wrong party, missing approvals, each
//! destruction policy and every state transition.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

use super::*;
use crate::manifest::{DestructionPolicy, Manifest, Resubmission, Timestamp};

use InstanceState::{Destroyed, Destroying, Evaluated, Evaluating, Open};

const FUNCTION: &str = "579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63";
const OPENS: OffsetDateTime = datetime!(2026-10-01 00:00:00 UTC);
const CLOSES: OffsetDateTime = datetime!(2026-10-31 23:59:59 UTC);

fn id(c: char) -> String {
    c.to_string().repeat(64)
}

/// Two parties, `a` providing `x` and `b` providing `y`; `c` is the auditor (evaluator
/// and destroyer); three rounds; `changes` merged over the top level.
fn manifest(changes: Value) -> Manifest {
    let mut raw = json!({
        "function": { "sha256": FUNCTION },
        "parties": [
            { "name": "acme", "identity": id('a') },
            { "name": "globex", "identity": id('b') },
            { "name": "auditor", "identity": id('c') }
        ],
        "slots": {
            "x": { "providers": [id('a')], "provide": "provide_once" },
            "y": { "providers": [id('b')], "provide": "provide_each_time" }
        },
        "trigger": { "kind": "all" },
        "readers": { id('a'): "result" },
        "rounds": 3,
        "destruction": { "policy": "on_request", "destroyers": [id('c')] }
    });
    if let (Some(raw), Value::Object(changes)) = (raw.as_object_mut(), changes) {
        raw.extend(changes);
    }
    match Manifest::from_json_value(raw) {
        Ok(validated) => validated.into_parts().0,
        Err(problems) => panic!("test manifest refused: {problems:?}"),
    }
}

fn explicit() -> Manifest {
    manifest(json!({ "trigger": { "kind": "explicit" }, "evaluators": [id('c')] }))
}

fn windowed() -> Manifest {
    manifest(json!({ "window": {
        "opens": "2026-10-01T00:00:00Z",
        "closes": "2026-10-31T23:59:59Z"
    } }))
}

fn approved(who: &[char]) -> BTreeMap<String, String> {
    who.iter()
        .map(|c| (id(*c), "2026-10-01T00:00:00Z".to_owned()))
        .collect()
}

fn second(at: OffsetDateTime, delta: i64) -> OffsetDateTime {
    at + time::Duration::seconds(delta)
}

#[test]
fn only_an_open_instance_accepts_inputs() {
    let m = manifest(json!({}));
    let none = BTreeMap::new();
    assert_eq!(inputs_accepted(Open, &m, &none, OPENS), Ok(()));
    assert_eq!(
        inputs_accepted(Evaluating, &m, &none, OPENS),
        Err(Refusal::Evaluating)
    );
    assert_eq!(
        inputs_accepted(Evaluated, &m, &none, OPENS),
        Err(Refusal::Closed { rounds: 3 })
    );
    for state in [Destroying, Destroyed] {
        assert_eq!(
            inputs_accepted(state, &m, &none, OPENS),
            Err(Refusal::Destroyed)
        );
    }
    let closed = Refusal::Closed { rounds: 3 };
    assert_eq!(closed.code(), "closed");
    assert_eq!(
        closed.message("i1"),
        "instance i1 has completed its 3 round(s)"
    );
}

#[test]
fn the_window_opens_inclusive_and_closes_exclusive() {
    let m = windowed();
    let none = BTreeMap::new();
    let opens = Timestamp::from_datetime(OPENS);
    let closes = Timestamp::from_datetime(CLOSES);
    assert_eq!(
        inputs_accepted(Open, &m, &none, second(OPENS, -1)),
        Err(Refusal::WindowNotOpen { opens })
    );
    assert_eq!(inputs_accepted(Open, &m, &none, OPENS), Ok(()));
    assert_eq!(inputs_accepted(Open, &m, &none, second(CLOSES, -1)), Ok(()));
    let refused = inputs_accepted(Open, &m, &none, CLOSES);
    assert_eq!(refused, Err(Refusal::WindowClosed { closes }));
    let refusal = refused.err().unwrap_or(Refusal::Evaluating);
    assert_eq!(refusal.code(), "window_closed");
    assert_eq!(refusal.kind(), RefusalKind::Conflict);
    assert_eq!(
        refusal.message("i1"),
        "the input window closed at 2026-10-31T23:59:59Z"
    );
    // The state is checked before the window.
    assert_eq!(
        inputs_accepted(Evaluating, &m, &none, CLOSES),
        Err(Refusal::Evaluating)
    );
}

#[test]
fn explicit_approval_needs_every_party_before_inputs() {
    let m = manifest(json!({ "approval": "explicit" }));
    assert_eq!(
        inputs_accepted(Open, &m, &approved(&['b']), OPENS),
        Err(Refusal::AwaitingApproval {
            missing: vec!["acme".into(), "auditor".into()]
        })
    );
    assert_eq!(
        inputs_accepted(Open, &m, &approved(&['a', 'b', 'c']), OPENS),
        Ok(())
    );
    // Approval is checked before the window.
    let w = manifest(json!({
        "approval": "explicit",
        "window": { "opens": "2026-10-01T00:00:00Z" }
    }));
    let refusal = inputs_accepted(Open, &w, &approved(&[]), second(OPENS, -1));
    assert!(matches!(refusal, Err(Refusal::AwaitingApproval { .. })));
    // Implicit approval ignores approvals altogether.
    assert_eq!(
        inputs_accepted(Open, &manifest(json!({})), &approved(&[]), OPENS),
        Ok(())
    );
    let awaiting = Refusal::AwaitingApproval {
        missing: vec!["acme".into(), "auditor".into()],
    };
    assert_eq!(
        awaiting.message("i1"),
        "the manifest needs every party's approval first; missing: acme, auditor"
    );
}

#[test]
fn approvals_are_counted_per_party() {
    let m = manifest(json!({}));
    assert_eq!(
        missing_approvals(&m, &approved(&['a'])),
        vec!["globex".to_owned(), "auditor".to_owned()]
    );
    assert!(missing_approvals(&m, &approved(&['a', 'b', 'c'])).is_empty());
    let (a, b, c, z) = (id('a'), id('b'), id('c'), id('z'));
    assert!(!approvals_complete(
        &m,
        [a.as_str(), b.as_str(), z.as_str()]
    ));
    assert!(approvals_complete(&m, [c.as_str(), b.as_str(), a.as_str()]));
}

#[test]
fn only_parties_approve_and_not_once_destroyed() {
    let m = manifest(json!({}));
    assert_eq!(approval_accepted(&m, &id('a'), Open), Ok(()));
    assert_eq!(approval_accepted(&m, &id('c'), Destroying), Ok(()));
    assert_eq!(
        approval_accepted(&m, &id('z'), Open),
        Err(Refusal::NotAPartyToApprove { caller: id('z') })
    );
    assert_eq!(
        approval_accepted(&m, &id('a'), Destroyed),
        Err(Refusal::Destroyed)
    );
    assert_eq!(
        Refusal::NotAPartyToApprove { caller: id('z') }.kind(),
        RefusalKind::Forbidden
    );
}

#[test]
fn only_a_slots_provider_submits_into_it() {
    let m = manifest(json!({}));
    assert!(submitter_allowed(&m, &id('a'), "x", false).is_ok());
    // The wrong party for the slot.
    let wrong = submitter_allowed(&m, &id('b'), "x", false).err();
    assert_eq!(
        wrong,
        Some(Refusal::MayNotProvide {
            caller: id('b'),
            slot: "x".into()
        })
    );
    // An unknown slot: a party or an operator learns it does not exist, a stranger only
    // that it is not a party.
    assert_eq!(
        submitter_allowed(&m, &id('c'), "nope", false).err(),
        Some(Refusal::NoSuchSlot {
            slot: "nope".into()
        })
    );
    assert_eq!(
        submitter_allowed(&m, &id('z'), "nope", true).err(),
        Some(Refusal::NoSuchSlot {
            slot: "nope".into()
        })
    );
    let stranger = submitter_allowed(&m, &id('z'), "nope", false).err();
    assert_eq!(stranger, Some(Refusal::NotAParty { caller: id('z') }));
    assert_eq!(
        submitter_allowed(&m, &id('z'), "x", true).err(),
        Some(Refusal::MayNotProvide {
            caller: id('z'),
            slot: "x".into()
        })
    );
    assert_eq!(
        Refusal::NoSuchSlot {
            slot: "nope".into()
        }
        .kind(),
        RefusalKind::NotFound
    );
}

#[test]
fn a_function_condition_must_match() {
    assert_eq!(function_condition(None, FUNCTION), Ok(()));
    assert_eq!(function_condition(Some(FUNCTION), FUNCTION), Ok(()));
    let refusal = function_condition(Some("00"), FUNCTION);
    assert_eq!(
        refusal,
        Err(Refusal::FunctionMismatch {
            expected: "00".into(),
            actual: FUNCTION.into()
        })
    );
    assert_eq!(refusal.err().map(|r| r.code()), Some("function_mismatch"));
}

#[test]
fn a_submission_commits_only_in_the_round_it_was_checked_for() {
    assert_eq!(submission_still_current(Open, 2, 2), Ok(()));
    assert_eq!(
        submission_still_current(Open, 3, 2),
        Err(Refusal::SubmissionStateChanged {
            state: Open,
            round: 3
        })
    );
    let moved = submission_still_current(Evaluating, 2, 2);
    assert_eq!(
        moved,
        Err(Refusal::SubmissionStateChanged {
            state: Evaluating,
            round: 2
        })
    );
    assert_eq!(
        moved.err().map(|r| r.message("i1")),
        Some(
            "instance i1 moved to evaluating (round 2) meanwhile; submit again for the new round"
                .to_owned()
        )
    );
}

#[test]
fn a_duplicate_input_follows_the_resubmission_policy() {
    let at = "2026-10-02T00:00:00Z";
    for policy in [
        Resubmission::First,
        Resubmission::Last,
        Resubmission::Reject,
    ] {
        assert_eq!(
            resubmission(policy, "x", None),
            Ok(ResubmissionOutcome::Store)
        );
    }
    assert_eq!(
        resubmission(Resubmission::Last, "x", Some(at)),
        Ok(ResubmissionOutcome::Store)
    );
    assert_eq!(
        resubmission(Resubmission::First, "x", Some(at)),
        Ok(ResubmissionOutcome::KeepExisting)
    );
    let refused = resubmission(Resubmission::Reject, "x", Some(at));
    assert_eq!(
        refused,
        Err(Refusal::AlreadySubmitted {
            slot: "x".into(),
            accepted_at: at.into()
        })
    );
    assert_eq!(refused.err().map(|r| r.code()), Some("already_submitted"));
}

#[test]
fn withdrawal_is_the_providers_own_while_open() {
    let m = manifest(json!({}));
    assert_eq!(withdrawal_allowed(&m, &id('a'), "x", Open), Ok(()));
    assert_eq!(
        withdrawal_allowed(&m, &id('b'), "x", Open),
        Err(Refusal::MayNotProvide {
            caller: id('b'),
            slot: "x".into()
        })
    );
    for state in [Evaluating, Evaluated, Destroying, Destroyed] {
        assert_eq!(
            withdrawal_allowed(&m, &id('a'), "x", state),
            Err(Refusal::NotOpenForWithdrawal { state })
        );
    }
    assert_eq!(withdrawal_still_current(Open, 1, 1, "x"), Ok(()));
    assert_eq!(
        withdrawal_still_current(Evaluating, 1, 1, "x"),
        Err(Refusal::NotOpenForWithdrawal { state: Evaluating })
    );
    let moved = withdrawal_still_current(Open, 2, 1, "x");
    assert_eq!(
        moved.err().map(|r| (r.code(), r.message("i1"))),
        Some((
            "state_changed",
            "instance i1 moved to round 2 meanwhile: round 1 was evaluated with the input in \
             slot `x`; nothing was withdrawn"
                .to_owned()
        ))
    );
    let (a, b) = (id('a'), id('b'));
    assert_eq!(withdrawal_target(&a, "x", Some(&a)), Ok(()));
    assert_eq!(
        withdrawal_target(&a, "x", Some(&b)),
        Err(Refusal::InputOfAnother { slot: "x".into() })
    );
    let none = withdrawal_target(&a, "x", None);
    assert_eq!(none, Err(Refusal::NoInput { slot: "x".into() }));
    assert_eq!(none.err().map(|r| r.kind()), Some(RefusalKind::NotFound));
}

#[test]
fn automatic_triggers_fire_at_their_count_while_open() {
    let all = manifest(json!({}));
    assert!(!automatic_trigger_met(Open, &all, 1));
    assert!(automatic_trigger_met(Open, &all, 2));
    assert!(!automatic_trigger_met(Evaluating, &all, 2));
    let threshold = manifest(json!({ "trigger": { "kind": "threshold", "k": 1 } }));
    assert!(!automatic_trigger_met(Open, &threshold, 0));
    assert!(automatic_trigger_met(Open, &threshold, 1));
    assert!(!automatic_trigger_met(Open, &explicit(), 2));

    assert!(!round_ready(&all, &["x"]));
    assert!(round_ready(&all, &["x", "y"]));
    assert!(round_ready(&threshold, &["y"]));
    assert!(!round_ready(&explicit(), &["x"]));
    assert!(round_ready(&explicit(), &["y", "x"]));
}

#[test]
fn explicit_evaluation_is_an_evaluators_request_on_a_full_open_round() {
    let m = explicit();
    let (a, c, z) = (id('a'), id('c'), id('z'));
    assert_eq!(evaluation_request_allowed(&m, &c, false, Open), Ok(()));
    assert_eq!(
        evaluation_request_allowed(&m, &a, false, Open),
        Err(Refusal::NotAnEvaluator { caller: a.clone() })
    );
    assert_eq!(
        evaluation_request_allowed(&m, &c, false, Evaluated),
        Err(Refusal::NotOpenForEvaluation { state: Evaluated })
    );
    assert_eq!(missing_slots(&m, &["x", "y"]), Ok(()));
    let missing = missing_slots(&m, &["y"]);
    assert_eq!(
        missing,
        Err(Refusal::SlotsMissing {
            slots: vec!["x".into()]
        })
    );
    assert_eq!(
        missing.err().map(|r| r.message("i1")),
        Some("slots not yet filled: x".to_owned())
    );
    // An automatic trigger: a party is told so, a stranger only that it is not a party.
    let auto = manifest(json!({}));
    assert_eq!(
        evaluation_request_allowed(&auto, &a, false, Open),
        Err(Refusal::AutomaticTrigger)
    );
    assert_eq!(
        evaluation_request_allowed(&auto, &z, true, Open),
        Err(Refusal::AutomaticTrigger)
    );
    assert_eq!(
        evaluation_request_allowed(&auto, &z, false, Open),
        Err(Refusal::NotAParty { caller: z })
    );
}

#[test]
fn an_evaluation_starts_only_where_it_expects_the_instance() {
    use EvaluationStart::{Begin, Reopen, Skip};
    assert_eq!(evaluation_start(Open, 1, 1, false, true), Begin);
    assert_eq!(evaluation_start(Open, 1, 1, false, false), Skip);
    assert_eq!(evaluation_start(Open, 2, 1, false, true), Skip);
    assert_eq!(evaluation_start(Evaluating, 1, 1, false, true), Skip);
    assert_eq!(evaluation_start(Evaluating, 1, 1, true, true), Begin);
    assert_eq!(evaluation_start(Evaluating, 1, 1, true, false), Reopen);
    assert_eq!(evaluation_start(Open, 1, 1, true, true), Skip);
    assert_eq!(evaluation_start(Destroying, 1, 1, true, true), Skip);

    assert_eq!(abandoned_round(Evaluating, 2, 2), Some(Open));
    assert_eq!(abandoned_round(Evaluating, 3, 2), None);
    assert_eq!(abandoned_round(Destroying, 2, 2), None);

    assert!(result_may_be_stored(Some(Evaluating)));
    assert!(!result_may_be_stored(Some(Destroying)));
    assert!(!result_may_be_stored(None));
}

#[test]
fn the_last_round_ends_evaluated_and_others_open_the_next() {
    let m = manifest(json!({}));
    assert_eq!(after_evaluation(&m, 1), (Open, 2));
    assert_eq!(after_evaluation(&m, 2), (Open, 3));
    assert_eq!(after_evaluation(&m, 3), (Evaluated, 3));
    let single = manifest(json!({ "rounds": 1 }));
    assert_eq!(after_evaluation(&single, 1), (Evaluated, 1));
}

#[test]
fn a_restart_evaluates_open_rounds_triggered_by_this_rounds_inputs() {
    let m = manifest(json!({}));
    assert!(resume_triggered(&m, 2, &[1, 2]));
    assert!(!resume_triggered(&m, 2, &[1, 1]));
    assert!(!resume_triggered(&m, 2, &[2]));
    assert!(!resume_triggered(&explicit(), 1, &[1, 1]));
}

#[test]
fn destroyers_ask_for_destruction_which_begins_until_destroyed() {
    let m = manifest(json!({}));
    assert_eq!(destruction_request_allowed(&m, &id('c')), Ok(()));
    let refused = destruction_request_allowed(&m, &id('a'));
    assert_eq!(refused, Err(Refusal::NotADestroyer { caller: id('a') }));
    assert_eq!(refused.err().map(|r| r.code()), Some("forbidden"));
    for state in [Open, Evaluating, Evaluated, Destroying] {
        assert!(destruction_may_begin(state), "{state}");
    }
    assert!(!destruction_may_begin(Destroyed));
}

#[test]
fn each_destruction_policy_is_due_at_its_moment() {
    use DestructionPolicy::{AfterEvaluation, AfterFirstRead, At, OnRequest};
    let now = OPENS;
    assert!(destruction_due(AfterEvaluation, Evaluated, false, now));
    assert!(!destruction_due(AfterEvaluation, Open, false, now));
    assert!(!destruction_due(AfterEvaluation, Evaluating, true, now));

    assert!(destruction_due(AfterFirstRead, Open, true, now));
    assert!(!destruction_due(AfterFirstRead, Evaluated, false, now));

    let deadline = At(Timestamp::from_datetime(CLOSES));
    assert!(!destruction_due(deadline, Open, false, second(CLOSES, -1)));
    assert!(destruction_due(deadline, Open, false, CLOSES));
    assert!(destruction_due(
        deadline,
        Evaluated,
        false,
        second(CLOSES, 1)
    ));

    assert!(destruction_due(OnRequest, Destroying, false, now));
    assert!(!destruction_due(OnRequest, Evaluated, true, now));

    // Never again once destroyed.
    for policy in [AfterEvaluation, AfterFirstRead, deadline, OnRequest] {
        assert!(!destruction_due(policy, Destroyed, true, CLOSES));
    }
}

#[test]
fn the_transition_table() {
    let legal = [
        (Open, Evaluating),
        (Open, Destroying),
        (Open, Destroyed),
        (Evaluating, Evaluating),
        (Evaluating, Open),
        (Evaluating, Evaluated),
        (Evaluating, Destroying),
        (Evaluating, Destroyed),
        (Evaluated, Destroying),
        (Evaluated, Destroyed),
        (Destroying, Destroying),
        (Destroying, Destroyed),
    ];
    for from in InstanceState::ALL {
        for to in InstanceState::ALL {
            assert_eq!(
                transition_allowed(from, to),
                legal.contains(&(from, to)),
                "{from} → {to}"
            );
        }
    }
}
