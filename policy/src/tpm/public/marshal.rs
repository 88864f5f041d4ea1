//! Building public areas: marshalling the fields as a TPM would ([`Public::new`], a
//! software P-256 key as a TPM would show it) and the `TPM2B_PUBLIC` framing.

use p256::ecdsa::VerifyingKey;

use super::{Public, PublicKey, Scheme, SymDef};
use crate::Error;
use crate::tpm::attributes::ObjectAttributes;
use crate::tpm::wire::put_tpm2b;
use crate::tpm::{TPM_ALG_ECDSA, TPM_ALG_NULL, TPM_ALG_RSAES, TPM_ALG_SHA256, TPM_ECC_NIST_P256};

impl Public {
    /// Builds a public area by marshalling the fields as a TPM would and parsing the
    /// result back (so it is exactly as valid as a parsed one). `kdf` applies to ECC keys
    /// only; a scheme's hash is not marshalled for `TPM_ALG_RSAES`.
    ///
    /// # Errors
    /// As [`Public::from_tpmt`]; `InvalidValue` for a `kdf` on an RSA key; `TooLong` for
    /// a field over 65,535 bytes.
    pub fn new(
        name_alg: u16,
        attributes: ObjectAttributes,
        auth_policy: &[u8],
        symmetric: Option<SymDef>,
        scheme: Option<Scheme>,
        kdf: Option<Scheme>,
        key: PublicKey,
    ) -> Result<Self, Error> {
        let mut out = Vec::new();
        put_u16(&mut out, key.object_type());
        put_u16(&mut out, name_alg);
        out.extend_from_slice(&attributes.bits().to_be_bytes());
        put_tpm2b(&mut out, auth_policy, "TPMT_PUBLIC.authPolicy")?;
        put_symmetric(&mut out, symmetric);
        put_scheme(&mut out, scheme);
        match &key {
            PublicKey::Ecc { curve, x, y } => {
                put_u16(&mut out, *curve);
                put_scheme(&mut out, kdf);
                put_tpm2b(&mut out, x, "TPMS_ECC_POINT.x")?;
                put_tpm2b(&mut out, y, "TPMS_ECC_POINT.y")?;
            }
            PublicKey::Rsa {
                bits,
                exponent,
                modulus,
            } => {
                if let Some(kdf) = kdf.filter(|k| k.alg != TPM_ALG_NULL) {
                    return Err(Error::InvalidValue {
                        what: "kdf of an RSA key (only ECC keys have one)",
                        value: u64::from(kdf.alg),
                    });
                }
                put_u16(&mut out, *bits);
                out.extend_from_slice(&exponent.to_be_bytes());
                put_tpm2b(&mut out, modulus, "TPM2B_PUBLIC_KEY_RSA")?;
            }
        }
        Self::from_tpmt(&out)
    }

    /// The public area of a software P-256 ECDSA key as a TPM would show it: nameAlg
    /// SHA-256, no symmetric algorithm, scheme ECDSA with SHA-256, no KDF, 32-byte
    /// coordinates. Useful to stand in for a TPM key in tests and tools.
    ///
    /// # Errors
    /// As [`Public::new`] (an `auth_policy` of a size other than 0 or 32).
    pub fn p256_signing_key(
        key: &VerifyingKey,
        attributes: ObjectAttributes,
        auth_policy: &[u8],
    ) -> Result<Self, Error> {
        let point = key.to_sec1_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(Error::InvalidKey {
                reason: "P-256 key is the identity point",
            });
        };
        Self::new(
            TPM_ALG_SHA256,
            attributes,
            auth_policy,
            None,
            Some(Scheme {
                alg: TPM_ALG_ECDSA,
                hash: TPM_ALG_SHA256,
            }),
            None,
            PublicKey::Ecc {
                curve: TPM_ECC_NIST_P256,
                x: x.to_vec(),
                y: y.to_vec(),
            },
        )
    }

    /// The `TPM2B_PUBLIC`: u16 size, then the `TPMT_PUBLIC` bytes.
    pub fn to_tpm2b(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.tpmt.len() + 2);
        // `tpmt` came out of a parser bounded by a u16 size or out of `new`, which refuses
        // fields that do not fit; a TPMT_PUBLIC of more than 65,535 bytes cannot exist.
        let size = u16::try_from(self.tpmt.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(&self.tpmt);
        out
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_symmetric(out: &mut Vec<u8>, symmetric: Option<SymDef>) {
    match symmetric {
        Some(s) if s.alg != TPM_ALG_NULL => {
            put_u16(out, s.alg);
            put_u16(out, s.key_bits);
            put_u16(out, s.mode);
        }
        _ => put_u16(out, TPM_ALG_NULL),
    }
}

fn put_scheme(out: &mut Vec<u8>, scheme: Option<Scheme>) {
    match scheme {
        Some(s) if s.alg != TPM_ALG_NULL => {
            put_u16(out, s.alg);
            if s.alg != TPM_ALG_RSAES {
                put_u16(out, s.hash);
            }
        }
        _ => put_u16(out, TPM_ALG_NULL),
    }
}
