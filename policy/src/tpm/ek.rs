//! Endorsement keys as enrolment accepts them: the TCG EK templates (RSA-2048 L-1 and
//! ECC P-384 H-3, TCG EK Credential Profile) and the check that an EK certificate holds
//! the key of the EK's public area.

use x509_cert::Certificate;
use x509_cert::der::Decode as _;

use super::TPM_ECC_NIST_P384;
use super::der::{rsa_public_key, strip_leading_zeros};
use super::{Public, PublicKey, TPM_ALG_AES, TPM_ALG_CFB, TPM_ALG_SHA256, TPM_ALG_SHA384};
use crate::Error;

/// TCG EK Credential Profile: the default EK `authPolicy` (PolicySecret(endorsement)),
/// SHA-256 ("PolicyA").
pub const POLICY_A_SHA256: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];
/// TCG EK Credential Profile: the high-range templates' `authPolicy` ("PolicyB",
/// SHA-384), as tpm2-tools and tss-esapi use it.
pub const POLICY_B_SHA384: [u8; 48] = [
    0xb2, 0x6e, 0x7d, 0x28, 0xd1, 0x1a, 0x50, 0xbc, 0x53, 0xd8, 0x82, 0xbc, 0xf5, 0xfd, 0x3a, 0x1a,
    0x07, 0x41, 0x48, 0xbb, 0x35, 0xd3, 0xb4, 0xe4, 0xcb, 0x1c, 0x0a, 0xd9, 0xbd, 0xe4, 0x19, 0xca,
    0xcb, 0x47, 0xba, 0x09, 0x69, 0x96, 0x46, 0x15, 0x0f, 0x9f, 0xc0, 0x00, 0xf3, 0xf8, 0x0e, 0x12,
];
/// fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted | decrypt.
pub const EK_L1_ATTRIBUTES: u32 = 0x0003_00b2;
/// The same plus userWithAuth (the H templates).
pub const EK_H_ATTRIBUTES: u32 = 0x0003_00f2;

/// Which TCG template an EK follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EkTemplate {
    /// RSA-2048, template L-1.
    RsaL1,
    /// ECC NIST P-384, template H-3.
    EccH3,
}

fn refused(reason: impl Into<String>) -> Error {
    Error::Endorsement {
        reason: reason.into(),
    }
}

/// Checks that `ek` is the TCG template for `alg` (`rsa2048` | `ecc_nist_p384`, as the
/// daemon names its EKs).
///
/// # Errors
/// [`Error::Endorsement`] naming the field that differs.
pub fn check_ek_template(alg: &str, ek: &Public) -> Result<EkTemplate, Error> {
    let (template, name_alg, attrs, policy, sym_bits): (_, _, _, &[u8], _) = match alg {
        "rsa2048" => (
            EkTemplate::RsaL1,
            TPM_ALG_SHA256,
            EK_L1_ATTRIBUTES,
            &POLICY_A_SHA256,
            128,
        ),
        "ecc_nist_p384" => (
            EkTemplate::EccH3,
            TPM_ALG_SHA384,
            EK_H_ATTRIBUTES,
            &POLICY_B_SHA384,
            256,
        ),
        other => return Err(refused(format!("unknown EK algorithm `{other}`"))),
    };
    if ek.name_alg() != name_alg {
        return Err(refused(format!(
            "EK {alg}: name algorithm {:#06x}, not the template's",
            ek.name_alg()
        )));
    }
    if ek.attributes().0 != attrs {
        return Err(refused(format!(
            "EK {alg}: attributes {:#010x}, the template has {attrs:#010x}",
            ek.attributes().0
        )));
    }
    if ek.auth_policy() != policy {
        return Err(refused(format!(
            "EK {alg}: authPolicy {} is not the template's {}",
            hex::encode(ek.auth_policy()),
            hex::encode(policy)
        )));
    }
    match ek.symmetric() {
        Some(s) if s.alg == TPM_ALG_AES && s.mode == TPM_ALG_CFB && s.key_bits == sym_bits => {}
        other => {
            return Err(refused(format!(
                "EK {alg}: symmetric {other:?}, not AES-{sym_bits}-CFB"
            )));
        }
    }
    if ek.scheme().is_some() {
        return Err(refused(format!(
            "EK {alg}: a scheme is set; the template has none"
        )));
    }
    match (template, ek.key()) {
        (
            EkTemplate::RsaL1,
            PublicKey::Rsa {
                bits: 2048,
                exponent,
                modulus,
            },
        ) if (*exponent == 0 || *exponent == 65537) && modulus.len() == 256 => {}
        (EkTemplate::EccH3, PublicKey::Ecc { curve, x, y })
            if *curve == TPM_ECC_NIST_P384
                && x.len() == 48
                && y.len() == 48
                && ek.kdf().is_none() => {}
        _ => return Err(refused(format!("EK {alg}: the key is not the template's"))),
    }
    Ok(template)
}

/// Checks that `subject_public_key` (the contents of an SPKI's `subjectPublicKey` bit
/// string: a DER `RSAPublicKey`, or an uncompressed EC point) is the key of `ek`'s public
/// area.
///
/// # Errors
/// [`Error::Endorsement`] when they differ.
pub fn check_key_matches_ek(subject_public_key: &[u8], ek: &Public) -> Result<(), Error> {
    let same = match ek.key() {
        PublicKey::Rsa {
            exponent, modulus, ..
        } => {
            let e = if *exponent == 0 { 65537 } else { *exponent };
            let e_bytes = strip_leading_zeros(&e.to_be_bytes());
            rsa_public_key(subject_public_key)
                .is_some_and(|(n, ce)| n == strip_leading_zeros(modulus) && ce == e_bytes)
        }
        PublicKey::Ecc { x, y, .. } => {
            let mut point = vec![0x04];
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            subject_public_key == point
        }
    };
    if same {
        Ok(())
    } else {
        Err(refused(
            "the EK certificate's key is not the EK's public area",
        ))
    }
}

/// Checks that the certificate `ek_cert_der` holds the key of `ek`'s public area.
///
/// # Errors
/// [`Error::Endorsement`] when the certificate does not parse or holds another key.
pub fn check_cert_matches_ek(ek_cert_der: &[u8], ek: &Public) -> Result<(), Error> {
    let cert = Certificate::from_der(ek_cert_der)
        .map_err(|e| refused(format!("the EK certificate does not parse: {e}")))?;
    let key = cert
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| refused("the EK certificate's key is not whole bytes"))?;
    check_key_matches_ek(key, ek)
}
