//! The public key out of a public area: a `p256` verifying key, and SubjectPublicKeyInfo
//! PEM for ECC P-256 and RSA keys (with the few DER helpers that takes).

use p256::ecdsa::VerifyingKey;
use p256::pkcs8::{EncodePublicKey as _, LineEnding};

use super::{Public, PublicKey};
use crate::Error;
use crate::tpm::{TPM_ALG_RSA, TPM_ECC_NIST_P256};

impl Public {
    /// The key as a `p256` ECDSA verifying key.
    ///
    /// # Errors
    /// `UnsupportedAlgorithm` for RSA keys and curves other than NIST P-256; `TooLong` for
    /// a coordinate over 32 bytes; `InvalidKey` for a point not on the curve.
    pub fn p256_verifying_key(&self) -> Result<VerifyingKey, Error> {
        let (x, y) = match &self.key {
            PublicKey::Ecc {
                curve: TPM_ECC_NIST_P256,
                x,
                y,
            } => (x, y),
            PublicKey::Ecc { curve, .. } => {
                return Err(Error::UnsupportedAlgorithm {
                    what: "ECC curve",
                    alg: *curve,
                });
            }
            PublicKey::Rsa { .. } => {
                return Err(Error::UnsupportedAlgorithm {
                    what: "key type (P-256 needed)",
                    alg: TPM_ALG_RSA,
                });
            }
        };
        if x.is_empty() || y.is_empty() {
            return Err(Error::InvalidKey {
                reason: "empty ECC coordinate",
            });
        }
        let x = fixed_be::<32>(x, "ECC x coordinate")?;
        let y = fixed_be::<32>(y, "ECC y coordinate")?;
        let mut sec1 = Vec::with_capacity(65);
        sec1.push(0x04);
        sec1.extend_from_slice(&x);
        sec1.extend_from_slice(&y);
        VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| Error::InvalidKey {
            reason: "point is not on the P-256 curve",
        })
    }

    /// The key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`, LF line
    /// endings), as `openssl` and `tpm2_checkquote -u` take it. ECC P-256 and RSA keys.
    ///
    /// # Errors
    /// As [`Public::p256_verifying_key`] for ECC keys (other curves are unsupported);
    /// `InvalidKey` for an RSA key with an empty modulus.
    pub fn public_key_pem(&self) -> Result<String, Error> {
        match &self.key {
            PublicKey::Ecc { .. } => self
                .p256_verifying_key()?
                .to_public_key_pem(LineEnding::LF)
                .map_err(|_| Error::InvalidKey {
                    reason: "cannot encode P-256 key",
                }),
            PublicKey::Rsa { modulus, .. } => {
                if modulus.iter().all(|&b| b == 0) {
                    return Err(Error::InvalidKey {
                        reason: "empty RSA modulus",
                    });
                }
                let exponent = self.rsa_exponent().unwrap_or(65_537);
                let der = rsa_spki_der(modulus, exponent);
                p256::pkcs8::Document::try_from(der)
                    .and_then(|doc| doc.to_pem("PUBLIC KEY", LineEnding::LF))
                    .map_err(|_| Error::InvalidKey {
                        reason: "cannot encode RSA key",
                    })
            }
        }
    }
}

/// Strips leading zero bytes and left-pads to `N` bytes.
fn fixed_be<const N: usize>(bytes: &[u8], what: &'static str) -> Result<[u8; N], Error> {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let significant = bytes.get(first..).unwrap_or_default();
    let mut out = [0u8; N];
    let start = N.checked_sub(significant.len()).ok_or(Error::TooLong {
        what,
        len: bytes.len(),
        max: N,
    })?;
    if let Some(dst) = out.get_mut(start..) {
        dst.copy_from_slice(significant);
    }
    Ok(out)
}

/// Appends a DER length.
fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let significant = bytes.get(first..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
}

/// Appends a DER TLV.
fn der_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    der_len(out, content.len());
    out.extend_from_slice(content);
}

/// Appends a DER INTEGER holding the unsigned big-endian `value`.
fn der_uint(out: &mut Vec<u8>, value: &[u8]) {
    let first = value.iter().position(|&b| b != 0).unwrap_or(value.len());
    let significant = value.get(first..).unwrap_or_default();
    let mut content = Vec::with_capacity(significant.len() + 1);
    if significant.first().is_none_or(|&b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(significant);
    der_tlv(out, 0x02, &content);
}

/// DER SubjectPublicKeyInfo of an RSA key (RFC 8017 A.1.1, RFC 5280 4.1).
fn rsa_spki_der(modulus: &[u8], exponent: u32) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }.
    const ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut rsa_key = Vec::new();
    der_uint(&mut rsa_key, modulus);
    der_uint(&mut rsa_key, &exponent.to_be_bytes());
    let mut key_seq = Vec::new();
    der_tlv(&mut key_seq, 0x30, &rsa_key);
    let mut bit_string = vec![0u8]; // no unused bits
    bit_string.extend_from_slice(&key_seq);
    let mut body = ALGORITHM.to_vec();
    der_tlv(&mut body, 0x03, &bit_string);
    let mut spki = Vec::new();
    der_tlv(&mut spki, 0x30, &body);
    spki
}
