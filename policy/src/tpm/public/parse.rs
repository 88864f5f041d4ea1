//! Parsing `TPM2B_PUBLIC` / `TPMT_PUBLIC` into a [`Public`] that keeps the exact bytes
//! the TPM hashed: the symmetric definition, scheme and KDF readers and the checks of
//! each field.

use super::{Public, PublicKey, Scheme, SymDef};
use crate::Error;
use crate::tpm::attributes::ObjectAttributes;
use crate::tpm::hash::digest_size;
use crate::tpm::wire::Reader;
use crate::tpm::{
    TPM_ALG_AES, TPM_ALG_CAMELLIA, TPM_ALG_ECC, TPM_ALG_ECDH, TPM_ALG_ECDSA, TPM_ALG_ECMQV,
    TPM_ALG_ECSCHNORR, TPM_ALG_KDF1_SP800_56A, TPM_ALG_KDF1_SP800_108, TPM_ALG_KDF2, TPM_ALG_MGF1,
    TPM_ALG_NULL, TPM_ALG_OAEP, TPM_ALG_RSA, TPM_ALG_RSAES, TPM_ALG_RSAPSS, TPM_ALG_RSASSA,
    TPM_ALG_SM2, TPM_ALG_SM4,
};

impl Public {
    /// Parses a `TPM2B_PUBLIC`: a u16 size, then exactly that many bytes of
    /// `TPMT_PUBLIC`.
    ///
    /// # Errors
    /// `Truncated`, `TrailingBytes` (after the `TPM2B_PUBLIC` or inside its size),
    /// `UnsupportedAlgorithm`, `InvalidValue` (an `authPolicy` whose size is neither 0 nor
    /// the name algorithm's digest size).
    pub fn from_tpm2b(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let tpmt = r.tpm2b("TPM2B_PUBLIC")?;
        r.finish("TPM2B_PUBLIC")?;
        Self::from_tpmt(tpmt)
    }

    /// Parses a `TPMT_PUBLIC` that fills `bytes` exactly.
    ///
    /// # Errors
    /// As [`Public::from_tpm2b`].
    pub fn from_tpmt(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let object_type = r.u16("TPMT_PUBLIC.type")?;
        let name_alg = r.u16("TPMT_PUBLIC.nameAlg")?;
        let Some(name_size) = digest_size(name_alg) else {
            return Err(Error::UnsupportedAlgorithm {
                what: "TPMT_PUBLIC.nameAlg",
                alg: name_alg,
            });
        };
        let attributes = ObjectAttributes(r.u32("TPMT_PUBLIC.objectAttributes")?);
        let auth_policy = r.tpm2b("TPMT_PUBLIC.authPolicy")?.to_vec();
        if !auth_policy.is_empty() && auth_policy.len() != name_size {
            return Err(Error::InvalidValue {
                what: "TPMT_PUBLIC.authPolicy size",
                value: auth_policy.len() as u64,
            });
        }
        let (symmetric, scheme, kdf, key) = match object_type {
            TPM_ALG_ECC => {
                let symmetric = read_symmetric(&mut r)?;
                let scheme = read_scheme(&mut r, object_type)?;
                let curve = r.u16("TPMS_ECC_PARMS.curveID")?;
                let kdf = read_kdf(&mut r)?;
                let x = r.tpm2b("TPMS_ECC_POINT.x")?.to_vec();
                let y = r.tpm2b("TPMS_ECC_POINT.y")?.to_vec();
                (symmetric, scheme, kdf, PublicKey::Ecc { curve, x, y })
            }
            TPM_ALG_RSA => {
                let symmetric = read_symmetric(&mut r)?;
                let scheme = read_scheme(&mut r, object_type)?;
                let bits = r.u16("TPMS_RSA_PARMS.keyBits")?;
                let exponent = r.u32("TPMS_RSA_PARMS.exponent")?;
                let modulus = r.tpm2b("TPM2B_PUBLIC_KEY_RSA")?.to_vec();
                (
                    symmetric,
                    scheme,
                    None,
                    PublicKey::Rsa {
                        bits,
                        exponent,
                        modulus,
                    },
                )
            }
            alg => {
                return Err(Error::UnsupportedAlgorithm {
                    what: "TPMT_PUBLIC.type",
                    alg,
                });
            }
        };
        r.finish("TPMT_PUBLIC")?;
        Ok(Self {
            name_alg,
            attributes,
            auth_policy,
            symmetric,
            scheme,
            kdf,
            key,
            tpmt: bytes.to_vec(),
        })
    }
}

fn read_symmetric(r: &mut Reader<'_>) -> Result<Option<SymDef>, Error> {
    let alg = r.u16("TPMT_SYM_DEF_OBJECT.algorithm")?;
    match alg {
        TPM_ALG_NULL => Ok(None),
        TPM_ALG_AES | TPM_ALG_SM4 | TPM_ALG_CAMELLIA => Ok(Some(SymDef {
            alg,
            key_bits: r.u16("TPMT_SYM_DEF_OBJECT.keyBits")?,
            mode: r.u16("TPMT_SYM_DEF_OBJECT.mode")?,
        })),
        _ => Err(Error::UnsupportedAlgorithm {
            what: "TPMT_SYM_DEF_OBJECT.algorithm",
            alg,
        }),
    }
}

/// Reads a `TPMT_RSA_SCHEME` or `TPMT_ECC_SCHEME`, allowing the schemes of `object_type`.
fn read_scheme(r: &mut Reader<'_>, object_type: u16) -> Result<Option<Scheme>, Error> {
    let alg = r.u16("public key scheme")?;
    let with_hash = match (object_type, alg) {
        (_, TPM_ALG_NULL) => return Ok(None),
        (TPM_ALG_RSA, TPM_ALG_RSAES) => false,
        (TPM_ALG_RSA, TPM_ALG_RSASSA | TPM_ALG_RSAPSS | TPM_ALG_OAEP) => true,
        (
            TPM_ALG_ECC,
            TPM_ALG_ECDSA | TPM_ALG_ECDH | TPM_ALG_SM2 | TPM_ALG_ECSCHNORR | TPM_ALG_ECMQV,
        ) => true,
        // TPM_ALG_ECDAA carries a commit count as well; nothing here uses it.
        _ => {
            return Err(Error::UnsupportedAlgorithm {
                what: "public key scheme",
                alg,
            });
        }
    };
    let hash = if with_hash {
        r.u16("public key scheme hashAlg")?
    } else {
        TPM_ALG_NULL
    };
    Ok(Some(Scheme { alg, hash }))
}

fn read_kdf(r: &mut Reader<'_>) -> Result<Option<Scheme>, Error> {
    let alg = r.u16("TPMT_KDF_SCHEME.scheme")?;
    match alg {
        TPM_ALG_NULL => Ok(None),
        TPM_ALG_MGF1 | TPM_ALG_KDF1_SP800_56A | TPM_ALG_KDF2 | TPM_ALG_KDF1_SP800_108 => {
            Ok(Some(Scheme {
                alg,
                hash: r.u16("TPMT_KDF_SCHEME.hashAlg")?,
            }))
        }
        _ => Err(Error::UnsupportedAlgorithm {
            what: "TPMT_KDF_SCHEME.scheme",
            alg,
        }),
    }
}
