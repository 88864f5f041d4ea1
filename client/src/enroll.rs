//! Enrolment: binding the daemon's attestation key to an endorsement key whose
//! certificate chains to a CA the party trusts, then pinning the AK locally.
//!
//! 1. Each EK certificate from `GET /v1/tpm` is checked against the given CA certificates
//!    with explicit path checks (EK certificates are not WebPKI certificates): every
//!    issuer is found by name among the CA certificates, is a CA (basicConstraints), is
//!    within its validity period, and signed the certificate below it; the path ends at a
//!    self-signed CA certificate from the given set.
//! 2. The certificate's key must be the EK's public area, and the area must be the TCG
//!    template: RSA-2048 L-1 (SHA-256, AES-128-CFB, the default `PolicyA` SHA-256) or ECC
//!    P-384 H-3 (SHA-384, AES-256-CFB, `PolicyB` SHA-384).
//! 3. `TPM2_MakeCredential` runs here in software (TPM 2.0 Part 1 §24: RSA-OAEP with label
//!    `IDENTITY` or ECDH + KDFe for the seed, KDFa for the AES-CFB and HMAC keys) for the
//!    AK's name with a random secret; the daemon's `ActivateCredential` must return it,
//!    which proves the AK lives in the TPM holding that EK.
//! 4. The AK's attributes (docs/protocol.md) and the statement key's certification by the AK are
//!    checked, and the AK is pinned in the trust store.
//!
//! The cryptography is aws-lc-rs (the provider rustls already uses here), so enrolment
//! adds no new cryptographic crate.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use arbiter_policy::Public;
use arbiter_policy::evidence::require_ak;
use arbiter_policy::tpm::{
    PublicKey, TPM_ALG_AES, TPM_ALG_CFB, TPM_ALG_SHA256, TPM_ALG_SHA384, TPM_ECC_NIST_P384,
};
use arbiter_proto::api::{EkAlgorithm, EndorsementKey, Secret, TpmInfo};
use aws_lc_rs::{agreement, cipher, digest, hmac, rand as lc_rand, rsa, signature};
use base64::Engine as _;
use serde_json::json;
use x509_cert::Certificate;
use x509_cert::der::{Decode as _, Encode as _};

use crate::ClientError;
use crate::session::Session;

/// TCG EK Credential Profile: the default EK `authPolicy` (PolicySecret(endorsement)),
/// SHA-256 ("PolicyA").
const POLICY_A_SHA256: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];
/// TCG EK Credential Profile: the high-range templates' `authPolicy` ("PolicyB",
/// SHA-384), as tpm2-tools and tss-esapi use it.
const POLICY_B_SHA384: [u8; 48] = [
    0xb2, 0x6e, 0x7d, 0x28, 0xd1, 0x1a, 0x50, 0xbc, 0x53, 0xd8, 0x82, 0xbc, 0xf5, 0xfd, 0x3a, 0x1a,
    0x07, 0x41, 0x48, 0xbb, 0x35, 0xd3, 0xb4, 0xe4, 0xcb, 0x1c, 0x0a, 0xd9, 0xbd, 0xe4, 0x19, 0xca,
    0xcb, 0x47, 0xba, 0x09, 0x69, 0x96, 0x46, 0x15, 0x0f, 0x9f, 0xc0, 0x00, 0xf3, 0xf8, 0x0e, 0x12,
];
/// fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted | decrypt.
const EK_L1_ATTRIBUTES: u32 = 0x0003_00b2;
/// The same plus userWithAuth (the H templates).
const EK_H_ATTRIBUTES: u32 = 0x0003_00f2;

fn err(what: impl Into<String>) -> ClientError {
    ClientError::Verification(what.into())
}

/// Reads CA certificates (PEM, one or more per file, or DER).
///
/// # Errors
/// `File` when unreadable or unparsable.
pub fn read_cas(files: &[impl AsRef<Path>]) -> Result<Vec<Certificate>, ClientError> {
    let mut out = Vec::new();
    for f in files {
        let f = f.as_ref();
        let bytes = std::fs::read(f).map_err(|e| ClientError::file(f, e))?;
        let certs = if bytes.starts_with(b"-----") {
            Certificate::load_pem_chain(&bytes).map_err(|e| ClientError::file(f, e))?
        } else {
            vec![Certificate::from_der(&bytes).map_err(|e| ClientError::file(f, e))?]
        };
        out.extend(certs);
    }
    if out.is_empty() {
        return Err(ClientError::Usage(
            "no CA certificate given (--ek-ca FILE)".into(),
        ));
    }
    Ok(out)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn check_validity(c: &Certificate, what: &str) -> Result<(), ClientError> {
    let v = c.tbs_certificate().validity();
    let now = now_unix();
    if v.not_before.to_unix_duration().as_secs() > now {
        return Err(err(format!("{what} is not valid yet")));
    }
    if v.not_after.to_unix_duration().as_secs() < now {
        return Err(err(format!("{what} has expired")));
    }
    Ok(())
}

fn is_ca(c: &Certificate) -> bool {
    const BASIC_CONSTRAINTS: &str = "2.5.29.19";
    c.tbs_certificate()
        .extensions()
        .into_iter()
        .flatten()
        .filter(|e| e.extn_id.to_string() == BASIC_CONSTRAINTS)
        .any(|e| {
            x509_cert::ext::pkix::BasicConstraints::from_der(e.extn_value.as_bytes())
                .is_ok_and(|b| b.ca)
        })
}

/// Verifies that `issuer` signed `subject`.
fn verify_signed_by(subject: &Certificate, issuer: &Certificate) -> Result<(), ClientError> {
    let tbs = subject
        .tbs_certificate()
        .to_der()
        .map_err(|e| err(format!("certificate encoding: {e}")))?;
    let sig = subject
        .signature()
        .as_bytes()
        .ok_or_else(|| err("the certificate's signature is not whole bytes"))?;
    let spki = issuer.tbs_certificate().subject_public_key_info();
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| err("the issuer's key is not whole bytes"))?;
    let alg: &'static dyn signature::VerificationAlgorithm =
        match subject.signature_algorithm().oid.to_string().as_str() {
            "1.2.840.113549.1.1.11" => &signature::RSA_PKCS1_2048_8192_SHA256,
            "1.2.840.113549.1.1.12" => &signature::RSA_PKCS1_2048_8192_SHA384,
            "1.2.840.113549.1.1.13" => &signature::RSA_PKCS1_2048_8192_SHA512,
            "1.2.840.10045.4.3.2" => &signature::ECDSA_P256_SHA256_ASN1,
            "1.2.840.10045.4.3.3" => &signature::ECDSA_P384_SHA384_ASN1,
            other => {
                return Err(err(format!(
                    "unsupported certificate signature algorithm {other}"
                )));
            }
        };
    signature::UnparsedPublicKey::new(alg, key)
        .verify(&tbs, sig)
        .map_err(|_| err("a certificate's signature does not verify with its issuer's key"))
}

/// Checks an EK certificate's path to one of `cas`; returns the path's subjects, leaf
/// first.
///
/// # Errors
/// `Verification` naming the broken link.
pub fn verify_ek_chain(
    ek_cert_der: &[u8],
    cas: &[Certificate],
) -> Result<Vec<String>, ClientError> {
    let leaf = Certificate::from_der(ek_cert_der)
        .map_err(|e| err(format!("the EK certificate does not parse: {e}")))?;
    check_validity(&leaf, "the EK certificate")?;
    let mut path = vec![leaf.tbs_certificate().subject().to_string()];
    let mut current = leaf;
    for _ in 0..8 {
        // Names compare by their RFC 4514 form: the same name in PrintableString and
        // UTF8String is the same issuer (the signature then decides).
        let issuer_name = current.tbs_certificate().issuer().to_string();
        let Some(issuer) = cas
            .iter()
            .find(|c| c.tbs_certificate().subject().to_string() == issuer_name)
        else {
            return Err(err(format!(
                "no given CA certificate is the issuer `{issuer_name}`: the EK certificate is from another CA"
            )));
        };
        let name = issuer.tbs_certificate().subject().to_string();
        if !is_ca(issuer) {
            return Err(err(format!("`{name}` is not a CA (basicConstraints)")));
        }
        check_validity(issuer, &format!("CA certificate `{name}`"))?;
        verify_signed_by(&current, issuer)?;
        let self_signed = issuer.tbs_certificate().issuer().to_string() == name;
        path.push(name);
        if self_signed {
            verify_signed_by(issuer, issuer)?;
            return Ok(path);
        }
        current = issuer.clone();
    }
    Err(err("the certificate path is longer than 8"))
}

/// Which TCG template an EK follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EkTemplate {
    /// RSA-2048, template L-1.
    RsaL1,
    /// ECC NIST P-384, template H-3.
    EccH3,
}

/// Checks that `ek` is the TCG template for `alg` (`rsa2048` | `ecc_nist_p384`).
///
/// # Errors
/// `Verification` naming the field that differs.
pub fn check_ek_template(alg: &str, ek: &Public) -> Result<EkTemplate, ClientError> {
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
        other => return Err(err(format!("unknown EK algorithm `{other}`"))),
    };
    if ek.name_alg() != name_alg {
        return Err(err(format!(
            "EK {alg}: name algorithm {:#06x}, not the template's",
            ek.name_alg()
        )));
    }
    if ek.attributes().0 != attrs {
        return Err(err(format!(
            "EK {alg}: attributes {:#010x}, the template has {attrs:#010x}",
            ek.attributes().0
        )));
    }
    if ek.auth_policy() != policy {
        return Err(err(format!(
            "EK {alg}: authPolicy {} is not the template's {}",
            hex::encode(ek.auth_policy()),
            hex::encode(policy)
        )));
    }
    match ek.symmetric() {
        Some(s) if s.alg == TPM_ALG_AES && s.mode == TPM_ALG_CFB && s.key_bits == sym_bits => {}
        other => {
            return Err(err(format!(
                "EK {alg}: symmetric {other:?}, not AES-{sym_bits}-CFB"
            )));
        }
    }
    if ek.scheme().is_some() {
        return Err(err(format!(
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
        _ => return Err(err(format!("EK {alg}: the key is not the template's"))),
    }
    Ok(template)
}

/// Minimal DER reader for the RSAPublicKey in an SPKI: returns (modulus, exponent).
fn rsa_public_key(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *b.first()?;
        let l0 = *b.get(1)? as usize;
        let (len, hdr) = if l0 < 0x80 {
            (l0, 2)
        } else {
            let n = l0 & 0x7f;
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *b.get(2 + i)? as usize;
            }
            (len, 2 + n)
        };
        let body = b.get(hdr..hdr + len)?;
        Some((tag, body, b.get(hdr + len..)?))
    }
    let (0x30, seq, _) = tlv(der)? else {
        return None;
    };
    let (0x02, n, rest) = tlv(seq)? else {
        return None;
    };
    let (0x02, e, _) = tlv(rest)? else {
        return None;
    };
    let strip = |v: &[u8]| {
        v.iter()
            .skip_while(|b| **b == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    Some((strip(n), strip(e)))
}

/// Checks that the certificate's key is the EK's public area's key.
///
/// # Errors
/// `Verification` when they differ.
pub fn check_cert_matches_ek(ek_cert_der: &[u8], ek: &Public) -> Result<(), ClientError> {
    let cert = Certificate::from_der(ek_cert_der)
        .map_err(|e| err(format!("the EK certificate does not parse: {e}")))?;
    let key = cert
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| err("the EK certificate's key is not whole bytes"))?
        .to_vec();
    let same = match ek.key() {
        PublicKey::Rsa {
            exponent, modulus, ..
        } => {
            let e = if *exponent == 0 { 65537 } else { *exponent };
            let e_bytes: Vec<u8> = e
                .to_be_bytes()
                .iter()
                .skip_while(|b| **b == 0)
                .copied()
                .collect();
            rsa_public_key(&key).is_some_and(|(n, ce)| {
                n == modulus
                    .iter()
                    .skip_while(|b| **b == 0)
                    .copied()
                    .collect::<Vec<_>>()
                    && ce == e_bytes
            })
        }
        PublicKey::Ecc { x, y, .. } => {
            let mut point = vec![0x04];
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            key == point
        }
    };
    if same {
        Ok(())
    } else {
        Err(err("the EK certificate's key is not the EK's public area"))
    }
}

fn hmac_alg(name_alg: u16) -> (hmac::Algorithm, &'static digest::Algorithm, usize) {
    if name_alg == TPM_ALG_SHA384 {
        (hmac::HMAC_SHA384, &digest::SHA384, 48)
    } else {
        (hmac::HMAC_SHA256, &digest::SHA256, 32)
    }
}

/// KDFa (TPM 2.0 Part 1 §11.4.10.2, SP 800-108 counter mode with HMAC).
pub fn kdfa(
    name_alg: u16,
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let (alg, _, _) = hmac_alg(name_alg);
    let k = hmac::Key::new(alg, key);
    let want = (bits as usize).div_ceil(8);
    let mut out = Vec::new();
    let mut counter: u32 = 1;
    while out.len() < want {
        let mut ctx = hmac::Context::with_key(&k);
        ctx.update(&counter.to_be_bytes());
        ctx.update(label.as_bytes());
        ctx.update(&[0]);
        ctx.update(context_u);
        ctx.update(context_v);
        ctx.update(&bits.to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
        counter += 1;
    }
    out.truncate(want);
    out
}

/// KDFe (TPM 2.0 Part 1 §11.4.10.3, SP 800-56A concatenation KDF).
pub fn kdfe(
    name_alg: u16,
    z: &[u8],
    label: &str,
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let (_, d, _) = hmac_alg(name_alg);
    let want = (bits as usize).div_ceil(8);
    let mut out = Vec::new();
    let mut counter: u32 = 1;
    while out.len() < want {
        let mut ctx = digest::Context::new(d);
        ctx.update(&counter.to_be_bytes());
        ctx.update(z);
        ctx.update(label.as_bytes());
        ctx.update(&[0]);
        ctx.update(party_u);
        ctx.update(party_v);
        out.extend_from_slice(ctx.finish().as_ref());
        counter += 1;
    }
    out.truncate(want);
    out
}

fn tpm2b(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// `TPM2_MakeCredential` in software: returns (`TPM2B_ID_OBJECT`,
/// `TPM2B_ENCRYPTED_SECRET`) protecting `credential` for the object named `object_name`
/// under `ek` (whose certificate, for RSA, supplies the SPKI).
///
/// # Errors
/// `Verification` when the EK is unusable.
pub fn make_credential(
    ek: &Public,
    ek_spki_der: &[u8],
    object_name: &[u8],
    credential: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), ClientError> {
    let name_alg = ek.name_alg();
    let (_, _, digest_len) = hmac_alg(name_alg);
    let sym_bits = u32::from(ek.symmetric().map(|s| s.key_bits).unwrap_or(128));
    let (seed, encrypted_secret) = match ek.key() {
        PublicKey::Rsa { .. } => {
            let mut seed = vec![0u8; digest_len];
            lc_rand::fill(&mut seed).map_err(|_| err("no randomness"))?;
            let key = rsa::PublicEncryptingKey::from_der(ek_spki_der)
                .map_err(|e| err(format!("EK RSA key: {e}")))?;
            let oaep = rsa::OaepPublicEncryptingKey::new(key)
                .map_err(|_| err("EK RSA key unusable for OAEP"))?;
            let mut out = vec![0u8; oaep.ciphertext_size()];
            let alg = if name_alg == TPM_ALG_SHA384 {
                &rsa::OAEP_SHA384_MGF1SHA384
            } else {
                &rsa::OAEP_SHA256_MGF1SHA256
            };
            let ct = oaep
                .encrypt(alg, &seed, &mut out, Some(b"IDENTITY\0"))
                .map_err(|_| err("RSA-OAEP failed"))?
                .to_vec();
            (seed, ct)
        }
        PublicKey::Ecc { x, y, curve } => {
            if *curve != TPM_ECC_NIST_P384 {
                return Err(err("only P-384 ECC EKs are supported"));
            }
            let rng = lc_rand::SystemRandom::new();
            let eph = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P384, &rng)
                .map_err(|_| err("ECDH key generation failed"))?;
            let eph_pub = eph
                .compute_public_key()
                .map_err(|_| err("ECDH public key"))?;
            let eph_pub = eph_pub.as_ref();
            let (ex, ey) = (&eph_pub[1..49], &eph_pub[49..97]);
            let mut peer = vec![0x04];
            peer.extend_from_slice(x);
            peer.extend_from_slice(y);
            let z = agreement::agree_ephemeral(
                eph,
                agreement::UnparsedPublicKey::new(&agreement::ECDH_P384, &peer),
                err("ECDH with the EK failed"),
                |z| Ok(z.to_vec()),
            )?;
            let seed = kdfe(name_alg, &z, "IDENTITY", ex, x, (digest_len * 8) as u32);
            let mut point = tpm2b(ex);
            point.extend_from_slice(&tpm2b(ey));
            (seed, point)
        }
    };
    let sym_key = kdfa(name_alg, &seed, "STORAGE", object_name, &[], sym_bits);
    let cipher_alg = if sym_bits == 256 {
        &cipher::AES_256
    } else {
        &cipher::AES_128
    };
    let key = cipher::UnboundCipherKey::new(cipher_alg, &sym_key).map_err(|_| err("AES key"))?;
    let enc_key = cipher::EncryptingKey::cfb128(key).map_err(|_| err("AES-CFB"))?;
    let mut enc_identity = tpm2b(credential);
    enc_key
        .less_safe_encrypt(
            &mut enc_identity,
            cipher::EncryptionContext::Iv128(aws_lc_rs::iv::FixedLength::from([0u8; 16])),
        )
        .map_err(|_| err("AES-CFB encryption failed"))?;
    let hmac_key = kdfa(
        name_alg,
        &seed,
        "INTEGRITY",
        &[],
        &[],
        (digest_len * 8) as u32,
    );
    let (halg, _, _) = hmac_alg(name_alg);
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(halg, &hmac_key));
    ctx.update(&enc_identity);
    ctx.update(object_name);
    let outer = ctx.sign();
    let mut id_object = tpm2b(outer.as_ref());
    id_object.extend_from_slice(&enc_identity);
    Ok((tpm2b(&id_object), tpm2b(&encrypted_secret)))
}

/// What enrolment established.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The AK's TPM name, hex.
    pub ak_name: String,
    /// The EK the AK was bound to.
    pub ek_alg: String,
    /// That EK certificate's path, leaf first.
    pub path: Vec<String>,
    /// Every EK checked, with its outcome.
    pub eks: Vec<(String, Result<Vec<String>, String>)>,
}

/// The EK's certificate (DER), which `GET /v1/tpm` gives as null when the TPM has none.
fn ek_cert(ek: &EndorsementKey) -> Result<Vec<u8>, ClientError> {
    ek.cert_der
        .as_ref()
        .map(|c| c.0.clone())
        .ok_or_else(|| ClientError::Protocol("no EK certificate".into()))
}

/// Checks one EK (chain, key, template) and activates a credential for the AK with it.
async fn enroll_with(
    s: &Session,
    ek: &EndorsementKey,
    cas: &[Certificate],
    ak_name: &[u8],
) -> Result<Vec<String>, ClientError> {
    let alg = ek.alg.as_str();
    let cert = ek_cert(ek)?;
    let public = Public::from_tpm2b(&ek.tpm2b_public.0)
        .map_err(|e| err(format!("EK {alg} public area: {e}")))?;
    let path = verify_ek_chain(&cert, cas)?;
    check_cert_matches_ek(&cert, &public)?;
    check_ek_template(alg, &public)?;
    let spki = Certificate::from_der(&cert)
        .map_err(|e| err(e.to_string()))?
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| err(e.to_string()))?;
    let mut secret = [0u8; 32];
    lc_rand::fill(&mut secret).map_err(|_| err("no randomness"))?;
    let (blob, enc) = make_credential(&public, &spki, ak_name, &secret)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let r = s
        .post(
            "/v1/tpm/activate-credential",
            &json!({"ek_alg": alg, "credential_blob": b64.encode(&blob), "encrypted_secret": b64.encode(&enc)}),
        )
        .await?;
    let answer: Secret = r.answer("POST /v1/tpm/activate-credential")?;
    if answer.secret.0 != secret {
        return Err(err(format!(
            "ActivateCredential with EK {alg} returned another secret: the AK is not in that TPM"
        )));
    }
    Ok(path)
}

/// Enrols the daemon: checks the EKs against `cas`, activates a credential for the AK
/// with the first that passes (RSA-2048 preferred), checks the AK and the statement key's
/// certification, and pins the AK in the trust store.
///
/// # Errors
/// `Verification` listing why no EK passed; server errors.
pub async fn enroll(s: &Session, cas: &[Certificate]) -> Result<Enrolled, ClientError> {
    let tpm: TpmInfo = s.get("/v1/tpm").await?.answer("GET /v1/tpm")?;
    let ak = Public::from_tpm2b(&tpm.ak.tpm2b_public.0)
        .map_err(|e| err(format!("AK public area: {e}")))?;
    require_ak(&ak).map_err(|e| err(format!("AK: {e}")))?;
    let ak_name = ak.name();
    if hex::encode(&tpm.ak.name.0) != hex::encode(&ak_name) {
        return Err(err("the AK's name is not the one its public area gives"));
    }
    let ak_pem = ak.public_key_pem().map_err(|e| err(format!("AK: {e}")))?;
    let sk = Public::from_tpm2b(&tpm.statement_key.tpm2b_public.0)
        .map_err(|e| err(format!("statement key: {e}")))?;
    arbiter_policy::verify_certify(
        &tpm.statement_key.attest.0,
        &tpm.statement_key.signature.0,
        &ak,
        &sk,
        &tpm.statement_key.qualifying_data.0,
    )
    .map_err(|e| err(format!("the statement key's certification by the AK: {e}")))?;
    let mut eks: Vec<&EndorsementKey> = tpm.eks.iter().collect();
    eks.sort_by_key(|e| e.alg != EkAlgorithm::Rsa2048);
    let mut outcomes = Vec::new();
    let mut chosen = None;
    for ek in eks {
        let alg = ek.alg.as_str().to_owned();
        let outcome = enroll_with(s, ek, cas, &ak_name).await;
        if chosen.is_none()
            && let Ok(path) = &outcome
        {
            chosen = Some((alg.clone(), path.clone(), ek_cert(ek)?));
        }
        outcomes.push((alg, outcome.map_err(|e| e.to_string())));
    }
    let Some((ek_alg, path, cert)) = chosen else {
        return Err(err(format!(
            "no EK passed:\n  - {}",
            outcomes
                .iter()
                .map(|(a, o)| format!(
                    "{a}: {}",
                    o.as_ref().err().map(String::as_str).unwrap_or("")
                ))
                .collect::<Vec<_>>()
                .join("\n  - ")
        )));
    };
    let name_hex = hex::encode(&ak_name);
    s.trust.update_server(&s.settings.server, |t| {
        t.ak_name = Some(name_hex.clone());
        t.ak_public_pem = Some(ak_pem);
        t.ek_alg = Some(ek_alg.clone());
        t.ek_cert_sha256 = Some(crate::sha256_hex(&cert));
    })?;
    Ok(Enrolled {
        ak_name: name_hex,
        ek_alg,
        path,
        eks: outcomes,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const EK_RSA: &[u8] = include_bytes!("../../policy/testdata/swtpm/ek_rsa.pub");
    const EK_ECC_P256: &[u8] = include_bytes!("../../policy/testdata/swtpm/ek_ecc.pub");

    #[test]
    fn the_rsa_l1_template_passes_and_other_keys_do_not() {
        let rsa = Public::from_tpm2b(EK_RSA).unwrap();
        assert_eq!(
            check_ek_template("rsa2048", &rsa).unwrap(),
            EkTemplate::RsaL1
        );
        assert!(check_ek_template("ecc_nist_p384", &rsa).is_err());
        // tpm2_createek's default ECC EK is P-256 (template L-2), not H-3.
        let ecc = Public::from_tpm2b(EK_ECC_P256).unwrap();
        let e = check_ek_template("ecc_nist_p384", &ecc)
            .unwrap_err()
            .to_string();
        assert!(e.contains("name algorithm"), "{e}");
        assert!(check_ek_template("rsa4096", &rsa).is_err());
    }

    #[test]
    fn kdfa_gives_the_requested_length_and_depends_on_every_input() {
        let a = kdfa(TPM_ALG_SHA256, b"seed", "STORAGE", b"name", &[], 128);
        assert_eq!(a.len(), 16);
        assert_eq!(
            a,
            kdfa(TPM_ALG_SHA256, b"seed", "STORAGE", b"name", &[], 128)
        );
        assert_ne!(
            a,
            kdfa(TPM_ALG_SHA256, b"seed", "INTEGRITY", b"name", &[], 128)
        );
        assert_ne!(
            a,
            kdfa(TPM_ALG_SHA256, b"seed", "STORAGE", b"other", &[], 128)
        );
        // The bit count is an input: a longer key is not an extension of a shorter one.
        let long = kdfa(TPM_ALG_SHA384, b"seed", "STORAGE", b"name", &[], 384);
        assert_eq!(long.len(), 48);
        assert_ne!(
            &kdfa(TPM_ALG_SHA384, b"seed", "STORAGE", b"name", &[], 256)[..],
            &long[..32]
        );
        assert_eq!(
            kdfe(TPM_ALG_SHA384, b"z", "IDENTITY", b"u", b"v", 384).len(),
            48
        );
    }

    #[test]
    fn rsa_public_keys_parse_from_der() {
        // SEQUENCE { INTEGER 0x00c5, INTEGER 0x010001 }
        let der = [
            0x30, 0x09, 0x02, 0x02, 0x00, 0xc5, 0x02, 0x03, 0x01, 0x00, 0x01,
        ];
        assert_eq!(
            rsa_public_key(&der),
            Some((vec![0xc5], vec![0x01, 0x00, 0x01]))
        );
        assert_eq!(rsa_public_key(&der[..5]), None);
    }
}
