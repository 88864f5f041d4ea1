//! The evaluator child, `arbiterd __evaluate`: reads one request, hardens itself, runs the
//! script under seccomp, writes one response and exits.
//!
//! Order of events:
//! 0. every inherited descriptor above stderr is closed ([`sandbox::close_inherited_fds`]:
//!    the TPM library's socket to swtpm, for one, is not close-on-exec);
//! 1. a panic hook that prints only the panic's location (never a payload that could hold
//!    script data), and Rhai's fixed hashing seed (no `getrandom` later);
//! 2. the request is read from stdin (bounded), its inputs checked and decoded, slot by
//!    slot as they arrive, large ones on threads of their own (`super::decode`); the raw
//!    bytes are zeroized (a child started ahead of its evaluation, a *warm* child, waits
//!    here holding nothing). An input that fails a check is answered at once: the
//!    script never runs;
//! 3. [`sandbox::harden`]: not dumpable, no core files, memory locked where permitted;
//! 4. a worker thread with a large stack (deep but legal recursion must not overflow
//!    before Rhai's own call-depth limit triggers) builds the engine, sets `RLIMIT_AS`,
//!    installs the seccomp filter on every thread, compiles and runs the script, writes
//!    the response and exits the process.
//!
//! The exit code is 0 whenever a response was written (the failure, if any, is inside);
//! without a response the parent classifies the exit from the status and stderr.
//!
//! [`child_main`] is this process's `main`: its few failure lines are plain `eprintln!`,
//! not `tracing` events — the child installs no subscriber (nothing to set up before the
//! seccomp filter, no journal socket to open), and its stderr is a pipe the parent reads
//! back, bounded, into the evaluation's error. They name what failed, never script data.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::Zeroizing;

use super::decode::SlotError;
use super::helpers::Rng;
use super::protocol::{self, WireCpu, WireRequest, WireResponse, WireUsage};
use super::script::{self, ScriptFailure};
use super::{EvalFailure, Limits, sandbox};

/// Stack of the worker thread: [`STACK_PER_CALL_LEVEL`] per allowed call level (a debug
/// build uses about 30 KiB per Rhai call level, a release build less), within these
/// bounds. Reserved, not committed: pages count towards RSS (and are locked) only when
/// touched, so the stack costs memory only as deep as the script recurses; recursion
/// deeper than the cap overflows it and is reported as a call-depth failure. The stack
/// is outside the manifest's memory allowance, which is why it is capped.
const MIN_WORKER_STACK_BYTES: usize = 64 << 20;
const STACK_PER_CALL_LEVEL: usize = 128 << 10;
const MAX_WORKER_STACK_BYTES: usize = 1 << 30;

/// Rhai's hashing seed in the child: fixed, so no random seed is drawn under seccomp and
/// function hashing is the same in every run. (Scripts cannot observe it.)
const HASHING_SEED: [u64; 4] = [
    0x6172_6269_7465_7221,
    0x6576_616c_7561_7465,
    0x7365_6363_6f6d_7021,
    0x0000_0000_0000_0001,
];

/// Exit codes of a child that could not answer.
const EXIT_NO_REQUEST: u8 = 65;
const EXIT_HARDENING: u8 = 70;
const EXIT_WRITE: u8 = 74;

/// Self-tests of the sandbox, selected by `--selftest` (hidden; for the test suite).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// After installing the filter, try to open `/etc/hostname`: must die with `SIGSYS`.
    Seccomp,
}

impl SelfTest {
    /// The `--selftest` argument value.
    pub(crate) fn as_arg(self) -> &'static str {
        match self {
            SelfTest::Seccomp => "seccomp",
        }
    }
}

/// Runs the child and returns its exit code (see the module documentation).
pub fn child_main() -> ExitCode {
    let started = cpu_us();
    if let Err(e) = sandbox::close_inherited_fds() {
        eprintln!("arbiterd evaluator: cannot close inherited descriptors: {e}");
        return ExitCode::from(EXIT_HARDENING);
    }
    let selftest = parse_args();
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map_or_else(|| "unknown".to_owned(), ToString::to_string);
        eprintln!("arbiterd evaluator: internal panic at {location}");
    }));
    // Only fails if already set, which cannot happen in a fresh child.
    let _ = rhai::config::hashing::set_hashing_seed(Some(HASHING_SEED));

    let request = match read_request() {
        Ok(Ok(r)) => r,
        Ok(Err(refused)) => {
            let marks = Marks {
                start: started,
                read: cpu_us().saturating_sub(started),
                ..Marks::default()
            };
            return refuse(refused, &marks);
        }
        Err(e) => {
            eprintln!("arbiterd evaluator: cannot read the request: {e}");
            return ExitCode::from(EXIT_NO_REQUEST);
        }
    };
    let hardening = match sandbox::harden() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("arbiterd evaluator: cannot harden the process: {e}");
            return ExitCode::from(EXIT_HARDENING);
        }
    };
    let memory_locked = hardening.memory_locked;
    let marks = Marks {
        start: started,
        read: cpu_us().saturating_sub(started),
        ..Marks::default()
    };
    let stack = request
        .limits
        .max_call_depth
        .saturating_mul(STACK_PER_CALL_LEVEL)
        .clamp(MIN_WORKER_STACK_BYTES, MAX_WORKER_STACK_BYTES);

    let worker = std::thread::Builder::new()
        .name("evaluate".into())
        .stack_size(stack)
        .spawn(move || worker(request, memory_locked, selftest, marks));
    match worker {
        // The worker exits the process itself; getting here means it panicked.
        Ok(handle) => {
            let _ = handle.join();
            ExitCode::from(EXIT_HARDENING)
        }
        Err(e) => {
            eprintln!("arbiterd evaluator: cannot start the worker thread: {e}");
            ExitCode::from(EXIT_HARDENING)
        }
    }
}

/// `__evaluate [--selftest seccomp]`, parsed by hand: clap has already checked the
/// subcommand, and the arguments come from the parent, not from a user.
fn parse_args() -> Option<SelfTest> {
    let args: Vec<String> = std::env::args().collect();
    let position = args.iter().position(|a| a == "--selftest")?;
    match args.get(position + 1).map(String::as_str) {
        Some("seccomp") => Some(SelfTest::Seccomp),
        _ => None,
    }
}

/// Reads the request from stdin, checking and decoding the inputs (`super::decode`).
fn read_request() -> Result<Result<WireRequest, SlotError>, String> {
    protocol::read_request(&mut std::io::stdin().lock())
}

/// Answers an input refused before the script ran, and returns the exit code.
fn refuse(refused: SlotError, marks: &Marks) -> ExitCode {
    let usage = WireUsage {
        cpu_us: Some(marks.wire()),
        ..WireUsage::default()
    };
    let response = match refused {
        SlotError::NotJson { slot, reason } => WireResponse::BadInput { slot, reason },
        SlotError::TooDeep { slot } => WireResponse::Failed {
            reason: EvalFailure::SizeLimit,
            message: format!(
                "the input in slot `{slot}` is nested deeper than {} levels",
                script::MAX_VALUE_DEPTH
            ),
            usage,
        },
    };
    match respond(&response) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arbiterd evaluator: cannot write the response: {e}");
            ExitCode::from(EXIT_WRITE)
        }
    }
}

/// CPU time of the process so far (user plus system), in microseconds; 0 if unknown.
fn cpu_us() -> u64 {
    let Ok(usage) = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) else {
        return 0;
    };
    let us = |t: nix::sys::time::TimeVal| {
        u64::try_from(t.tv_sec())
            .unwrap_or(0)
            .saturating_mul(1_000_000)
            .saturating_add(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    us(usage.user_time()).saturating_add(us(usage.system_time()))
}

/// CPU time per phase as the child goes ([`WireCpu`]); `last` is the process's CPU time
/// at the end of the previous phase.
#[derive(Default, Clone, Copy)]
struct Marks {
    start: u64,
    read: u64,
    setup: u64,
    compile: u64,
    compute: u64,
    output: u64,
}

impl Marks {
    /// The CPU time since the end of the phases recorded so far.
    fn since(&self) -> u64 {
        let spent = self.start + self.read + self.setup + self.compile + self.compute + self.output;
        cpu_us().saturating_sub(spent)
    }

    fn wire(&self) -> WireCpu {
        WireCpu {
            start: self.start,
            read: self.read,
            setup: self.setup,
            compile: self.compile,
            compute: self.compute,
            output: self.output,
        }
    }
}

/// The worker thread: everything from building the engine to exiting the process.
fn worker(
    mut request: WireRequest,
    memory_locked: bool,
    selftest: Option<SelfTest>,
    mut marks: Marks,
) {
    let operations = Arc::new(AtomicU64::new(0));
    let outcome = evaluate(&mut request, &operations, selftest, &mut marks);
    let usage = usage(&operations, memory_locked, &marks);
    let response = match outcome {
        Ok(output) => WireResponse::Ok { output, usage },
        Err(failure) => WireResponse::Failed {
            reason: failure.reason,
            message: failure.message,
            usage,
        },
    };
    drop(request);
    let code = match respond(&response) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("arbiterd evaluator: cannot write the response: {e}");
            i32::from(EXIT_WRITE)
        }
    };
    // Exit without unwinding or dropping the script's values.
    std::process::exit(code);
}

/// Builds the engine, sandboxes the process and runs the script, recording the CPU time
/// of each phase in `marks`. The inputs move out of `request` into the script.
fn evaluate(
    request: &mut WireRequest,
    operations: &Arc<AtomicU64>,
    selftest: Option<SelfTest>,
    marks: &mut Marks,
) -> Result<serde_json::Value, ScriptFailure> {
    let limits = Limits::from_wire(&request.limits);
    let rng = match request
        .rng_seed
        .as_ref()
        .map(|s| decode_seed(s))
        .transpose()
    {
        Ok(seed) => seed.map(Rng::new),
        Err(e) => return Err(ScriptFailure::new(EvalFailure::Crashed, e)),
    };
    let engine = script::build_engine(&limits, rng, Some(Arc::clone(operations)));
    // Touch what lazily initialises itself before the filter forbids it: the allocator's
    // arena for this thread, the standard library's hash keys, the engine's tables.
    let _ = std::collections::hash_map::RandomState::new();
    let _ = engine.compile("fn compute(i) { [i.len(), `${1}`, #{a: 1.5}] }");

    let sandboxed = sandbox::filter()
        .and_then(|program| {
            sandbox::limit_address_space(request.limits.memory_bytes)?;
            Ok(program)
        })
        .and_then(|program| sandbox::apply(&program));
    if let Err(e) = sandboxed {
        return Err(ScriptFailure::new(
            EvalFailure::Crashed,
            format!("the evaluator could not sandbox itself: {e}"),
        ));
    }
    marks.setup = marks.since();

    if selftest == Some(SelfTest::Seccomp) {
        let opened = std::fs::File::open("/etc/hostname");
        return Err(ScriptFailure::new(
            EvalFailure::Crashed,
            format!("seccomp selftest: open was not stopped ({opened:?})"),
        ));
    }

    let ast = script::compile(&engine, &request.source)?;
    marks.compile = marks.since();
    let inputs = std::mem::take(&mut request.inputs);
    let value = script::call_compute(&engine, &ast, inputs, &limits);
    marks.compute = marks.since();
    let output = script::dynamic_to_json(&value?, 0, &limits);
    marks.output = marks.since();
    output
}

/// Decodes the hex RNG seed.
fn decode_seed(text: &str) -> Result<[u8; 32], String> {
    let bytes = Zeroizing::new(hex::decode(text).map_err(|e| format!("bad RNG seed: {e}"))?);
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| "the RNG seed is not 32 bytes".to_owned())
}

/// The usage figures known inside the child.
fn usage(operations: &AtomicU64, memory_locked: bool, marks: &Marks) -> WireUsage {
    let peak_rss_bytes = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .ok()
        .and_then(|u| u64::try_from(u.max_rss()).ok())
        .map(|kib| kib.saturating_mul(1024));
    WireUsage {
        operations: operations.load(Ordering::Relaxed),
        peak_rss_bytes,
        memory_locked,
        cpu_us: Some(marks.wire()),
    }
}

/// Encodes and writes the response; an output too large for the pipe becomes a
/// [`EvalFailure::BadOutput`] response instead.
fn respond(response: &WireResponse) -> std::io::Result<()> {
    let mut body = Zeroizing::new(serde_json::to_vec(response).map_err(std::io::Error::other)?);
    if body.len() > protocol::MAX_RESPONSE_BYTES {
        let usage = match response {
            WireResponse::Ok { usage, .. } | WireResponse::Failed { usage, .. } => *usage,
            WireResponse::BadInput { .. } => WireUsage::default(),
        };
        let too_large = WireResponse::Failed {
            reason: EvalFailure::BadOutput,
            message: format!(
                "the script's result is {} bytes of JSON, more than the limit of {}",
                body.len(),
                protocol::MAX_RESPONSE_BYTES
            ),
            usage,
        };
        body = Zeroizing::new(serde_json::to_vec(&too_large).map_err(std::io::Error::other)?);
    }
    let mut stdout = std::io::stdout().lock();
    protocol::write_frame(&mut stdout, &body)?;
    stdout.flush()
}
