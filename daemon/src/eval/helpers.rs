//! Native helpers that scripts call where speed matters: SHA-256, set intersection,
//! statistics, Shamir combination, AES-GCM and AES-256-GCM-SIV with a synthetic nonce,
//! hex and base64 conversion, sorting and membership, and the seeded RNG.
//!
//! Every helper is pure Rust, works on values the engine already bounds (strings, arrays
//! and blobs are checked against the evaluation's size limits before and after each call)
//! and reports bad arguments as a script runtime error, never a panic. Byte strings cross
//! the script boundary as lowercase hex strings (docs/protocol.md, encodings) or as Rhai blobs; the
//! conventions of each helper are in [`register`], and for script authors in
//! docs/scripting.md.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use aes_gcm_siv::Aes256GcmSiv;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rhai::{Array, Blob, Dynamic, Engine, EvalAltResult, FLOAT, INT, ImmutableString, Map};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::lists::{NativeList, is_list, list_as_array};
use super::numbers::NumberList;
use super::strings::StringList;

/// Result type of a fallible helper.
type HelperResult<T> = Result<T, Box<EvalAltResult>>;

/// Builds a script runtime error with the helper's name in front.
fn fail<T>(helper: &str, message: impl std::fmt::Display) -> HelperResult<T> {
    Err(format!("{helper}: {message}").into())
}

/// Registers every helper in `engine`.
///
/// | helper | arguments | result |
/// |---|---|---|
/// | `sha256(x)` | string (its UTF-8 bytes) or blob | lowercase hex digest |
/// | `to_hex(b)` / `from_hex(s)` | blob / hex string | hex string / blob |
/// | `intersection(a, b)` | arrays of strings and integers | the distinct elements of `a` also in `b`, in `a`'s order |
/// | `intersection_size(a, b)` | the same | the length of `intersection(a, b)` |
/// | `mean(a)`, `median(a)`, `stddev(a)` | non-empty array of integers and floats | float (`stddev` is the population standard deviation) |
/// | `mode(a)` | the same | the most frequent element, the smallest one on a tie, as given (integer or float) |
/// | `shamir_combine(shares)` | array of hex strings or blobs, each `x ‖ y…` | hex of the secret |
/// | `aes_gcm_encrypt(key, nonce, plaintext)` | hex key (16 or 32 bytes), hex nonce (12 bytes), string or blob | hex of `ciphertext ‖ tag` (the caller must never reuse a nonce under a key; library functions use `aead_seal`) |
/// | `aes_gcm_decrypt(key, nonce, ciphertext)` | hex, hex, hex | the plaintext as a string (must be UTF-8) |
/// | `aes_gcm_decrypt_blob(key, nonce, ciphertext)` | hex, hex, hex | the plaintext as a blob |
/// | `aead_seal(key, plaintext, aad)` | hex key (32 bytes), string or blob, string | hex of `nonce(12) ‖ ciphertext ‖ tag(16)`, AES-256-GCM-SIV with a synthetic nonce ([`synthetic_nonce`]) |
/// | `aead_open(key, sealed, aad)` / `aead_open_blob(…)` | hex key, hex from `aead_seal`, string | the plaintext as a string (must be UTF-8) / as a blob |
/// | `to_base64(x)` / `from_base64(s)` | string (its UTF-8 bytes) or blob / padded standard base64 | string / blob |
/// | `blob_to_string(b)` | blob | the string it encodes (must be UTF-8) |
/// | `sorted(a)` | array of strings, or of integers and floats | a sorted copy (bytewise for strings, numeric for numbers) |
/// | `distinct(a)` | array of strings, integers, floats, booleans, characters, `()` | the first occurrence of each element, in order |
/// | `is_member(a, v)` | array as for `distinct`, a value | whether `v` is an element of `a` (no type coercion) |
/// | `numeric_values(m)` | map whose values are numbers or arrays of numbers | every number, slots in key order, as one array (a number list, `lists`) |
/// | `deep_equal(x, y)` | any two values | structural equality: numbers by value (`1 == 1.0`), arrays in order, maps by keys and values, no other coercion |
/// | `random_int(lo, hi)`, `random_float()` | only with a seeded RNG ([`Rng`]) | uniform in `[lo, hi]` / `[0, 1)` |
///
/// Rhai's own `sort()` sorts an array of one primitive type in place.
pub(crate) fn register(engine: &mut Engine, rng: Option<Rng>) {
    engine.register_fn("sha256", |s: ImmutableString| {
        hex::encode(Sha256::digest(s.as_bytes()))
    });
    engine.register_fn("sha256", |b: Blob| hex::encode(Sha256::digest(&b)));
    engine.register_fn("to_hex", |b: Blob| hex::encode(b));
    engine.register_fn("from_hex", |s: ImmutableString| decode_hex("from_hex", &s));

    // The bulk arguments are taken by reference where Rhai allows it (`&mut` first
    // parameter: a variable is passed without a copy) and never copied element by
    // element inside the helpers.
    engine.register_fn(
        "intersection",
        |a: &mut Array, b: Array| -> HelperResult<Array> { intersection("intersection", a, &b) },
    );
    engine.register_fn(
        "intersection_size",
        |a: &mut Array, b: Array| -> HelperResult<INT> {
            let size = intersection_size("intersection_size", a, &b)?;
            Ok(INT::try_from(size).unwrap_or(INT::MAX))
        },
    );
    register_list_sets(engine);

    engine.register_fn("mean", |a: &mut Array| -> HelperResult<FLOAT> {
        Ok(mean(&numbers("mean", a)?))
    });
    engine.register_fn("median", |a: &mut Array| -> HelperResult<FLOAT> {
        Ok(median(numbers("median", a)?))
    });
    engine.register_fn("stddev", |a: &mut Array| -> HelperResult<FLOAT> {
        Ok(stddev(&numbers("stddev", a)?))
    });
    engine.register_fn("mode", |a: &mut Array| -> HelperResult<Dynamic> {
        numbers("mode", a)?;
        Ok(mode(a))
    });
    // The same on a number list, read in place.
    engine.register_fn("mean", |l: &mut NumberList| -> HelperResult<FLOAT> {
        checked_mean("mean", l.items())
    });
    engine.register_fn("median", |l: &mut NumberList| -> HelperResult<FLOAT> {
        Ok(median(numbers("median", l.items())?))
    });
    engine.register_fn("stddev", |l: &mut NumberList| -> HelperResult<FLOAT> {
        let m = checked_mean("stddev", l.items())?;
        Ok(mean_of(floats(l.items()).map(|x| (x - m) * (x - m))).sqrt())
    });
    engine.register_fn("mode", |l: &mut NumberList| -> HelperResult<Dynamic> {
        check_numbers("mode", l.items())?;
        Ok(mode(l.items()))
    });

    engine.register_fn("shamir_combine", |shares: Array| shamir_combine(&shares));

    engine.register_fn(
        "aes_gcm_encrypt",
        |key: ImmutableString, nonce: ImmutableString, plaintext: ImmutableString| {
            aes_gcm_encrypt(&key, &nonce, plaintext.as_bytes())
        },
    );
    engine.register_fn(
        "aes_gcm_encrypt",
        |key: ImmutableString, nonce: ImmutableString, plaintext: Blob| {
            aes_gcm_encrypt(&key, &nonce, &plaintext)
        },
    );
    engine.register_fn(
        "aes_gcm_decrypt",
        |key: ImmutableString, nonce: ImmutableString, ciphertext: ImmutableString| {
            let plaintext = aes_gcm_decrypt("aes_gcm_decrypt", &key, &nonce, &ciphertext)?;
            match String::from_utf8(plaintext) {
                Ok(text) => Ok(text),
                Err(e) => {
                    drop(Zeroizing::new(e.into_bytes()));
                    fail(
                        "aes_gcm_decrypt",
                        "the plaintext is not UTF-8 (use aes_gcm_decrypt_blob)",
                    )
                }
            }
        },
    );
    engine.register_fn(
        "aes_gcm_decrypt_blob",
        |key: ImmutableString, nonce: ImmutableString, ciphertext: ImmutableString| {
            aes_gcm_decrypt("aes_gcm_decrypt_blob", &key, &nonce, &ciphertext)
        },
    );

    register_aead(engine);
    register_collections(engine);

    match rng {
        Some(rng) => {
            let state = Arc::new(Mutex::new(rng));
            let ints = Arc::clone(&state);
            engine.register_fn("random_int", move |lo: INT, hi: INT| -> HelperResult<INT> {
                let Ok(mut rng) = ints.lock() else {
                    return fail("random_int", "the RNG is unavailable");
                };
                rng.int_in(lo, hi)
                    .map_or_else(|| fail("random_int", "lo is greater than hi"), Ok)
            });
            engine.register_fn("random_float", move || -> HelperResult<FLOAT> {
                let Ok(mut rng) = state.lock() else {
                    return fail("random_float", "the RNG is unavailable");
                };
                Ok(rng.float())
            });
        }
        None => {
            const NO_RNG: &str = "the manifest grants no seeded RNG; scripts are deterministic";
            engine.register_fn("random_int", |_: INT, _: INT| -> HelperResult<INT> {
                fail("random_int", NO_RNG)
            });
            engine.register_fn("random_float", || -> HelperResult<FLOAT> {
                fail("random_float", NO_RNG)
            });
        }
    }

    // `sleep` would block on the clock (and the sandbox forbids the system call anyway).
    engine.register_fn("sleep", |_: INT| -> HelperResult<()> {
        fail("sleep", "scripts have no clock")
    });
    engine.register_fn("sleep", |_: FLOAT| -> HelperResult<()> {
        fail("sleep", "scripts have no clock")
    });
}

/// Decodes a hex string (either case) into a blob.
fn decode_hex(helper: &str, text: &str) -> HelperResult<Blob> {
    match hex::decode(text) {
        Ok(bytes) => Ok(bytes),
        Err(e) => fail(helper, format_args!("not a hex string: {e}")),
    }
}

/// The hash of an element that [`intersection`] can compare: an integer, or a string
/// read in place (no copy, no reference count touched: with a million strings, those
/// writes are much of the time).
fn key_hash(helper: &str, state: &RandomState, value: &Dynamic) -> HelperResult<u64> {
    if let Ok(i) = value.as_int() {
        Ok(state.hash_one((0u8, i)))
    } else if let Some(s) = value.read_lock::<ImmutableString>() {
        Ok(state.hash_one((1u8, s.as_str())))
    } else {
        fail(
            helper,
            format_args!(
                "elements must be strings or integers, not {}",
                value.type_name()
            ),
        )
    }
}

/// Whether two elements are the same integer or the same string (no coercion).
fn same_key(x: &Dynamic, y: &Dynamic) -> bool {
    if let (Ok(a), Ok(b)) = (x.as_int(), y.as_int()) {
        return a == b;
    }
    match (
        x.read_lock::<ImmutableString>(),
        y.read_lock::<ImmutableString>(),
    ) {
        (Some(a), Some(b)) => a.as_str() == b.as_str(),
        _ => false,
    }
}

/// `b`'s distinct elements as indices into `b`, hashed with a per-process random key (a
/// party cannot pick strings that collide), for [`intersection`] and
/// [`intersection_size`].
struct KeySet<'b> {
    b: &'b Array,
    state: RandomState,
    table: hashbrown::HashTable<usize>,
}

impl<'b> KeySet<'b> {
    fn of(helper: &str, b: &'b Array) -> HelperResult<Self> {
        let state = RandomState::new();
        let mut table = hashbrown::HashTable::with_capacity(b.len());
        for (index, value) in b.iter().enumerate() {
            let hash = key_hash(helper, &state, value)?;
            if let hashbrown::hash_table::Entry::Vacant(slot) = table.entry(
                hash,
                |&j| b.get(j).is_some_and(|k| same_key(k, value)),
                // Every element in the table was hashed once already.
                |&j| b.get(j).map_or(0, |k| key_hash("", &state, k).unwrap_or(0)),
            ) {
                slot.insert(index);
            }
        }
        Ok(Self { b, state, table })
    }

    /// Whether `value` is in the set; a found element is taken out, so a repeated
    /// element of `a` matches once.
    fn take(&mut self, helper: &str, value: &Dynamic) -> HelperResult<bool> {
        let hash = key_hash(helper, &self.state, value)?;
        let b = self.b;
        match self
            .table
            .find_entry(hash, |&j| b.get(j).is_some_and(|k| same_key(k, value)))
        {
            Ok(found) => {
                found.remove();
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }
}

/// The distinct elements of `a` that are also in `b`, in the order of their first
/// appearance in `a`.
fn intersection(helper: &str, a: &Array, b: &Array) -> HelperResult<Array> {
    let mut other = KeySet::of(helper, b)?;
    let mut common = Array::new();
    for value in a {
        if other.take(helper, value)? {
            common.push(value.clone());
        }
    }
    Ok(common)
}

/// The number of distinct elements of `a` that are also in `b` (the length of
/// [`intersection`], without building it).
fn intersection_size(helper: &str, a: &Array, b: &Array) -> HelperResult<usize> {
    let mut other = KeySet::of(helper, b)?;
    let mut count = 0;
    for value in a {
        if other.take(helper, value)? {
            count += 1;
        }
    }
    Ok(count)
}

/// `b`'s distinct strings as indices into the list, hashed as [`KeySet`] hashes them:
/// the set helpers on two [`StringList`]s, without a Rhai value per element.
struct ListSet<'b> {
    b: &'b StringList,
    state: RandomState,
    table: hashbrown::HashTable<u32>,
}

impl<'b> ListSet<'b> {
    fn of(b: &'b StringList) -> Self {
        let state = RandomState::new();
        let mut table = hashbrown::HashTable::with_capacity(b.len());
        let at = |j: u32| b.get(j as usize).unwrap_or_default();
        for (index, s) in b.iter().enumerate() {
            let Ok(index) = u32::try_from(index) else {
                break; // unreachable: a list holds fewer than 2^32 strings
            };
            let hash = state.hash_one(s);
            if let hashbrown::hash_table::Entry::Vacant(slot) =
                table.entry(hash, |&j| at(j) == s, |&j| state.hash_one(at(j)))
            {
                slot.insert(index);
            }
        }
        Self { b, state, table }
    }

    /// Whether `s` is in the set; a found string is taken out (see [`KeySet::take`]).
    fn take(&mut self, s: &str) -> bool {
        let b = self.b;
        match self.table.find_entry(self.state.hash_one(s), |&j| {
            b.get(j as usize).unwrap_or_default() == s
        }) {
            Ok(found) => {
                found.remove();
                true
            }
            Err(_) => false,
        }
    }
}

/// `intersection` of two lists: a list, in `a`'s order, each string once.
fn list_intersection(a: &StringList, b: &StringList) -> HelperResult<StringList> {
    let mut other = ListSet::of(b);
    StringList::from_strs(a.iter().filter(|s| other.take(s))).map_err(Into::into)
}

/// `intersection_size` of two lists.
fn list_intersection_size(a: &StringList, b: &StringList) -> usize {
    let mut other = ListSet::of(b);
    a.iter().filter(|s| other.take(s)).count()
}

/// The set helpers on [`StringList`]s (and on a list and an array, through the array).
fn register_list_sets(engine: &mut Engine) {
    const I: &str = "intersection";
    const N: &str = "intersection_size";
    let size = |n: usize| INT::try_from(n).unwrap_or(INT::MAX);
    engine.register_fn(I, |a: &mut StringList, b: StringList| {
        list_intersection(a, &b)
    });
    engine.register_fn(I, |a: &mut StringList, b: Array| {
        intersection(I, &a.to_array(), &b)
    });
    engine.register_fn(I, |a: &mut Array, b: StringList| {
        intersection(I, a, &b.to_array())
    });
    engine.register_fn(N, move |a: &mut StringList, b: StringList| {
        size(list_intersection_size(a, &b))
    });
    engine.register_fn(
        N,
        move |a: &mut StringList, b: Array| -> HelperResult<INT> {
            Ok(size(intersection_size(N, &a.to_array(), &b)?))
        },
    );
    engine.register_fn(
        N,
        move |a: &mut Array, b: StringList| -> HelperResult<INT> {
            Ok(size(intersection_size(N, a, &b.to_array())?))
        },
    );
    // A number list beside a string list or an array: through arrays (a number list
    // first is forwarded, `lists`).
    engine.register_fn(I, |a: &mut Array, b: NumberList| {
        intersection(I, a, &b.to_array())
    });
    engine.register_fn(I, |a: &mut StringList, b: NumberList| {
        intersection(I, &a.to_array(), &b.to_array())
    });
    engine.register_fn(
        N,
        move |a: &mut Array, b: NumberList| -> HelperResult<INT> {
            Ok(size(intersection_size(N, a, &b.to_array())?))
        },
    );
    engine.register_fn(
        N,
        move |a: &mut StringList, b: NumberList| -> HelperResult<INT> {
            Ok(size(intersection_size(N, &a.to_array(), &b.to_array())?))
        },
    );
    engine.register_fn("sorted", |a: &mut StringList| -> HelperResult<StringList> {
        let mut order: Vec<&str> = a.iter().collect();
        order.sort_unstable();
        StringList::from_strs(order).map_err(Into::into)
    });
    engine.register_fn("distinct", |a: StringList| -> HelperResult<StringList> {
        let state = RandomState::new();
        let mut seen = hashbrown::HashTable::<&str>::with_capacity(a.len());
        let mut out = Vec::with_capacity(a.len());
        for s in a.iter() {
            let hash = state.hash_one(s);
            if let hashbrown::hash_table::Entry::Vacant(slot) =
                seen.entry(hash, |t| *t == s, |t| state.hash_one(*t))
            {
                slot.insert(s);
                out.push(s);
            }
        }
        StringList::from_strs(out).map_err(Into::into)
    });
    engine.register_fn(
        "is_member",
        |a: &mut StringList, v: Dynamic| -> HelperResult<bool> {
            // `Atom` refuses what cannot be compared, as for arrays.
            Ok(match Atom::of("is_member", &v)? {
                Atom::Str(w) => a.iter().any(|s| s == w.as_str()),
                _ => false,
            })
        },
    );
}

/// One element as a float: an integer or a finite float.
fn number(helper: &str, v: &Dynamic) -> HelperResult<f64> {
    // The type is tested first: a failed `as_int`/`as_float` builds its error from the
    // value's type name, which a million floats would pay for.
    let (int, float) = if v.is_int() {
        (v.as_int().ok(), None)
    } else if v.is_float() {
        (None, v.as_float().ok())
    } else {
        (v.as_int().ok(), v.as_float().ok())
    };
    match (int, float) {
        #[allow(clippy::cast_precision_loss)] // documented: statistics are in f64
        (Some(i), _) => Ok(i as f64),
        (None, Some(f)) if f.is_finite() => Ok(f),
        (None, Some(_)) => fail(helper, "the array holds a non-finite float"),
        (None, None) => fail(
            helper,
            format_args!("elements must be numbers, not {}", v.type_name()),
        ),
    }
}

/// The elements of `a` as floats; integers and finite floats only, at least one.
fn numbers(helper: &str, a: &[Dynamic]) -> HelperResult<Vec<f64>> {
    if a.is_empty() {
        return fail(helper, "the array is empty");
    }
    a.iter().map(|v| number(helper, v)).collect()
}

/// Checks what [`numbers`] checks, without building the vector: the statistics of a
/// number list then read its elements in place.
fn check_numbers(helper: &str, a: &[Dynamic]) -> HelperResult<()> {
    if a.is_empty() {
        return fail(helper, "the array is empty");
    }
    a.iter().try_for_each(|v| number(helper, v).map(drop))
}

/// The mean of a slice that [`check_numbers`] accepts, checked and summed in one pass
/// (the same sum as [`mean_of`] over [`floats`], to the bit).
fn checked_mean(helper: &str, a: &[Dynamic]) -> HelperResult<f64> {
    if a.is_empty() {
        return fail(helper, "the array is empty");
    }
    let mut bad = None;
    let m = mean_of(a.iter().map_while(|v| match number(helper, v) {
        Ok(x) => Some(x),
        Err(e) => {
            bad = Some(e);
            None
        }
    }));
    bad.map_or(Ok(m), Err)
}

/// The elements of a slice checked by [`check_numbers`], as floats.
fn floats(a: &[Dynamic]) -> impl Iterator<Item = f64> + '_ {
    a.iter().map(|v| super::numbers::as_float(v).unwrap_or(0.0))
}

/// Arithmetic mean of a non-empty slice.
fn mean(xs: &[f64]) -> f64 {
    mean_of(xs.iter().copied())
}

/// Arithmetic mean of a non-empty sequence, in order (the same sum as [`mean`] of the
/// same elements, to the bit).
fn mean_of(xs: impl Iterator<Item = f64>) -> f64 {
    // Neumaier summation keeps the mean of many large integers exact enough.
    let (mut sum, mut compensation, mut count) = (0.0_f64, 0.0_f64, 0_usize);
    for x in xs {
        count += 1;
        let t = sum + x;
        if sum.abs() >= x.abs() {
            compensation += (sum - t) + x;
        } else {
            compensation += (x - t) + sum;
        }
        sum = t;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = count as f64;
    (sum + compensation) / n
}

/// Median of a non-empty vector: the middle element, or the mean of the two middle ones.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[mid]
    } else {
        xs[mid - 1] / 2.0 + xs[mid] / 2.0
    }
}

/// Population standard deviation of a non-empty slice.
fn stddev(xs: &[f64]) -> f64 {
    let m = mean(xs);
    let squares: Vec<f64> = xs.iter().map(|x| (x - m) * (x - m)).collect();
    mean(&squares).sqrt()
}

/// The most frequent element of a non-empty array of numbers (checked by [`numbers`]),
/// the numerically smallest one on a tie, returned as it appears in the array.
fn mode(a: &[Dynamic]) -> Dynamic {
    let mut sorted: Vec<(f64, &Dynamic)> = a
        .iter()
        .map(|v| {
            #[allow(clippy::cast_precision_loss)]
            let x = v
                .as_int()
                .map_or_else(|_| v.as_float().unwrap_or(0.0), |i| i as f64);
            (x, v)
        })
        .collect();
    sorted.sort_by(|l, r| l.0.total_cmp(&r.0));
    let mut best: Option<(usize, &Dynamic)> = None;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        if best.is_none_or(|(count, _)| j - i > count) {
            best = Some((j - i, sorted[i].1));
        }
        i = j;
    }
    best.map_or(Dynamic::UNIT, |(_, v)| v.clone())
}

/// Combines GF(256) Shamir shares (vsss-rs's byte encoding: one identifier byte `x`,
/// non-zero and distinct, then one byte per secret byte) into the secret, as hex.
///
/// Fewer shares than the split's threshold give a wrong secret, not an error: that is
/// how Shamir's scheme works. Scripts that need to detect it check the secret (e.g. by
/// decrypting a known ciphertext with it).
fn shamir_combine(shares: &Array) -> HelperResult<String> {
    const HELPER: &str = "shamir_combine";
    if shares.len() < 2 {
        return fail(HELPER, "at least two shares are needed");
    }
    if shares.len() > 255 {
        return fail(HELPER, "at most 255 shares");
    }
    let mut bytes: Vec<Zeroizing<Vec<u8>>> = Vec::with_capacity(shares.len());
    for share in shares {
        let decoded = if let Some(text) = share.read_lock::<ImmutableString>() {
            decode_hex(HELPER, &text)?
        } else if let Some(blob) = share.read_lock::<Blob>() {
            blob.clone()
        } else {
            return fail(HELPER, "each share must be a hex string or a blob");
        };
        bytes.push(Zeroizing::new(decoded));
    }
    let len = bytes[0].len();
    if len < 2 || bytes.iter().any(|b| b.len() != len) {
        return fail(
            HELPER,
            "shares must all have the same length: one identifier byte and at least one value byte",
        );
    }
    let mut ids = HashSet::new();
    for b in &bytes {
        if b[0] == 0 || !ids.insert(b[0]) {
            return fail(HELPER, "share identifiers must be non-zero and distinct");
        }
    }
    let plain: Vec<Vec<u8>> = bytes.iter().map(|b| b.to_vec()).collect();
    let plain = Zeroizing::new(plain);
    match vsss_rs::Gf256::combine_bytes(&plain[..]) {
        Ok(secret) => {
            let secret = Zeroizing::new(secret);
            Ok(hex::encode(&secret[..]))
        }
        Err(e) => fail(HELPER, e),
    }
}

/// The two AES-GCM key sizes the helpers accept.
enum GcmCipher {
    Aes128(Box<Aes128Gcm>),
    Aes256(Box<Aes256Gcm>),
}

impl GcmCipher {
    fn new(helper: &str, key_hex: &str) -> HelperResult<Self> {
        let key = Zeroizing::new(decode_hex(helper, key_hex)?);
        match key.len() {
            16 => Aes128Gcm::new_from_slice(&key)
                .map(|c| Self::Aes128(Box::new(c)))
                .or_else(|_| fail(helper, "bad key")),
            32 => Aes256Gcm::new_from_slice(&key)
                .map(|c| Self::Aes256(Box::new(c)))
                .or_else(|_| fail(helper, "bad key")),
            n => fail(
                helper,
                format_args!("the key must be 16 or 32 bytes (AES-128/256), not {n}"),
            ),
        }
    }
}

/// Decodes a 12-byte AES-GCM nonce.
fn gcm_nonce(helper: &str, nonce_hex: &str) -> HelperResult<[u8; 12]> {
    let nonce = decode_hex(helper, nonce_hex)?;
    match <[u8; 12]>::try_from(nonce.as_slice()) {
        Ok(n) => Ok(n),
        Err(_) => fail(
            helper,
            format_args!("the nonce must be 12 bytes, not {}", nonce.len()),
        ),
    }
}

/// AES-GCM encryption with empty associated data; hex of `ciphertext ‖ tag`.
///
/// The caller must never use a nonce twice under one key (a repeat reveals the XOR of
/// the plaintexts and the authentication key). Scripts have no randomness to draw nonces
/// from, so the library's functions use [`aead_seal`] instead.
fn aes_gcm_encrypt(key_hex: &str, nonce_hex: &str, plaintext: &[u8]) -> HelperResult<String> {
    const HELPER: &str = "aes_gcm_encrypt";
    let cipher = GcmCipher::new(HELPER, key_hex)?;
    let nonce = gcm_nonce(HELPER, nonce_hex)?;
    let sealed = match &cipher {
        GcmCipher::Aes128(c) => c.encrypt(&nonce.into(), plaintext),
        GcmCipher::Aes256(c) => c.encrypt(&nonce.into(), plaintext),
    };
    match sealed {
        Ok(ct) => Ok(hex::encode(ct)),
        Err(_) => fail(HELPER, "encryption failed"),
    }
}

/// AES-GCM decryption with empty associated data of hex `ciphertext ‖ tag`.
fn aes_gcm_decrypt(
    helper: &str,
    key_hex: &str,
    nonce_hex: &str,
    ciphertext_hex: &str,
) -> HelperResult<Vec<u8>> {
    let cipher = GcmCipher::new(helper, key_hex)?;
    let nonce = gcm_nonce(helper, nonce_hex)?;
    let ciphertext = decode_hex(helper, ciphertext_hex)?;
    let opened = match &cipher {
        GcmCipher::Aes128(c) => c.decrypt(&nonce.into(), ciphertext.as_slice()),
        GcmCipher::Aes256(c) => c.decrypt(&nonce.into(), ciphertext.as_slice()),
    };
    opened.or_else(|_| {
        fail(
            helper,
            "authentication failed (wrong key, nonce or ciphertext)",
        )
    })
}

/// Registers `aead_seal`, `aead_open`, `aead_open_blob`, the base64 helpers and
/// `blob_to_string`.
fn register_aead(engine: &mut Engine) {
    engine.register_fn(
        "aead_seal",
        |key: ImmutableString, plaintext: ImmutableString, aad: ImmutableString| {
            aead_seal(&key, plaintext.as_bytes(), aad.as_bytes())
        },
    );
    engine.register_fn(
        "aead_seal",
        |key: ImmutableString, plaintext: Blob, aad: ImmutableString| {
            let plaintext = Zeroizing::new(plaintext);
            aead_seal(&key, &plaintext, aad.as_bytes())
        },
    );
    engine.register_fn(
        "aead_open",
        |key: ImmutableString, sealed: ImmutableString, aad: ImmutableString| {
            let plaintext = aead_open("aead_open", &key, &sealed, aad.as_bytes())?;
            utf8("aead_open", plaintext, "use aead_open_blob")
        },
    );
    engine.register_fn(
        "aead_open_blob",
        |key: ImmutableString, sealed: ImmutableString, aad: ImmutableString| {
            aead_open("aead_open_blob", &key, &sealed, aad.as_bytes())
        },
    );

    engine.register_fn("to_base64", |s: ImmutableString| {
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
    });
    engine.register_fn("to_base64", |b: Blob| {
        base64::engine::general_purpose::STANDARD.encode(&b)
    });
    engine.register_fn("from_base64", |s: ImmutableString| -> HelperResult<Blob> {
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .or_else(|e| {
                fail(
                    "from_base64",
                    format_args!("not padded standard base64: {e}"),
                )
            })
    });
    engine.register_fn("blob_to_string", |b: Blob| {
        utf8("blob_to_string", b, "keep it as a blob")
    });
}

/// Registers `sorted`, `distinct`, `is_member` and `numeric_values`.
fn register_collections(engine: &mut Engine) {
    // `&mut`: Rhai passes a variable in place instead of copying the whole array (or map)
    // for every call; none of these helpers modifies its argument.
    engine.register_fn("sorted", |a: &mut Array| sorted(a));
    engine.register_fn("distinct", |a: Array| -> HelperResult<Array> {
        let mut seen = HashSet::with_capacity(a.len());
        let mut out = Array::new();
        for value in a {
            if seen.insert(Atom::of("distinct", &value)?) {
                out.push(value);
            }
        }
        Ok(out)
    });
    engine.register_fn(
        "is_member",
        |a: &mut Array, v: Dynamic| -> HelperResult<bool> {
            let wanted = Atom::of("is_member", &v)?;
            for value in a.iter() {
                // Strings, the common case, compare in place; every other element goes
                // through `Atom` (which also refuses elements that cannot be compared).
                if let Some(text) = value.read_lock::<ImmutableString>() {
                    if matches!(&wanted, Atom::Str(w) if *w == *text) {
                        return Ok(true);
                    }
                } else if Atom::of("is_member", value)? == wanted {
                    return Ok(true);
                }
            }
            Ok(false)
        },
    );
    engine.register_fn("numeric_values", |m: &mut Map| numeric_values(m));
    engine.register_fn("deep_equal", |x: Dynamic, y: Dynamic| deep_equal(&x, &y, 0));
}

/// How deep [`deep_equal`] descends (inputs are at most 100 levels deep).
const MAX_EQUAL_DEPTH: usize = 128;

/// Structural equality: integers and floats compare by value (an integer equals a float
/// only if the float is exactly that integer), strings, booleans, characters, `()` and
/// blobs by type and content, arrays element by element in order, maps by their key sets
/// and the values under each key. Values of different kinds are unequal, never an error.
fn deep_equal(x: &Dynamic, y: &Dynamic, depth: usize) -> HelperResult<bool> {
    const HELPER: &str = "deep_equal";
    if depth > MAX_EQUAL_DEPTH {
        return fail(
            HELPER,
            format_args!("the values are nested deeper than {MAX_EQUAL_DEPTH} levels"),
        );
    }
    if let (Ok(a), Ok(b)) = (x.as_int(), y.as_int()) {
        return Ok(a == b);
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let int_float = |i: INT, f: FLOAT| {
        f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63) && f as INT == i
    };
    match (x.as_int(), x.as_float(), y.as_int(), y.as_float()) {
        (_, Ok(a), _, Ok(b)) => return Ok(a == b),
        (Ok(i), _, _, Ok(f)) | (_, Ok(f), Ok(i), _) => return Ok(int_float(i, f)),
        _ => {}
    }
    if x.is::<StringList>() || y.is::<StringList>() {
        // A list equals the array of the same strings; it is never equal to anything else.
        return Ok(
            match (StringList::strings_of(x), StringList::strings_of(y)) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        );
    }
    if is_list(x) || is_list(y) {
        // A number list compares as the array it stands for.
        let as_array = |v: &Dynamic| list_as_array(v).map(Dynamic::from_array);
        let (x, y) = (
            as_array(x).unwrap_or_else(|| x.clone()),
            as_array(y).unwrap_or_else(|| y.clone()),
        );
        return deep_equal(&x, &y, depth);
    }
    if x.type_id() != y.type_id() {
        return Ok(false);
    }
    if x.is_unit() {
        return Ok(true);
    }
    if let (Ok(a), Ok(b)) = (x.as_bool(), y.as_bool()) {
        return Ok(a == b);
    }
    if let (Ok(a), Ok(b)) = (x.as_char(), y.as_char()) {
        return Ok(a == b);
    }
    if let (Some(a), Some(b)) = (
        x.read_lock::<ImmutableString>(),
        y.read_lock::<ImmutableString>(),
    ) {
        return Ok(*a == *b);
    }
    if let (Some(a), Some(b)) = (x.read_lock::<Blob>(), y.read_lock::<Blob>()) {
        return Ok(*a == *b);
    }
    if let (Some(a), Some(b)) = (x.read_lock::<Array>(), y.read_lock::<Array>()) {
        if a.len() != b.len() {
            return Ok(false);
        }
        for (l, r) in a.iter().zip(b.iter()) {
            if !deep_equal(l, r, depth + 1)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if let (Some(a), Some(b)) = (x.read_lock::<Map>(), y.read_lock::<Map>()) {
        if a.len() != b.len() {
            return Ok(false);
        }
        for (key, l) in a.iter() {
            let Some(r) = b.get(key) else {
                return Ok(false);
            };
            if !deep_equal(l, r, depth + 1)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    fail(
        HELPER,
        format_args!("values of type {} cannot be compared", x.type_name()),
    )
}

/// A string from bytes that must be UTF-8; the bytes are wiped if they are not.
fn utf8(helper: &str, bytes: Vec<u8>, hint: &str) -> HelperResult<String> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            fail(helper, format_args!("the bytes are not UTF-8 ({hint})"))
        }
    }
}

/// The domain-separation prefix of [`synthetic_nonce`].
const AEAD_NONCE_LABEL: &[u8] = b"arbiter/v1/aead-nonce\0";

/// The synthetic nonce of `aead_seal`: the first 12 bytes of
/// `HMAC-SHA256(key, "arbiter/v1/aead-nonce\0" ‖ len(aad) as u64 big-endian ‖ aad ‖ plaintext)`.
///
/// The length prefix keeps `(aad, plaintext)` pairs apart that concatenate to the same
/// bytes. Same key, aad and plaintext give the same nonce (and ciphertext); different
/// plaintexts give different nonces except with probability about 2^-96 per pair.
fn synthetic_nonce(key: &[u8], aad: &[u8], plaintext: &[u8]) -> HelperResult<[u8; 12]> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return fail("aead_seal", "bad key");
    };
    mac.update(AEAD_NONCE_LABEL);
    mac.update(&(aad.len() as u64).to_be_bytes());
    mac.update(aad);
    mac.update(plaintext);
    let tag = Zeroizing::new(mac.finalize().into_bytes());
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&tag[..12]);
    Ok(nonce)
}

/// Decodes a 32-byte AES-256-GCM-SIV key into a wiped buffer.
fn siv_key(helper: &str, key_hex: &str) -> HelperResult<Zeroizing<Vec<u8>>> {
    let key = Zeroizing::new(decode_hex(helper, key_hex)?);
    if key.len() != 32 {
        return fail(
            helper,
            format_args!(
                "the key must be 32 bytes (AES-256-GCM-SIV), not {}",
                key.len()
            ),
        );
    }
    Ok(key)
}

/// AES-256-GCM-SIV (RFC 8452) with the synthetic nonce of [`synthetic_nonce`]; lowercase
/// hex of `nonce ‖ ciphertext ‖ tag`.
fn aead_seal(key_hex: &str, plaintext: &[u8], aad: &[u8]) -> HelperResult<String> {
    const HELPER: &str = "aead_seal";
    let key = siv_key(HELPER, key_hex)?;
    let nonce = synthetic_nonce(&key, aad, plaintext)?;
    let ciphertext = siv_encrypt(HELPER, &key, nonce, plaintext, aad)?;
    let mut sealed = Vec::with_capacity(nonce.len() + ciphertext.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    Ok(hex::encode(sealed))
}

/// AES-256-GCM-SIV encryption with an explicit nonce: `ciphertext ‖ tag`.
fn siv_encrypt(
    helper: &str,
    key: &[u8],
    nonce: [u8; 12],
    plaintext: &[u8],
    aad: &[u8],
) -> HelperResult<Vec<u8>> {
    let Ok(cipher) = Aes256GcmSiv::new_from_slice(key) else {
        return fail(helper, "bad key");
    };
    cipher
        .encrypt(
            &nonce.into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .or_else(|_| fail(helper, "encryption failed (the plaintext is too long)"))
}

/// Opens the output of [`aead_seal`] under `key_hex` and `aad`.
fn aead_open(helper: &str, key_hex: &str, sealed_hex: &str, aad: &[u8]) -> HelperResult<Vec<u8>> {
    let key = siv_key(helper, key_hex)?;
    let sealed = decode_hex(helper, sealed_hex)?;
    if sealed.len() < 12 + 16 {
        return fail(
            helper,
            format_args!(
                "the sealed value is {} bytes, shorter than a nonce (12) and a tag (16)",
                sealed.len()
            ),
        );
    }
    let (nonce, ciphertext) = sealed.split_at(12);
    let Ok(nonce) = <[u8; 12]>::try_from(nonce) else {
        return fail(helper, "bad nonce");
    };
    let Ok(cipher) = Aes256GcmSiv::new_from_slice(&key) else {
        return fail(helper, "bad key");
    };
    cipher
        .decrypt(
            &nonce.into(),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .or_else(|_| {
            fail(
                helper,
                "authentication failed (wrong key, associated data or ciphertext)",
            )
        })
}

/// An element that `distinct` and `is_member` compare: strings, integers, floats (by
/// value, `-0.0` equal to `0.0`), booleans, characters and `()`. An integer never equals
/// a float or a string.
#[derive(PartialEq, Eq, Hash)]
enum Atom {
    Unit,
    Bool(bool),
    Int(INT),
    Float(u64),
    Char(char),
    Str(ImmutableString),
}

impl Atom {
    fn of(helper: &str, value: &Dynamic) -> HelperResult<Self> {
        if value.is_unit() {
            Ok(Self::Unit)
        } else if let Ok(b) = value.as_bool() {
            Ok(Self::Bool(b))
        } else if let Ok(i) = value.as_int() {
            Ok(Self::Int(i))
        } else if let Ok(f) = value.as_float() {
            if f.is_nan() {
                return fail(helper, "NaN cannot be compared");
            }
            // -0.0 == 0.0: one representation for both.
            Ok(Self::Float(if f == 0.0 { 0 } else { f.to_bits() }))
        } else if let Ok(c) = value.as_char() {
            Ok(Self::Char(c))
        } else if let Some(s) = value.read_lock::<ImmutableString>() {
            Ok(Self::Str(s.clone()))
        } else {
            fail(
                helper,
                format_args!(
                    "elements must be strings, numbers, booleans, characters or (), not {}",
                    value.type_name()
                ),
            )
        }
    }
}

/// A sorted copy of an array of strings (bytewise) or of numbers (numerically, integers
/// and floats together; NaN refused). The sort is stable.
fn sorted(a: &Array) -> HelperResult<Array> {
    const HELPER: &str = "sorted";
    let Some(first) = a.first() else {
        return Ok(Array::new());
    };
    if first.is_string() {
        let mut keyed = Vec::with_capacity(a.len());
        for v in a {
            let Some(s) = v.read_lock::<ImmutableString>().map(|s| s.clone()) else {
                return fail(
                    HELPER,
                    format_args!(
                        "elements must be all strings or all numbers; found a string and a {}",
                        v.type_name()
                    ),
                );
            };
            keyed.push(s);
        }
        keyed.sort();
        return Ok(keyed.into_iter().map(Dynamic::from).collect());
    }
    let mut keyed: Vec<(f64, &Dynamic)> = Vec::with_capacity(a.len());
    for v in a {
        #[allow(clippy::cast_precision_loss)] // ordering only; the values are returned as given
        let x = if let Ok(i) = v.as_int() {
            i as f64
        } else if let Ok(f) = v.as_float() {
            if f.is_nan() {
                return fail(HELPER, "NaN cannot be sorted");
            }
            f
        } else {
            return fail(
                HELPER,
                format_args!(
                    "elements must be all strings or all numbers, not {}",
                    v.type_name()
                ),
            );
        };
        keyed.push((x, v));
    }
    keyed.sort_by(|l, r| l.0.total_cmp(&r.0));
    Ok(keyed.into_iter().map(|(_, v)| v.clone()).collect())
}

/// Every number in `m`: each value is an integer, a float, or an array of them; the
/// slots are visited in key order and arrays flattened, elements kept as given. The
/// result is a number list (`lists`; an array to scripts), or an empty array when there
/// are no numbers. A slot that is already a number list is shared, not copied.
fn numeric_values(m: &Map) -> HelperResult<Dynamic> {
    const HELPER: &str = "numeric_values";
    let is_number = NumberList::is_number;
    let mut out = NumberList::default();
    for (slot, value) in m {
        if is_number(value) {
            out.push(value.clone());
        } else if let Some(list) = value.read_lock::<NumberList>() {
            out.extend_from(&list);
        } else if value.is::<StringList>() {
            // A list is never empty: its first element is a string.
            return fail(
                HELPER,
                format_args!(
                    "slot `{slot}` holds an array with a string; only numbers are allowed"
                ),
            );
        } else if let Some(items) = value.read_lock::<Array>() {
            if let Some(bad) = items.iter().find(|v| !is_number(v)) {
                return fail(
                    HELPER,
                    format_args!(
                        "slot `{slot}` holds an array with a {}; only numbers are allowed",
                        bad.type_name()
                    ),
                );
            }
            for item in items.iter() {
                out.push(item.clone());
            }
        } else {
            return fail(
                HELPER,
                format_args!(
                    "slot `{slot}` holds a {}; a number or an array of numbers is expected",
                    value.type_name()
                ),
            );
        }
    }
    Ok(if out.len() == 0 {
        Dynamic::from_array(Array::new())
    } else {
        Dynamic::from(out)
    })
}

/// The seeded RNG granted by a manifest: SHA-256 in counter mode,
/// `block_i = SHA-256("arbiter/v1/rng" ‖ seed ‖ i as u64 big-endian)`, consumed as a
/// byte stream in order (8 bytes per draw, big-endian). The same seed gives the same
/// sequence on every platform and in every version that keeps this definition.
pub(crate) struct Rng {
    seed: Zeroizing<[u8; 32]>,
    counter: u64,
    block: Zeroizing<[u8; 32]>,
    used: usize,
}

impl Rng {
    /// A generator at the start of the stream for `seed`.
    pub(crate) fn new(seed: [u8; 32]) -> Self {
        Self {
            seed: Zeroizing::new(seed),
            counter: 0,
            block: Zeroizing::new([0; 32]),
            used: 32,
        }
    }

    fn next_u64(&mut self) -> u64 {
        let mut out = [0u8; 8];
        for byte in &mut out {
            if self.used == self.block.len() {
                let mut hasher = Sha256::new();
                hasher.update(b"arbiter/v1/rng");
                hasher.update(&self.seed[..]);
                hasher.update(self.counter.to_be_bytes());
                self.block.copy_from_slice(&hasher.finalize());
                self.counter = self.counter.wrapping_add(1);
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
        u64::from_be_bytes(out)
    }

    /// Uniform in `[lo, hi]` (rejection sampling, no modulo bias); `None` if `lo > hi`.
    pub(crate) fn int_in(&mut self, lo: INT, hi: INT) -> Option<INT> {
        if lo > hi {
            return None;
        }
        // The span minus one fits in u64 for any pair of i64.
        let span_minus_one = hi.abs_diff(lo);
        if span_minus_one == u64::MAX {
            return Some(lo.wrapping_add_unsigned(self.next_u64()));
        }
        let span = span_minus_one + 1;
        let zone = u64::MAX - (u64::MAX - span + 1) % span;
        loop {
            let x = self.next_u64();
            if x <= zone {
                return Some(lo.wrapping_add_unsigned(x % span));
            }
        }
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub(crate) fn float(&mut self) -> FLOAT {
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next_u64() >> 11) as f64;
        x / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(values: &[Dynamic]) -> Array {
        values.to_vec()
    }

    #[test]
    fn statistics() {
        let xs = [1.0, 2.0, 2.0, 3.0, 10.0];
        assert_eq!(mean(&xs), 3.6);
        assert_eq!(median(xs.to_vec()), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(stddev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]), 2.0);
        let a = arr(&[3.into(), 1.into(), 3.into(), 1.into(), 2.into()]);
        assert_eq!(mode(&a).as_int().unwrap(), 1);
        assert!(numbers("mean", &Array::new()).is_err());
        assert!(numbers("mean", &arr(&["x".into()])).is_err());
        // Large integers: the mean stays exact where a naive f64 sum would not.
        let big = [9_007_199_254_740_993.0, 1.0, -9_007_199_254_740_993.0];
        assert!((mean(&big) - 1.0 / 3.0).abs() < 1.0);
    }

    #[test]
    fn intersections() {
        let a = arr(&["x".into(), "y".into(), "y".into(), 3.into(), "z".into()]);
        let b = arr(&["y".into(), 3.into(), "q".into(), "x".into()]);
        let common = intersection("t", &a, &b).unwrap();
        let shown: Vec<String> = common.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["x", "y", "3"]);
        assert_eq!(intersection_size("t", &a, &b).unwrap(), 3);
        assert!(intersection("t", &arr(&[1.5.into()]), &b).is_err());
        assert!(intersection_size("t", &a, &arr(&[1.5.into()])).is_err());
        // Duplicates in either list count once; a large list matches element for element.
        let dup = arr(&["y".into(), "y".into(), "x".into(), "y".into()]);
        assert_eq!(intersection_size("t", &dup, &dup).unwrap(), 2);
        let many: Array = (0..10_000)
            .map(|i| Dynamic::from(format!("e{i}")))
            .collect();
        let half: Array = (5_000..15_000)
            .map(|i| Dynamic::from(format!("e{i}")))
            .collect();
        assert_eq!(intersection_size("t", &many, &half).unwrap(), 5_000);
        // An integer never equals a string of the same digits.
        assert!(
            intersection("t", &arr(&["3".into()]), &b)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn shamir_round_trip() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::from_seed([7; 32]);
        let secret = [0x42u8; 32];
        let shares = vsss_rs::Gf256::split_bytes(3, 5, secret, &mut rng).unwrap();
        let pick: Array = [0, 2, 4]
            .iter()
            .map(|&i| Dynamic::from(hex::encode(&shares[i])))
            .collect();
        assert_eq!(shamir_combine(&pick).unwrap(), hex::encode(secret));
        let blobs: Array = shares[1..4]
            .iter()
            .map(|s| Dynamic::from_blob(s.clone()))
            .collect();
        assert_eq!(shamir_combine(&blobs).unwrap(), hex::encode(secret));
        // Duplicated identifiers and ragged shares are refused.
        let dup: Array = vec![pick[0].clone(), pick[0].clone()];
        assert!(shamir_combine(&dup).is_err());
        let ragged: Array = vec![pick[0].clone(), Dynamic::from("01ab".to_string())];
        assert!(shamir_combine(&ragged).is_err());
        assert!(shamir_combine(&vec![pick[0].clone()]).is_err());
    }

    #[test]
    fn aes_gcm_round_trip_and_known_answer() {
        // NIST GCM test vector (AES-128, test case 2 of the GCM specification).
        let key = "00000000000000000000000000000000";
        let nonce = "000000000000000000000000";
        let ct = aes_gcm_encrypt(key, nonce, &[0u8; 16]).unwrap();
        assert_eq!(
            ct,
            "0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf"
        );
        let key256 = "11".repeat(32);
        let ct = aes_gcm_encrypt(&key256, nonce, b"attack at dawn").unwrap();
        let pt = aes_gcm_decrypt("t", &key256, nonce, &ct).unwrap();
        assert_eq!(pt, b"attack at dawn");
        let mut tampered = hex::decode(&ct).unwrap();
        tampered[0] ^= 1;
        assert!(aes_gcm_decrypt("t", &key256, nonce, &hex::encode(tampered)).is_err());
        assert!(aes_gcm_encrypt("00", nonce, b"x").is_err());
        assert!(aes_gcm_encrypt(key, "00", b"x").is_err());
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = Rng::new([1; 32]);
        let mut b = Rng::new([1; 32]);
        let mut c = Rng::new([2; 32]);
        let xs: Vec<INT> = (0..100).map(|_| a.int_in(-3, 3).unwrap()).collect();
        let ys: Vec<INT> = (0..100).map(|_| b.int_in(-3, 3).unwrap()).collect();
        let zs: Vec<INT> = (0..100).map(|_| c.int_in(-3, 3).unwrap()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!(xs.iter().all(|x| (-3..=3).contains(x)));
        for v in -3..=3 {
            assert!(xs.contains(&v), "{v} never drawn");
        }
        assert_eq!(a.int_in(5, 5), Some(5));
        assert_eq!(a.int_in(6, 5), None);
        assert!(a.int_in(INT::MIN, INT::MAX).is_some());
        let f = a.float();
        assert!((0.0..1.0).contains(&f));
    }

    #[test]
    fn aead_siv_known_answers() {
        // RFC 8452, appendix C.2 (AEAD_AES_256_GCM_SIV), through the helpers' own cipher
        // path and, with the nonce in front, through `aead_open`.
        let key = format!("01{}", "00".repeat(31));
        let key_bytes = hex::decode(&key).unwrap();
        let nonce: [u8; 12] = hex::decode("030000000000000000000000")
            .unwrap()
            .try_into()
            .unwrap();
        let vectors: [(&[u8], &[u8], &str); 3] = [
            (b"", b"", "07f5f4169bbf55a8400cd47ea6fd400f"),
            (
                b"",
                &[1, 0, 0, 0, 0, 0, 0, 0],
                "c2ef328e5c71c83b843122130f7364b761e0b97427e3df28",
            ),
            (
                &[1],
                &[2, 0, 0, 0, 0, 0, 0, 0],
                "1de22967237a813291213f267e3b452f02d01ae33e4ec854",
            ),
        ];
        for (aad, plaintext, want) in vectors {
            let ct = siv_encrypt("t", &key_bytes, nonce, plaintext, aad).unwrap();
            assert_eq!(hex::encode(&ct), want);
            let sealed = format!("{}{want}", hex::encode(nonce));
            assert_eq!(aead_open("t", &key, &sealed, aad).unwrap(), plaintext);
        }
        // The synthetic nonce and the whole sealed value, computed independently with
        // Python's hmac and cryptography's AESGCMSIV.
        let key = "11".repeat(32);
        assert_eq!(
            hex::encode(synthetic_nonce(&hex::decode(&key).unwrap(), b"ctx", b"hello").unwrap()),
            "f3e266d3e8a9d77f46694557"
        );
        assert_eq!(
            aead_seal(&key, b"hello", b"ctx").unwrap(),
            "f3e266d3e8a9d77f46694557b1391150fd6721c56e3150fee72964df8add2882c7"
        );
    }

    #[test]
    fn aead_is_deterministic_and_checks_everything() {
        let key = "22".repeat(32);
        let a = aead_seal(&key, b"same", b"").unwrap();
        assert_eq!(a, aead_seal(&key, b"same", b"").unwrap());
        let b = aead_seal(&key, b"other", b"").unwrap();
        assert_ne!(
            a[..24],
            b[..24],
            "different plaintexts get different nonces"
        );
        // The aad is bound, and length-prefixed in the nonce.
        assert_ne!(a, aead_seal(&key, b"same", b"x").unwrap());
        assert_ne!(
            synthetic_nonce(key.as_bytes(), b"ab", b"c").unwrap(),
            synthetic_nonce(key.as_bytes(), b"a", b"bc").unwrap()
        );
        assert!(aead_open("t", &key, &a, b"x").is_err());
        assert!(aead_open("t", &"33".repeat(32), &a, b"").is_err());
        let mut tampered = hex::decode(&a).unwrap();
        tampered[13] ^= 1;
        assert!(aead_open("t", &key, &hex::encode(tampered), b"").is_err());
        let short = aead_open("aead_open", &key, "00", b"")
            .unwrap_err()
            .to_string();
        assert!(
            short.contains("aead_open") && short.contains("shorter"),
            "{short}"
        );
        let bad_key = aead_seal("0011", b"x", b"").unwrap_err().to_string();
        assert!(
            bad_key.contains("aead_seal") && bad_key.contains("32 bytes"),
            "{bad_key}"
        );
        assert!(aead_seal("zz", b"x", b"").is_err());
    }

    #[test]
    fn collections() {
        let shown = |a: &Array| a.iter().map(ToString::to_string).collect::<Vec<_>>();
        let words = arr(&["pear".into(), "apple".into(), "Zed".into(), "apple".into()]);
        assert_eq!(
            shown(&sorted(&words).unwrap()),
            ["Zed", "apple", "apple", "pear"]
        );
        let nums = arr(&[3.into(), 1.5.into(), (-2).into(), 1.into()]);
        assert_eq!(shown(&sorted(&nums).unwrap()), ["-2", "1", "1.5", "3"]);
        assert!(sorted(&Array::new()).unwrap().is_empty());
        assert!(sorted(&arr(&["a".into(), 1.into()])).is_err());
        assert!(sorted(&arr(&[1.into(), "a".into()])).is_err());
        assert!(sorted(&arr(&[FLOAT::NAN.into()])).is_err());
        assert!(sorted(&arr(&[Dynamic::from_array(Array::new())])).is_err());
        let e = sorted(&arr(&[true.into()])).unwrap_err().to_string();
        assert!(e.contains("sorted: elements must be"), "{e}");

        let mixed = arr(&[
            1.into(),
            "1".into(),
            1.into(),
            1.0.into(),
            (-0.0).into(),
            0.0.into(),
        ]);
        let mut e = Engine::new_raw();
        register(&mut e, None);
        let d: Array = e
            .call_fn(
                &mut rhai::Scope::new(),
                &e.compile("fn f(a) { distinct(a) }").unwrap(),
                "f",
                (mixed.clone(),),
            )
            .unwrap();
        // An integer, a string and a float of one value are three elements; -0.0 and 0.0 one.
        assert_eq!(shown(&d[..3].to_vec()), ["1", "1", "1.0"]);
        assert!(d[1].is_string());
        assert_eq!(d.len(), 4);
        assert_eq!(d[3].as_float().unwrap().to_bits(), (-0.0_f64).to_bits());
        let member = |a: &Array, v: Dynamic| -> bool {
            e.call_fn(
                &mut rhai::Scope::new(),
                &e.compile("fn f(a, v) { is_member(a, v) }").unwrap(),
                "f",
                (a.clone(), v),
            )
            .unwrap()
        };
        assert!(member(&words, "Zed".into()));
        assert!(!member(&words, "zed".into()));
        assert!(member(&mixed, 1.into()));
        assert!(!member(&arr(&["1".into()]), 1.into()), "no coercion");
        assert!(!member(&Array::new(), 1.into()));
    }

    #[test]
    fn base64_known_answers() {
        let limits = super::super::Limits::default();
        let e = super::super::script::build_engine(&limits, None, None);
        let run = |src: &str| e.eval::<Dynamic>(src);
        // RFC 4648, section 10.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            let got = run(&format!("to_base64(\"{plain}\")")).unwrap();
            assert_eq!(got.to_string(), encoded);
            let back = run(&format!("blob_to_string(from_base64(\"{encoded}\"))")).unwrap();
            assert_eq!(back.to_string(), plain);
        }
        let got = run("let b = blob(3, 0); b[1] = 255; b[2] = 16; to_base64(b)").unwrap();
        assert_eq!(got.to_string(), "AP8Q");
        let e1 = run("from_base64(\"Zm9v!\")").unwrap_err().to_string();
        assert!(e1.contains("from_base64"), "{e1}");
        let e2 = run("blob_to_string(from_base64(\"/w==\"))")
            .unwrap_err()
            .to_string();
        assert!(
            e2.contains("blob_to_string") && e2.contains("UTF-8"),
            "{e2}"
        );
    }

    #[test]
    fn numeric_values_and_deep_equal() {
        let mut m = Map::new();
        m.insert(
            "b".into(),
            Dynamic::from_array(arr(&[2.into(), 2.5.into()])),
        );
        m.insert("a".into(), 1.into());
        let all = list_as_array(&numeric_values(&m).unwrap()).unwrap();
        let shown: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["1", "2", "2.5"]);
        m.insert("c".into(), "x".into());
        let e = numeric_values(&m).unwrap_err().to_string();
        assert!(e.contains("slot `c`") && e.contains("string"), "{e}");
        m.insert(
            "c".into(),
            Dynamic::from_array(arr(&[1.into(), true.into()])),
        );
        let e = numeric_values(&m).unwrap_err().to_string();
        assert!(e.contains("slot `c`") && e.contains("bool"), "{e}");

        // As the child decodes inputs: from JSON text straight into Rhai values.
        let j = |v: serde_json::Value| serde_json::from_str::<Dynamic>(&v.to_string()).unwrap();
        use serde_json::json;
        let eq = |a, b| deep_equal(&j(a), &j(b), 0).unwrap();
        assert!(eq(
            json!({"x": [1, 2.0, null], "y": "s"}),
            json!({"y": "s", "x": [1.0, 2, null]})
        ));
        assert!(!eq(json!({"x": [1, 2]}), json!({"x": [2, 1]})));
        assert!(!eq(json!({"x": 1}), json!({"x": 1, "y": 1})));
        assert!(!eq(json!({"x": "a"}), json!({"x": ["a"]})));
        assert!(!eq(json!(1), json!("1")));
        assert!(!eq(json!(1), json!(1.5)));
        assert!(!eq(json!(9007199254740993_i64), json!(9007199254740992.0)));
        assert!(eq(json!(null), json!(null)));
        assert!(!eq(json!(true), json!(null)));
        let mut deep = Dynamic::from_array(Array::new());
        for _ in 0..200 {
            deep = Dynamic::from_array(vec![deep]);
        }
        let e = deep_equal(&deep, &deep.clone(), 0).unwrap_err().to_string();
        assert!(e.contains("deep_equal"), "{e}");
    }

    /// The library's scripts (daemon/functions/), run in-process on the evaluation engine;
    /// the end-to-end tests run them through the daemon on a TPM.
    mod library {
        use std::collections::BTreeMap;

        use serde_json::{Value, json};

        use super::super::super::Limits;
        use super::super::super::script::{build_engine, compile, run};

        fn eval(source: &str, inputs: Value) -> Result<Value, String> {
            let limits = Limits::default();
            let engine = build_engine(&limits, None, None);
            let ast = compile(&engine, source).map_err(|f| f.message)?;
            // As in the child: arrays of strings become lists.
            let text = inputs.to_string();
            let inputs: BTreeMap<String, rhai::Dynamic> = crate::eval::lists::deserialize_slots(
                &mut serde_json::Deserializer::from_str(&text),
            )
            .unwrap();
            run(&engine, &ast, inputs, &limits).map_err(|f| f.message)
        }

        macro_rules! lib {
            ($name:literal) => {
                include_str!(concat!("../../functions/", $name, ".rhai"))
            };
        }

        #[test]
        fn statistics() {
            let inputs = json!({"a": [4, 1.5], "b": 3, "c": [1, 1]});
            assert_eq!(eval(lib!("mean"), inputs.clone()), Ok(json!(2.1)));
            assert_eq!(eval(lib!("median"), inputs.clone()), Ok(json!(1.5)));
            assert_eq!(eval(lib!("mode"), inputs.clone()), Ok(json!(1.0)));
            let sd = eval(lib!("stddev"), inputs).unwrap().as_f64().unwrap();
            let xs = [4.0, 1.5, 3.0, 1.0, 1.0];
            let m = xs.iter().sum::<f64>() / 5.0;
            let want = (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / 5.0).sqrt();
            assert!((sd - want).abs() < 1e-12, "{sd} vs {want}");
            for name in [lib!("mean"), lib!("median"), lib!("mode"), lib!("stddev")] {
                let e = eval(name, json!({"a": 1, "b": "2"})).unwrap_err();
                assert!(e.contains("slot `b`"), "{e}");
                let e = eval(name, json!({"a": [], "b": []})).unwrap_err();
                assert!(e.contains("no numbers"), "{e}");
            }
        }

        #[test]
        fn equal() {
            let e = lib!("equal");
            assert_eq!(
                eval(
                    e,
                    json!({"a": {"k": [1, "x"]}, "b": {"k": [1.0, "x"]}, "c": {"k": [1, "x"]}})
                ),
                Ok(json!({"equal": true}))
            );
            assert_eq!(
                eval(e, json!({"a": {"k": [1, "x"]}, "b": {"k": ["x", 1]}})),
                Ok(json!({"equal": false}))
            );
            assert!(
                eval(e, json!({"a": 1}))
                    .unwrap_err()
                    .contains("at least two")
            );
        }

        #[test]
        fn psi() {
            let p = lib!("psi");
            assert_eq!(
                eval(p, json!({"a": ["q", "b", "a", "b"], "b": ["b", "z", "q"]})),
                Ok(json!({"intersection": ["b", "q"], "size": 2}))
            );
            assert_eq!(
                eval(p, json!({"a": [], "b": ["z"]})),
                Ok(json!({"intersection": [], "size": 0}))
            );
            for bad in [
                json!({"a": ["x", 1], "b": []}),
                json!({"a": [1], "b": []}),
                json!({"a": "x", "b": []}),
            ] {
                let e = eval(p, bad).unwrap_err();
                assert!(e.contains("slot \"a\""), "{e}");
            }
        }

        #[test]
        fn tally() {
            let t = lib!("tally");
            assert_eq!(
                eval(
                    t,
                    json!({"v1": "yes", "v2": ["no", "maybe"], "v3": "yes", "v4": []})
                ),
                Ok(json!({"counts": {"maybe": 1, "no": 1, "yes": 2}, "ballots": 4}))
            );
            for (bad, why) in [
                (json!({"v1": 3}), "must be a string"),
                (json!({"v1": ["a", "a"]}), "more than once"),
                (json!({"v1": ["a", 1]}), "not a non-empty string"),
                (json!({"v1": ""}), "not a non-empty string"),
            ] {
                let e = eval(t, bad).unwrap_err();
                assert!(e.contains(why) && e.contains("slot \"v1\""), "{e}");
            }
        }

        #[test]
        fn credential_check() {
            let c = lib!("credential-check");
            let digest = |s: &str| {
                use sha2::Digest as _;
                hex::encode(sha2::Sha256::digest(s.as_bytes()))
            };
            let list = json!([digest("alice-pass"), digest("bob-pass")]);
            assert_eq!(
                eval(c, json!({"credential": "bob-pass", "list": list})),
                Ok(json!(true))
            );
            assert_eq!(
                eval(c, json!({"credential": "eve", "list": list})),
                Ok(json!(false))
            );
            let e = eval(c, json!({"credential": "x", "list": ["bob-pass"]})).unwrap_err();
            assert!(e.contains("sha256 digests"), "{e}");
            let e = eval(
                c,
                json!({"credential": "x", "list": [digest("x").to_uppercase()]}),
            )
            .unwrap_err();
            assert!(e.contains("lowercase"), "{e}");
            let e = eval(c, json!({"credential": 5, "list": []})).unwrap_err();
            assert!(e.contains("`credential`"), "{e}");
        }

        #[test]
        fn encryption() {
            use aes_gcm_siv::Aes256GcmSiv;
            use aes_gcm_siv::aead::{Aead, KeyInit};
            use rand::SeedableRng;
            let open = |key: &[u8], sealed: &Value| -> String {
                let bytes = hex::decode(sealed["ciphertext"].as_str().unwrap()).unwrap();
                let (nonce, ct) = bytes.split_at(12);
                let nonce: [u8; 12] = nonce.try_into().unwrap();
                let cipher = Aes256GcmSiv::new_from_slice(key).unwrap();
                String::from_utf8(cipher.decrypt(&nonce.into(), ct).unwrap()).unwrap()
            };
            let key = [0x5a_u8; 32];
            let mut rng = rand::rngs::StdRng::from_seed([3; 32]);
            let shares = vsss_rs::Gf256::split_bytes(2, 3, key, &mut rng).unwrap();
            let out = eval(
                lib!("shamir-encrypt"),
                json!({"share_1": hex::encode(&shares[0]), "share_3": hex::encode(&shares[2]),
                       "plaintext": "the launch code"}),
            )
            .unwrap();
            assert_eq!(open(&key, &out), "the launch code");
            let e = eval(
                lib!("shamir-encrypt"),
                json!({"share_1": "00", "plaintext": "x"}),
            )
            .unwrap_err();
            assert!(e.contains("share_1"), "{e}");

            let k = json!(hex::encode(key));
            let km = lib!("keyed-messages");
            let one = eval(km, json!({"key": k, "message": "one"})).unwrap();
            let two = eval(km, json!({"key": k, "message": "two"})).unwrap();
            assert_ne!(
                one["ciphertext"].as_str().unwrap()[..24],
                two["ciphertext"].as_str().unwrap()[..24]
            );
            assert_eq!(
                (open(&key, &one), open(&key, &two)),
                ("one".into(), "two".into())
            );
            let e = eval(km, json!({"key": "00", "message": "x"})).unwrap_err();
            assert!(e.contains("slot `key`"), "{e}");
        }
    }
}
