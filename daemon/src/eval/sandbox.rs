//! Process hardening and the seccomp filter of the evaluator child.
//!
//! [`harden`] runs once the request has been read: the process becomes non-dumpable
//! (no core dumps, no ptrace by other users' processes, `/proc/PID/mem` closed), core
//! files are limited to zero bytes, and memory is locked
//! (`mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`) where the process is allowed to
//! (root or `CAP_IPC_LOCK`, or a large enough `RLIMIT_MEMLOCK`); where it is not, the
//! evaluation still runs and the usage figures say `memory_locked: false`.
//!
//! [`limit_address_space`] sets `RLIMIT_AS` to the address space already mapped when
//! the script is about to start (the binary, its libraries, the stacks, the allocator's
//! arenas) plus the manifest's memory allowance, so the allowance means the same on
//! every build and host.
//!
//! [`filter`] is the seccomp allowlist; anything else kills the process with `SIGSYS`.
//! Every entry and the reason it is there:
//!
//! | system call | why |
//! |---|---|
//! | `write` (fd 1 and 2 only) | the response on stdout; the allocator's and panic handler's one-line diagnostics on stderr |
//! | `exit`, `exit_group` | leaving after the one run |
//! | `brk`, `mmap`, `munmap`, `mremap`, `madvise` | the allocator; `mmap` only without `PROT_EXEC` |
//! | `mprotect` (without `PROT_EXEC`) | glibc grows a thread's malloc arena by `mprotect`ing reserved pages |
//! | `futex` | locks inside the allocator and the Rhai engine (`sync` feature) |
//! | `sched_yield` | spin-lock back-off in the standard library |
//! | `rt_sigreturn`, `sigaltstack` | returning from the stack-overflow handler that prints "overflowed its stack" |
//! | `rt_sigprocmask`, `rt_sigaction`, `tgkill`, `getpid`, `gettid` | `abort()` after an allocation failure or stack overflow raises `SIGABRT` in this process (`tgkill` only to this process) |
//! | `getrusage` (`RUSAGE_SELF`) | the peak resident set size reported in the usage figures |
//!
//! Not allowed: `read` (the request is read before the filter goes on), `open`/`openat`,
//! any socket, `clone`/`fork`/`execve`, `clock_gettime` (no clock for scripts; the vDSO
//! still answers `Instant::now` without a system call, and nothing here asks),
//! `getrandom` (Rhai's hashing seed is fixed before the engine is built).

use nix::libc;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

pub(crate) use crate::hardening::lock_down as harden;

/// Closes every file descriptor above stderr, first thing in the child.
///
/// The child inherits whatever the daemon had open without close-on-exec at the moment
/// of the spawn — notably the TPM library's socket to swtpm (libtss2's TCTI does not set
/// `SOCK_CLOEXEC`) or a TPM device descriptor. An inherited swtpm connection stays open
/// as long as the child lives, and swtpm serves one connection at a time: the daemon's
/// next TPM command then waits for the child to exit (seen with a child started ahead of
/// its evaluation, which stalled the TPM until it was used). The seccomp filter already
/// keeps the script from using such a descriptor; this makes the child hold none.
pub(crate) fn close_inherited_fds() -> Result<(), String> {
    close_range_above_stderr().or_else(|e| {
        // Kernels before 5.9 have no close_range: close what /proc lists instead.
        if e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(format!("close_range: {e}"));
        }
        let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .map_err(|e| format!("listing /proc/self/fd: {e}"))?
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd > 2)
            .collect();
        // The directory's own descriptor is in the list and already closed: EBADF.
        fds.into_iter().for_each(close_raw);
        Ok(())
    })
}

/// `close_range(3, ~0, 0)`.
#[allow(unsafe_code)]
fn close_range_above_stderr() -> std::io::Result<()> {
    // SAFETY: called at the start of the child's `main`, before any thread starts and
    // before anything in this process opens a descriptor; every descriptor above 2 was
    // inherited across `execve` and no value in this process owns or uses one, so
    // closing them cannot invalidate an `OwnedFd`/`File` or race another thread.
    let rc = unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `close(fd)`, ignoring the result (see [`close_range_above_stderr`] for why it is sound).
#[allow(unsafe_code)]
fn close_raw(fd: i32) {
    // SAFETY: as in `close_range_above_stderr`: `fd` is an inherited descriptor above 2
    // that nothing in this single-threaded process owns.
    let _ = unsafe { libc::close(fd) };
}
use nix::sys::resource::{Resource, setrlimit};

/// The address space mapped now, in bytes, from `/proc/self/status` (`VmSize`).
pub(crate) fn mapped_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmSize:"))?;
    let kib: u64 = line
        .trim_start_matches("VmSize:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// Address space assumed to be mapped when `/proc` cannot tell.
const FALLBACK_BASELINE: u64 = 1 << 30;

/// Sets `RLIMIT_AS` (soft and hard) to what is mapped now plus `allowance` bytes.
/// Returns the limit set.
pub(crate) fn limit_address_space(allowance: u64) -> Result<u64, String> {
    let baseline = mapped_bytes().unwrap_or(FALLBACK_BASELINE);
    let limit = baseline.saturating_add(allowance);
    setrlimit(Resource::RLIMIT_AS, limit, limit)
        .map_err(|e| format!("setrlimit(RLIMIT_AS): {e}"))?;
    Ok(limit)
}

/// The architecture seccompiler compiles for.
#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

/// A condition on system-call argument `index`.
fn arg(index: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| format!("seccomp condition: {e}"))
}

/// One rule: all `conditions` hold.
fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(|e| format!("seccomp rule: {e}"))
}

/// Condition: argument `index` has no `PROT_EXEC` bit.
fn no_exec(index: u8) -> Result<SeccompCondition, String> {
    arg(index, SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64), 0)
}

/// Compiles the evaluator's allowlist (see the module documentation) for this process.
pub(crate) fn filter() -> Result<BpfProgram, String> {
    let pid = u64::try_from(nix::unistd::getpid().as_raw()).unwrap_or(u64::MAX);
    let any = Vec::new;
    let rules: Vec<(i64, Vec<SeccompRule>)> = vec![
        (
            libc::SYS_write,
            vec![
                rule(vec![arg(0, SeccompCmpOp::Eq, 1)?])?,
                rule(vec![arg(0, SeccompCmpOp::Eq, 2)?])?,
            ],
        ),
        (libc::SYS_exit, any()),
        (libc::SYS_exit_group, any()),
        (libc::SYS_brk, any()),
        (libc::SYS_mmap, vec![rule(vec![no_exec(2)?])?]),
        (libc::SYS_mprotect, vec![rule(vec![no_exec(2)?])?]),
        (libc::SYS_munmap, any()),
        (libc::SYS_mremap, any()),
        (libc::SYS_madvise, any()),
        (libc::SYS_futex, any()),
        (libc::SYS_sched_yield, any()),
        (libc::SYS_rt_sigreturn, any()),
        (libc::SYS_sigaltstack, any()),
        (libc::SYS_rt_sigprocmask, any()),
        (libc::SYS_rt_sigaction, any()),
        (libc::SYS_getpid, any()),
        (libc::SYS_gettid, any()),
        (
            libc::SYS_tgkill,
            vec![rule(vec![arg(0, SeccompCmpOp::Eq, pid)?])?],
        ),
        (
            libc::SYS_getrusage,
            vec![rule(vec![arg(
                0,
                SeccompCmpOp::Eq,
                libc::RUSAGE_SELF as u64,
            )?])?],
        ),
    ];
    let filter = SeccompFilter::new(
        rules.into_iter().collect(),
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        ARCH,
    )
    .map_err(|e| format!("seccomp filter: {e}"))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| format!("seccomp compile: {e}"))
}

/// Installs `program` on every thread of the process (with `no_new_privs`).
pub(crate) fn apply(program: &BpfProgram) -> Result<(), String> {
    seccompiler::apply_filter_all_threads(program).map_err(|e| format!("seccomp install: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_compiles() {
        let program = filter().unwrap();
        assert!(program.len() > 20);
    }

    #[test]
    fn mapped_bytes_reads_proc() {
        assert!(mapped_bytes().unwrap() > 1 << 20);
    }
}
