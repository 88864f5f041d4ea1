//! `TPMT_SIGNATURE` with `TPM_ALG_ECDSA`: `sigAlg` 0x0018 | `hash` u16 | `TPM2B` r |
//! `TPM2B` s, and its conversion to and from `p256` signatures and raw `r || s`.

use p256::ecdsa::Signature;

use super::wire::{Reader, put_tpm2b_bounded};
use super::{TPM_ALG_ECDSA, TPM_ALG_SHA256};
use crate::Error;

/// An ECDSA `TPMT_SIGNATURE` (`TPMS_SIGNATURE_ECDSA`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EcdsaSignature {
    /// The hash the signed digest was computed with.
    pub hash_alg: u16,
    /// `signatureR`, big-endian.
    pub r: Vec<u8>,
    /// `signatureS`, big-endian.
    pub s: Vec<u8>,
}

/// Strips leading zeros and left-pads to 32 bytes.
fn scalar_bytes(value: &[u8], what: &'static str) -> Result<[u8; 32], Error> {
    let first = value.iter().position(|&b| b != 0).unwrap_or(value.len());
    let significant = value.get(first..).unwrap_or_default();
    let start = 32usize
        .checked_sub(significant.len())
        .ok_or(Error::TooLong {
            what,
            len: value.len(),
            max: 32,
        })?;
    let mut out = [0u8; 32];
    if let Some(dst) = out.get_mut(start..) {
        dst.copy_from_slice(significant);
    }
    Ok(out)
}

impl EcdsaSignature {
    /// Parses a `TPMT_SIGNATURE` that fills `bytes` exactly.
    ///
    /// # Errors
    /// `UnsupportedAlgorithm` for a `sigAlg` other than ECDSA; `Truncated`;
    /// `TrailingBytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let sig_alg = r.u16("TPMT_SIGNATURE.sigAlg")?;
        if sig_alg != TPM_ALG_ECDSA {
            return Err(Error::UnsupportedAlgorithm {
                what: "TPMT_SIGNATURE.sigAlg",
                alg: sig_alg,
            });
        }
        let hash_alg = r.u16("TPMS_SIGNATURE_ECDSA.hash")?;
        let sig_r = r.tpm2b("TPMS_SIGNATURE_ECDSA.signatureR")?.to_vec();
        let sig_s = r.tpm2b("TPMS_SIGNATURE_ECDSA.signatureS")?.to_vec();
        r.finish("TPMT_SIGNATURE")?;
        Ok(Self {
            hash_alg,
            r: sig_r,
            s: sig_s,
        })
    }

    /// The marshalled `TPMT_SIGNATURE` (72 bytes for P-256). An `r` or `s` over 65,535
    /// bytes (never produced by parsing) is cut there.
    pub fn marshal(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.r.len() + self.s.len());
        out.extend_from_slice(&TPM_ALG_ECDSA.to_be_bytes());
        out.extend_from_slice(&self.hash_alg.to_be_bytes());
        put_tpm2b_bounded(&mut out, &self.r);
        put_tpm2b_bounded(&mut out, &self.s);
        out
    }

    /// The signature as a `p256` signature, `r` and `s` left-padded to 32 bytes.
    ///
    /// # Errors
    /// `TooLong` for an `r` or `s` over 32 significant bytes; `BadSignature` for a zero
    /// or out-of-range scalar.
    pub fn to_p256(&self) -> Result<Signature, Error> {
        let r = scalar_bytes(&self.r, "ECDSA signature r")?;
        let s = scalar_bytes(&self.s, "ECDSA signature s")?;
        Signature::from_scalars(r, s).map_err(|_| Error::BadSignature)
    }

    /// A SHA-256 ECDSA `TPMT_SIGNATURE` holding `sig` (32-byte `r` and `s`).
    pub fn from_p256(sig: &Signature) -> Self {
        let (r, s) = sig.split_bytes();
        Self {
            hash_alg: TPM_ALG_SHA256,
            r: r.to_vec(),
            s: s.to_vec(),
        }
    }

    /// The signature as raw `r || s` (64 bytes), the form JWS ES256 uses.
    ///
    /// # Errors
    /// As [`EcdsaSignature::to_p256`].
    pub fn to_raw_rs(&self) -> Result<[u8; 64], Error> {
        Ok(self.to_p256()?.to_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;

    use super::*;

    #[test]
    fn layout_is_72_bytes_for_p256() {
        let key = SigningKey::from_slice(&[0x24; 32]).unwrap();
        let sig: Signature = key.sign(b"message");
        let tpmt = EcdsaSignature::from_p256(&sig);
        let bytes = tpmt.marshal();
        assert_eq!(bytes.len(), 72);
        assert_eq!(&bytes[..6], &[0x00, 0x18, 0x00, 0x0b, 0x00, 0x20]);
        assert_eq!(&bytes[38..40], &[0x00, 0x20]);
        let (r, s) = sig.split_bytes();
        assert_eq!(&bytes[6..38], r.as_slice());
        assert_eq!(&bytes[40..], s.as_slice());
        let parsed = EcdsaSignature::parse(&bytes).unwrap();
        assert_eq!(parsed, tpmt);
        assert_eq!(parsed.to_p256().unwrap(), sig);
        assert_eq!(
            parsed.to_raw_rs().unwrap().as_slice(),
            sig.to_bytes().as_slice()
        );
    }

    #[test]
    fn short_and_zero_padded_scalars_are_normalised() {
        let mut r = vec![0u8; 32];
        r[31] = 5;
        let s = vec![0x00, 0x00, 0x07];
        let short = EcdsaSignature {
            hash_alg: TPM_ALG_SHA256,
            r: vec![5],
            s: s.clone(),
        };
        let raw = short.to_raw_rs().unwrap();
        assert_eq!(&raw[..32], r.as_slice());
        assert_eq!(raw[63], 7);
        assert!(raw[32..63].iter().all(|&b| b == 0));
        // 33 bytes with a leading zero are fine, 33 significant bytes are not.
        let mut padded = vec![0u8];
        padded.extend_from_slice(&r);
        assert!(
            EcdsaSignature {
                hash_alg: TPM_ALG_SHA256,
                r: padded,
                s: s.clone()
            }
            .to_p256()
            .is_ok()
        );
        assert_eq!(
            EcdsaSignature {
                hash_alg: TPM_ALG_SHA256,
                r: vec![1; 33],
                s: s.clone()
            }
            .to_p256(),
            Err(Error::TooLong {
                what: "ECDSA signature r",
                len: 33,
                max: 32
            })
        );
        // Zero and out-of-range scalars are not signatures.
        assert_eq!(
            EcdsaSignature {
                hash_alg: TPM_ALG_SHA256,
                r: vec![],
                s: s.clone()
            }
            .to_p256(),
            Err(Error::BadSignature)
        );
        assert_eq!(
            EcdsaSignature {
                hash_alg: TPM_ALG_SHA256,
                r: vec![0xff; 32],
                s
            }
            .to_p256(),
            Err(Error::BadSignature)
        );
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            EcdsaSignature::parse(&[0x00, 0x14, 0x00, 0x0b]),
            Err(Error::UnsupportedAlgorithm {
                what: "TPMT_SIGNATURE.sigAlg",
                alg: 0x0014
            })
        );
        let good = EcdsaSignature {
            hash_alg: TPM_ALG_SHA256,
            r: vec![1; 32],
            s: vec![2; 32],
        };
        let bytes = good.marshal();
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            EcdsaSignature::parse(&trailing),
            Err(Error::TrailingBytes {
                what: "TPMT_SIGNATURE"
            })
        );
        assert_eq!(
            EcdsaSignature::parse(&bytes[..71]),
            Err(Error::Truncated {
                what: "TPMS_SIGNATURE_ECDSA.signatureS"
            })
        );
        for len in 0..bytes.len() {
            assert!(matches!(
                EcdsaSignature::parse(&bytes[..len]),
                Err(Error::Truncated { .. })
            ));
        }
    }
}
