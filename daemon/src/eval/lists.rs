//! Native lists: how an input slot holding a JSON array decodes into one native value
//! instead of a Rhai value per element, and the Rhai surface that lets scripts treat such
//! a list as the array it stands for.
//!
//! Two kinds exist: a [`StringList`] (a non-empty array whose elements are all strings)
//! and a [`NumberList`] (a non-empty array whose elements are all numbers; also what
//! `numeric_values` returns). Only a slot's top-level value becomes a list; anything else
//! (an empty array, an array mixing kinds or holding other values, nested arrays)
//! decodes as before into ordinary Rhai values, and numbers decode exactly as Rhai's own
//! deserializer makes them (integers as `INT`, floats and integers beyond `INT` as `FLOAT`).
//!
//! What scripts see: `type_of(list)` is `"array"`; `len`, `is_empty`, indexing (negative
//! indices count from the end), `for x in list`, `x in list`, `==` and `!=` with arrays
//! and lists, and `+` work directly; the set helpers on string lists and the statistics
//! helpers on number lists read the list in place (`helpers`); every other function of
//! Rhai's array package (`map`, `filter`, `push`, `sort`, `reverse`, ...) and of the
//! helpers runs on an ordinary array converted on the spot, and a function that changes
//! the array writes it back (it must still hold only elements of the list's kind;
//! otherwise the error says to call `to_array()` first). `to_array(x)` gives an ordinary
//! array of a list (and a copy of an array). Outputs, equality and errors are the same as
//! with the array a list stands for.

use std::any::Any;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FLOAT, INT, NativeCallContext, Position};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, SeqAccess, Visitor};

use super::numbers::NumberList;
use super::strings::StringList;

/// Result type of a fallible list function.
type ListResult<T> = Result<T, Box<EvalAltResult>>;

/// What the generic list surface needs of a kind of list (Rhai stores any
/// `Any + Clone + Send + Sync` type as a custom value).
pub(crate) trait NativeList: Any + Clone + Default + Send + Sync {
    /// What the list holds, for messages ("strings", "numbers").
    const HOLDS: &'static str;
    /// The number of elements.
    fn len(&self) -> usize;
    /// The `i`-th element as a Rhai value.
    fn value(&self, i: usize) -> Option<Dynamic>;
    /// An ordinary Rhai array of the same elements.
    fn to_array(&self) -> Array;
    /// The list an array stands for, if every element is of the list's kind.
    fn from_array(array: &Array) -> Option<Result<Self, String>>;
    /// Appends `value`: `None` if it is not of the list's kind.
    fn push_value(&mut self, value: &Dynamic) -> Option<Result<(), String>>;
    /// Whether two lists hold equal elements in the same order.
    fn same(&self, other: &Self) -> bool;
    /// Whether the list and an array hold equal elements in the same order.
    fn same_as_array(&self, array: &Array) -> bool;
    /// Whether `value` equals an element.
    fn contains_value(&self, value: &Dynamic) -> bool;
}

/// The ordinary array of `value` if it is a native list (`None` for anything else).
pub(crate) fn list_as_array(value: &Dynamic) -> Option<Array> {
    if let Some(list) = value.read_lock::<StringList>() {
        return Some(list.to_array());
    }
    value.read_lock::<NumberList>().map(|l| l.to_array())
}

/// Whether `value` is a native list.
pub(crate) fn is_list(value: &Dynamic) -> bool {
    value.is::<StringList>() || value.is::<NumberList>()
}

// ---------------------------------------------------------------------------------------
// Decoding

/// Deserializes an input map in one JSON text, each slot's value as [`Slot`] decodes it
/// (tests; the child decodes each slot from its own text, `super::decode`).
#[cfg(test)]
pub(crate) fn deserialize_slots<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, Dynamic>, D::Error> {
    let slots = std::collections::BTreeMap::<String, Slot>::deserialize(d)?;
    Ok(slots.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// One slot's value: a native list for a non-empty array of strings only or of numbers
/// only, otherwise what Rhai's own deserializer makes of it.
pub(crate) struct Slot(pub(crate) Dynamic);

impl<'de> Deserialize<'de> for Slot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SlotVisitor).map(Slot)
    }
}

/// The list being built from a top-level array: its kind is that of the first element.
#[derive(Default)]
enum Building {
    #[default]
    Empty,
    Strings(StringList),
    /// The numbers so far, each an `INT` or a `FLOAT` (a plain vector while it grows: no
    /// shared-ownership check per element).
    Numbers(Vec<Dynamic>),
}

impl Building {
    /// The elements so far as an ordinary array.
    fn into_array(self) -> Array {
        match self {
            Building::Empty => Array::new(),
            Building::Strings(list) => list.to_array(),
            Building::Numbers(numbers) => numbers,
        }
    }
}

/// An element of a top-level array: appended to the list being built, or any other value.
enum Element {
    Appended,
    Other(Dynamic),
}

struct ElementSeed<'a>(&'a mut Building);

impl<'de> DeserializeSeed<'de> for ElementSeed<'_> {
    type Value = Element;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Element, D::Error> {
        d.deserialize_any(ElementVisitor(self.0))
    }
}

/// Rhai's own value for a scalar JSON value (so numbers decode exactly as they always
/// have).
fn rhai_value<'de, T, E>(v: T) -> Result<Dynamic, E>
where
    T: IntoDeserializer<'de, E>,
    E: de::Error,
{
    Dynamic::deserialize(v.into_deserializer())
}

struct ElementVisitor<'a>(&'a mut Building);

impl ElementVisitor<'_> {
    /// Appends a number (an `INT` or a `FLOAT`) to a number list (starting one if nothing
    /// came before).
    fn number<E: de::Error>(self, value: Dynamic) -> Result<Element, E> {
        match self.0 {
            Building::Empty => {
                *self.0 = Building::Numbers(vec![value]);
                Ok(Element::Appended)
            }
            Building::Numbers(numbers) => {
                numbers.push(value);
                Ok(Element::Appended)
            }
            Building::Strings(_) => Ok(Element::Other(value)),
        }
    }
}

/// The value Rhai's own deserializer makes of a JSON integer, built directly: an `INT`,
/// or a `FLOAT` for an unsigned integer beyond `INT`'s range (`number_values_match_rhai`
/// checks both against Rhai's).
fn int_value(v: i64) -> Dynamic {
    Dynamic::from_int(v)
}

/// See [`int_value`].
fn uint_value(v: u64) -> Dynamic {
    match INT::try_from(v) {
        Ok(i) => Dynamic::from_int(i),
        #[allow(clippy::cast_precision_loss)] // as Rhai does
        Err(_) => Dynamic::from_float(v as FLOAT),
    }
}

impl<'de> Visitor<'de> for ElementVisitor<'_> {
    type Value = Element;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Element, E> {
        match self.0 {
            Building::Empty => {
                let mut list = StringList::default();
                list.push(v).map_err(E::custom)?;
                *self.0 = Building::Strings(list);
                Ok(Element::Appended)
            }
            Building::Strings(list) => {
                list.push(v).map_err(E::custom)?;
                Ok(Element::Appended)
            }
            Building::Numbers(_) => rhai_value(v).map(Element::Other),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Element, E> {
        self.number(int_value(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Element, E> {
        self.number(uint_value(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Element, E> {
        self.number(Dynamic::from_float(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Element, E> {
        rhai_value(v).map(Element::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Element, E> {
        rhai_value(()).map(Element::Other)
    }

    fn visit_none<E: de::Error>(self) -> Result<Element, E> {
        rhai_value(()).map(Element::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Element, A::Error> {
        Dynamic::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Element::Other)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Element, A::Error> {
        Dynamic::deserialize(de::value::MapAccessDeserializer::new(map)).map(Element::Other)
    }
}

struct SlotVisitor;

impl<'de> Visitor<'de> for SlotVisitor {
    type Value = Dynamic;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Dynamic, A::Error> {
        let mut building = Building::default();
        loop {
            match seq.next_element_seed(ElementSeed(&mut building))? {
                None => {
                    return Ok(match building {
                        Building::Empty => Dynamic::from_array(Array::new()),
                        Building::Strings(list) => Dynamic::from(list),
                        Building::Numbers(numbers) => {
                            Dynamic::from(NumberList::from_numbers(numbers))
                        }
                    });
                }
                Some(Element::Appended) => {}
                Some(Element::Other(value)) => {
                    // Not all of one kind: an ordinary array, the elements so far included.
                    let mut array = std::mem::take(&mut building).into_array();
                    array.push(value);
                    while let Some(value) = seq.next_element::<Dynamic>()? {
                        array.push(value);
                    }
                    return Ok(Dynamic::from_array(array));
                }
            }
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Dynamic, E> {
        rhai_value(v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Dynamic, E> {
        rhai_value(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dynamic, E> {
        rhai_value(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dynamic, E> {
        rhai_value(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dynamic, E> {
        rhai_value(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Dynamic, E> {
        rhai_value(())
    }

    fn visit_none<E: de::Error>(self) -> Result<Dynamic, E> {
        rhai_value(())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Dynamic, A::Error> {
        Dynamic::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

// ---------------------------------------------------------------------------------------
// The Rhai surface

/// Functions of Rhai's array package that scripts call on any list through an array
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
    // Helpers that take an array and gain nothing from this kind of list.
    ("shamir_combine", &[0]),
];

/// Helpers forwarded on a string list (the statistics helpers, which then refuse it).
pub(crate) const FORWARDED_ON_STRINGS: &[(&str, &[usize])] = &[
    ("mean", &[0]),
    ("median", &[0]),
    ("stddev", &[0]),
    ("mode", &[0]),
];

/// Helpers forwarded on a number list (the set helpers).
pub(crate) const FORWARDED_ON_NUMBERS: &[(&str, &[usize])] = &[
    ("intersection", &[1]),
    ("intersection_size", &[1]),
    ("is_member", &[1]),
    ("distinct", &[0]),
    ("sorted", &[0]),
];

/// Calls the array function `name` with the list converted to an array as its first
/// argument (and any other list argument converted too), then writes the array back
/// into the list if the call changed it.
fn forward<L: NativeList>(
    ctx: &NativeCallContext,
    name: &str,
    list: &mut L,
    rest: &mut [Dynamic],
) -> ListResult<Dynamic> {
    let mut array = Dynamic::from_array(list.to_array());
    for arg in rest.iter_mut() {
        if let Some(other) = list_as_array(arg) {
            *arg = Dynamic::from_array(other);
        }
    }
    let result = {
        let mut args: Vec<&mut Dynamic> =
            std::iter::once(&mut array).chain(rest.iter_mut()).collect();
        ctx.call_native_fn_raw(name, true, &mut args)?
    };
    let changed = array
        .read_lock::<Array>()
        .is_some_and(|a| !list.same_as_array(&a));
    if changed {
        let back = array.read_lock::<Array>().and_then(|a| L::from_array(&a));
        match back {
            Some(Ok(new)) => *list = new,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(only_holds::<L>(name, None).into()),
        }
    }
    Ok(result)
}

/// The error for a value of another kind put into a list.
fn only_holds<L: NativeList>(name: &str, value: Option<&Dynamic>) -> String {
    let what = L::HOLDS;
    let prefix = if name.is_empty() {
        String::new()
    } else {
        format!("{name}: ")
    };
    let not = value.map_or_else(String::new, |v| format!(", not {}", v.type_name()));
    format!(
        "{prefix}this input is a list of {what} and can hold only {what}{not}; call to_array() \
         on it first to change it freely"
    )
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

/// Registers both kinds of list and their functions (see the module documentation).
pub(crate) fn register(engine: &mut Engine) {
    register_kind::<StringList>(engine, FORWARDED_ON_STRINGS);
    register_kind::<NumberList>(engine, FORWARDED_ON_NUMBERS);
    // Lists of different kinds: never equal; `+` concatenates as arrays.
    engine.register_fn("==", |_: &mut StringList, _: NumberList| false);
    engine.register_fn("==", |_: &mut NumberList, _: StringList| false);
    engine.register_fn("!=", |_: &mut StringList, _: NumberList| true);
    engine.register_fn("!=", |_: &mut NumberList, _: StringList| true);
    engine.register_fn("+", |a: &mut StringList, b: NumberList| {
        let mut out = a.to_array();
        out.extend(b.to_array());
        out
    });
    engine.register_fn("+", |a: &mut NumberList, b: StringList| {
        let mut out = a.to_array();
        out.extend(b.to_array());
        out
    });
}

/// Registers one kind of list: its type (named "array"), iteration, the functions that
/// work on it directly, and `extra` besides [`FORWARDED`] forwarded through an array.
fn register_kind<L>(engine: &mut Engine, extra: &'static [(&'static str, &'static [usize])])
where
    L: NativeList + IntoIterator,
    <L as IntoIterator>::Item: Any + Clone + Send + Sync,
{
    engine.register_type_with_name::<L>("array");
    engine.register_iterator::<L>();
    engine.register_fn("len", |l: &mut L| {
        INT::try_from(l.len()).unwrap_or(INT::MAX)
    });
    engine.register_get("len", |l: &mut L| {
        INT::try_from(l.len()).unwrap_or(INT::MAX)
    });
    engine.register_fn("is_empty", |l: &mut L| l.len() == 0);
    engine.register_indexer_get(|l: &mut L, i: INT| -> ListResult<Dynamic> {
        let at = index(l.len(), i)?;
        Ok(l.value(at).unwrap_or(Dynamic::UNIT))
    });
    engine.register_indexer_set(|l: &mut L, i: INT, v: Dynamic| -> ListResult<()> {
        let at = index(l.len(), i)?;
        let mut array = l.to_array();
        if let Some(slot) = array.get_mut(at) {
            *slot = v.clone();
        }
        match L::from_array(&array) {
            Some(Ok(new)) => {
                *l = new;
                Ok(())
            }
            Some(Err(e)) => Err(e.into()),
            None => Err(only_holds::<L>("", Some(&v)).into()),
        }
    });
    engine.register_fn("to_array", |l: &mut L| l.to_array());
    engine.register_fn("push", |l: &mut L, v: Dynamic| -> ListResult<()> {
        match l.push_value(&v) {
            Some(result) => result.map_err(Into::into),
            None => Err(only_holds::<L>("push", Some(&v)).into()),
        }
    });
    engine.register_fn("contains", |l: &mut L, v: Dynamic| l.contains_value(&v));
    // Equality, as between the arrays the lists stand for.
    engine.register_fn("==", |a: &mut L, b: L| a.same(&b));
    engine.register_fn("!=", |a: &mut L, b: L| !a.same(&b));
    engine.register_fn("==", |a: &mut L, b: Array| a.same_as_array(&b));
    engine.register_fn("!=", |a: &mut L, b: Array| !a.same_as_array(&b));
    engine.register_fn("==", |a: &mut Array, b: L| b.same_as_array(a));
    engine.register_fn("!=", |a: &mut Array, b: L| !b.same_as_array(a));
    // Concatenation gives an ordinary array, as `+` of two arrays does.
    engine.register_fn("+", |a: &mut L, b: L| {
        let mut out = a.to_array();
        out.extend(b.to_array());
        out
    });
    engine.register_fn("+", |a: &mut L, b: Array| {
        let mut out = a.to_array();
        out.extend(b);
        out
    });
    engine.register_fn("+", |a: &mut Array, b: L| {
        let mut out = a.clone();
        out.extend(b.to_array());
        out
    });
    engine.register_fn("append", |a: &mut Array, b: L| {
        a.extend(b.to_array());
    });
    engine.register_fn("+=", |a: &mut Array, b: L| {
        a.extend(b.to_array());
    });
    for &(name, arities) in FORWARDED.iter().chain(extra) {
        for &arity in arities {
            match arity {
                0 => {
                    engine.register_fn(name, move |ctx: NativeCallContext, l: &mut L| {
                        forward(&ctx, name, l, &mut [])
                    });
                }
                1 => {
                    engine.register_fn(
                        name,
                        move |ctx: NativeCallContext, l: &mut L, x: Dynamic| {
                            forward(&ctx, name, l, &mut [x])
                        },
                    );
                }
                2 => {
                    engine.register_fn(
                        name,
                        move |ctx: NativeCallContext, l: &mut L, x: Dynamic, y: Dynamic| {
                            forward(&ctx, name, l, &mut [x, y])
                        },
                    );
                }
                _ => {
                    engine.register_fn(
                        name,
                        move |ctx: NativeCallContext,
                              l: &mut L,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers a number list is built from are what Rhai's own deserializer makes of
    /// the same JSON numbers, type and value.
    #[test]
    fn number_values_match_rhai() {
        fn same(a: &Dynamic, b: &Dynamic) -> bool {
            a.type_name() == b.type_name() && format!("{a:?}") == format!("{b:?}")
        }
        for v in [0, 1, -1, i64::MIN, i64::MAX] {
            let rhai: Dynamic = rhai_value::<_, de::value::Error>(v).unwrap();
            assert!(same(&int_value(v), &rhai), "{v}");
        }
        for v in [0, 1, u64::try_from(i64::MAX).unwrap(), 1 << 63, u64::MAX] {
            let rhai: Dynamic = rhai_value::<_, de::value::Error>(v).unwrap();
            assert!(same(&uint_value(v), &rhai), "{v}");
        }
        for v in [0.0, -0.5, 1e300, f64::MIN_POSITIVE] {
            let rhai: Dynamic = rhai_value::<_, de::value::Error>(v).unwrap();
            assert!(same(&Dynamic::from_float(v), &rhai), "{v}");
        }
    }
}
