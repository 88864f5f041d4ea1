//! The hash algorithms a TPM name can use (`nameAlg`), by `TPM_ALG_ID`: SHA-1, SHA-256,
//! SHA-384 and SHA-512.

use sha2::Digest as _;

use super::{TPM_ALG_SHA1, TPM_ALG_SHA256, TPM_ALG_SHA384, TPM_ALG_SHA512};

/// The digest size in bytes of a hash algorithm this crate implements, or `None`.
pub fn digest_size(alg: u16) -> Option<usize> {
    match alg {
        TPM_ALG_SHA1 => Some(20),
        TPM_ALG_SHA256 => Some(32),
        TPM_ALG_SHA384 => Some(48),
        TPM_ALG_SHA512 => Some(64),
        _ => None,
    }
}

/// Hashes the concatenation of `parts` with the algorithm `alg` (a `TPM_ALG_ID`), or
/// returns `None` for an algorithm this crate does not implement.
pub fn hash(alg: u16, parts: &[&[u8]]) -> Option<Vec<u8>> {
    fn run<D: sha2::Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut h = D::new();
        for part in parts {
            h.update(part);
        }
        h.finalize().to_vec()
    }
    match alg {
        TPM_ALG_SHA1 => Some(run::<sha1::Sha1>(parts)),
        TPM_ALG_SHA256 => Some(run::<sha2::Sha256>(parts)),
        TPM_ALG_SHA384 => Some(run::<sha2::Sha384>(parts)),
        TPM_ALG_SHA512 => Some(run::<sha2::Sha512>(parts)),
        _ => None,
    }
}

/// SHA-256 of the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_of_abc() {
        // FIPS 180-2 test vectors for "abc".
        let cases: [(u16, &str); 4] = [
            (TPM_ALG_SHA1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                TPM_ALG_SHA256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                TPM_ALG_SHA384,
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
                 8086072ba1e7cc2358baeca134c825a7",
            ),
            (
                TPM_ALG_SHA512,
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                 2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
        ];
        for (alg, want) in cases {
            let got = hash(alg, &[b"a", b"bc"]).unwrap();
            assert_eq!(hex::encode(&got), want);
            assert_eq!(Some(got.len()), digest_size(alg));
        }
        assert_eq!(
            sha256(&[b"ab", b"c"]).to_vec(),
            hash(TPM_ALG_SHA256, &[b"abc"]).unwrap()
        );
        assert_eq!(hash(0x0012, &[b"abc"]), None);
        assert_eq!(digest_size(0x0010), None);
    }
}
