//! Children of this process inherit no TPM connection.
//!
//! The TSS opens its TPM connections without close-on-exec: the `swtpm` TCTI opens a new
//! TCP socket for every command (and closes it after the response), the `device` TCTI
//! opens the character device once. A child forked while a command is in flight keeps a
//! copy of that socket for as long as it lives. swtpm serves one connection at a time, so
//! it then waits on the child's copy and every later command of the daemon waits in its
//! listen queue: the TPM stalls until the child exits. A child that itself waits for the
//! daemon (an evaluation, a client started by a test in the daemon's process) turns the
//! stall into a deadlock that only the child's own timeout breaks.
//!
//! The gate is one process-wide lock (a fork copies descriptors from every thread, so
//! every TPM layer of the process takes part): the TPM owner thread holds it shared for
//! each job and while opening the TPM, and a spawn holds it exclusively across the fork
//! and exec ([`spawn_without_tpm`]). A spawn therefore waits for the commands in flight
//! (one per TPM layer, milliseconds), and no command starts until the child has exec'd.
//! The lock prefers writers, so a busy TPM queue does not starve spawns.
//!
//! The `device` TCTI's descriptor stays open between commands, so a child spawned under
//! the gate still inherits it; the evaluator child cannot use it (its seccomp filter
//! allows `write` to fds 1 and 2 only and no `read` at all), and `/dev/tpmrm0` gives each
//! open its own context, so nothing waits on that copy.

use std::sync::{PoisonError, RwLock, RwLockReadGuard};

static GATE: RwLock<()> = RwLock::new(());

/// Held while TPM connections of this process may be open (the owner thread's jobs,
/// opening the TPM); released on drop.
pub(crate) struct ConnectionsMayOpen {
    _shared: RwLockReadGuard<'static, ()>,
}

/// Takes the gate shared: no child is being spawned until the guard drops. Never taken
/// twice on one thread (a waiting spawn would block the second).
pub(crate) fn connections_may_open() -> ConnectionsMayOpen {
    ConnectionsMayOpen {
        _shared: GATE.read().unwrap_or_else(PoisonError::into_inner),
    }
}

/// Runs `spawn` — a fork and exec, `Command::spawn` — while no TPM command of this
/// process is in flight, so the child inherits no TPM socket. Blocks for the commands in
/// flight (milliseconds); keep the closure to the spawn itself and wait for the child
/// outside it, or the TPM waits for the child.
pub fn spawn_without_tpm<T>(spawn: impl FnOnce() -> T) -> T {
    let _exclusive = GATE.write().unwrap_or_else(PoisonError::into_inner);
    spawn()
}
