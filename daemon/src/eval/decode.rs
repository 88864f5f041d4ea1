//! How the evaluator child reads its inputs off the request pipe and decodes them, and
//! the checks every input passes there before any script runs.
//!
//! Each slot's JSON text arrives as its own piece, of the length the request's head
//! announced (`protocol`). A large slot (1 MiB or more) is decoded on a thread of its own
//! as soon as it has arrived, while the next slot is still being read; a small one on
//! the reading thread. A large slot holding a flat array (the shape of a list of numbers
//! or of strings) is moreover cut at commas into as many parts as there are cores to
//! spare, the parts decoded side by side and joined into one native list. A cut is kept
//! only if every part decodes on its own into a non-empty native list of the same kind:
//! then each cut was a separator of the top-level array (a comma inside a string or a
//! nested value leaves a part that is not valid JSON, or not flat), and the joined list
//! is element for element what decoding the whole text gives. Anything else is decoded
//! whole, exactly as a small slot is.
//!
//! The checks (the daemon checked each input when it accepted it; these guard the text
//! the evaluation actually received): each slot's text is one JSON document, whitespace
//! around it allowed ([`SlotError::NotJson`]), nested no deeper than the evaluator's
//! limit ([`SlotError::TooDeep`]). The first failing slot in slot order is reported. The
//! child is trusted with this verdict because nothing of the script has run yet: it is
//! the daemon's own code on the daemon's own bytes.

use std::collections::BTreeMap;
use std::io::{self, Read};

use rhai::Dynamic;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::lists::Slot;
use super::numbers::NumberList;
use super::script::MAX_VALUE_DEPTH;
use super::strings::StringList;

/// A slot of at least this many bytes is decoded on its own thread, and cut into parts
/// when cores are spare (below it, a thread costs more than it saves).
const PARALLEL_BYTES: usize = 1 << 20;

/// Stack of a decoding thread: decoding recurses once per level of nesting, up to
/// `serde_json`'s limit of 128 (a debug build takes tens of KiB per level). Reserved, not
/// committed, and unmapped when the thread ends, before the child locks its memory.
const DECODE_STACK_BYTES: usize = 64 << 20;

/// A decoding thread: named, on a stack deep enough for the nesting allowed.
fn decoding_thread() -> std::thread::Builder {
    std::thread::Builder::new()
        .name("decode".into())
        .stack_size(DECODE_STACK_BYTES)
}

/// How far past its ideal position a cut may move to find a comma between two elements
/// of the same kind; past this, the slot is not cut there.
const CUT_SEARCH_BYTES: usize = 64 << 10;

/// Why a slot's input was refused before the script ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SlotError {
    /// The text is not one JSON document.
    NotJson {
        /// The slot.
        slot: String,
        /// The parser's message (a position, never the text).
        reason: String,
    },
    /// The document is nested deeper than [`MAX_VALUE_DEPTH`].
    TooDeep {
        /// The slot.
        slot: String,
    },
}

/// A slot being decoded: on its own thread, or already done on the reading thread.
enum Pending<'scope> {
    Thread(std::thread::ScopedJoinHandle<'scope, Result<Dynamic, SlotError>>),
    Done(Result<Dynamic, SlotError>),
}

/// Reads the slots announced in the request's head, `(name, length)` in order, from
/// `input`, at most `budget` bytes in all, and decodes each (module documentation).
///
/// # Errors
/// The outer error is the pipe's (cut short, more than `budget`, a thread that could not
/// start); the inner one the first slot, in order, whose input fails a check.
pub(crate) fn read_slots(
    input: &mut impl Read,
    slots: &[(String, u64)],
    mut budget: usize,
) -> io::Result<Result<BTreeMap<String, Dynamic>, SlotError>> {
    let large = slots
        .iter()
        .filter(|(_, len)| usize::try_from(*len).is_ok_and(|l| l >= PARALLEL_BYTES))
        .count();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    // The cores are shared out among the large slots; a slot alone on its cores is cut.
    let parts = cores.checked_div(large).unwrap_or(1).max(1);
    std::thread::scope(|scope| {
        let mut pending = Vec::with_capacity(slots.len());
        for (name, len) in slots {
            let len = usize::try_from(*len)
                .ok()
                .filter(|len| *len <= budget)
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the inputs exceed the request's limit (slot `{name}`)"),
                    )
                })?;
            budget -= len;
            let mut text = Zeroizing::new(vec![0u8; len]);
            input.read_exact(&mut text)?;
            if len >= PARALLEL_BYTES && cores > 1 {
                let handle = decoding_thread()
                    .spawn_scoped(scope, move || decode_slot(name, text, parts))?;
                pending.push(Pending::Thread(handle));
            } else {
                pending.push(Pending::Done(decode_slot(name, text, 1)));
            }
        }
        let mut values = BTreeMap::new();
        let mut first_error = None;
        for (p, (name, _)) in pending.into_iter().zip(slots) {
            let decoded = match p {
                Pending::Thread(handle) => handle
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e)),
                Pending::Done(decoded) => decoded,
            };
            match decoded {
                Ok(value) => {
                    values.insert(name.clone(), value);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Ok(first_error.map_or(Ok(values), Err))
    })
}

/// Decodes and checks one slot's text, cutting it into up to `parts` parts when it is a
/// flat list. The text is zeroized when this returns.
pub(crate) fn decode_slot(
    slot: &str,
    mut text: Zeroizing<Vec<u8>>,
    parts: usize,
) -> Result<Dynamic, SlotError> {
    let cut = if parts > 1 {
        decode_in_parts(&mut text, parts)
    } else {
        None
    };
    let value = match cut {
        Some(value) => value,
        None => decode_whole(&text).map_err(|e| refusal(slot, &text, &e))?,
    };
    // A native list is one level deep; a scalar none.
    if (value.is_array() || value.is_map())
        && arbiter_policy::jcs::raw_depth(&text) > MAX_VALUE_DEPTH
    {
        return Err(SlotError::TooDeep {
            slot: slot.to_owned(),
        });
    }
    Ok(value)
}

/// Why `text`, which did not decode with error `e`, is refused.
fn refusal(slot: &str, text: &[u8], e: &serde_json::Error) -> SlotError {
    let slot = slot.to_owned();
    match arbiter_policy::jcs::raw_kind(text) {
        Err(e) => SlotError::NotJson {
            slot,
            reason: e.to_string(),
        },
        // Valid JSON that the decoder refused: nested beyond its recursion limit.
        Ok(_) if arbiter_policy::jcs::raw_depth(text) > MAX_VALUE_DEPTH => {
            SlotError::TooDeep { slot }
        }
        // (The decoder's own message could quote a value of the input: only its place.)
        Ok(_) => SlotError::NotJson {
            slot,
            reason: format!(
                "valid JSON the evaluator could not decode (line {}, column {})",
                e.line(),
                e.column()
            ),
        },
    }
}

/// The whole text as one slot value (`lists::Slot`), nothing but whitespace after it.
fn decode_whole(text: &[u8]) -> Result<Dynamic, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let slot = Slot::deserialize(&mut de)?;
    de.end()?;
    Ok(slot.0)
}

/// The kind of flat list a text seems to hold, from its first element.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Numbers,
    Strings,
}

impl Shape {
    /// Whether `b` can end or start an element of this kind (a number's first or last
    /// character, a string's quote).
    fn borders(self, b: u8) -> bool {
        match self {
            Shape::Numbers => b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'+' | b'e' | b'E'),
            Shape::Strings => b == b'"',
        }
    }
}

/// The positions of up to `parts - 1` commas that seem to separate two elements of a
/// flat list in `text`, each near its share of the text; none if the text does not start
/// like a flat list. Only a guess, to avoid wasted work: the parts' decoding decides.
fn cut_points(text: &[u8], parts: usize) -> Vec<usize> {
    let mut body = text
        .iter()
        .enumerate()
        .filter(|(_, b)| !b.is_ascii_whitespace());
    let shape = match (body.next(), body.next()) {
        (Some((_, b'[')), Some((_, b'"'))) => Shape::Strings,
        (Some((_, b'[')), Some((_, b))) if Shape::Numbers.borders(*b) => Shape::Numbers,
        _ => return Vec::new(),
    };
    let borders = |mut bytes: std::slice::Iter<'_, u8>, backwards: bool| {
        let mut rest = std::iter::from_fn(|| {
            if backwards {
                bytes.next_back()
            } else {
                bytes.next()
            }
        });
        rest.find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| shape.borders(*b))
    };
    let mut cuts = Vec::with_capacity(parts.saturating_sub(1));
    let mut from = 0;
    for k in 1..parts {
        let ideal = (text.len() / parts).saturating_mul(k).max(from);
        let window = text
            .get(ideal..ideal.saturating_add(CUT_SEARCH_BYTES).min(text.len()))
            .unwrap_or_default();
        let found = memchr::memchr_iter(b',', window)
            .map(|i| ideal + i)
            .find(|&c| {
                borders(text.get(..c).unwrap_or_default().iter(), true)
                    && borders(text.get(c + 1..).unwrap_or_default().iter(), false)
            });
        let Some(cut) = found else { break };
        cuts.push(cut);
        from = cut + 1;
    }
    cuts
}

/// Decodes a flat list in parts side by side (module documentation), or `None` when the
/// text is not one (then nothing has been decoded for good, and `text` is as it was).
fn decode_in_parts(text: &mut [u8], parts: usize) -> Option<Dynamic> {
    let cuts = cut_points(text, parts);
    let (&first, _) = cuts.split_first()?;
    // Every part but the first is copied out as a list of its own: `[` + its elements,
    // closed by `]` (the last one ends with the text's own `]`).
    let mut rest = Vec::with_capacity(cuts.len());
    for (i, &cut) in cuts.iter().enumerate() {
        let end = cuts.get(i + 1).copied().unwrap_or(text.len());
        let elements = text.get(cut + 1..end)?;
        let mut part = Zeroizing::new(Vec::with_capacity(elements.len() + 2));
        part.push(b'[');
        part.extend_from_slice(elements);
        if i + 1 < cuts.len() {
            part.push(b']');
        }
        rest.push(part);
    }
    // The first part is decoded in place: its cut becomes its closing bracket.
    *text.get_mut(first)? = b']';
    let decoded: Vec<Option<Dynamic>> = std::thread::scope(|scope| {
        let handles: Vec<_> = rest
            .iter()
            .map(|part| decoding_thread().spawn_scoped(scope, move || decode_whole(part).ok()))
            .collect();
        let head = text.get(..=first).and_then(|t| decode_whole(t).ok());
        std::iter::once(head)
            .chain(
                handles
                    .into_iter()
                    .map(|h| h.ok().and_then(|h| h.join().ok().flatten())),
            )
            .collect()
    });
    drop(rest);
    if let Some(b) = text.get_mut(first) {
        *b = b',';
    }
    join(decoded.into_iter().collect::<Option<Vec<_>>>()?)
}

/// The native list of the parts joined in order, if each is a native list of one kind.
fn join(parts: Vec<Dynamic>) -> Option<Dynamic> {
    if parts.iter().all(|p| p.is::<NumberList>()) {
        let lists = parts.into_iter().filter_map(|p| p.try_cast::<NumberList>());
        return Some(Dynamic::from(NumberList::concat(lists)));
    }
    if parts.iter().all(|p| p.is::<StringList>()) {
        let lists = parts.into_iter().filter_map(|p| p.try_cast::<StringList>());
        return StringList::concat(lists).ok().map(Dynamic::from);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Limits;
    use crate::eval::lists::is_list;
    use crate::eval::script::dynamic_to_json;
    use serde_json::{Value, json};

    fn json_of(value: &Dynamic) -> Value {
        dynamic_to_json(value, 0, &Limits::default()).unwrap()
    }

    fn whole(text: &str) -> Dynamic {
        decode_slot("s", Zeroizing::new(text.as_bytes().to_vec()), 1).unwrap()
    }

    fn in_parts(text: &str, parts: usize) -> Dynamic {
        decode_slot("s", Zeroizing::new(text.as_bytes().to_vec()), parts).unwrap()
    }

    /// Decoding in parts gives the same value, of the same type, as decoding whole.
    fn same_in_parts(text: &str) {
        let expected = whole(text);
        for parts in 2..=5 {
            let got = in_parts(text, parts);
            assert_eq!(json_of(&got), json_of(&expected), "{parts} parts of {text}");
            assert_eq!(
                got.type_name(),
                expected.type_name(),
                "{parts} parts of {text}"
            );
            assert_eq!(is_list(&got), is_list(&expected));
        }
    }

    #[test]
    fn flat_lists_decode_the_same_in_parts() {
        let numbers: Vec<Value> = (0..1000u32)
            .map(|i| match i % 4 {
                0 => json!(i),
                1 => json!(-f64::from(i) / 7.0),
                2 => json!(u64::MAX - u64::from(i)),
                _ => json!(1e300),
            })
            .collect();
        same_in_parts(&serde_json::to_string(&numbers).unwrap());
        same_in_parts(&serde_json::to_string_pretty(&numbers).unwrap());
        let strings: Vec<String> = (0..1000).map(|i| format!("s,{i}\", \"é")).collect();
        same_in_parts(&serde_json::to_string(&strings).unwrap());
        same_in_parts(" [ \"a\" , \"b\" ,\"c\"]\n\t ");
        same_in_parts("[1, 2.5, 3]");
        same_in_parts("[1]");
        assert!(is_list(&in_parts("[1, 2.5, 3]", 2)));
    }

    #[test]
    fn other_shapes_decode_whole_as_before() {
        for text in [
            r#"[",", ",", ","]"#,
            r#"[1, "a", 2, "b"]"#,
            r#"["a", 1, "b", 2]"#,
            "[[1, 2], [3, 4], [5, 6]]",
            r#"[{"a": 1}, {"b": 2}, {"c": 3}]"#,
            "[1, 2, [3], 4, 5]",
            r#""a, b, c, d""#,
            r#"{"a": [1, 2, 3], "b": [4, 5, 6]}"#,
            "[]",
            "[ ]",
            "[null, 1, 2]",
            "[true, false, true]",
        ] {
            same_in_parts(text);
        }
        // Not lists: ordinary values.
        assert!(!is_list(&in_parts(r#"[1, "a", 2, "b"]"#, 2)));
        assert!(!is_list(&in_parts("[[1, 2], [3, 4], [5, 6]]", 3)));
    }

    #[test]
    fn bad_text_is_refused_naming_the_slot_whether_or_not_it_is_cut() {
        for text in [
            "[1, 2,, 3, 4]",
            "[1, 2, 3, 4,]",
            "[1, 2] 3",
            "[\"a\", \"b\", \"c",
            "",
        ] {
            for parts in [1, 2, 3] {
                let got = decode_slot("x", Zeroizing::new(text.as_bytes().to_vec()), parts);
                assert!(
                    matches!(&got, Err(SlotError::NotJson { slot, .. }) if slot == "x"),
                    "{text} in {parts}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn depth_is_limited() {
        // On a thread with a decoding thread's stack (a debug build's test thread is small).
        decoding_thread()
            .spawn(depth_checks)
            .unwrap()
            .join()
            .unwrap();
    }

    fn depth_checks() {
        let nest = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert!(decode_slot("d", Zeroizing::new(nest(MAX_VALUE_DEPTH).into_bytes()), 2).is_ok());
        for depth in [MAX_VALUE_DEPTH + 1, 127, 150, 1000] {
            let got = decode_slot("d", Zeroizing::new(nest(depth).into_bytes()), 1);
            assert_eq!(
                got.unwrap_err(),
                SlotError::TooDeep { slot: "d".into() },
                "depth {depth}"
            );
        }
    }

    #[test]
    fn slots_are_read_in_order_and_bounded() {
        let a = b"[1, 2, 3]".to_vec();
        let b = vec![b' '; PARALLEL_BYTES + 10];
        let mut b = b;
        b[0] = b'"';
        let last = b.len() - 1;
        b[last] = b'"';
        let mut wire = a.clone();
        wire.extend_from_slice(&b);
        let slots = vec![
            ("a".to_owned(), a.len() as u64),
            ("b".to_owned(), b.len() as u64),
        ];
        let values = read_slots(&mut wire.as_slice(), &slots, wire.len())
            .unwrap()
            .unwrap();
        assert_eq!(json_of(&values["a"]), json!([1, 2, 3]));
        let b_value = values["b"].clone().into_immutable_string().unwrap();
        assert_eq!(b_value.len(), PARALLEL_BYTES + 8);
        // More than the budget, or fewer bytes than announced: a pipe error.
        assert!(read_slots(&mut wire.as_slice(), &slots, wire.len() - 1).is_err());
        assert!(read_slots(&mut &wire[..wire.len() - 1], &slots, wire.len()).is_err());
        // The first bad slot in order is the one reported, large or small.
        let mut bad = b"[1,".to_vec();
        bad.extend_from_slice(&b);
        let slots = vec![("a".to_owned(), 3), ("b".to_owned(), b.len() as u64)];
        let got = read_slots(&mut bad.as_slice(), &slots, bad.len()).unwrap();
        assert!(matches!(got, Err(SlotError::NotJson { slot, .. }) if slot == "a"));
    }
}
