//! `TPMT_PUBLIC` / `TPM2B_PUBLIC` of ECC and RSA keys: parsing that keeps the exact bytes
//! the TPM hashed, the object's TPM name, and conversion of P-256 keys to `p256` keys and
//! of keys to SubjectPublicKeyInfo PEM.
//!
//! This file holds the types, the accessors, the name and the attribute check; parsing
//! lives in `parse`, marshalling in `marshal`, key conversions in `keys`.

mod keys;
mod marshal;
mod parse;

use crate::Error;
use crate::tpm::attributes::ObjectAttributes;
use crate::tpm::hash::hash;
use crate::tpm::{TPM_ALG_ECC, TPM_ALG_RSA};

/// `TPMT_SYM_DEF_OBJECT` when not `TPM_ALG_NULL`: the symmetric algorithm a restricted
/// decryption key (a parent, an EK) uses to protect its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SymDef {
    /// Block cipher: `TPM_ALG_AES`, `TPM_ALG_SM4` or `TPM_ALG_CAMELLIA`.
    pub alg: u16,
    /// Key size in bits (e.g. 128 or 256).
    pub key_bits: u16,
    /// Block-cipher mode, `TPM_ALG_CFB` for parents.
    pub mode: u16,
}

/// A key's scheme when not `TPM_ALG_NULL`: `TPMT_RSA_SCHEME` / `TPMT_ECC_SCHEME` (e.g.
/// ECDSA with SHA-256) or, for ECC keys, `TPMT_KDF_SCHEME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scheme {
    /// The scheme (`TPM_ALG_ECDSA`, `TPM_ALG_RSASSA`, `TPM_ALG_OAEP`, `TPM_ALG_MGF1`, ...).
    pub alg: u16,
    /// Its hash algorithm; `TPM_ALG_NULL` for `TPM_ALG_RSAES`, which has none.
    pub hash: u16,
}

/// The public key in a `TPMT_PUBLIC`'s `unique` field, with the parameters that size it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PublicKey {
    /// `TPMS_ECC_POINT` on `curve` (`TPM_ECC_*`); coordinates big-endian as the TPM gave
    /// them (a template's may be empty).
    Ecc {
        /// `TPMI_ECC_CURVE`, e.g. [`TPM_ECC_NIST_P256`](crate::tpm::TPM_ECC_NIST_P256).
        curve: u16,
        /// X coordinate.
        x: Vec<u8>,
        /// Y coordinate.
        y: Vec<u8>,
    },
    /// `TPM2B_PUBLIC_KEY_RSA` with the `TPMS_RSA_PARMS` sizes.
    Rsa {
        /// Modulus size in bits.
        bits: u16,
        /// Public exponent as marshalled: 0 stands for the default 65537.
        exponent: u32,
        /// Modulus, big-endian.
        modulus: Vec<u8>,
    },
}

impl PublicKey {
    /// `TPM_ALG_ECC` or `TPM_ALG_RSA`.
    pub fn object_type(&self) -> u16 {
        match self {
            Self::Ecc { .. } => TPM_ALG_ECC,
            Self::Rsa { .. } => TPM_ALG_RSA,
        }
    }
}

/// A parsed `TPMT_PUBLIC` of an ECC or RSA key, holding the exact bytes it was parsed
/// from (the bytes its name hashes).
///
/// Keyed-hash and symmetric-cipher objects are refused with
/// `Error::UnsupportedAlgorithm`, as are name algorithms other than SHA-1/256/384/512 and
/// the rarely used ECDAA scheme.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Public {
    name_alg: u16,
    attributes: ObjectAttributes,
    auth_policy: Vec<u8>,
    symmetric: Option<SymDef>,
    scheme: Option<Scheme>,
    kdf: Option<Scheme>,
    key: PublicKey,
    tpmt: Vec<u8>,
}

impl Public {
    /// The `TPMT_PUBLIC` bytes exactly as parsed.
    pub fn tpmt_bytes(&self) -> &[u8] {
        &self.tpmt
    }

    /// The object's TPM name: `nameAlg` (u16, big-endian) followed by
    /// `H_nameAlg(TPMT_PUBLIC)`.
    pub fn name(&self) -> Vec<u8> {
        let mut name = self.name_alg.to_be_bytes().to_vec();
        // Parsing refused every nameAlg that `hash` does not implement.
        name.extend(hash(self.name_alg, &[&self.tpmt]).unwrap_or_default());
        name
    }

    /// `TPM_ALG_ECC` or `TPM_ALG_RSA`.
    pub fn object_type(&self) -> u16 {
        self.key.object_type()
    }

    /// The name algorithm.
    pub fn name_alg(&self) -> u16 {
        self.name_alg
    }

    /// The object attributes.
    pub fn attributes(&self) -> ObjectAttributes {
        self.attributes
    }

    /// The authorization policy digest (empty when the object has none).
    pub fn auth_policy(&self) -> &[u8] {
        &self.auth_policy
    }

    /// The symmetric definition, `None` for `TPM_ALG_NULL`.
    pub fn symmetric(&self) -> Option<SymDef> {
        self.symmetric
    }

    /// The signing or encryption scheme, `None` for `TPM_ALG_NULL`.
    pub fn scheme(&self) -> Option<Scheme> {
        self.scheme
    }

    /// An ECC key's KDF scheme, `None` for `TPM_ALG_NULL` and for RSA keys.
    pub fn kdf(&self) -> Option<Scheme> {
        self.kdf
    }

    /// An ECC key's curve, `None` for RSA keys.
    pub fn ecc_curve(&self) -> Option<u16> {
        match self.key {
            PublicKey::Ecc { curve, .. } => Some(curve),
            PublicKey::Rsa { .. } => None,
        }
    }

    /// An RSA key's size in bits, `None` for ECC keys.
    pub fn rsa_bits(&self) -> Option<u16> {
        match self.key {
            PublicKey::Rsa { bits, .. } => Some(bits),
            PublicKey::Ecc { .. } => None,
        }
    }

    /// An RSA key's public exponent with the default applied (a marshalled 0 is 65537),
    /// `None` for ECC keys.
    pub fn rsa_exponent(&self) -> Option<u32> {
        match self.key {
            PublicKey::Rsa { exponent: 0, .. } => Some(65_537),
            PublicKey::Rsa { exponent, .. } => Some(exponent),
            PublicKey::Ecc { .. } => None,
        }
    }

    /// The public key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// `Ok` when every bit of `required` is set and no bit of `forbidden` is.
    ///
    /// # Errors
    /// `Error::AttributeMismatch` naming `what` and the offending bits.
    pub fn require_attributes(
        &self,
        what: &'static str,
        required: ObjectAttributes,
        forbidden: ObjectAttributes,
    ) -> Result<(), Error> {
        let found = self.attributes.bits();
        let missing = required.bits() & !found;
        let present = forbidden.bits() & found;
        if missing == 0 && present == 0 {
            Ok(())
        } else {
            Err(Error::AttributeMismatch {
                what,
                found,
                missing,
                forbidden: present,
            })
        }
    }
}

#[cfg(test)]
mod tests;
