//! [`NumberList`]: the native list an input slot holding a JSON array of numbers decodes
//! into, and what `numeric_values` returns. Its elements are the integers and floats Rhai
//! would have made of the JSON numbers, kept in one vector that Rhai treats as a single
//! opaque value: passing the list around, storing it in a variable or checking the
//! script's data sizes does not walk a million elements, and the statistics helpers read
//! it in place. How slots decode and what scripts see of a list is the `lists` module's.

use std::sync::Arc;

use rhai::{Array, Dynamic, FLOAT, INT};

use super::lists::NativeList;

/// A list of numbers (each element an `INT` or a `FLOAT`). Cloning shares the vector; a
/// change copies it first (copy on write).
#[derive(Clone, Default, Debug)]
pub(crate) struct NumberList(Arc<Vec<Dynamic>>);

impl NumberList {
    /// The number of elements.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The elements, each an `INT` or a `FLOAT`.
    pub(crate) fn items(&self) -> &[Dynamic] {
        &self.0
    }

    /// Whether `value` is a number (an `INT` or a `FLOAT`).
    pub(crate) fn is_number(value: &Dynamic) -> bool {
        value.is_int() || value.is_float()
    }

    /// The list of `numbers`, each of which the caller has made an `INT` or a `FLOAT`.
    pub(crate) fn from_numbers(numbers: Vec<Dynamic>) -> Self {
        debug_assert!(numbers.iter().all(Self::is_number));
        Self(Arc::new(numbers))
    }

    /// Appends `value` if it is a number; `false` (nothing appended) otherwise.
    pub(crate) fn push(&mut self, value: Dynamic) -> bool {
        if !Self::is_number(&value) {
            return false;
        }
        Arc::make_mut(&mut self.0).push(value);
        true
    }

    /// The lists one after another (the first one's vector is reused when unshared).
    pub(crate) fn concat(lists: impl IntoIterator<Item = NumberList>) -> Self {
        let mut lists = lists.into_iter();
        let Some(first) = lists.next() else {
            return Self::default();
        };
        let mut joined = Arc::unwrap_or_clone(first.0);
        for list in lists {
            match Arc::try_unwrap(list.0) {
                Ok(mut items) => joined.append(&mut items),
                Err(shared) => joined.extend(shared.iter().cloned()),
            }
        }
        Self(Arc::new(joined))
    }

    /// Appends every element of `other`.
    pub(crate) fn extend_from(&mut self, other: &NumberList) {
        if self.0.is_empty() {
            self.0 = Arc::clone(&other.0);
        } else {
            Arc::make_mut(&mut self.0).extend(other.0.iter().cloned());
        }
    }

    /// The list an array stands for, if every element is a number (`None` otherwise).
    pub(crate) fn of_array(array: &Array) -> Option<Self> {
        array
            .iter()
            .all(Self::is_number)
            .then(|| Self(Arc::new(array.clone())))
    }
}

/// Whether two numbers are equal as Rhai's `==` has them: integers by value, a float and
/// an integer or two floats by their values as floats.
fn same_number(a: &Dynamic, b: &Dynamic) -> bool {
    match (a.as_int(), b.as_int()) {
        (Ok(x), Ok(y)) => x == y,
        _ => match (as_float(a), as_float(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// A number as a float (`None` for anything else).
#[allow(clippy::cast_precision_loss)] // documented: statistics are in f64
pub(crate) fn as_float(v: &Dynamic) -> Option<FLOAT> {
    // The type is tested first: a failed `as_*` builds its error from the type name.
    if v.is_int() {
        return v.as_int().ok().map(|i: INT| i as FLOAT);
    }
    v.as_float()
        .ok()
        .or_else(|| v.as_int().ok().map(|i: INT| i as FLOAT))
}

impl IntoIterator for NumberList {
    type Item = Dynamic;
    type IntoIter = NumberIter;

    fn into_iter(self) -> NumberIter {
        NumberIter {
            list: self,
            next: 0,
        }
    }
}

/// Iterates a list's numbers (for `for x in list`).
pub(crate) struct NumberIter {
    list: NumberList,
    next: usize,
}

impl Iterator for NumberIter {
    type Item = Dynamic;

    fn next(&mut self) -> Option<Dynamic> {
        let v = self.list.0.get(self.next)?.clone();
        self.next += 1;
        Some(v)
    }
}

impl NativeList for NumberList {
    const HOLDS: &'static str = "numbers";

    fn len(&self) -> usize {
        self.0.len()
    }

    fn value(&self, i: usize) -> Option<Dynamic> {
        self.0.get(i).cloned()
    }

    fn to_array(&self) -> Array {
        self.0.as_ref().clone()
    }

    fn from_array(array: &Array) -> Option<Result<Self, String>> {
        Self::of_array(array).map(Ok)
    }

    fn push_value(&mut self, value: &Dynamic) -> Option<Result<(), String>> {
        self.push(value.clone()).then_some(Ok(()))
    }

    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.same_as_array(&other.0)
    }

    fn same_as_array(&self, array: &Array) -> bool {
        array.len() == self.0.len()
            && array
                .iter()
                .zip(self.0.iter())
                .all(|(a, b)| same_number(a, b))
    }

    fn contains_value(&self, value: &Dynamic) -> bool {
        Self::is_number(value) && self.0.iter().any(|v| same_number(v, value))
    }
}
