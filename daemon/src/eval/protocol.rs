//! The pipe protocol between the daemon and its evaluator child: one request on the
//! child's stdin, one response on its stdout, each a 4-byte big-endian length followed
//! by that many bytes of JSON.
//!
//! The request carries the script, the inputs, the limits and the RNG seed; the
//! response carries the output or the failure, plus the usage figures that only the
//! child can measure. Both directions are size-limited before anything is allocated, and
//! each frame is allocated once at its exact size.
//!
//! The child decodes the inputs straight from the frame's JSON text into Rhai values
//! ([`Dynamic`] implements `Deserialize`), without an intermediate `serde_json::Value`:
//! one pass, one copy of each string.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use rhai::Dynamic;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

use super::EvalFailure;

/// The largest request the parent sends and the child accepts (script plus inputs): 1 GiB,
/// the largest per-instance input allowance; the frame's 4-byte prefix holds up to 4 GiB.
pub(crate) const MAX_REQUEST_BYTES: usize = 1 << 30;
/// The largest response the child sends and the parent accepts.
pub(crate) const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// What the child reads (the parent writes it with [`encode_request`], splicing in the
/// inputs' JSON text as it is). The inputs decode directly into Rhai values: integers that
/// fit `i64` stay integers, other numbers are floats, `null` is `()`, objects are maps.
///
/// The frame's bytes are zeroized once decoded; the Rhai values are handed to the script
/// (which owns them from then on) and die with the child, which exits after its one run
/// with its memory locked and not dumpable.
#[derive(Deserialize)]
pub(crate) struct WireRequest {
    pub(crate) source: String,
    /// A slot holding a non-empty array of strings only or of numbers only decodes into
    /// one native list (`super::lists`), not a Rhai value per element.
    #[serde(deserialize_with = "super::lists::deserialize_slots")]
    pub(crate) inputs: BTreeMap<String, Dynamic>,
    pub(crate) limits: WireLimits,
    /// Hex of the 32-byte seed, if the manifest grants a seeded RNG.
    pub(crate) rng_seed: Option<String>,
}

impl Drop for WireRequest {
    fn drop(&mut self) {
        if let Some(seed) = &mut self.rng_seed {
            seed.zeroize();
        }
    }
}

/// The request's members other than the inputs.
#[derive(Serialize)]
struct WireHead<'a> {
    source: &'a str,
    limits: &'a WireLimits,
    rng_seed: Option<&'a str>,
}

/// An encoded request frame, or the size of a body too large to send.
pub(crate) enum Encoded<'a> {
    /// The frame, ready to be written.
    Frame(RequestFrame<'a>),
    /// The body would be this many bytes, more than allowed.
    TooLarge(usize),
}

/// A request frame as the pieces written one after another: the length prefix with the
/// request's other members, then each input's key and its plaintext — borrowed, never
/// copied: a 40 MB input goes from its decrypted buffer straight into the pipe — then the
/// closing braces. The framing pieces (they hold the RNG seed) are zeroized memory.
pub(crate) struct RequestFrame<'a> {
    head: Zeroizing<Vec<u8>>,
    inputs: Vec<(Zeroizing<Vec<u8>>, &'a [u8])>,
}

impl RequestFrame<'_> {
    const TAIL: &'static [u8] = b"}}";

    /// The pieces in the order they are written.
    pub(crate) fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.head.as_slice())
            .chain(
                self.inputs
                    .iter()
                    .flat_map(|(glue, value)| [glue.as_slice(), value]),
            )
            .chain(std::iter::once(Self::TAIL))
    }

    /// The whole frame in one buffer (tests).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.pieces().flatten().copied().collect()
    }
}

/// Encodes a request frame: `{"source", "limits", "rng_seed", "inputs": {slot: input}}`
/// where each input is its plaintext JSON text verbatim (the caller has checked that it
/// is one JSON document), so no `Value` of an input is built in the daemon. A body over
/// `max_body` bytes (in the daemon [`MAX_REQUEST_BYTES`]) is not built.
pub(crate) fn encode_request<'a>(
    source: &str,
    inputs: &'a BTreeMap<String, Zeroizing<Vec<u8>>>,
    limits: &WireLimits,
    rng_seed: Option<&str>,
    max_body: usize,
) -> Result<Encoded<'a>, serde_json::Error> {
    let members = Zeroizing::new(serde_json::to_vec(&WireHead {
        source,
        limits,
        rng_seed,
    })?);
    // `members` is a JSON object: its members without the closing brace come first.
    let members = members
        .get(..members.len().saturating_sub(1))
        .unwrap_or_default();
    const INPUTS_KEY: &[u8] = b",\"inputs\":{";
    let mut pieces = Vec::with_capacity(inputs.len());
    for (i, (key, value)) in inputs.iter().enumerate() {
        let mut glue = Zeroizing::new(Vec::with_capacity(key.len() + 4));
        if i > 0 {
            glue.push(b',');
        }
        serde_json::to_writer(&mut *glue, key)?;
        glue.push(b':');
        pieces.push((glue, value.as_slice()));
    }
    let inputs_len: usize = pieces.iter().map(|(g, v)| g.len() + v.len()).sum();
    let body_len = members.len() + INPUTS_KEY.len() + inputs_len + RequestFrame::TAIL.len();
    let Ok(prefix) = u32::try_from(body_len) else {
        return Ok(Encoded::TooLarge(body_len));
    };
    if body_len > max_body {
        return Ok(Encoded::TooLarge(body_len));
    }
    let mut head = Zeroizing::new(Vec::with_capacity(4 + members.len() + INPUTS_KEY.len()));
    head.extend_from_slice(&prefix.to_be_bytes());
    head.extend_from_slice(members);
    head.extend_from_slice(INPUTS_KEY);
    Ok(Encoded::Frame(RequestFrame {
        head,
        inputs: pieces,
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
/// seccomp filter leaves it) per phase, in microseconds. The child is single-threaded
/// while it works, so CPU time is close to elapsed time except while it waits for the
/// request to arrive.
#[derive(Serialize, Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireCpu {
    /// From `execve` to `child_main`: loading and linking the binary, runtime start.
    pub(crate) start: u64,
    /// Reading the request frame and decoding it (the inputs into Rhai values).
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
        let body = read_frame(&mut frame.as_slice(), MAX_REQUEST_BYTES).unwrap();
        assert_eq!(body.len() + 4, frame.len());
        // The plaintexts are in the frame byte for byte.
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            text.contains("\"a\":{\"k\": [\"secret\", 1.5]}   \n  ,\"b\""),
            "{text}"
        );
        let request: WireRequest = serde_json::from_slice(&body).unwrap();
        assert_eq!(request.source, "fn compute(i) { i }");
        assert_eq!(request.rng_seed.as_deref(), Some("ab"));
        assert_eq!(request.limits.operations, limits.operations);
        let eval_limits = super::super::Limits::default();
        let json = |v: &Dynamic| super::super::script::dynamic_to_json(v, 0, &eval_limits).unwrap();
        assert_eq!(
            json(&request.inputs["a"]),
            serde_json::json!({"k": ["secret", 1.5]})
        );
        assert_eq!(json(&request.inputs["b"]), serde_json::json!("x\"}"));
        // No inputs at all, and a body over the limit.
        let no_inputs = BTreeMap::new();
        let Encoded::Frame(empty) =
            encode_request("s", &no_inputs, &limits, None, MAX_REQUEST_BYTES).unwrap()
        else {
            panic!("too large")
        };
        let empty = empty.to_vec();
        let request: WireRequest = serde_json::from_slice(&empty[4..]).unwrap();
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
