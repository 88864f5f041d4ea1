//! The TPM's key derivation functions (TPM 2.0 Part 1 §11.4.10): KDFa (SP 800-108 counter
//! mode with HMAC) and KDFe (SP 800-56A concatenation KDF), with SHA-384 for a SHA-384
//! name algorithm and SHA-256 otherwise.

use hmac::Hmac;
use sha2::{Sha256, Sha384};

use super::TPM_ALG_SHA384;

/// The size of the digest (and of the derived HMAC key and seed) for `name_alg`: 48 for
/// SHA-384, 32 otherwise.
pub fn kdf_digest_len(name_alg: u16) -> usize {
    if name_alg == TPM_ALG_SHA384 { 48 } else { 32 }
}

/// HMAC over the concatenation of `parts`, with SHA-384 for a SHA-384 `name_alg`.
pub(crate) fn hmac(name_alg: u16, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: hmac::Mac + hmac::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
        let Ok(mut mac) = <M as hmac::KeyInit>::new_from_slice(key) else {
            return Vec::new();
        };
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }
    if name_alg == TPM_ALG_SHA384 {
        run::<Hmac<Sha384>>(key, parts)
    } else {
        run::<Hmac<Sha256>>(key, parts)
    }
}

/// KDFa: `bits` bits (rounded up to bytes) from `key`, `label` (a NUL is appended),
/// `context_u` and `context_v`.
pub fn kdfa(
    name_alg: u16,
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let want = usize::try_from(bits.div_ceil(8)).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut counter: u32 = 1;
    while out.len() < want {
        let block = hmac(
            name_alg,
            key,
            &[
                &counter.to_be_bytes(),
                label.as_bytes(),
                &[0],
                context_u,
                context_v,
                &bits.to_be_bytes(),
            ],
        );
        if block.is_empty() {
            break;
        }
        out.extend_from_slice(&block);
        counter = counter.wrapping_add(1);
    }
    out.truncate(want);
    out
}

/// KDFe: `bits` bits (rounded up to bytes) from the shared secret `z`, `label` (a NUL is
/// appended), `party_u` and `party_v`.
pub fn kdfe(
    name_alg: u16,
    z: &[u8],
    label: &str,
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    fn block<D: sha2::Digest>(counter: u32, parts: &[&[u8]]) -> Vec<u8> {
        let mut d = D::new();
        d.update(counter.to_be_bytes());
        for part in parts {
            d.update(part);
        }
        d.finalize().to_vec()
    }
    let want = usize::try_from(bits.div_ceil(8)).unwrap_or(usize::MAX);
    let parts: [&[u8]; 5] = [z, label.as_bytes(), &[0], party_u, party_v];
    let mut out = Vec::new();
    let mut counter: u32 = 1;
    while out.len() < want {
        let next = if name_alg == TPM_ALG_SHA384 {
            block::<Sha384>(counter, &parts)
        } else {
            block::<Sha256>(counter, &parts)
        };
        out.extend_from_slice(&next);
        counter = counter.wrapping_add(1);
    }
    out.truncate(want);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::TPM_ALG_SHA256;

    /// Known answers, as aws-lc-rs's HMAC and SHA computed them when enrolment ran them.
    #[test]
    fn kdfa_and_kdfe_give_the_known_answers() {
        assert_eq!(
            hex::encode(kdfa(TPM_ALG_SHA256, b"seed", "STORAGE", b"name", &[], 128)),
            "79f9abeb5a577bee60b4a69ad068a71a"
        );
        assert_eq!(
            hex::encode(kdfa(TPM_ALG_SHA384, b"seed", "INTEGRITY", b"u", b"v", 384)),
            "2fb4ddbc48cdf3af90055102ef9cc10a729ad9af909c3c2d15532e51c2f99218e264673a7a761184\
             f83b48fe1cbfdd6d"
        );
        assert_eq!(
            hex::encode(kdfe(TPM_ALG_SHA384, b"z", "IDENTITY", b"u", b"v", 384)),
            "de2f2fd019ee80f41c1ba4d5fc7857efb90b8efefb39351f2ec7136ce0c87226814aef4998b911ba\
             44a7aba60d960de2"
        );
        assert_eq!(
            hex::encode(kdfe(TPM_ALG_SHA256, b"z", "IDENTITY", b"u", b"v", 256)),
            "d4f6befd5f2d84835f0ac9b584ea8bb71655b1fc7b8857cfcfaa1c858ce8aba1"
        );
    }

    #[test]
    fn kdfa_gives_the_requested_length_and_depends_on_every_input() {
        let a = kdfa(TPM_ALG_SHA256, b"seed", "STORAGE", b"name", &[], 128);
        assert_eq!(a.len(), 16);
        assert_ne!(
            a,
            kdfa(TPM_ALG_SHA256, b"seed", "INTEGRITY", b"name", &[], 128)
        );
        assert_ne!(
            a,
            kdfa(TPM_ALG_SHA256, b"seed", "STORAGE", b"other", &[], 128)
        );
        assert_ne!(
            a,
            kdfa(TPM_ALG_SHA256, b"seed", "STORAGE", b"name", b"v", 128)
        );
        // The bit count is an input: a longer key is not an extension of a shorter one.
        let long = kdfa(TPM_ALG_SHA384, b"seed", "STORAGE", b"name", &[], 384);
        assert_eq!(long.len(), 48);
        let short = kdfa(TPM_ALG_SHA384, b"seed", "STORAGE", b"name", &[], 256);
        assert_ne!(short.as_slice(), long.get(..32).unwrap_or_default());
        // More than one block, and a bit count that is not whole bytes.
        assert_eq!(kdfa(TPM_ALG_SHA256, b"k", "L", &[], &[], 520).len(), 65);
        assert_eq!(kdfe(TPM_ALG_SHA256, b"z", "L", &[], &[], 12).len(), 2);
        assert_eq!(kdf_digest_len(TPM_ALG_SHA384), 48);
        assert_eq!(kdf_digest_len(TPM_ALG_SHA256), 32);
    }
}
