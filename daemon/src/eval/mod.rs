//! The evaluation sandbox (docs/manifest.md, limits): runs a function's Rhai script on an
//! instance's inputs in a child process that exits after one run.
//!
//! The daemon re-executes its own binary as `arbiterd __evaluate` with an empty
//! environment, sends one request (a length-prefixed JSON head with the script, limits,
//! RNG seed and slot lengths, then each input's JSON text as it is; `protocol`) over the
//! child's stdin and reads one response from its stdout; [`Evaluator`] is that parent
//! side and [`child_main`] the child's, which checks and decodes the inputs (`decode`)
//! before the script runs. The child is hardened as
//! the `sandbox` module explains (not dumpable, no core files, locked memory where
//! permitted, `RLIMIT_AS`, a seccomp allowlist of a dozen system calls) and Rhai's own
//! limits apply inside it. The parent kills the child (`SIGKILL`) at the wall-clock
//! deadline, counted from handing it the request.
//!
//! The next evaluation's child is started as soon as one ends (a *warm* child,
//! [`Evaluator`]): it execs and loads the binary and its libraries — about 4 ms of CPU,
//! the largest part of a small evaluation — then blocks reading its request, holding
//! nothing. Everything else happens after the request arrives, exactly as in a fresh
//! child: hardening, the engine with the request's limits, `RLIMIT_AS`, the seccomp
//! filter. Each child serves one evaluation and exits. A warm child runs the binary as it
//! was when the child started (after an upgrade in place, the first evaluation may still
//! run the previous build).
//!
//! Every script problem — compile error, missing `compute`, runtime error, any limit,
//! a crash, a kill, an output that is not JSON — is an [`EvalOutcome::Failed`] with an
//! [`EvalFailure`] and a one-line message; [`EvalError`] is kept for failures of the
//! machinery itself (the binary cannot be started, a pipe breaks while the child lives).
//!
//! Decisions where the specification is silent:
//! - `memory_bytes` is the script's allowance on top of the address space the child has
//!   mapped when the script starts (binary, libraries, stacks, allocator arenas; about
//!   100–400 MiB of mostly unbacked reservations): `RLIMIT_AS = baseline + memory_bytes`.
//! - A limit of 0 for operations, strings, arrays or maps means 1 (Rhai reads 0 as
//!   "unlimited"); a call depth of 0 forbids calling any script function, `compute`
//!   included.
//! - Failure to lock memory (no `CAP_IPC_LOCK`, small `RLIMIT_MEMLOCK`) is not fatal;
//!   [`Usage::memory_locked`] reports it so the daemon can log it once.
//! - Failure messages can contain text chosen by the script (`throw "..."`), hence data
//!   derived from inputs: treat them like outputs, not like logs.
//! - JSON to Rhai: integers that fit `i64` stay integers, other numbers are floats;
//!   `null` is `()`. Rhai to JSON: see the `script` module — blobs become hex strings,
//!   non-finite floats and function pointers are [`EvalFailure::BadOutput`], and nesting
//!   is limited to 100 levels both ways.
//! - The seeded RNG (`random_int`, `random_float`) is SHA-256 in counter mode over the
//!   32-byte seed (domain `arbiter/v1/rng`); without a seed those functions fail.
//! - The child's environment is empty except `GLIBC_TUNABLES`: `glibc.malloc.arena_max=1`
//!   (glibc's per-thread malloc arenas read `/proc/sys/vm/overcommit_memory` when they
//!   shrink, which the filter forbids; with one arena every thread uses the main heap)
//!   and `glibc.malloc.hugetlb=1` (malloc asks for transparent huge pages with `madvise`
//!   where the kernel offers them on request, as Debian's does: decoding two lists of a
//!   million strings faulted in 4 KiB pages one by one, and took 2–3 times the CPU).
//! - Known Rhai 1.27 behaviour: `m[key] = value` grows a map without checking the map
//!   size limit (the output is checked again, and `RLIMIT_AS` bounds memory), and each
//!   `push` re-measures the whole array, so filling a 100 000-element array costs
//!   seconds of CPU for few operations; the wall-clock deadline bounds both.
//! - A successful output is served in the form the signed result carries it (JCS numbers:
//!   `2.0` is `2`, `-0.0` is `0`); integers beyond ±(2^53 − 1), which JCS would round,
//!   are [`EvalFailure::BadOutput`] (the `canonical` module; docs/sandbox.md).
//! - Under systemd, the unit's `SystemCallFilter` must allow `seccomp` (it is not in
//!   `@system-service`), or every child dies installing its own filter.

mod canonical;
mod child;
mod decode;
mod helpers;
mod lists;
mod numbers;
mod protocol;
mod sandbox;
mod script;
mod strings;
#[cfg(test)]
mod surface;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use zeroize::Zeroizing;

pub use child::{SelfTest, child_main};
use protocol::{WireCpu, WireLimits, WireResponse, WireUsage};

/// The name of the hidden subcommand that runs [`child_main`].
pub const CHILD_SUBCOMMAND: &str = "__evaluate";

/// How much of the child's stderr is kept for the failure message.
const STDERR_KEPT_BYTES: usize = 4096;

/// Resource limits of one evaluation (from the manifest, docs/manifest.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Rhai operations (roughly: expressions and statements evaluated).
    pub operations: u64,
    /// Address space the script may map on top of the evaluator's own (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Wall-clock time from spawning the child to its exit; it is killed after that.
    pub wall_time: Duration,
    /// Longest string, in bytes.
    pub max_string_bytes: usize,
    /// Longest array or blob, in elements.
    pub max_array_len: usize,
    /// Largest object map, in entries.
    pub max_map_len: usize,
    /// Deepest nesting of script function calls.
    pub max_call_depth: usize,
}

impl Default for Limits {
    /// 10 million operations, 256 MiB, 10 s, 1 MiB strings, 100 000-element arrays and
    /// maps, call depth 64.
    fn default() -> Self {
        Self {
            operations: 10_000_000,
            memory_bytes: 256 << 20,
            wall_time: Duration::from_secs(10),
            max_string_bytes: 1 << 20,
            max_array_len: 100_000,
            max_map_len: 100_000,
            max_call_depth: 64,
        }
    }
}

impl Limits {
    fn to_wire(&self) -> WireLimits {
        WireLimits {
            operations: self.operations,
            memory_bytes: self.memory_bytes,
            wall_time_ms: u64::try_from(self.wall_time.as_millis()).unwrap_or(u64::MAX),
            max_string_bytes: self.max_string_bytes,
            max_array_len: self.max_array_len,
            max_map_len: self.max_map_len,
            max_call_depth: self.max_call_depth,
        }
    }

    fn from_wire(wire: &WireLimits) -> Self {
        Self {
            operations: wire.operations,
            memory_bytes: wire.memory_bytes,
            wall_time: Duration::from_millis(wire.wall_time_ms),
            max_string_bytes: wire.max_string_bytes,
            max_array_len: wire.max_array_len,
            max_map_len: wire.max_map_len,
            max_call_depth: wire.max_call_depth,
        }
    }
}

/// One evaluation: the script, the inputs by slot, the limits and the optional RNG seed.
///
/// The inputs stay the decrypted JSON text, zeroized when the request is consumed: the
/// daemon checks them on their bytes and writes them from their buffers into the child's
/// pipe; only the child parses them.
pub struct EvalRequest {
    /// The function's source, exactly as registered.
    pub source: String,
    /// Slot name → plaintext input (one JSON document; whitespace padding allowed).
    pub inputs: BTreeMap<String, Zeroizing<Vec<u8>>>,
    /// Resource limits.
    pub limits: Limits,
    /// Seed of the script's RNG, if the manifest grants one.
    pub rng_seed: Option<[u8; 32]>,
}

/// What an evaluation used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Rhai operations performed (0 when the child was killed or crashed).
    pub operations: u64,
    /// From spawning the child to reaping it.
    pub wall_time: Duration,
    /// Bytes of the inputs' JSON text (without the whitespace padding around it).
    pub input_bytes: u64,
    /// Bytes of the output as JSON (0 on failure).
    pub output_bytes: u64,
    /// Peak resident set size of the child, when it could report it.
    pub peak_rss_bytes: Option<u64>,
    /// Whether the child's memory was locked (`mlockall`); `false` also when unknown.
    pub memory_locked: bool,
    /// Where the time went (for the `evaluation_phases` debug event and benchmarks).
    pub phases: Phases,
}

/// Where the time of one evaluation went: the parent's wall-clock phases and the CPU
/// time the child reports per phase (zero when the child did not report it: a crash, a
/// kill). Diagnostics only: never part of a result or a statement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phases {
    /// Encoding the request frame's head (the inputs are not copied into it).
    pub frame: Duration,
    /// `fork` + `execve` of the child, until `spawn` returned.
    pub spawn: Duration,
    /// From the spawn to the child's whole answer read (the child is reaped after, off the
    /// path), the request and response included.
    pub child: Duration,
    /// Child CPU: from `execve` to its `main` (loader, dynamic linking, runtime start).
    pub child_start: Duration,
    /// Child CPU: reading the request, checking and decoding the inputs into Rhai values
    /// (summed over the threads that decode them side by side).
    pub child_read: Duration,
    /// Child CPU: hardening, worker thread, engine, `RLIMIT_AS`, seccomp.
    pub child_setup: Duration,
    /// Child CPU: compiling the script.
    pub child_compile: Duration,
    /// Child CPU: running `compute(inputs)`.
    pub child_compute: Duration,
    /// Child CPU: converting the result to JSON.
    pub child_output: Duration,
    /// Decoding the child's response in the parent.
    pub response: Duration,
}

/// The result of one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub enum EvalOutcome {
    /// `compute` returned this JSON value.
    Success {
        /// The output.
        output: serde_json::Value,
        /// What it took.
        usage: Usage,
    },
    /// The evaluation failed; the daemon is unaffected.
    Failed {
        /// The kind of failure.
        reason: EvalFailure,
        /// One line for the parties (can contain script-chosen text, see the module doc).
        message: String,
        /// What it took until then.
        usage: Usage,
    },
}

impl EvalOutcome {
    /// The usage figures, whatever the outcome.
    pub fn usage(&self) -> &Usage {
        match self {
            EvalOutcome::Success { usage, .. } | EvalOutcome::Failed { usage, .. } => usage,
        }
    }
}

/// Why an evaluation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EvalFailure {
    /// The script does not compile (syntax, disabled `eval`/`import`, nesting too deep).
    Compile,
    /// No `fn compute(inputs)` with exactly one parameter.
    NoComputeFunction,
    /// The script raised an error (`throw`, type error, division by zero, ...).
    Runtime,
    /// Rhai's operation limit.
    OperationLimit,
    /// The address-space limit (an allocation failed).
    MemoryLimit,
    /// Rhai's call-depth limit, or the evaluator's stack.
    CallDepthLimit,
    /// Rhai's string, array or map size limit, or inputs too large to send.
    SizeLimit,
    /// Killed at the wall-clock deadline.
    Timeout,
    /// The child died otherwise (forbidden system call, signal, protocol violation).
    Crashed,
    /// The result is not JSON-serialisable, too large, or holds an integer the signed
    /// (JCS) form would round.
    BadOutput,
}

impl EvalFailure {
    /// The `snake_case` name, as on the wire and in API answers.
    pub fn as_str(self) -> &'static str {
        match self {
            EvalFailure::Compile => "compile",
            EvalFailure::NoComputeFunction => "no_compute_function",
            EvalFailure::Runtime => "runtime",
            EvalFailure::OperationLimit => "operation_limit",
            EvalFailure::MemoryLimit => "memory_limit",
            EvalFailure::CallDepthLimit => "call_depth_limit",
            EvalFailure::SizeLimit => "size_limit",
            EvalFailure::Timeout => "timeout",
            EvalFailure::Crashed => "crashed",
            EvalFailure::BadOutput => "bad_output",
        }
    }
}

impl std::fmt::Display for EvalFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of the sandbox machinery itself (never of the script).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The evaluator binary could not be started.
    #[error("cannot start the evaluator {program}: {source}")]
    Spawn {
        /// The binary.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Talking to a live child failed.
    #[error("the evaluator's pipe failed: {0}")]
    Pipe(std::io::Error),
    /// Waiting for the child failed.
    #[error("cannot wait for the evaluator: {0}")]
    Wait(std::io::Error),
    /// The request could not be encoded.
    #[error("cannot encode the evaluation request: {0}")]
    Encode(serde_json::Error),
    /// A plaintext input is not one JSON document, as the child found before running the
    /// script (inputs are checked when accepted, so this is corruption or a bug).
    #[error("the input in slot `{slot}` is not JSON: {reason}")]
    BadInput {
        /// The slot.
        slot: String,
        /// The parser's message.
        reason: String,
    },
}

/// `child` if it is still running; a warm child that died waiting (killed from outside)
/// is reaped on drop.
fn alive(mut child: Child) -> Option<Child> {
    matches!(child.try_wait(), Ok(None)).then_some(child)
}

/// The request pipe's size for a request larger than this (the default is 64 KiB).
const LARGE_PIPE_BYTES: usize = 1 << 20;

/// Runs evaluations in child processes of `program` (the `arbiterd` binary).
///
/// After each evaluation it starts the next child ahead of time (a *warm* child, the
/// module documentation says what it does and does not do before its request); an
/// evaluation takes the warm child if one is waiting and alive, and spawns a fresh one
/// otherwise. Clones share the warm child; dropping the last clone kills it.
#[derive(Clone, Debug)]
pub struct Evaluator {
    program: PathBuf,
    selftest: Option<SelfTest>,
    warm: Arc<Mutex<Option<Child>>>,
}

/// What the parent saw of the child.
struct ChildReport {
    status: ExitStatus,
    response: Option<Vec<u8>>,
    response_error: Option<String>,
    stderr: Vec<u8>,
    write_error: Option<std::io::Error>,
}

impl Evaluator {
    /// An evaluator that re-executes `program` (in production `std::env::current_exe()`).
    pub fn new(program: PathBuf) -> Self {
        Self {
            program,
            selftest: None,
            warm: Arc::default(),
        }
    }

    /// An evaluator whose child runs a sandbox self-test instead of the script (tests).
    #[doc(hidden)]
    pub fn with_selftest(program: PathBuf, selftest: SelfTest) -> Self {
        Self {
            program,
            selftest: Some(selftest),
            warm: Arc::default(),
        }
    }

    /// Starts a child of `program`: it loads and then waits for its request on stdin.
    fn spawn(&self) -> Result<Child, EvalError> {
        let mut command = Command::new(&self.program);
        command.arg(CHILD_SUBCOMMAND);
        if let Some(selftest) = self.selftest {
            command.args(["--selftest", selftest.as_arg()]);
        }
        command
            .env_clear()
            // One malloc arena: every thread allocates from the main heap (brk and mmap).
            // glibc's per-thread arenas open /proc/sys/vm/overcommit_memory when they
            // shrink, which the seccomp filter forbids. Transparent huge pages for the
            // heap (module documentation).
            .env(
                "GLIBC_TUNABLES",
                "glibc.malloc.arena_max=1:glibc.malloc.hugetlb=1",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Not while a TPM command is in flight: the child would hold the daemon's TPM
        // connection until it closes what it inherited (see `tpm::spawn_without_tpm`).
        crate::tpm::spawn_without_tpm(|| command.spawn()).map_err(|source| EvalError::Spawn {
            program: self.program.clone(),
            source,
        })
    }

    /// The warm child if one is waiting and still alive, otherwise a fresh one. A fresh
    /// spawn waits for the TPM command in flight (the spawn gate) and a warm child being
    /// started by [`Evaluator::prepare_next`] holds its slot until it has exec'd: both
    /// wait on a blocking thread, never on a runtime worker, whose other tasks (the TPM
    /// command's own I/O among them, when it goes through this process) would stall.
    async fn take_child(&self) -> Result<Child, EvalError> {
        if let Ok(mut warm) = self.warm.try_lock()
            && let Some(child) = warm.take().and_then(alive)
        {
            return Ok(child);
        }
        let evaluator = self.clone();
        tokio::task::spawn_blocking(move || {
            let warm = evaluator
                .warm
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .and_then(alive);
            warm.map_or_else(|| evaluator.spawn(), Ok)
        })
        .await
        .map_err(|e| EvalError::Spawn {
            program: self.program.clone(),
            source: std::io::Error::other(format!("the spawning thread failed: {e}")),
        })?
    }

    /// Starts the next evaluation's child now (if none is waiting), on a blocking thread,
    /// so that the next evaluation does not wait for `execve`. The engine calls it once
    /// an evaluation's result is signed: a child started while the daemon talks to the
    /// TPM holds the TPM library's socket until it closes what it inherited, and swtpm
    /// serves one connection at a time. A failure is left to the next evaluation, which
    /// spawns afresh and reports it.
    pub fn prepare_next(&self) {
        let next = self.clone();
        // The runtime's context is there for the child's pipes.
        drop(tokio::task::spawn_blocking(move || {
            let mut warm = next.warm.lock().unwrap_or_else(PoisonError::into_inner);
            if warm.is_none() {
                *warm = next.spawn().ok();
            }
        }));
    }

    /// Compiles `source` in-process without running it: syntax, disabled features and
    /// the presence of `fn compute(inputs)` with one parameter. The error is a message
    /// for the uploader.
    pub fn check_script(source: &str) -> Result<(), String> {
        let engine = script::build_engine(&Limits::default(), None, None);
        script::compile(&engine, source)
            .map(drop)
            .map_err(|f| f.message)
    }

    /// Runs one evaluation in a fresh child process.
    pub async fn evaluate(&self, request: EvalRequest) -> Result<EvalOutcome, EvalError> {
        let limits = request.limits.clone();
        let mut usage = Usage::default();
        let EvalRequest {
            source,
            inputs,
            limits: _,
            rng_seed,
        } = request;
        usage.input_bytes = inputs.values().map(|p| p.trim_ascii().len() as u64).sum();
        let framing = Instant::now();
        let seed = rng_seed.map(|s| Zeroizing::new(hex::encode(Zeroizing::new(s).as_slice())));
        let frame = match protocol::encode_request(
            &source,
            &inputs,
            &limits.to_wire(),
            seed.as_ref().map(|s| s.as_str()),
            protocol::MAX_REQUEST_BYTES,
        )
        .map_err(EvalError::Encode)?
        {
            protocol::Encoded::Frame(frame) => frame,
            protocol::Encoded::TooLarge(body_len) => {
                return Ok(failed(
                    EvalFailure::SizeLimit,
                    format!(
                        "the script and inputs are {body_len} bytes, more than the evaluator \
                         accepts ({})",
                        protocol::MAX_REQUEST_BYTES
                    ),
                    usage,
                ));
            }
        };
        drop(seed);
        usage.phases.frame = framing.elapsed();

        let started = Instant::now();
        let report = self
            .run_child(&frame, limits.wall_time, &mut usage.phases.spawn)
            .await;
        drop(frame);
        drop(inputs);
        usage.wall_time = started.elapsed();
        usage.phases.child = usage.wall_time;
        let report = match report? {
            Some(report) => report,
            None => {
                return Ok(failed(
                    EvalFailure::Timeout,
                    format!(
                        "the evaluation exceeded its wall-clock limit of {} ms and was killed",
                        limits.wall_time.as_millis()
                    ),
                    usage,
                ));
            }
        };
        classify(report, &limits, usage)
    }

    /// Spawns the child, feeds it `frame` and collects its answer; `None` on timeout
    /// (the child is then killed and reaped).
    async fn run_child(
        &self,
        frame: &protocol::RequestFrame<'_>,
        deadline: Duration,
        spawn_time: &mut Duration,
    ) -> Result<Option<ChildReport>, EvalError> {
        let spawning = Instant::now();
        let mut child = self.take_child().await?;
        *spawn_time = spawning.elapsed();
        let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(EvalError::Pipe(std::io::Error::other(
                "the child's pipes are missing",
            )));
        };

        // A large request crosses the pipe in 1 MiB steps instead of the default 64 KiB
        // (80 MB: 80 wake-ups of the writer instead of 1,280). Best effort: the kernel's
        // `pipe-max-size` may refuse it, and the default pipe works, only slower.
        let frame_len: usize = frame.pieces().map(<[u8]>::len).sum();
        if frame_len > LARGE_PIPE_BYTES {
            let _ = nix::fcntl::fcntl(
                &stdin,
                nix::fcntl::FcntlArg::F_SETPIPE_SZ(
                    nix::libc::c_int::try_from(LARGE_PIPE_BYTES).unwrap_or(65_536),
                ),
            );
        }

        let exchange = async {
            let write = async {
                let mut result = Ok(());
                for piece in frame.pieces() {
                    result = stdin.write_all(piece).await;
                    if result.is_err() {
                        break;
                    }
                }
                drop(stdin);
                result.err()
            };
            // stderr is drained while the child works (it must never block on a full
            // pipe) until the answer is in; it is only read to its end when there is none.
            let mut kept = Vec::new();
            let read = async {
                let response = read_response(&mut stdout);
                tokio::pin!(response);
                let mut buf = [0u8; 4096];
                let mut stderr_open = true;
                loop {
                    tokio::select! {
                        r = &mut response => break r,
                        n = stderr.read(&mut buf), if stderr_open => match n {
                            Ok(0) | Err(_) => stderr_open = false,
                            Ok(n) => keep(&mut kept, buf.get(..n).unwrap_or_default()),
                        },
                    }
                }
            };
            let (write_error, response) = tokio::join!(write, read);
            (write_error, response, kept)
        };
        let until = tokio::time::Instant::now() + deadline;
        let Ok((write_error, response, mut stderr_bytes)) =
            tokio::time::timeout_at(until, exchange).await
        else {
            let _ = child.start_kill();
            child.wait().await.map_err(EvalError::Wait)?;
            return Ok(None);
        };
        let (response, response_error) = match response {
            Ok(Some(answer)) => {
                // A whole answer: the child writes it last and then exits with 0 without
                // unwinding (child.rs). Tearing down its address space — hundreds of
                // megabytes of locked memory after a large input — takes a while and
                // changes nothing, so it is reaped in the background, off the result's
                // path.
                tokio::spawn(async move {
                    let _ = child.wait().await;
                    drop(stderr);
                });
                return Ok(Some(ChildReport {
                    status: ExitStatus::from_raw(0),
                    response: Some(answer),
                    response_error: None,
                    stderr: stderr_bytes,
                    write_error,
                }));
            }
            Ok(None) => (None, None),
            Err(e) => {
                // An oversized or garbled answer: stop the child rather than wait for it.
                let _ = child.start_kill();
                (None, Some(e))
            }
        };
        let finished = tokio::time::timeout_at(until, async {
            let rest = read_bounded(
                &mut stderr,
                STDERR_KEPT_BYTES.saturating_sub(stderr_bytes.len()),
            )
            .await;
            (rest, child.wait().await)
        })
        .await;
        match finished {
            Ok((rest, status)) => {
                stderr_bytes.extend_from_slice(&rest);
                Ok(Some(ChildReport {
                    status: status.map_err(EvalError::Wait)?,
                    response,
                    response_error,
                    stderr: stderr_bytes,
                    write_error,
                }))
            }
            Err(_) => {
                let _ = child.start_kill();
                child.wait().await.map_err(EvalError::Wait)?;
                Ok(None)
            }
        }
    }
}

/// Reads the child's response frame: `Ok(None)` if it closed stdout without one.
async fn read_response(stdout: &mut (impl AsyncRead + Unpin)) -> Result<Option<Vec<u8>>, String> {
    let mut prefix = [0u8; 4];
    match stdout.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("reading the response: {e}")),
    }
    let len = protocol::frame_len(prefix, protocol::MAX_RESPONSE_BYTES)
        .map_err(|e| format!("the response is too large: {e}"))?;
    let mut body = vec![0u8; len];
    stdout
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("the response was cut short: {e}"))?;
    Ok(Some(body))
}

/// Reads `pipe` to its end, keeping the first `keep` bytes.
/// Appends what still fits of `bytes` to the kept stderr ([`STDERR_KEPT_BYTES`]).
fn keep(kept: &mut Vec<u8>, bytes: &[u8]) {
    let room = STDERR_KEPT_BYTES.saturating_sub(kept.len());
    kept.extend_from_slice(bytes.get(..bytes.len().min(room)).unwrap_or_default());
}

async fn read_bounded(pipe: &mut (impl AsyncRead + Unpin), keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = keep.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// A failed outcome.
fn failed(reason: EvalFailure, message: String, usage: Usage) -> EvalOutcome {
    EvalOutcome::Failed {
        reason,
        message,
        usage,
    }
}

/// Turns what the parent saw into an outcome.
fn classify(
    report: ChildReport,
    limits: &Limits,
    mut usage: Usage,
) -> Result<EvalOutcome, EvalError> {
    let stderr = String::from_utf8_lossy(&report.stderr);
    let first_line = stderr.lines().next().unwrap_or("").trim().to_owned();

    if let (true, Some(body)) = (report.status.success(), &report.response) {
        let decoding = Instant::now();
        return match serde_json::from_slice::<WireResponse>(body) {
            Ok(response) => {
                usage.phases.response = decoding.elapsed();
                from_response(response, usage)
            }
            Err(e) => Ok(failed(
                EvalFailure::Crashed,
                format!("the evaluator's answer is malformed: {e}"),
                usage,
            )),
        };
    }

    if let Some(e) = &report.response_error {
        // Oversized or cut short: the parent killed the child, or it died mid-answer.
        return Ok(failed(
            EvalFailure::Crashed,
            format!("the evaluator's {e}"),
            usage,
        ));
    }
    let memory_hint = stderr.contains("memory allocation of") || stderr.contains("out of memory");
    let stack_hint = stderr.contains("has overflowed its stack");
    let (reason, message) = match report.status.signal() {
        Some(nix::libc::SIGSYS) => (
            EvalFailure::Crashed,
            "the script's process made a forbidden system call (seccomp) and was killed".to_owned(),
        ),
        _ if memory_hint => (
            EvalFailure::MemoryLimit,
            format!(
                "the script exceeded its memory limit of {} bytes",
                limits.memory_bytes
            ),
        ),
        _ if stack_hint => (
            EvalFailure::CallDepthLimit,
            "the script nested too deeply and overflowed the evaluator's stack".to_owned(),
        ),
        Some(nix::libc::SIGKILL) => (
            EvalFailure::Crashed,
            "the evaluator was killed by SIGKILL (by the kernel's out-of-memory killer?)"
                .to_owned(),
        ),
        Some(signal) => (
            EvalFailure::Crashed,
            format!(
                "the evaluator died of signal {signal}{}",
                detail(&first_line)
            ),
        ),
        None => {
            if let (Some(e), 0) = (&report.write_error, report.status.code().unwrap_or(-1)) {
                return Err(EvalError::Pipe(std::io::Error::new(
                    e.kind(),
                    e.to_string(),
                )));
            } else {
                (
                    EvalFailure::Crashed,
                    format!(
                        "the evaluator exited with {} without an answer{}",
                        report.status,
                        detail(&first_line)
                    ),
                )
            }
        }
    };
    usage.memory_locked = false;
    Ok(failed(reason, message, usage))
}

/// `": <line>"` for a non-empty diagnostic line.
fn detail(line: &str) -> String {
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

/// Fills the usage from the child's response and builds the outcome; an input the child
/// found not to be JSON is an [`EvalError::BadInput`].
fn from_response(response: WireResponse, mut usage: Usage) -> Result<EvalOutcome, EvalError> {
    let apply = |usage: &mut Usage, wire: WireUsage| {
        usage.operations = wire.operations;
        usage.peak_rss_bytes = wire.peak_rss_bytes;
        usage.memory_locked = wire.memory_locked;
        let cpu = wire.cpu_us.unwrap_or_default();
        let us = Duration::from_micros;
        let WireCpu {
            start,
            read,
            setup,
            compile,
            compute,
            output,
        } = cpu;
        usage.phases.child_start = us(start);
        usage.phases.child_read = us(read);
        usage.phases.child_setup = us(setup);
        usage.phases.child_compile = us(compile);
        usage.phases.child_compute = us(compute);
        usage.phases.child_output = us(output);
    };
    match response {
        WireResponse::Ok {
            output,
            usage: wire,
        } => {
            apply(&mut usage, wire);
            // Served exactly as signed (JCS numbers), or refused if signing would round it.
            Ok(match canonical::signable(output) {
                Ok(output) => {
                    usage.output_bytes = serde_json::to_vec(&output).map_or(0, |b| b.len() as u64);
                    EvalOutcome::Success { output, usage }
                }
                Err(message) => EvalOutcome::Failed {
                    reason: EvalFailure::BadOutput,
                    message,
                    usage,
                },
            })
        }
        WireResponse::Failed {
            reason,
            message,
            usage: wire,
        } => {
            apply(&mut usage, wire);
            Ok(EvalOutcome::Failed {
                reason,
                message,
                usage,
            })
        }
        WireResponse::BadInput { slot, reason } => Err(EvalError::BadInput { slot, reason }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_script_reports_problems() {
        assert!(Evaluator::check_script("fn compute(inputs) { inputs.a + 1 }").is_ok());
        let e = Evaluator::check_script("fn compute(inputs) { inputs.a + }").unwrap_err();
        assert!(e.contains("does not compile"), "{e}");
        let e = Evaluator::check_script("fn compute() { 1 }").unwrap_err();
        assert!(e.contains("compute(inputs)"), "{e}");
    }

    #[test]
    fn failure_names() {
        for f in [
            EvalFailure::Compile,
            EvalFailure::NoComputeFunction,
            EvalFailure::MemoryLimit,
            EvalFailure::BadOutput,
        ] {
            let json = serde_json::to_value(f).unwrap();
            assert_eq!(json, serde_json::Value::String(f.as_str().to_owned()));
        }
    }

    #[test]
    fn limits_survive_the_wire() {
        let limits = Limits {
            wall_time: Duration::from_millis(1234),
            ..Limits::default()
        };
        assert_eq!(Limits::from_wire(&limits.to_wire()), limits);
    }
}
