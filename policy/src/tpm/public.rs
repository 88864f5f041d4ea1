//! `TPMT_PUBLIC` / `TPM2B_PUBLIC` of ECC and RSA keys: parsing that keeps the exact bytes
//! the TPM hashed, the object's TPM name, and conversion of P-256 keys to `p256` keys and
//! of keys to SubjectPublicKeyInfo PEM.

use p256::ecdsa::VerifyingKey;
use p256::pkcs8::{EncodePublicKey as _, LineEnding};

use super::attributes::ObjectAttributes;
use super::hash::{digest_size, hash};
use super::wire::{Reader, put_tpm2b};
use super::{
    TPM_ALG_AES, TPM_ALG_CAMELLIA, TPM_ALG_ECC, TPM_ALG_ECDH, TPM_ALG_ECDSA, TPM_ALG_ECMQV,
    TPM_ALG_ECSCHNORR, TPM_ALG_KDF1_SP800_56A, TPM_ALG_KDF1_SP800_108, TPM_ALG_KDF2, TPM_ALG_MGF1,
    TPM_ALG_NULL, TPM_ALG_OAEP, TPM_ALG_RSA, TPM_ALG_RSAES, TPM_ALG_RSAPSS, TPM_ALG_RSASSA,
    TPM_ALG_SHA256, TPM_ALG_SM2, TPM_ALG_SM4, TPM_ECC_NIST_P256,
};
use crate::Error;

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
        /// `TPMI_ECC_CURVE`, e.g. [`TPM_ECC_NIST_P256`].
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

    /// The `TPMT_PUBLIC` bytes exactly as parsed.
    pub fn tpmt_bytes(&self) -> &[u8] {
        &self.tpmt
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

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;

    use super::*;
    use crate::tpm::{TPM_ALG_CFB, TPM_ALG_SHA384, TPM_ECC_NIST_P384};

    /// A small ECC P-256 signing public area, written out field by field (the point is
    /// not on the curve; names do not care).
    fn hand_built_ecc(name_alg: [u8; 2]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&[0x00, 0x23]); // type: TPM_ALG_ECC
        t.extend_from_slice(&name_alg); // nameAlg
        t.extend_from_slice(&[0x00, 0x05, 0x00, 0x72]); // objectAttributes
        t.extend_from_slice(&[0x00, 0x00]); // authPolicy: empty
        t.extend_from_slice(&[0x00, 0x10]); // symmetric: TPM_ALG_NULL
        t.extend_from_slice(&[0x00, 0x18, 0x00, 0x0b]); // scheme: ECDSA, SHA-256
        t.extend_from_slice(&[0x00, 0x03]); // curveID: NIST P-256
        t.extend_from_slice(&[0x00, 0x10]); // kdf: TPM_ALG_NULL
        t.extend_from_slice(&[0x00, 0x20]);
        t.extend_from_slice(&[0x11; 32]); // x
        t.extend_from_slice(&[0x00, 0x20]);
        t.extend_from_slice(&[0x22; 32]); // y
        t
    }

    #[test]
    fn parses_hand_built_ecc_area_and_computes_its_name() {
        let tpmt = hand_built_ecc([0x00, 0x0b]);
        assert_eq!(tpmt.len(), 88);
        let public = Public::from_tpmt(&tpmt).unwrap();
        assert_eq!(public.object_type(), TPM_ALG_ECC);
        assert_eq!(public.name_alg(), TPM_ALG_SHA256);
        assert_eq!(public.attributes(), ObjectAttributes(0x0005_0072));
        assert!(public.auth_policy().is_empty());
        assert_eq!(public.symmetric(), None);
        assert_eq!(
            public.scheme(),
            Some(Scheme {
                alg: TPM_ALG_ECDSA,
                hash: TPM_ALG_SHA256
            })
        );
        assert_eq!(public.kdf(), None);
        assert_eq!(public.ecc_curve(), Some(TPM_ECC_NIST_P256));
        assert_eq!(public.rsa_bits(), None);
        assert_eq!(
            public.key(),
            &PublicKey::Ecc {
                curve: TPM_ECC_NIST_P256,
                x: vec![0x11; 32],
                y: vec![0x22; 32]
            }
        );
        assert_eq!(public.tpmt_bytes(), tpmt.as_slice());
        // Computed independently: 000b || sha256(the 88 bytes above).
        assert_eq!(
            hex::encode(public.name()),
            "000bcfcbce8506a2969de190d4dd4045e9241e5c01bded771b4323a0d2e08c9836ad"
        );
        // The same area with nameAlg SHA-384: 000c || sha384(...).
        let sha384 = Public::from_tpmt(&hand_built_ecc([0x00, 0x0c])).unwrap();
        assert_eq!(
            hex::encode(sha384.name()),
            "000c7ec5cd5167c364ca82354bd689d3b8835f7743cbe2da393d971d15e3fe2f81f4\
             3d9b9f3c3d0f12bcb90fa4028fc87ceb"
        );
        // A point off the curve is refused when used as a key.
        assert_eq!(
            public.p256_verifying_key(),
            Err(Error::InvalidKey {
                reason: "point is not on the P-256 curve"
            })
        );
    }

    #[test]
    fn tpm2b_round_trip_and_framing_errors() {
        let tpmt = hand_built_ecc([0x00, 0x0b]);
        let mut tpm2b = vec![0x00, 88];
        tpm2b.extend_from_slice(&tpmt);
        let public = Public::from_tpm2b(&tpm2b).unwrap();
        assert_eq!(public.to_tpm2b(), tpm2b);
        assert_eq!(Public::from_tpmt(public.tpmt_bytes()).unwrap(), public);

        let mut trailing = tpm2b.clone();
        trailing.push(0);
        assert_eq!(
            Public::from_tpm2b(&trailing),
            Err(Error::TrailingBytes {
                what: "TPM2B_PUBLIC"
            })
        );
        // A size that covers one byte more than the TPMT_PUBLIC.
        let mut inner_trailing = vec![0x00, 89];
        inner_trailing.extend_from_slice(&tpmt);
        inner_trailing.push(0);
        assert_eq!(
            Public::from_tpm2b(&inner_trailing),
            Err(Error::TrailingBytes {
                what: "TPMT_PUBLIC"
            })
        );
        assert_eq!(
            Public::from_tpm2b(&tpm2b[..tpm2b.len() - 1]),
            Err(Error::Truncated {
                what: "TPM2B_PUBLIC"
            })
        );
        assert_eq!(
            Public::from_tpmt(&tpmt[..tpmt.len() - 1]),
            Err(Error::Truncated {
                what: "TPMS_ECC_POINT.y"
            })
        );
        assert_eq!(
            Public::from_tpmt(&[]),
            Err(Error::Truncated {
                what: "TPMT_PUBLIC.type"
            })
        );
        // Every strict prefix is refused.
        for len in 0..tpmt.len() {
            assert!(matches!(
                Public::from_tpmt(&tpmt[..len]),
                Err(Error::Truncated { .. })
            ));
        }
    }

    #[test]
    fn unsupported_and_invalid_fields_are_named() {
        let mut keyedhash = hand_built_ecc([0x00, 0x0b]);
        keyedhash[1] = 0x08;
        assert_eq!(
            Public::from_tpmt(&keyedhash),
            Err(Error::UnsupportedAlgorithm {
                what: "TPMT_PUBLIC.type",
                alg: 0x0008
            })
        );
        let sm3 = hand_built_ecc([0x00, 0x12]);
        assert_eq!(
            Public::from_tpmt(&sm3),
            Err(Error::UnsupportedAlgorithm {
                what: "TPMT_PUBLIC.nameAlg",
                alg: 0x0012
            })
        );
        let mut ecdaa = hand_built_ecc([0x00, 0x0b]);
        ecdaa[13] = 0x1a;
        assert_eq!(
            Public::from_tpmt(&ecdaa),
            Err(Error::UnsupportedAlgorithm {
                what: "public key scheme",
                alg: 0x001a
            })
        );
        // An RSA scheme on an ECC key.
        let mut rsassa = hand_built_ecc([0x00, 0x0b]);
        rsassa[13] = 0x14;
        assert_eq!(
            Public::from_tpmt(&rsassa),
            Err(Error::UnsupportedAlgorithm {
                what: "public key scheme",
                alg: 0x0014
            })
        );
        // An authPolicy of 3 bytes under a SHA-256 nameAlg.
        let mut bad_policy = hand_built_ecc([0x00, 0x0b]);
        bad_policy.splice(8..10, [0x00, 0x03, 0xaa, 0xbb, 0xcc]);
        assert_eq!(
            Public::from_tpmt(&bad_policy),
            Err(Error::InvalidValue {
                what: "TPMT_PUBLIC.authPolicy size",
                value: 3
            })
        );
    }

    fn rsa_storage_key() -> Public {
        // Shaped like the TCG EK template L-1: RSA-2048, AES-128-CFB, restricted decrypt.
        Public::new(
            TPM_ALG_SHA256,
            ObjectAttributes(0x0003_00b2),
            &[0x5a; 32],
            Some(SymDef {
                alg: TPM_ALG_AES,
                key_bits: 128,
                mode: TPM_ALG_CFB,
            }),
            None,
            None,
            PublicKey::Rsa {
                bits: 2048,
                exponent: 0,
                modulus: vec![0xc3; 256],
            },
        )
        .unwrap()
    }

    #[test]
    fn new_marshals_like_a_tpm() {
        let public = rsa_storage_key();
        let mut want = hex::decode("0001000b000300b20020").unwrap();
        want.extend_from_slice(&[0x5a; 32]);
        want.extend_from_slice(&hex::decode("00060080004300100800000000000100").unwrap());
        want.extend_from_slice(&[0xc3; 256]);
        assert_eq!(hex::encode(public.tpmt_bytes()), hex::encode(&want));
        assert_eq!(public.rsa_bits(), Some(2048));
        assert_eq!(public.rsa_exponent(), Some(65_537));
        assert_eq!(public.ecc_curve(), None);
        assert_eq!(public.kdf(), None);
        assert_eq!(public.object_type(), TPM_ALG_RSA);
        assert_eq!(
            public.p256_verifying_key(),
            Err(Error::UnsupportedAlgorithm {
                what: "key type (P-256 needed)",
                alg: TPM_ALG_RSA
            })
        );

        // RSAES has no hash on the wire; OAEP has one.
        let rsaes = Public::new(
            TPM_ALG_SHA256,
            ObjectAttributes::DECRYPT,
            &[],
            None,
            Some(Scheme {
                alg: TPM_ALG_RSAES,
                hash: TPM_ALG_SHA256,
            }),
            None,
            PublicKey::Rsa {
                bits: 1024,
                exponent: 3,
                modulus: vec![0xff; 128],
            },
        )
        .unwrap();
        assert_eq!(
            rsaes.scheme(),
            Some(Scheme {
                alg: TPM_ALG_RSAES,
                hash: TPM_ALG_NULL
            })
        );
        assert_eq!(rsaes.rsa_exponent(), Some(3));
        assert_eq!(
            &rsaes.tpmt_bytes()[10..16],
            &[0x00, 0x10, 0x00, 0x15, 0x04, 0x00]
        );

        // An ECC key with a KDF, and the KDF refused on an RSA key.
        let ecdh = Public::new(
            TPM_ALG_SHA384,
            ObjectAttributes::DECRYPT,
            &[],
            None,
            Some(Scheme {
                alg: TPM_ALG_ECDH,
                hash: TPM_ALG_SHA384,
            }),
            Some(Scheme {
                alg: TPM_ALG_KDF1_SP800_56A,
                hash: TPM_ALG_SHA384,
            }),
            PublicKey::Ecc {
                curve: TPM_ECC_NIST_P384,
                x: vec![1; 48],
                y: vec![2; 48],
            },
        )
        .unwrap();
        assert_eq!(
            ecdh.kdf(),
            Some(Scheme {
                alg: TPM_ALG_KDF1_SP800_56A,
                hash: TPM_ALG_SHA384
            })
        );
        assert_eq!(ecdh.name().len(), 50);
        assert_eq!(
            ecdh.p256_verifying_key(),
            Err(Error::UnsupportedAlgorithm {
                what: "ECC curve",
                alg: TPM_ECC_NIST_P384
            })
        );
        assert_eq!(
            Public::new(
                TPM_ALG_SHA256,
                ObjectAttributes(0),
                &[],
                None,
                None,
                Some(Scheme {
                    alg: TPM_ALG_MGF1,
                    hash: TPM_ALG_SHA256
                }),
                PublicKey::Rsa {
                    bits: 1024,
                    exponent: 0,
                    modulus: vec![1; 128]
                },
            ),
            Err(Error::InvalidValue {
                what: "kdf of an RSA key (only ECC keys have one)",
                value: u64::from(TPM_ALG_MGF1),
            })
        );
    }

    #[test]
    fn p256_signing_key_round_trips_the_point() {
        let signing = SigningKey::from_slice(&[0x42; 32]).unwrap();
        let vk = *signing.verifying_key();
        let attrs = ObjectAttributes::FIXED_TPM | ObjectAttributes::SIGN_ENCRYPT;
        let public = Public::p256_signing_key(&vk, attrs, &[7; 32]).unwrap();
        assert_eq!(public.p256_verifying_key().unwrap(), vk);
        assert_eq!(public.auth_policy(), &[7; 32]);
        assert_eq!(public.tpmt_bytes().len(), 88 + 32);
        assert_eq!(Public::from_tpm2b(&public.to_tpm2b()).unwrap(), public);
        assert!(
            public
                .public_key_pem()
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----\n")
        );
        assert_eq!(
            Public::p256_signing_key(&vk, attrs, &[7; 5]),
            Err(Error::InvalidValue {
                what: "TPMT_PUBLIC.authPolicy size",
                value: 5
            })
        );
    }

    #[test]
    fn short_coordinates_are_left_padded() {
        // Find a key whose x coordinate has a leading zero byte, and give it stripped.
        let (vk, x, y) = (0u32..10_000)
            .find_map(|seed| {
                let secret = crate::tpm::hash::sha256(&[&seed.to_be_bytes()]);
                let vk = *SigningKey::from_slice(&secret).ok()?.verifying_key();
                let point = vk.to_sec1_point(false);
                let (x, y) = (point.x()?.to_vec(), point.y()?.to_vec());
                (x[0] == 0).then(|| (vk, x[1..].to_vec(), y))
            })
            .unwrap();
        let public = Public::new(
            TPM_ALG_SHA256,
            ObjectAttributes::SIGN_ENCRYPT,
            &[],
            None,
            None,
            None,
            PublicKey::Ecc {
                curve: TPM_ECC_NIST_P256,
                x,
                y: y.clone(),
            },
        )
        .unwrap();
        assert_eq!(public.p256_verifying_key().unwrap(), vk);
        let too_long = Public::new(
            TPM_ALG_SHA256,
            ObjectAttributes::SIGN_ENCRYPT,
            &[],
            None,
            None,
            None,
            PublicKey::Ecc {
                curve: TPM_ECC_NIST_P256,
                x: vec![1; 33],
                y,
            },
        )
        .unwrap();
        assert_eq!(
            too_long.p256_verifying_key(),
            Err(Error::TooLong {
                what: "ECC x coordinate",
                len: 33,
                max: 32
            })
        );
    }

    #[test]
    fn require_attributes_names_missing_and_forbidden_bits() {
        let public = rsa_storage_key(); // 0x000300b2: restricted | decrypt | ...
        public
            .require_attributes(
                "EK",
                ObjectAttributes::RESTRICTED,
                ObjectAttributes::SIGN_ENCRYPT,
            )
            .unwrap();
        assert_eq!(
            public.require_attributes(
                "AK",
                ObjectAttributes::RESTRICTED | ObjectAttributes::SIGN_ENCRYPT,
                ObjectAttributes::DECRYPT,
            ),
            Err(Error::AttributeMismatch {
                what: "AK",
                found: 0x0003_00b2,
                missing: ObjectAttributes::SIGN_ENCRYPT.bits(),
                forbidden: ObjectAttributes::DECRYPT.bits(),
            })
        );
    }

    #[test]
    fn rsa_pem_is_a_subject_public_key_info() {
        let pem = rsa_storage_key().public_key_pem().unwrap();
        let (label, der) = p256::pkcs8::der::pem::decode_vec(pem.as_bytes()).unwrap();
        assert_eq!(label, "PUBLIC KEY");
        let spki = p256::pkcs8::SubjectPublicKeyInfoRef::try_from(der.as_slice()).unwrap();
        assert_eq!(spki.algorithm.oid.to_string(), "1.2.840.113549.1.1.1");
        let key = spki.subject_public_key.raw_bytes();
        // SEQUENCE { INTEGER 00 c3.. (257 bytes), INTEGER 01 00 01 }
        assert_eq!(&key[..8], &[0x30, 0x82, 0x01, 0x0a, 0x02, 0x82, 0x01, 0x01]);
        assert_eq!(key[8], 0x00);
        assert_eq!(&key[key.len() - 5..], &[0x02, 0x03, 0x01, 0x00, 0x01]);
    }
}
