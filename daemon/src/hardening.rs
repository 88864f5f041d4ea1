//! Process hardening at start (docs/threat-model.md, process hygiene): the daemon is not dumpable
//! (no core dumps, no ptrace by same-uid processes, `/proc/PID/mem` closed), writes no core file,
//! and locks its memory so that secrets (sealing key, instance secrets, TLS key, decrypted
//! inputs — all zeroized on drop) are never written to swap.

use nix::sys::mman::{MlockAllFlags, mlockall};
use nix::sys::prctl;
use nix::sys::resource::{Resource, setrlimit};

/// `MCL_ONFAULT` (Linux 4.4): lock pages as they are faulted in instead of populating
/// every mapping at once (nix 0.32 has no constant for it).
const MCL_ONFAULT: std::ffi::c_int = 4;

/// What hardening achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardened {
    /// Whether all current and future memory is locked.
    pub memory_locked: bool,
}

/// Makes the process non-dumpable and sets `RLIMIT_CORE` to 0 (failures are errors), then
/// tries `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`. Shared by the daemon and each
/// evaluation child; prints nothing.
pub fn lock_down() -> Result<Hardened, String> {
    prctl::set_dumpable(false).map_err(|e| format!("prctl(PR_SET_DUMPABLE, 0): {e}"))?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0)
        .map_err(|e| format!("setrlimit(RLIMIT_CORE, 0): {e}"))?;
    let flags = MlockAllFlags::MCL_CURRENT
        | MlockAllFlags::MCL_FUTURE
        | MlockAllFlags::from_bits_retain(MCL_ONFAULT);
    Ok(Hardened {
        memory_locked: mlockall(flags).is_ok(),
    })
}

/// The daemon's hardening: [`lock_down`], where failing to lock memory is an error unless
/// `allow_unlocked` (the configuration's `danger.allow_unlocked_memory`).
pub fn harden(allow_unlocked: bool) -> Result<Hardened, String> {
    let hardened = lock_down()?;
    if hardened.memory_locked {
        return Ok(hardened);
    }
    let why = std::io::Error::last_os_error();
    if allow_unlocked {
        tracing::warn!(
            event = "memory_unlocked",
            error = %why,
            "memory is not locked; secrets may reach swap (danger.allow_unlocked_memory = true)"
        );
        Ok(hardened)
    } else {
        Err(format!(
            "cannot lock memory (mlockall: {why}); raise the memlock limit (systemd: \
             LimitMEMLOCK=infinity) or set danger.allow_unlocked_memory = true"
        ))
    }
}
