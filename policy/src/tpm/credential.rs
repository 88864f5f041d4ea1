//! `TPM2_MakeCredential` in software (TPM 2.0 Part 1 §24), all but the asymmetric part:
//! from a seed (which the caller encrypts to the EK with RSA-OAEP, or agrees by ECDH and
//! derives with [`kdfe`](super::kdfe)), the `TPM2B_ID_OBJECT` that lets only the TPM
//! holding the EK, and only for the object with that name, recover the credential:
//! AES-CFB under KDFa(`STORAGE`) and an outer HMAC under KDFa(`INTEGRITY`).

use aes::cipher::{BlockCipherEncrypt as _, KeyInit as _};
use aes::{Aes128, Aes256, Block};

use super::kdf::{hmac, kdf_digest_len, kdfa};
use super::wire::tpm2b;
use crate::Error;

/// AES in CFB-128 mode with a zero IV (the TPM's parameter and credential encryption),
/// in place. The last block may be partial.
fn cfb_encrypt(encrypt: impl Fn(&mut Block), data: &mut [u8]) {
    let mut feedback = [0u8; 16];
    for chunk in data.chunks_mut(16) {
        let mut block = Block::from(feedback);
        encrypt(&mut block);
        for (byte, key) in chunk.iter_mut().zip(block.iter()) {
            *byte ^= key;
        }
        if let Some(head) = feedback.get_mut(..chunk.len()) {
            head.copy_from_slice(chunk);
        }
    }
}

/// Encrypts `data` in place with AES-`key_bits`-CFB under `key`.
fn aes_cfb(key_bits: u16, key: &[u8], data: &mut [u8]) -> Result<(), Error> {
    let bad_key = |_| Error::InvalidKey {
        reason: "an AES key of the wrong length",
    };
    match key_bits {
        128 => {
            let cipher = Aes128::new_from_slice(key).map_err(bad_key)?;
            cfb_encrypt(|block| cipher.encrypt_block(block), data);
        }
        256 => {
            let cipher = Aes256::new_from_slice(key).map_err(bad_key)?;
            cfb_encrypt(|block| cipher.encrypt_block(block), data);
        }
        other => {
            return Err(Error::UnsupportedAlgorithm {
                what: "credential AES key size",
                alg: other,
            });
        }
    }
    Ok(())
}

/// The `TPM2B_ID_OBJECT` protecting `credential` for the object named `object_name`,
/// from `seed`, under an EK whose name algorithm is `name_alg` and whose symmetric
/// algorithm is AES-`sym_bits`-CFB.
///
/// # Errors
/// [`Error::UnsupportedAlgorithm`] for an AES key size other than 128 or 256,
/// [`Error::TooLong`] for a credential that does not fit a `TPM2B_DIGEST`.
pub fn credential_blob(
    name_alg: u16,
    sym_bits: u16,
    seed: &[u8],
    object_name: &[u8],
    credential: &[u8],
) -> Result<Vec<u8>, Error> {
    let sym_key = kdfa(
        name_alg,
        seed,
        "STORAGE",
        object_name,
        &[],
        u32::from(sym_bits),
    );
    let mut enc_identity = tpm2b(credential, "credential")?;
    aes_cfb(sym_bits, &sym_key, &mut enc_identity)?;
    let digest_bits = u32::try_from(kdf_digest_len(name_alg) * 8).unwrap_or(256);
    let hmac_key = kdfa(name_alg, seed, "INTEGRITY", &[], &[], digest_bits);
    let outer = hmac(name_alg, &hmac_key, &[&enc_identity, object_name]);
    let mut id_object = tpm2b(&outer, "outer HMAC")?;
    id_object.extend_from_slice(&enc_identity);
    tpm2b(&id_object, "TPM2B_ID_OBJECT")
}

/// The `TPMS_ECC_POINT` of an ephemeral ECDH key (`x`, `y`), as the body of the
/// `TPM2B_ENCRYPTED_SECRET` of an ECC EK's credential.
///
/// # Errors
/// [`Error::TooLong`] for a coordinate that does not fit a `TPM2B`.
pub fn ecc_point(x: &[u8], y: &[u8]) -> Result<Vec<u8>, Error> {
    let mut point = tpm2b(x, "ECC point x")?;
    point.extend_from_slice(&tpm2b(y, "ECC point y")?);
    Ok(point)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::{TPM_ALG_SHA256, TPM_ALG_SHA384};

    const OBJECT_NAME: &[u8] = b"\x00\x0bobject-name-bytes-0123456789abcdef";

    /// Known answers, as aws-lc-rs's AES-CFB and HMAC built them when enrolment did.
    #[test]
    fn credential_blobs_are_the_known_answers() {
        let blob = credential_blob(TPM_ALG_SHA256, 128, &[0x5a; 32], OBJECT_NAME, &[0x11; 32]);
        assert_eq!(
            blob.map(hex::encode),
            Ok(
                "00440020331a11ac702c904f6acaad710bbfdbbbc07416e77272669de017c4b608d3611166\
                2cfea05445c66d7938544fcfe204a29a550d2609813c815c090215b80938328b08"
                    .to_owned()
            )
        );
        let blob = credential_blob(TPM_ALG_SHA384, 256, &[0x5a; 48], OBJECT_NAME, &[0x11; 32]);
        assert_eq!(
            blob.map(hex::encode),
            Ok(
                "00540030a37bef454869faf3a67af47be0fd026fab73f4e387015c744e66fa2aebaeda0644\
                ddacfe97fc69100a91e683dbf15af60b0b58f0b4d3e73876b9857f426f0958217bd2db5a72\
                9f9714a21561d62b0a3eb66a"
                    .to_owned()
            )
        );
    }

    #[test]
    fn the_blob_is_bound_to_the_object_and_the_seed() {
        let blob = |name: &[u8], seed: u8| {
            credential_blob(TPM_ALG_SHA256, 128, &[seed; 32], name, b"secret").unwrap_or_default()
        };
        let base = blob(OBJECT_NAME, 1);
        assert_eq!(base.len(), 2 + 2 + 32 + 2 + 6);
        assert_ne!(base, blob(b"\x00\x0banother-object", 1));
        assert_ne!(base, blob(OBJECT_NAME, 2));
        // CFB over a partial block, decrypted by re-encrypting the keystream.
        let key = kdfa(TPM_ALG_SHA256, &[1; 32], "STORAGE", OBJECT_NAME, &[], 128);
        let mut zeros = [0u8; 8];
        assert_eq!(aes_cfb(128, &key, &mut zeros), Ok(()));
        let enc_identity = base.get(36..).unwrap_or_default();
        let plain: Vec<u8> = enc_identity.iter().zip(zeros).map(|(c, k)| c ^ k).collect();
        assert_eq!(plain, b"\x00\x06secret");
    }

    #[test]
    fn unsupported_sizes_are_refused() {
        assert_eq!(
            credential_blob(TPM_ALG_SHA256, 192, &[0; 32], OBJECT_NAME, b"s"),
            Err(Error::UnsupportedAlgorithm {
                what: "credential AES key size",
                alg: 192
            })
        );
        assert!(credential_blob(TPM_ALG_SHA256, 128, &[0; 32], OBJECT_NAME, &[0; 70_000]).is_err());
        assert_eq!(
            ecc_point(b"xy", b"z").map(hex::encode),
            Ok("0002787900017a".to_owned())
        );
    }
}
