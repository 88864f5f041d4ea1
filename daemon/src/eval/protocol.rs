//! The pipe protocol between the daemon and its evaluator child: one request on the
//! child's stdin, one response on its stdout.
//!
//! The request is a head — a 4-byte big-endian length and that many bytes of JSON: the
//! script, the limits, the RNG seed, and each input slot's name with the length of its
//! text — followed by each slot's plaintext JSON text as it is, in the head's order. The
//! response is one frame of the same kind: the output or the failure, plus the usage
//! figures that only the child can measure. Both directions are size-limited before
//! anything is allocated, and each piece is allocated once at its exact size.
//!
//! The inputs travel as their own pieces so that the child can decode each slot as soon
//! as it has arrived, on a thread of its own, and cut a large list into parts decoded
//! side by side (`super::decode`); each decodes straight from its text into Rhai values
//! or a native list, without an intermediate `serde_json::Value`.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use rhai::Dynamic;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use super::EvalFailure;
use super::decode::{self, SlotError};

/// The largest request the parent sends and the child accepts (head plus inputs): 1 GiB,
/// the largest per-instance input allowance.
pub(crate) const MAX_REQUEST_BYTES: usize = 1 << 30;
/// The largest response the child sends and the parent accepts.
pub(crate) const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// The request as the child holds it once read: the inputs decoded into Rhai values
/// (integers that fit `i64` stay integers, other numbers are floats, `null` is `()`,
/// objects are maps; a slot holding a non-empty array of strings only or of numbers only
/// is one native list, `super::lists`).
///
/// The texts are zeroized once decoded; the Rhai values are handed to the script (which
/// owns them from then on) and die with the child, which exits after its one run with
/// its memory locked and not dumpable.
pub(crate) struct WireRequest {
    pub(crate) source: String,
    pub(crate) inputs: BTreeMap<String, Dynamic>,
    pub(crate) limits: WireLimits,
    /// Hex of the 32-byte seed, if the manifest grants a seeded RNG.
    pub(crate) rng_seed: Option<Zeroizing<String>>,
}

/// The request's head as the parent writes it.
#[derive(Serialize)]
struct WireHead<'a> {
    source: &'a str,
    limits: &'a WireLimits,
    rng_seed: Option<&'a str>,
    /// Each slot's name and the length of its text, in the order the texts follow.
    inputs: Vec<(&'a str, usize)>,
}

/// The request's head as the child reads it.
#[derive(Deserialize)]
struct ReadHead {
    source: String,
    limits: WireLimits,
    /// Zeroized where it ends up: moved, not copied, into [`WireRequest`].
    rng_seed: Option<Zeroizing<String>>,
    inputs: Vec<(String, u64)>,
}

/// An encoded request, or the size of a request too large to send.
pub(crate) enum Encoded<'a> {
    /// The request, ready to be written.
    Frame(RequestFrame<'a>),
    /// The request would be this many bytes, more than allowed.
    TooLarge(usize),
}

/// A request as the pieces written one after another: the head (zeroized memory: it
/// holds the RNG seed), then each input's plaintext — borrowed, never copied: a 40 MB
/// input goes from its decrypted buffer straight into the pipe.
pub(crate) struct RequestFrame<'a> {
    head: Zeroizing<Vec<u8>>,
    inputs: Vec<&'a [u8]>,
}

impl RequestFrame<'_> {
    /// The pieces in the order they are written.
    pub(crate) fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.head.as_slice()).chain(self.inputs.iter().copied())
    }

    /// The whole request in one buffer (tests).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.pieces().flatten().copied().collect()
    }
}

/// Encodes a request whose inputs are each slot's plaintext JSON text verbatim (the
/// child checks that each is one JSON document), so no `Value` of an input is built in
/// the daemon. A request over `max_request` bytes (in the daemon [`MAX_REQUEST_BYTES`])
/// is not built.
pub(crate) fn encode_request<'a>(
    source: &str,
    inputs: &'a BTreeMap<String, Zeroizing<Vec<u8>>>,
    limits: &WireLimits,
    rng_seed: Option<&str>,
    max_request: usize,
) -> Result<Encoded<'a>, serde_json::Error> {
    let head = Zeroizing::new(serde_json::to_vec(&WireHead {
        source,
        limits,
        rng_seed,
        inputs: inputs.iter().map(|(k, v)| (k.as_str(), v.len())).collect(),
    })?);
    let total = inputs
        .values()
        .map(|v| v.len())
        .fold(4 + head.len(), usize::saturating_add);
    let (Ok(prefix), true) = (u32::try_from(head.len()), total <= max_request) else {
        return Ok(Encoded::TooLarge(total));
    };
    let mut framed = Zeroizing::new(Vec::with_capacity(4 + head.len()));
    framed.extend_from_slice(&prefix.to_be_bytes());
    framed.extend_from_slice(&head);
    Ok(Encoded::Frame(RequestFrame {
        head: framed,
        inputs: inputs.values().map(|v| v.as_slice()).collect(),
    }))
}

/// Reads a request (the child's side): the head, then each slot's text, decoded and
/// checked as it arrives (`super::decode`).
///
/// # Errors
/// The outer error names what is wrong with the request itself (cut short, too large,
/// a malformed head); the inner one the first slot whose input fails a check.
pub(crate) fn read_request(
    input: &mut impl Read,
) -> Result<Result<WireRequest, SlotError>, String> {
    let head = read_frame(input, MAX_REQUEST_BYTES).map_err(|e| e.to_string())?;
    let budget = MAX_REQUEST_BYTES.saturating_sub(4 + head.len());
    let head: ReadHead =
        serde_json::from_slice(&head).map_err(|e| format!("bad request head: {e}"))?;
    let inputs = match decode::read_slots(input, &head.inputs, budget) {
        Ok(Ok(inputs)) => inputs,
        Ok(Err(refused)) => return Ok(Err(refused)),
        Err(e) => return Err(format!("cannot read the inputs: {e}")),
    };
    Ok(Ok(WireRequest {
        source: head.source,
        inputs,
        limits: head.limits,
        rng_seed: head.rng_seed,
    }))
}

/// [`super::Limits`] on the wire (durations in milliseconds).
#[derive(Serialize, Deserialize, Clone, Copy)]
pub(crate) struct WireLimits {
    pub(crate) operations: u64,
    pub(crate) memory_bytes: u64,
    pub(crate) wall_time_ms: u64,
    pub(crate) max_string_bytes: usize,
    pub(crate) max_array_len: usize,
    pub(crate) max_map_len: usize,
    pub(crate) max_call_depth: usize,
}

/// What the child answers.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum WireResponse {
    /// `compute` returned a JSON-serialisable value.
    Ok {
        output: Value,
        #[serde(flatten)]
        usage: WireUsage,
    },
    /// The script failed (compile error, runtime error, a Rhai limit, bad output).
    Failed {
        reason: EvalFailure,
        message: String,
        #[serde(flatten)]
        usage: WireUsage,
    },
    /// An input is not one JSON document; the script did not run.
    BadInput { slot: String, reason: String },
}

/// Usage figures measured inside the child.
#[derive(Serialize, Deserialize, Debug, Default, Clone, Copy)]
pub(crate) struct WireUsage {
    pub(crate) operations: u64,
    pub(crate) peak_rss_bytes: Option<u64>,
    pub(crate) memory_locked: bool,
    /// Where the child's CPU time went, when it could measure it.
    #[serde(default)]
    pub(crate) cpu_us: Option<WireCpu>,
}

/// The child's CPU time (user plus system, `getrusage(RUSAGE_SELF)`, the one clock the
/// seccomp filter leaves it) per phase, in microseconds. The script runs on one thread,
/// so from `setup` on CPU time is close to elapsed time; `read` sums the threads that
/// decode inputs side by side (it can exceed the elapsed time) and leaves out the time
/// spent waiting for the request to arrive.
#[derive(Serialize, Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireCpu {
    /// From `execve` to `child_main`: loading and linking the binary, runtime start.
    pub(crate) start: u64,
    /// Reading the request and checking and decoding the inputs into Rhai values.
    pub(crate) read: u64,
    /// Hardening, the worker thread, the engine, `RLIMIT_AS` and the seccomp filter.
    pub(crate) setup: u64,
    /// Compiling the script.
    pub(crate) compile: u64,
    /// Running `compute(inputs)`.
    pub(crate) compute: u64,
    /// Converting the result to JSON.
    pub(crate) output: u64,
}

/// Writes one frame (blocking; the child's side).
pub(crate) fn write_frame(out: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(body)?;
    out.flush()
}

/// Reads one frame of at most `max` bytes (blocking; the child's side).
pub(crate) fn read_frame(input: &mut impl Read, max: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = frame_len(len, max)?;
    let mut body = Zeroizing::new(vec![0u8; len]);
    input.read_exact(&mut body)?;
    Ok(body)
}

/// Checks a frame's length prefix against `max`.
pub(crate) fn frame_len(prefix: [u8; 4], max: usize) -> io::Result<usize> {
    let len = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {max}"),
        ));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_are_bounded() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"{\"a\":1}").unwrap();
        assert_eq!(&buf[..4], &[0, 0, 0, 7]);
        let body = read_frame(&mut buf.as_slice(), 7).unwrap();
        assert_eq!(&body[..], b"{\"a\":1}");
        assert!(read_frame(&mut buf.as_slice(), 6).is_err());
        assert!(read_frame(&mut &buf[..6], 7).is_err());
    }

    #[test]
    fn response_encoding() {
        let r = WireResponse::Failed {
            reason: EvalFailure::OperationLimit,
            message: "m".into(),
            usage: WireUsage::default(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"status":"failed","reason":"operation_limit","message":"m","operations":0,"peak_rss_bytes":null,"memory_locked":false,"cpu_us":null}"#
        );
        let back: WireResponse = serde_json::from_str(&text).unwrap();
        assert!(matches!(
            back,
            WireResponse::Failed {
                reason: EvalFailure::OperationLimit,
                ..
            }
        ));
    }

    #[test]
    fn requests_carry_the_inputs_text_verbatim_and_decode_in_the_child() {
        let limits = super::super::Limits::default().to_wire();
        let mut inputs = BTreeMap::new();
        inputs.insert(
            "a".to_owned(),
            Zeroizing::new(b"{\"k\": [\"secret\", 1.5]}   \n  ".to_vec()),
        );
        inputs.insert("b".to_owned(), Zeroizing::new(b"\"x\\\"}\"".to_vec()));
        let Encoded::Frame(frame) =
            encode_request("fn compute(i) { i }", &inputs, &limits, Some("ab"), 1 << 20).unwrap()
        else {
            panic!("too large")
        };
        // The plaintexts are written from their own buffers, not copied.
        assert!(
            frame
                .pieces()
                .any(|p| std::ptr::eq(p.as_ptr(), inputs["a"].as_ptr()))
        );
        let frame = frame.to_vec();
        // The plaintexts follow the head byte for byte, in slot order.
        let head_len = read_frame(&mut frame.as_slice(), MAX_REQUEST_BYTES)
            .unwrap()
            .len();
        assert_eq!(
            &frame[4 + head_len..],
            b"{\"k\": [\"secret\", 1.5]}   \n  \"x\\\"}\""
        );
        let request = read_request(&mut frame.as_slice()).unwrap().unwrap();
        assert_eq!(request.source, "fn compute(i) { i }");
        assert_eq!(request.rng_seed.as_deref().map(String::as_str), Some("ab"));
        assert_eq!(request.limits.operations, limits.operations);
        let eval_limits = super::super::Limits::default();
        let json = |v: &Dynamic| super::super::script::dynamic_to_json(v, 0, &eval_limits).unwrap();
        assert_eq!(
            json(&request.inputs["a"]),
            serde_json::json!({"k": ["secret", 1.5]})
        );
        assert_eq!(json(&request.inputs["b"]), serde_json::json!("x\"}"));
        // A request cut short is an error of the request, a bad input one of its slot.
        assert!(read_request(&mut &frame[..frame.len() - 1]).is_err());
        let mut bad = BTreeMap::new();
        bad.insert("a".to_owned(), Zeroizing::new(b"1".to_vec()));
        bad.insert("b".to_owned(), Zeroizing::new(b"[1,".to_vec()));
        let Encoded::Frame(frame) = encode_request("s", &bad, &limits, None, 1 << 20).unwrap()
        else {
            panic!("too large")
        };
        assert!(matches!(
            read_request(&mut frame.to_vec().as_slice()).unwrap(),
            Err(SlotError::NotJson { slot, .. }) if slot == "b"
        ));
        // No inputs at all, and a request over the limit.
        let no_inputs = BTreeMap::new();
        let Encoded::Frame(empty) =
            encode_request("s", &no_inputs, &limits, None, MAX_REQUEST_BYTES).unwrap()
        else {
            panic!("too large")
        };
        let request = read_request(&mut empty.to_vec().as_slice())
            .unwrap()
            .unwrap();
        assert!(request.inputs.is_empty() && request.rng_seed.is_none());
        let huge = "x".repeat(4096);
        assert!(matches!(
            encode_request(&huge, &BTreeMap::new(), &limits, None, 4096).unwrap(),
            Encoded::TooLarge(n) if n > 4096
        ));
        assert!(matches!(
            encode_request(&huge, &inputs, &limits, None, 8192).unwrap(),
            Encoded::Frame(f) if f.to_vec().len() < 8192
        ));
    }
}
