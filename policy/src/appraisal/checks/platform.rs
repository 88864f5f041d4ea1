//! The platform PCRs: the platform set (from `daemon_started`) and its quoted values, the
//! policy's pinned PCR values, and whether the policy pins the platform at all (reference
//! values, or an explicit opt-out).

use arbiter_measured_boot::cel::DaemonStarted;

use super::Appraisal;
use crate::appraisal::{Check, REQUIRED_PLATFORM_PCRS};
use crate::evidence::select;
use crate::tpm::{PcrSelection, PcrValues};

impl<'a> Appraisal<'a> {
    /// The platform PCR set (from `daemon_started`) and the quoted values of it.
    pub(super) fn platform(
        &mut self,
        ds: Option<&DaemonStarted>,
    ) -> Option<(PcrSelection, PcrValues)> {
        let ds = ds?;
        let indices: Result<Vec<u8>, _> =
            ds.platform_pcrs.iter().map(|&p| u8::try_from(p)).collect();
        let selection = match indices.map(PcrSelection::new) {
            Ok(Ok(s)) => s,
            _ => {
                self.fail(
                    Check::PlatformPcrs,
                    format!("invalid platform PCR set {:?}", ds.platform_pcrs),
                );
                return None;
            }
        };
        self.appraised.platform_pcrs = Some(selection.clone());
        let mut ok = true;
        if let Some(required) = &self.policy.platform_pcrs
            && *required != selection
        {
            self.fail(
                Check::PlatformPcrs,
                format!(
                    "the platform PCR set is {:?}, the policy requires {:?}",
                    selection.pcrs(),
                    required.pcrs()
                ),
            );
        } else if self.policy.platform_pcrs.is_none() && !self.policy.allow_weak_platform_pcrs {
            let missing: Vec<u8> = REQUIRED_PLATFORM_PCRS
                .into_iter()
                .filter(|p| !selection.contains(*p))
                .collect();
            if !missing.is_empty() {
                self.fail(
                    Check::PlatformPcrs,
                    format!(
                        "the platform PCR set {:?} lacks {missing:?} (a weak set; the policy does not allow it)",
                        selection.pcrs()
                    ),
                );
            }
        }
        if selection.contains(self.policy.application_pcr) {
            self.fail(
                Check::PlatformPcrs,
                "the platform PCR set contains the application PCR",
            );
        }
        let unquoted: Vec<u8> = selection
            .pcrs()
            .into_iter()
            .filter(|p| !self.appraised.pcrs.contains_key(p))
            .collect();
        if !unquoted.is_empty() {
            self.fail(
                Check::PlatformPcrs,
                format!("platform PCRs {unquoted:?} are not quoted"),
            );
            ok = false;
        }
        ok.then(|| {
            let values = select(&self.appraised.pcrs, &selection);
            (selection, values)
        })
    }

    /// Reference values: the policy must pin some platform PCR to a non-zero value or have
    /// a firmware-log rule, or else explicitly allow an unpinned platform.
    pub(super) fn reference_values(&mut self) {
        let platform = self
            .appraised
            .platform_pcrs
            .clone()
            .or_else(|| self.policy.platform_pcrs.clone());
        if self.policy.pins_platform(platform.as_ref()) {
            return;
        }
        if self.policy.allow_unpinned_platform {
            self.appraised.unpinned_platform = true;
            return;
        }
        let set = platform.map_or_else(
            || "the platform PCRs".to_owned(),
            |s| format!("{:?}", s.pcrs()),
        );
        let zeros: Vec<u8> = self
            .policy
            .pcrs
            .iter()
            .filter(|(_, allowed)| allowed.contains(&[0u8; 32]))
            .map(|(index, _)| *index)
            .collect();
        let zeros = if zeros.is_empty() {
            String::new()
        } else {
            format!(
                " (PCRs {zeros:?} allow all zeros, the value of a PCR nothing was measured into: no pin)"
            )
        };
        self.fail(
            Check::ReferenceValues,
            format!(
                "the policy pins no reference value for the platform: no non-zero value for any of {set} in [pcrs]{zeros} and no firmware-log rule ([firmware] secure_boot or boot_applications), so any firmware, boot loader and kernel would pass; pin them (`arbiter policy capture`) or, for a TPM with no firmware such as swtpm, allow it explicitly (allow_unpinned_platform = true or --allow-unpinned-platform)"
            ),
        );
    }

    /// The policy's PCR values.
    pub(super) fn pcr_policy(&mut self) {
        for (index, allowed) in &self.policy.pcrs {
            match self.appraised.pcrs.get(index) {
                None => self.fail(
                    Check::Pcr,
                    format!("PCR {index} is required by the policy but not quoted"),
                ),
                Some(v) if !allowed.contains(v) => self.fail(
                    Check::Pcr,
                    format!(
                        "PCR {index} is {}, which the policy does not allow",
                        hex::encode(v)
                    ),
                ),
                Some(_) => {}
            }
        }
    }
}
