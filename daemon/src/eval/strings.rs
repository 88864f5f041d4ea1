//! [`StringList`]: the native list an input slot holding a JSON array of strings decodes
//! into — one text buffer and one offset per element instead of a Rhai value (and two
//! allocations) per element. How slots decode and what scripts see of a list is the
//! `lists` module's; the set helpers that take the list directly are in `helpers`.

use std::sync::Arc;

use rhai::{Array, Dynamic, ImmutableString};

use super::lists::NativeList;

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

    /// The lists one after another (the first one's buffers are reused when unshared);
    /// fails if the text would outgrow the offsets (4 GiB).
    pub(crate) fn concat(lists: impl IntoIterator<Item = StringList>) -> Result<Self, String> {
        let mut lists = lists.into_iter();
        let Some(first) = lists.next() else {
            return Ok(Self::default());
        };
        let mut joined = Arc::unwrap_or_clone(first.0);
        for list in lists {
            let offset = u32::try_from(joined.text.len()).ok();
            let text_end = joined.text.len().checked_add(list.0.text.len());
            if offset.is_none() || text_end.is_none_or(|e| u32::try_from(e).is_err()) {
                return Err("a list of strings cannot hold more than 4 GiB of text".to_owned());
            }
            let offset = offset.unwrap_or_default();
            joined.text.push_str(&list.0.text);
            // Cannot overflow: every end is at most the new text's length, checked above.
            joined.ends.extend(list.0.ends.iter().map(|e| e + offset));
        }
        Ok(Self(Arc::new(joined)))
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

impl NativeList for StringList {
    const HOLDS: &'static str = "strings";

    fn len(&self) -> usize {
        StringList::len(self)
    }

    fn value(&self, i: usize) -> Option<Dynamic> {
        self.get(i).map(|s| Dynamic::from(ImmutableString::from(s)))
    }

    fn to_array(&self) -> Array {
        StringList::to_array(self)
    }

    fn from_array(array: &Array) -> Option<Result<Self, String>> {
        StringList::from_array(array)
    }

    fn push_value(&mut self, value: &Dynamic) -> Option<Result<(), String>> {
        let s = value.read_lock::<ImmutableString>()?;
        Some(self.push(s.as_str()))
    }

    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.ends == other.0.ends && self.0.text == other.0.text)
    }

    fn same_as_array(&self, array: &Array) -> bool {
        array.len() == self.len()
            && array.iter().zip(self.iter()).all(|(v, s)| {
                v.read_lock::<ImmutableString>()
                    .is_some_and(|t| t.as_str() == s)
            })
    }

    fn contains_value(&self, value: &Dynamic) -> bool {
        value
            .read_lock::<ImmutableString>()
            .is_some_and(|s| self.iter().any(|t| t == s.as_str()))
    }
}
