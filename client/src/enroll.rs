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
//!    P-384 H-3 (SHA-384, AES-256-CFB, `PolicyB` SHA-384) — both checks are
//!    `arbiter_policy::tpm`'s.
//! 3. `TPM2_MakeCredential` runs in software (TPM 2.0 Part 1 §24) for the AK's name with a
//!    random secret: the seed is encrypted here (RSA-OAEP with label `IDENTITY`, or ECDH
//!    then KDFe), and `arbiter_policy::tpm::credential_blob` derives the AES-CFB and HMAC
//!    keys with KDFa and builds the blob. The daemon's `ActivateCredential` must return
//!    the secret, which proves the AK lives in the TPM holding that EK.
//! 4. The AK's attributes (docs/protocol.md) and the statement key's certification by the AK are
//!    checked, and the AK is pinned in the trust store.
//!
//! The asymmetric cryptography and the certificate signatures are aws-lc-rs (the provider
//! rustls already uses here); the symmetric part is the policy crate's.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use arbiter_policy::Public;
use arbiter_policy::evidence::require_ak;
use arbiter_policy::tpm::{self, PublicKey, TPM_ALG_SHA384, TPM_ECC_NIST_P384};
use arbiter_proto::api::{EkAlgorithm, EndorsementKey, Secret, TpmInfo};
use aws_lc_rs::{agreement, rand as lc_rand, rsa, signature};
use base64::Engine as _;
use serde_json::json;
use x509_cert::Certificate;
use x509_cert::der::{Decode as _, Encode as _};

use crate::ClientError;
use crate::session::Session;

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
    // The outer algorithm identifier is outside what the signature covers: RFC 5280
    // §4.1.1.2 requires it to equal the one inside, so that no unsigned byte of the
    // certificate can change while its signature still verifies.
    if subject.signature_algorithm() != subject.tbs_certificate().signature() {
        return Err(err(
            "the certificate's signature algorithm differs from the one it signs              (RFC 5280 4.1.1.2): the certificate was altered",
        ));
    }
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
    // The decoder takes some non-DER forms (e.g. a version written out at its default);
    // the signature is checked over the re-encoded to-be-signed part, so only a
    // certificate that is its own re-encoding is exactly what its issuer signed.
    if leaf.to_der().ok().as_deref() != Some(ek_cert_der) {
        return Err(err(
            "the EK certificate is not in DER (its encoding is not the canonical one): \
             it was altered",
        ));
    }
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

/// Checks that the certificate's key is the EK's public area's key (the check lives in
/// the policy crate, with the other verifiers).
///
/// # Errors
/// `Verification` when they differ.
pub fn check_cert_matches_ek(ek_cert_der: &[u8], ek: &Public) -> Result<(), ClientError> {
    tpm::check_cert_matches_ek(ek_cert_der, ek).map_err(|e| err(e.to_string()))
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
    let digest_len = tpm::kdf_digest_len(name_alg);
    let sym_bits = ek.symmetric().map(|s| s.key_bits).unwrap_or(128);
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
            let seed = tpm::kdfe(name_alg, &z, "IDENTITY", ex, x, (digest_len * 8) as u32);
            let point = tpm::ecc_point(ex, ey).map_err(|e| err(e.to_string()))?;
            (seed, point)
        }
    };
    let id_object = tpm::credential_blob(name_alg, sym_bits, &seed, object_name, credential)
        .map_err(|e| err(format!("credential: {e}")))?;
    let encrypted_secret =
        tpm::tpm2b(&encrypted_secret, "encrypted secret").map_err(|e| err(e.to_string()))?;
    Ok((id_object, encrypted_secret))
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
    tpm::check_ek_template(alg, &public).map_err(|e| err(e.to_string()))?;
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
    use super::*;

    const ISSUER: &[u8] = include_bytes!("../testdata/ek/ek_issuer.pem");
    const ROOT: &[u8] = include_bytes!("../testdata/ek/ek_root.pem");
    /// An EK certificate (ECC P-384) from swtpm's local CA, which `ISSUER` and `ROOT` are.
    const EK_P384: &[u8] = include_bytes!("../testdata/ek/ek_p384.der");
    /// The same certificate with one byte changed outside what its signature covers: the
    /// outer signature algorithm's NULL parameters retagged (found by the `ek_cert` fuzz
    /// target, fuzz/regressions/ek_cert/).
    const EK_P384_ALTERED: &[u8] =
        include_bytes!("../testdata/ek/ek_p384_outer_algorithm_changed.der");
    /// A certificate (mutated by the fuzzer from `EK_P384`) whose version is written out
    /// at its default, v1: not DER, though the decoder takes it.
    const NOT_DER: &[u8] = include_bytes!("../testdata/ek/explicit_default_version.der");

    fn cas() -> Vec<Certificate> {
        let mut cas = Certificate::load_pem_chain(ISSUER).unwrap();
        cas.extend(Certificate::load_pem_chain(ROOT).unwrap());
        cas
    }

    #[test]
    fn the_issued_certificate_verifies() {
        let path = verify_ek_chain(EK_P384, &cas()).unwrap();
        assert_eq!(path.len(), 3, "{path:?}");
    }

    #[test]
    fn a_certificate_altered_outside_its_signature_is_refused() {
        assert_eq!(EK_P384.len(), EK_P384_ALTERED.len());
        let differing = EK_P384
            .iter()
            .zip(EK_P384_ALTERED)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differing, 1);
        let e = verify_ek_chain(EK_P384_ALTERED, &cas()).unwrap_err();
        assert!(e.to_string().contains("RFC 5280"), "{e}");
    }

    #[test]
    fn a_certificate_not_in_der_is_refused_before_its_signature_is_checked() {
        let cert = Certificate::from_der(NOT_DER).expect("the decoder takes it");
        assert_ne!(cert.to_der().unwrap(), NOT_DER);
        let e = verify_ek_chain(NOT_DER, &cas()).unwrap_err();
        assert!(e.to_string().contains("not in DER"), "{e}");
    }
}
