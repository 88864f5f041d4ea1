//! TPM 2.0 wire structures (TPM 2.0 Library, Part 2: Structures), big-endian as the TPM
//! marshals them: the constants this crate needs, PCR selections, object and NV
//! attributes, public areas and their names, `TPMS_ATTEST` and ECDSA `TPMT_SIGNATURE`;
//! and what enrolment checks and builds: the TCG EK templates and the EK certificate's
//! key, KDFa and KDFe, and `TPM2_MakeCredential` but for its asymmetric seed encryption.
//!
//! Parsers take bytes, refuse truncated input and trailing bytes, and never panic.

mod attest;
mod attributes;
mod credential;
mod der;
mod ek;
pub(crate) mod hash;
mod kdf;
mod nv;
mod pcr;
mod public;
mod signature;
mod wire;

pub use attest::{Attest, Attested, ClockInfo};
pub use attributes::{NvAttributes, ObjectAttributes};
pub use credential::{credential_blob, ecc_point};
pub use der::rsa_public_key;
pub use ek::{
    EK_H_ATTRIBUTES, EK_L1_ATTRIBUTES, EkTemplate, POLICY_A_SHA256, POLICY_B_SHA384,
    check_cert_matches_ek, check_ek_template, check_key_matches_ek,
};
pub use hash::{digest_size, hash};
pub use kdf::{kdf_digest_len, kdfa, kdfe};
pub use nv::NvPublic;
pub use pcr::{PcrSelection, PcrValues, pcr_digest};
pub use public::{Public, PublicKey, Scheme, SymDef};
pub use signature::EcdsaSignature;
pub use wire::{tpm2b, tpm2b_body};

// TPM_ALG_ID (Part 2, table "TPM_ALG_ID Constants"; TCG Algorithm Registry).
/// `TPM_ALG_RSA`: RSA public key.
pub const TPM_ALG_RSA: u16 = 0x0001;
/// `TPM_ALG_TDES`: triple DES (deprecated).
pub const TPM_ALG_TDES: u16 = 0x0003;
/// `TPM_ALG_SHA1`.
pub const TPM_ALG_SHA1: u16 = 0x0004;
/// `TPM_ALG_HMAC`.
pub const TPM_ALG_HMAC: u16 = 0x0005;
/// `TPM_ALG_AES`.
pub const TPM_ALG_AES: u16 = 0x0006;
/// `TPM_ALG_MGF1`: the MGF1 mask generation function (a KDF scheme).
pub const TPM_ALG_MGF1: u16 = 0x0007;
/// `TPM_ALG_KEYEDHASH`: keyed-hash object (HMAC key or sealed data).
pub const TPM_ALG_KEYEDHASH: u16 = 0x0008;
/// `TPM_ALG_XOR`.
pub const TPM_ALG_XOR: u16 = 0x000A;
/// `TPM_ALG_SHA256`.
pub const TPM_ALG_SHA256: u16 = 0x000B;
/// `TPM_ALG_SHA384`.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// `TPM_ALG_SHA512`.
pub const TPM_ALG_SHA512: u16 = 0x000D;
/// `TPM_ALG_NULL`: no algorithm.
pub const TPM_ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_SM3_256`.
pub const TPM_ALG_SM3_256: u16 = 0x0012;
/// `TPM_ALG_SM4`.
pub const TPM_ALG_SM4: u16 = 0x0013;
/// `TPM_ALG_RSASSA`: RSA PKCS#1 v1.5 signatures.
pub const TPM_ALG_RSASSA: u16 = 0x0014;
/// `TPM_ALG_RSAES`: RSA PKCS#1 v1.5 encryption.
pub const TPM_ALG_RSAES: u16 = 0x0015;
/// `TPM_ALG_RSAPSS`: RSA PSS signatures.
pub const TPM_ALG_RSAPSS: u16 = 0x0016;
/// `TPM_ALG_OAEP`: RSA OAEP encryption.
pub const TPM_ALG_OAEP: u16 = 0x0017;
/// `TPM_ALG_ECDSA`.
pub const TPM_ALG_ECDSA: u16 = 0x0018;
/// `TPM_ALG_ECDH`.
pub const TPM_ALG_ECDH: u16 = 0x0019;
/// `TPM_ALG_ECDAA`.
pub const TPM_ALG_ECDAA: u16 = 0x001A;
/// `TPM_ALG_SM2`.
pub const TPM_ALG_SM2: u16 = 0x001B;
/// `TPM_ALG_ECSCHNORR`.
pub const TPM_ALG_ECSCHNORR: u16 = 0x001C;
/// `TPM_ALG_ECMQV`.
pub const TPM_ALG_ECMQV: u16 = 0x001D;
/// `TPM_ALG_KDF1_SP800_56A`.
pub const TPM_ALG_KDF1_SP800_56A: u16 = 0x0020;
/// `TPM_ALG_KDF2`.
pub const TPM_ALG_KDF2: u16 = 0x0021;
/// `TPM_ALG_KDF1_SP800_108`.
pub const TPM_ALG_KDF1_SP800_108: u16 = 0x0022;
/// `TPM_ALG_ECC`: elliptic-curve public key.
pub const TPM_ALG_ECC: u16 = 0x0023;
/// `TPM_ALG_SYMCIPHER`: symmetric-cipher object.
pub const TPM_ALG_SYMCIPHER: u16 = 0x0025;
/// `TPM_ALG_CAMELLIA`.
pub const TPM_ALG_CAMELLIA: u16 = 0x0026;
/// `TPM_ALG_CTR` block-cipher mode.
pub const TPM_ALG_CTR: u16 = 0x0040;
/// `TPM_ALG_OFB` block-cipher mode.
pub const TPM_ALG_OFB: u16 = 0x0041;
/// `TPM_ALG_CBC` block-cipher mode.
pub const TPM_ALG_CBC: u16 = 0x0042;
/// `TPM_ALG_CFB` block-cipher mode (the one TPM parents and EKs use).
pub const TPM_ALG_CFB: u16 = 0x0043;
/// `TPM_ALG_ECB` block-cipher mode.
pub const TPM_ALG_ECB: u16 = 0x0044;

// TPM_ECC_CURVE.
/// `TPM_ECC_NIST_P256`.
pub const TPM_ECC_NIST_P256: u16 = 0x0003;
/// `TPM_ECC_NIST_P384`.
pub const TPM_ECC_NIST_P384: u16 = 0x0004;
/// `TPM_ECC_NIST_P521`.
pub const TPM_ECC_NIST_P521: u16 = 0x0005;

// TPM_CC (command codes, as policy commands hash them).
/// `TPM_CC_NV_Write`.
pub const TPM_CC_NV_WRITE: u32 = 0x0000_0137;
/// `TPM_CC_Certify`.
pub const TPM_CC_CERTIFY: u32 = 0x0000_0148;
/// `TPM_CC_NV_Read`.
pub const TPM_CC_NV_READ: u32 = 0x0000_014E;
/// `TPM_CC_Unseal`.
pub const TPM_CC_UNSEAL: u32 = 0x0000_015E;
/// `TPM_CC_Sign`.
pub const TPM_CC_SIGN: u32 = 0x0000_015D;
/// `TPM_CC_Quote`.
pub const TPM_CC_QUOTE: u32 = 0x0000_0158;
/// `TPM_CC_ActivateCredential`.
pub const TPM_CC_ACTIVATE_CREDENTIAL: u32 = 0x0000_0147;
/// `TPM_CC_PolicyAuthValue`.
pub const TPM_CC_POLICY_AUTH_VALUE: u32 = 0x0000_016B;
/// `TPM_CC_PolicyCommandCode`.
pub const TPM_CC_POLICY_COMMAND_CODE: u32 = 0x0000_016C;
/// `TPM_CC_PolicyPCR`.
pub const TPM_CC_POLICY_PCR: u32 = 0x0000_017F;

// TPM_GENERATED and TPM_ST attestation tags.
/// `TPM_GENERATED_VALUE`: the magic that starts every `TPMS_ATTEST` a TPM signs.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_NV`: `TPM2_NV_Certify` of a byte range.
pub const TPM_ST_ATTEST_NV: u16 = 0x8014;
/// `TPM_ST_ATTEST_COMMAND_AUDIT`.
pub const TPM_ST_ATTEST_COMMAND_AUDIT: u16 = 0x8015;
/// `TPM_ST_ATTEST_SESSION_AUDIT`.
pub const TPM_ST_ATTEST_SESSION_AUDIT: u16 = 0x8016;
/// `TPM_ST_ATTEST_CERTIFY`: `TPM2_Certify`.
pub const TPM_ST_ATTEST_CERTIFY: u16 = 0x8017;
/// `TPM_ST_ATTEST_QUOTE`: `TPM2_Quote`.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ST_ATTEST_TIME`: `TPM2_GetTime`.
pub const TPM_ST_ATTEST_TIME: u16 = 0x8019;
/// `TPM_ST_ATTEST_CREATION`: `TPM2_CertifyCreation`.
pub const TPM_ST_ATTEST_CREATION: u16 = 0x801A;
/// `TPM_ST_ATTEST_NV_DIGEST`: `TPM2_NV_Certify` of a whole index, as a digest.
pub const TPM_ST_ATTEST_NV_DIGEST: u16 = 0x801C;
