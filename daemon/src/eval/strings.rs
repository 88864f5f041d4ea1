//! [`StringList`]: the native value an input slot holding a JSON array of strings decodes
//! into — one text buffer and one offset per element instead of a Rhai value (and two
//! allocations) per element — and its Rhai surface, which lets scripts treat it as the
//! array of strings it stands for.
//!
//! Only a slot's top-level value becomes a list, and only when it is a non-empty array
//! whose elements are all strings; anything else (an empty array, an array with one
//! non-string element, nested arrays) decodes as before into ordinary Rhai values.
//!
//! What scripts see: `type_of(list)` is `"array"`; `len`, `is_empty`, indexing (negative
//! indices count from the end), `for s in list`, `x in list`, `==` and `!=` with arrays
//! and lists, and `+` work directly; the set helpers (`intersection`,
//! `intersection_size`, `is_member`, `distinct`, `sorted`) work on the list without
//! converting it; every other function of Rhai's array package (`map`, `filter`,
//! `push`, `sort`, `reverse`, ...) and of the statistics helpers runs on an ordinary
//! array converted on the spot, and a function that changes the array writes it back
//! (it must still hold only strings; otherwise the error says to call `to_array()`
//! first). `to_array(x)` gives an ordinary array of a list (and a copy of an array).
//! Outputs, equality and errors are the same as with the array it stands for.

use std::sync::Arc;

use rhai::{
    Array, Dynamic, Engine, EvalAltResult, INT, ImmutableString, NativeCallContext, Position,
};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, SeqAccess, Visitor};

/// Result type of a fallible list function.
type ListResult<T> = Result<T, Box<EvalAltResult>>;

/// A list of strings: the texts one after another in one buffer, and where each ends.
/// Cloning shares the buffers; a change copies them first (copy on write).
#[derive(Clone, Default, Debug)]
pub(crate) struct StringList(Arc<Inner>);

#[derive(Clone, Default, Debug)]
struct Inner {
    text: String,
    /// End offset of each element in `text` (requests are at most 1 GiB: `u32` holds it).
    ends: Vec<u32>,
}

impl StringList {
    /// The number of strings.
    pub(crate) fn len(&self) -> usize {
        self.0.ends.len()
    }

    /// The `i`-th string.
    pub(crate) fn get(&self, i: usize) -> Option<&str> {
        let end = *self.0.ends.get(i)? as usize;
        let start = match i.checked_sub(1) {
            Some(p) => self.0.ends.get(p).map_or(0, |&e| e as usize),
            None => 0,
        };
        self.0.text.get(start..end)
    }

    /// The strings in order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        let mut start = 0usize;
        self.0.ends.iter().map(move |&end| {
            let end = end as usize;
            let s = self.0.text.get(start..end).unwrap_or_default();
            start = end;
            s
        })
    }

    /// Appends `s`; fails if the text would outgrow the offsets (4 GiB).
    pub(crate) fn push(&mut self, s: &str) -> Result<(), String> {
        let inner = Arc::make_mut(&mut self.0);
        let end = inner
            .text
            .len()
            .checked_add(s.len())
            .and_then(|e| u32::try_from(e).ok())
            .ok_or_else(|| "a list of strings cannot hold more than 4 GiB of text".to_owned())?;
        inner.text.push_str(s);
        inner.ends.push(end);
        Ok(())
    }

    /// The list from these strings.
    pub(crate) fn from_strs<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut list = Self::default();
        for s in items {
            list.push(s)?;
        }
        Ok(list)
    }

    /// An ordinary Rhai array of the same strings.
    pub(crate) fn to_array(&self) -> Array {
        self.iter()
            .map(|s| Dynamic::from(ImmutableString::from(s)))
            .collect()
    }

    /// The list an array stands for, if every element is a string (`None` otherwise).
    pub(crate) fn from_array(array: &Array) -> Option<Result<Self, String>> {
        let mut list = Self::default();
        for v in array {
            let s = v.read_lock::<ImmutableString>()?;
            if let Err(e) = list.push(s.as_str()) {
                return Some(Err(e));
            }
        }
        Some(Ok(list))
    }

    /// The strings of `value` if it is a list or an array of strings only.
    pub(crate) fn strings_of(value: &Dynamic) -> Option<Vec<ImmutableString>> {
        if let Some(list) = value.read_lock::<StringList>() {
            return Some(list.iter().map(ImmutableString::from).collect());
        }
        let array = value.read_lock::<Array>()?;
        array
            .iter()
            .map(|v| v.read_lock::<ImmutableString>().map(|s| s.clone()))
            .collect()
    }
}

/// Iterates a list's strings (for `for s in list`).
pub(crate) struct ListIter {
    list: StringList,
    next: usize,
}

impl Iterator for ListIter {
    type Item = ImmutableString;

    fn next(&mut self) -> Option<ImmutableString> {
        let s = self.list.get(self.next)?;
        self.next += 1;
        Some(ImmutableString::from(s))
    }
}

impl IntoIterator for StringList {
    type Item = ImmutableString;
    type IntoIter = ListIter;

    fn into_iter(self) -> ListIter {
        ListIter {
            list: self,
            next: 0,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Decoding

/// Deserializes an input map: each slot's value as [`Slot`] decodes it.
pub(crate) fn deserialize_slots<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, Dynamic>, D::Error> {
    let slots = std::collections::BTreeMap::<String, Slot>::deserialize(d)?;
    Ok(slots.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// One slot's value: a [`StringList`] for a non-empty array of strings, otherwise what
/// Rhai's own deserializer makes of it.
pub(crate) struct Slot(pub(crate) Dynamic);

impl<'de> Deserialize<'de> for Slot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SlotVisitor).map(Slot)
    }
}

/// An element of a top-level array: a string appended to the list being built, or any
/// other value.
enum Element {
    Appended,
    Other(Dynamic),
}

struct ElementSeed<'a>(&'a mut StringList);

impl<'de> DeserializeSeed<'de> for ElementSeed<'_> {
    type Value = Element;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Element, D::Error> {
        d.deserialize_any(ElementVisitor(self.0))
    }
}

/// Delegates every non-string, non-sequence JSON value to Rhai's own deserializer, so
/// numbers, `null` and objects decode exactly as they always have.
macro_rules! delegate_scalars {
    ($wrap:expr) => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Dynamic::deserialize(v.into_deserializer()).map($wrap)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Dynamic::deserialize(v.into_deserializer()).map($wrap)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Dynamic::deserialize(v.into_deserializer()).map($wrap)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Dynamic::deserialize(v.into_deserializer()).map($wrap)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Dynamic::deserialize(().into_deserializer()).map($wrap)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Dynamic::deserialize(().into_deserializer()).map($wrap)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Dynamic::deserialize(de::value::MapAccessDeserializer::new(map)).map($wrap)
        }
    };
}

struct ElementVisitor<'a>(&'a mut StringList);

impl<'de> Visitor<'de> for ElementVisitor<'_> {
    type Value = Element;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Element, E> {
        self.0.push(v).map_err(E::custom)?;
        Ok(Element::Appended)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Element, A::Error> {
        Dynamic::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Element::Other)
    }

    delegate_scalars!(Element::Other);
}

struct SlotVisitor;

impl<'de> Visitor<'de> for SlotVisitor {
    type Value = Dynamic;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Dynamic, E> {
        Dynamic::deserialize(v.into_deserializer())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Dynamic, A::Error> {
        let mut list = StringList::default();
        loop {
            match seq.next_element_seed(ElementSeed(&mut list))? {
                None if list.len() == 0 => return Ok(Dynamic::from_array(Array::new())),
                None => return Ok(Dynamic::from(list)),
                Some(Element::Appended) => {}
                Some(Element::Other(value)) => {
                    // Not all strings: an ordinary array, the strings so far included.
                    let mut array = list.to_array();
                    drop(list);
                    array.push(value);
                    while let Some(value) = seq.next_element::<Dynamic>()? {
                        array.push(value);
                    }
                    return Ok(Dynamic::from_array(array));
                }
            }
        }
    }

    delegate_scalars!(std::convert::identity);
}

// ---------------------------------------------------------------------------------------
// The Rhai surface

/// Functions of Rhai's array package that scripts call on a list through an array
/// converted on the spot, with how many arguments follow the array.
const FORWARDED: &[(&str, &[usize])] = &[
    ("all", &[1]),
    ("append", &[1]),
    ("chop", &[1]),
    ("clear", &[0]),
    ("dedup", &[0, 1]),
    ("drain", &[1, 2]),
    ("extract", &[1, 2]),
    ("filter", &[1]),
    ("find", &[1, 2]),
    ("find_map", &[1, 2]),
    ("for_each", &[1]),
    ("get", &[1]),
    ("index_of", &[1, 2]),
    ("insert", &[2]),
    ("map", &[1]),
    ("order", &[0]),
    ("order_by", &[1]),
    ("order_desc", &[0]),
    ("pad", &[2]),
    ("pop", &[0]),
    ("reduce", &[1, 2]),
    ("reduce_rev", &[1, 2]),
    ("remove", &[1]),
    ("retain", &[1, 2]),
    ("reverse", &[0]),
    ("set", &[2]),
    ("shift", &[0]),
    ("some", &[1]),
    ("sort", &[0, 1]),
    ("sort_by", &[1]),
    ("sort_desc", &[0]),
    ("splice", &[2, 3]),
    ("split", &[1]),
    ("truncate", &[1]),
    ("zip", &[2]),
    // Helpers that take an array and gain nothing from a list.
    ("mean", &[0]),
    ("median", &[0]),
    ("stddev", &[0]),
    ("mode", &[0]),
    ("shamir_combine", &[0]),
];

/// Calls the array function `name` with the list converted to an array as its first
/// argument (and any other list argument converted too), then writes the array back
/// into the list if the call changed it.
fn forward(
    ctx: &NativeCallContext,
    name: &str,
    list: &mut StringList,
    rest: &mut [Dynamic],
) -> ListResult<Dynamic> {
    let mut array = Dynamic::from_array(list.to_array());
    let len = list.len();
    for arg in rest.iter_mut() {
        if let Some(other) = arg.read_lock::<StringList>().map(|l| l.to_array()) {
            *arg = Dynamic::from_array(other);
        }
    }
    let result = {
        let mut args: Vec<&mut Dynamic> =
            std::iter::once(&mut array).chain(rest.iter_mut()).collect();
        ctx.call_native_fn_raw(name, true, &mut args)?
    };
    let changed = array.read_lock::<Array>().is_some_and(|a| {
        a.len() != len
            || a.iter().zip(list.iter()).any(|(v, s)| {
                v.read_lock::<ImmutableString>()
                    .is_none_or(|t| t.as_str() != s)
            })
    });
    if changed {
        let back = array
            .read_lock::<Array>()
            .and_then(|a| StringList::from_array(&a));
        match back {
            Some(Ok(new)) => *list = new,
            Some(Err(e)) => return Err(e.into()),
            None => {
                return Err(format!(
                    "{name}: this input is a list of strings and can hold only strings; \
                     call to_array() on it first to change it freely"
                )
                .into());
            }
        }
    }
    Ok(result)
}

/// The index Rhai would use for `i` on `len` elements (negative counts from the end).
fn index(len: usize, i: INT) -> ListResult<usize> {
    let len_int = INT::try_from(len).unwrap_or(INT::MAX);
    let at = if i < 0 { len_int + i } else { i };
    if at < 0 || at >= len_int {
        return Err(EvalAltResult::ErrorArrayBounds(len, i, Position::NONE).into());
    }
    usize::try_from(at).map_err(|_| EvalAltResult::ErrorArrayBounds(len, i, Position::NONE).into())
}

/// Whether a list and an array hold the same strings in the same order.
fn same_as_array(list: &StringList, array: &Array) -> bool {
    array.len() == list.len()
        && array.iter().zip(list.iter()).all(|(v, s)| {
            v.read_lock::<ImmutableString>()
                .is_some_and(|t| t.as_str() == s)
        })
}

/// Whether two lists hold the same strings in the same order.
fn same_lists(a: &StringList, b: &StringList) -> bool {
    Arc::ptr_eq(&a.0, &b.0) || (a.0.ends == b.0.ends && a.0.text == b.0.text)
}

/// Registers the list type and its functions (see the module documentation).
pub(crate) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<StringList>("array");
    engine.register_iterator::<StringList>();
    engine.register_fn("len", |l: &mut StringList| {
        INT::try_from(l.len()).unwrap_or(INT::MAX)
    });
    engine.register_get("len", |l: &mut StringList| {
        INT::try_from(l.len()).unwrap_or(INT::MAX)
    });
    engine.register_fn("is_empty", |l: &mut StringList| l.len() == 0);
    engine.register_indexer_get(
        |l: &mut StringList, i: INT| -> ListResult<ImmutableString> {
            let at = index(l.len(), i)?;
            Ok(l.get(at).unwrap_or_default().into())
        },
    );
    engine.register_indexer_set(|l: &mut StringList, i: INT, v: Dynamic| -> ListResult<()> {
        let at = index(l.len(), i)?;
        let Some(s) = v.read_lock::<ImmutableString>().map(|s| s.clone()) else {
            return Err(format!(
                "this input is a list of strings and can hold only strings, not {}; \
                     call to_array() on it first to change it freely",
                v.type_name()
            )
            .into());
        };
        let new = StringList::from_strs(
            l.iter()
                .enumerate()
                .map(|(j, t)| if j == at { s.as_str() } else { t }),
        )?;
        *l = new;
        Ok(())
    });
    engine.register_fn("to_array", |l: &mut StringList| l.to_array());
    engine.register_fn("to_array", |a: &mut Array| a.clone());
    engine.register_fn("push", |l: &mut StringList, v: Dynamic| -> ListResult<()> {
        let Some(s) = v.read_lock::<ImmutableString>().map(|s| s.clone()) else {
            return Err(format!(
                "push: this input is a list of strings and can hold only strings, not {}; \
                 call to_array() on it first to change it freely",
                v.type_name()
            )
            .into());
        };
        l.push(&s).map_err(Into::into)
    });
    engine.register_fn("contains", |l: &mut StringList, v: Dynamic| {
        v.read_lock::<ImmutableString>()
            .is_some_and(|s| l.iter().any(|t| t == s.as_str()))
    });
    // Equality, as between the arrays the lists stand for.
    engine.register_fn("==", |a: &mut StringList, b: StringList| same_lists(a, &b));
    engine.register_fn("!=", |a: &mut StringList, b: StringList| !same_lists(a, &b));
    engine.register_fn("==", |a: &mut StringList, b: Array| same_as_array(a, &b));
    engine.register_fn("!=", |a: &mut StringList, b: Array| !same_as_array(a, &b));
    engine.register_fn("==", |a: &mut Array, b: StringList| same_as_array(&b, a));
    engine.register_fn("!=", |a: &mut Array, b: StringList| !same_as_array(&b, a));
    // Concatenation gives an ordinary array, as `+` of two arrays does.
    engine.register_fn("+", |a: &mut StringList, b: StringList| {
        let mut out = a.to_array();
        out.extend(b.to_array());
        out
    });
    engine.register_fn("+", |a: &mut StringList, b: Array| {
        let mut out = a.to_array();
        out.extend(b);
        out
    });
    engine.register_fn("+", |a: &mut Array, b: StringList| {
        let mut out = a.clone();
        out.extend(b.to_array());
        out
    });
    engine.register_fn("append", |a: &mut Array, b: StringList| {
        a.extend(b.to_array());
    });
    engine.register_fn("+=", |a: &mut Array, b: StringList| {
        a.extend(b.to_array());
    });
    for &(name, arities) in FORWARDED {
        for &arity in arities {
            match arity {
                0 => {
                    engine.register_fn(name, move |ctx: NativeCallContext, l: &mut StringList| {
                        forward(&ctx, name, l, &mut [])
                    });
                }
                1 => {
                    engine.register_fn(
                        name,
                        move |ctx: NativeCallContext, l: &mut StringList, x: Dynamic| {
                            forward(&ctx, name, l, &mut [x])
                        },
                    );
                }
                2 => {
                    engine.register_fn(
                        name,
                        move |ctx: NativeCallContext,
                              l: &mut StringList,
                              x: Dynamic,
                              y: Dynamic| {
                            forward(&ctx, name, l, &mut [x, y])
                        },
                    );
                }
                _ => {
                    engine.register_fn(
                        name,
                        move |ctx: NativeCallContext,
                              l: &mut StringList,
                              x: Dynamic,
                              y: Dynamic,
                              z: Dynamic| {
                            forward(&ctx, name, l, &mut [x, y, z])
                        },
                    );
                }
            }
        }
    }
}
