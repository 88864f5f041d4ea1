//! The checks of an appraisal: [`appraise`] runs each of them on one [`Appraisal`],
//! which collects every failure as a [`Reason`]. One file per concern.

mod firmware;
mod identity;
mod instance;
mod keys;
mod log;
mod platform;

use crate::appraisal::{AppraisalPolicy, Appraised, Check, Expectations, Reason, Verdict};
use crate::evidence::Evidence;
use crate::tpm::ClockInfo;

struct Appraisal<'a> {
    evidence: &'a Evidence,
    policy: &'a AppraisalPolicy,
    expect: &'a Expectations,
    reasons: Vec<Reason>,
    appraised: Appraised,
    as_of: Option<ClockInfo>,
}

impl<'a> Appraisal<'a> {
    fn fail(&mut self, check: Check, detail: impl Into<String>) {
        self.reasons.push(Reason {
            check,
            detail: detail.into(),
        });
    }
}

/// Appraises `evidence` under `policy` with the verifier's `expect`ations, running every
/// check and listing every failure.
pub fn appraise(evidence: &Evidence, policy: &AppraisalPolicy, expect: &Expectations) -> Verdict {
    let mut a = Appraisal {
        evidence,
        policy,
        expect,
        reasons: Vec::new(),
        appraised: Appraised::default(),
        as_of: None,
    };
    let ak = a.ak();
    let bound = a.binding();
    let quoted = a.quote(ak.as_ref());
    let ds = a.log();
    a.executable();
    let platform = a.platform(ds);
    a.pcr_policy();
    a.reference_values();
    a.statement_key(ak.as_ref(), ds, platform.as_ref());
    a.sealing(ak.as_ref(), ds, platform.as_ref());
    a.firmware(platform.as_ref());
    a.functions();
    a.instance();
    Verdict {
        trusted: a.reasons.is_empty(),
        fresh: bound && quoted && expect.nonce.is_some(),
        reasons: a.reasons,
        as_of: a.as_of,
        appraised: a.appraised,
    }
}
