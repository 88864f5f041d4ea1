//! `arbiterd`'s exit statuses: sysexits(3) codes, so that the service manager's log and a
//! script tell a bad configuration (fix the file) from a missing TPM (fix the platform), a
//! state directory that cannot be written, another daemon holding it (wait) and a bug. The
//! table is in docs/operations.md.

use std::process::ExitCode;

use arbiter_daemon::config::ConfigError;
use arbiter_daemon::engine::StartError;
use arbiter_daemon::lock::LockError;
use arbiter_daemon::measure::MeasureError;
use arbiter_daemon::tpm::TpmError;

/// `EX_SOFTWARE`: anything not listed below.
pub const SOFTWARE: u8 = 70;
/// `EX_CONFIG`: the configuration does not load or validate.
pub const CONFIG: u8 = 78;
/// `EX_UNAVAILABLE`: the TPM cannot be opened or stopped answering.
pub const UNAVAILABLE: u8 = 69;
/// `EX_IOERR`: the state directory, the store or the measurement log cannot be used.
pub const IOERR: u8 = 74;
/// `EX_TEMPFAIL`: another daemon holds the state directory's lock.
pub const TEMPFAIL: u8 = 75;

/// The exit status for an error of `arbiterd run` or `arbiterd check-config`.
pub fn code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<ConfigError>().is_some() {
        return CONFIG;
    }
    match error.downcast_ref::<StartError>() {
        Some(StartError::Tpm(e)) | Some(StartError::Measure(MeasureError::Tpm(e))) => tpm(e),
        Some(StartError::Measure(MeasureError::Io { .. })) | Some(StartError::Store(_)) => IOERR,
        Some(StartError::Locked(LockError::Held { .. })) => TEMPFAIL,
        Some(StartError::Locked(LockError::Io { .. })) => IOERR,
        _ => SOFTWARE,
    }
}

fn tpm(error: &TpmError) -> u8 {
    match error {
        TpmError::InvalidTcti { .. } | TpmError::Config(_) => CONFIG,
        TpmError::Open { .. } | TpmError::Unreachable { .. } | TpmError::Stopped => UNAVAILABLE,
        _ => SOFTWARE,
    }
}

/// Prints the error as `arbiterd: …` on stderr and returns its exit status.
pub fn report(error: &anyhow::Error) -> ExitCode {
    eprintln!("arbiterd: {error:#}");
    ExitCode::from(code(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_has_its_sysexits_code() {
        let config = ConfigError::Parse("expected `=`".into());
        assert_eq!(code(&config.into()), CONFIG);
        let locked = StartError::Locked(LockError::Held {
            dir: "/var/lib/arbiter".into(),
            holder: " (pid 1)".into(),
        });
        assert_eq!(code(&locked.into()), TEMPFAIL);
        let lock_io = StartError::Locked(LockError::Io {
            dir: "/var/lib/arbiter".into(),
            detail: "read-only file system".into(),
        });
        assert_eq!(code(&lock_io.into()), IOERR);
        let open = TpmError::Open {
            tcti: "device:/dev/tpmrm0".into(),
            detail: "no such device".into(),
        };
        assert_eq!(code(&StartError::Tpm(open).into()), UNAVAILABLE);
        let stopped = StartError::Measure(MeasureError::Tpm(TpmError::Stopped));
        assert_eq!(code(&stopped.into()), UNAVAILABLE);
        let tcti = TpmError::InvalidTcti {
            tcti: "nonsense".into(),
            detail: "unknown".into(),
        };
        assert_eq!(code(&StartError::Tpm(tcti).into()), CONFIG);
        let other = StartError::Other("cannot listen on 127.0.0.1:1: in use".into());
        assert_eq!(code(&other.into()), SOFTWARE);
        assert_eq!(code(&anyhow::anyhow!("anything else")), SOFTWARE);
    }
}
