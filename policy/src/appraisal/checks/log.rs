//! The measurement log: its structure, its replay to the application PCR, its
//! `daemon_started` records against each other and the quote's TPM startup, and every
//! daemon start's executable against the policy's digests.

use std::fmt;

use arbiter_measured_boot::cel::{self, DaemonStarted, EventContent, Record};

use super::Appraisal;
use crate::appraisal::{AppraisalPolicy, Check};
use crate::evidence::Evidence;
use crate::tpm::hash::sha256;

impl<'a> Appraisal<'a> {
    /// The measurement log: structure, replay to the application PCR, its
    /// `daemon_started` records against each other and the quote's TPM startup. The
    /// first record opens the generation; every later start of the daemon agrees with it
    /// on everything but its `version` and `executable_sha256`. Returns the first, and
    /// reports the running daemon by the last.
    pub(super) fn log(&mut self) -> Option<&'a DaemonStarted> {
        let evidence: &'a Evidence = self.evidence;
        let log = &evidence.log;
        let pcr = self.policy.application_pcr;
        match self.appraised.pcrs.get(&pcr) {
            None => self.fail(
                Check::Log,
                format!("the application PCR {pcr} is not quoted"),
            ),
            Some(value) => {
                if let Err(err) = cel::verify_against_pcr(log, u32::from(pcr), value) {
                    self.fail(
                        Check::Log,
                        format!("the measurement log does not replay to PCR {pcr}: {err}"),
                    );
                }
            }
        }
        let starts = daemon_starts(log);
        let ds = match log.first().map(|r| &r.content) {
            Some(EventContent::DaemonStarted(ds)) => Some(ds),
            Some(other) => {
                self.fail(
                    Check::Log,
                    format!(
                        "the log's first record is {}, not daemon_started",
                        other.event_name()
                    ),
                );
                None
            }
            None => {
                self.fail(Check::Log, "the measurement log is empty");
                None
            }
        };
        let clock = self.as_of;
        if let Some(first) = ds {
            for start in starts.iter().skip(1) {
                // With a verified quote every record's counts are checked against it
                // below; without one, against the first record.
                self.agrees_with_first(first, start, clock.is_none());
            }
        }
        if let Some(clock) = clock {
            for start in &starts {
                let later = &start.content;
                if later.reset_count == clock.reset_count
                    && later.restart_count == clock.restart_count
                {
                    continue;
                }
                let detail = if start.index == 0 {
                    format!(
                        "the log generation started at TPM reset/restart {}/{}, the quote is from {}/{}: a stale or restored log",
                        later.reset_count,
                        later.restart_count,
                        clock.reset_count,
                        clock.restart_count
                    )
                } else {
                    format!(
                        "{start} names TPM reset/restart {}/{}, the quote is from {}/{}: a daemon start from another TPM startup",
                        later.reset_count,
                        later.restart_count,
                        clock.reset_count,
                        clock.restart_count
                    )
                };
                self.fail(Check::Startup, detail);
            }
        }
        if let (Some(ds), Some(reported)) = (ds, self.evidence.log_generation)
            && ds.generation != reported
        {
            self.fail(
                Check::Log,
                format!(
                    "the log is generation {}, the daemon reports generation {reported}",
                    ds.generation
                ),
            );
        }
        self.appraised.log_generation = ds.map(|d| d.generation);
        if let Some(last) = starts.last() {
            self.appraised.daemon_version = Some(last.content.version.clone());
            self.appraised.daemon_executable_sha256 = Some(last.content.executable_sha256.0);
        }
        self.appraised.daemon_starts = starts.len();
        ds
    }

    /// A later `daemon_started` against the generation's first: one reason per field
    /// that differs (`version` and `executable_sha256` may; the counts are compared only
    /// when `counts`).
    fn agrees_with_first(&mut self, first: &DaemonStarted, start: &DaemonStart<'_>, counts: bool) {
        let later = start.content;
        let mut differs = |field: &str, theirs: String, ours: String| {
            self.fail(
                Check::Log,
                format!("{start} has {field} {theirs}, the log's first daemon_started has {ours}"),
            );
        };
        if later.generation != first.generation {
            differs(
                "generation",
                later.generation.to_string(),
                first.generation.to_string(),
            );
        }
        if counts && later.reset_count != first.reset_count {
            differs(
                "reset_count",
                later.reset_count.to_string(),
                first.reset_count.to_string(),
            );
        }
        if counts && later.restart_count != first.restart_count {
            differs(
                "restart_count",
                later.restart_count.to_string(),
                first.restart_count.to_string(),
            );
        }
        if later.platform_pcrs != first.platform_pcrs {
            differs(
                "platform_pcrs",
                format!("{:?}", later.platform_pcrs),
                format!("{:?}", first.platform_pcrs),
            );
        }
        if later.sealing_nv_public != first.sealing_nv_public {
            differs(
                "sealing_nv_public",
                format!(
                    "with SHA-256 {}",
                    hex::encode(sha256(&[&later.sealing_nv_public.0]))
                ),
                format!(
                    "with SHA-256 {}",
                    hex::encode(sha256(&[&first.sealing_nv_public.0]))
                ),
            );
        }
        if later.sealing_nv_name != first.sealing_nv_name {
            differs(
                "sealing_nv_name",
                hex::encode(&later.sealing_nv_name.0),
                hex::encode(&first.sealing_nv_name.0),
            );
        }
        if later.statement_key_name != first.statement_key_name {
            differs(
                "statement_key_name",
                hex::encode(&later.statement_key_name.0),
                hex::encode(&first.statement_key_name.0),
            );
        }
        if later.boot_id != first.boot_id {
            differs(
                "boot_id",
                format!("{:?}", later.boot_id),
                format!("{:?}", first.boot_id),
            );
        }
    }

    /// Every daemon start of the generation against the policy's executable digests:
    /// each of those daemons could read the sealed secrets.
    pub(super) fn executable(&mut self) {
        let policy: &'a AppraisalPolicy = self.policy;
        let Some(allowed) = &policy.executable_sha256 else {
            return;
        };
        let evidence: &'a Evidence = self.evidence;
        let starts = daemon_starts(&evidence.log);
        if starts.is_empty() {
            self.fail(
                Check::Executable,
                "the policy pins executable_sha256 but the log has no daemon_started record",
            );
        }
        for start in &starts {
            let digest = &start.content.executable_sha256;
            if !allowed.contains(&digest.0) {
                self.fail(
                    Check::Executable,
                    format!(
                        "daemon_started record {} (recnum {}, version {:?}) reports executable {digest}, which the policy does not allow",
                        start.index, start.recnum, start.content.version
                    ),
                );
            }
        }
    }
}

/// One `daemon_started` record of the log, where it is.
struct DaemonStart<'l> {
    /// Its index in the log.
    index: usize,
    /// Its `recnum`.
    recnum: u64,
    /// What it says.
    content: &'l DaemonStarted,
}

impl fmt::Display for DaemonStart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "daemon_started record {} (recnum {})",
            self.index, self.recnum
        )
    }
}

/// The log's `daemon_started` records, in log order.
fn daemon_starts(log: &[Record]) -> Vec<DaemonStart<'_>> {
    log.iter()
        .enumerate()
        .filter_map(|(index, r)| match &r.content {
            EventContent::DaemonStarted(content) => Some(DaemonStart {
                index,
                recnum: r.recnum,
                content,
            }),
            _ => None,
        })
        .collect()
}
