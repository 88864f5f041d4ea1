//! Native helpers that scripts call where speed matters: SHA-256, set intersection,
//! statistics, Shamir combination, AES-GCM, hex conversion and the seeded RNG.
//!
//! Every helper is pure Rust, works on values the engine already bounds (strings, arrays
//! and blobs are checked against the evaluation's size limits before and after each call)
//! and reports bad arguments as a script runtime error, never a panic. Byte strings cross
//! the script boundary as lowercase hex strings (docs/protocol.md, encodings) or as Rhai blobs; the
//! conventions of each helper are in [`register`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use rhai::{Array, Blob, Dynamic, Engine, EvalAltResult, FLOAT, INT, ImmutableString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

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
/// | `aes_gcm_encrypt(key, nonce, plaintext)` | hex key (16 or 32 bytes), hex nonce (12 bytes), string or blob | hex of `ciphertext ‖ tag` |
/// | `aes_gcm_decrypt(key, nonce, ciphertext)` | hex, hex, hex | the plaintext as a string (must be UTF-8) |
/// | `aes_gcm_decrypt_blob(key, nonce, ciphertext)` | hex, hex, hex | the plaintext as a blob |
/// | `random_int(lo, hi)`, `random_float()` | only with a seeded RNG ([`Rng`]) | uniform in `[lo, hi]` / `[0, 1)` |
///
/// Sorting is Rhai's own `sort()` on arrays of one primitive type.
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

/// An element that [`intersection`] can compare.
#[derive(PartialEq, Eq, Hash)]
enum SetKey {
    Int(INT),
    Str(ImmutableString),
}

impl SetKey {
    fn of(helper: &str, value: &Dynamic) -> HelperResult<Self> {
        if let Ok(i) = value.as_int() {
            Ok(Self::Int(i))
        } else if let Some(s) = value.read_lock::<ImmutableString>() {
            Ok(Self::Str(s.clone()))
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
}

/// The set of `b`'s elements, for [`intersection`] and [`intersection_size`].
fn key_set(helper: &str, b: &Array) -> HelperResult<HashSet<SetKey>> {
    let mut set = HashSet::with_capacity(b.len());
    for value in b {
        set.insert(SetKey::of(helper, value)?);
    }
    Ok(set)
}

/// The distinct elements of `a` that are also in `b`, in the order of their first
/// appearance in `a`. Each match is taken out of `b`'s set, so a repeated element of
/// `a` counts once without a second set.
fn intersection(helper: &str, a: &Array, b: &Array) -> HelperResult<Array> {
    let mut other = key_set(helper, b)?;
    let mut common = Array::new();
    for value in a {
        if other.remove(&SetKey::of(helper, value)?) {
            common.push(value.clone());
        }
    }
    Ok(common)
}

/// The number of distinct elements of `a` that are also in `b` (the length of
/// [`intersection`], without building it).
fn intersection_size(helper: &str, a: &Array, b: &Array) -> HelperResult<usize> {
    let mut other = key_set(helper, b)?;
    let mut count = 0;
    for value in a {
        if other.remove(&SetKey::of(helper, value)?) {
            count += 1;
        }
    }
    Ok(count)
}

/// The elements of `a` as floats; integers and finite floats only, at least one.
fn numbers(helper: &str, a: &Array) -> HelperResult<Vec<f64>> {
    if a.is_empty() {
        return fail(helper, "the array is empty");
    }
    a.iter()
        .map(|v| {
            if let Ok(i) = v.as_int() {
                #[allow(clippy::cast_precision_loss)] // documented: statistics are in f64
                Ok(i as f64)
            } else if let Ok(f) = v.as_float() {
                if f.is_finite() {
                    Ok(f)
                } else {
                    fail(helper, "the array holds a non-finite float")
                }
            } else {
                fail(
                    helper,
                    format_args!("elements must be numbers, not {}", v.type_name()),
                )
            }
        })
        .collect()
}

/// Arithmetic mean of a non-empty slice.
fn mean(xs: &[f64]) -> f64 {
    // Neumaier summation keeps the mean of many large integers exact enough.
    let (mut sum, mut compensation) = (0.0_f64, 0.0_f64);
    for &x in xs {
        let t = sum + x;
        if sum.abs() >= x.abs() {
            compensation += (sum - t) + x;
        } else {
            compensation += (x - t) + sum;
        }
        sum = t;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = xs.len() as f64;
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
fn mode(a: &Array) -> Dynamic {
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
}
