//! Checks of this crate against structures a real TPM produced (swtpm / libtpms, through
//! tpm2-tools): public areas and their names and PEM, trial-session policy digests, a
//! quote, a certification and an NV certification. `testdata/swtpm/generate.sh`
//! regenerates the fixtures; nothing here depends on the keys it happened to create.

use crate::tpm::{
    NvAttributes, NvPublic, ObjectAttributes, PcrSelection, PcrValues, Public, PublicKey, Scheme,
    SymDef, TPM_ALG_AES, TPM_ALG_CFB, TPM_ALG_ECDSA, TPM_ALG_SHA256, TPM_ALG_SHA384, TPM_CC_SIGN,
    TPM_ECC_NIST_P256, TPM_ECC_NIST_P384,
};
use crate::{Attested, Error, PolicyDigest, verify_certify, verify_nv_certify, verify_quote};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/swtpm/",
            $name
        ))
        .as_slice()
    };
}

macro_rules! fixture_str {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/swtpm/",
            $name
        ))
    };
}

/// The `name:` that `tpm2_nvreadpublic` printed.
fn yaml_name(yaml: &str) -> Vec<u8> {
    let line = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("name: "))
        .unwrap();
    hex::decode(line).unwrap()
}

/// The authPolicy of the TCG EK templates (PolicySecret(TPM_RH_ENDORSEMENT)).
const EK_POLICY: &str = "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa";

fn ak() -> Public {
    Public::from_tpm2b(fixture!("ak.pub")).unwrap()
}

fn statement_key() -> Public {
    Public::from_tpm2b(fixture!("stmt.pub")).unwrap()
}

#[test]
fn attestation_key_name_attributes_and_pem() {
    let ak = ak();
    assert_eq!(ak.name(), fixture!("ak.name"));
    assert_eq!(ak.attributes(), ObjectAttributes(0x0005_0072));
    assert_eq!(
        ak.scheme(),
        Some(Scheme {
            alg: TPM_ALG_ECDSA,
            hash: TPM_ALG_SHA256
        })
    );
    assert_eq!(ak.ecc_curve(), Some(TPM_ECC_NIST_P256));
    assert_eq!(ak.symmetric(), None);
    assert_eq!(ak.public_key_pem().unwrap(), fixture_str!("ak.pem"));
    assert_eq!(ak.to_tpm2b(), fixture!("ak.pub"));
}

#[test]
fn endorsement_keys_names_templates_and_pem() {
    let rsa = Public::from_tpm2b(fixture!("ek_rsa.pub")).unwrap();
    assert_eq!(rsa.name(), fixture!("ek_rsa.name"));
    assert_eq!(hex::encode(rsa.auth_policy()), EK_POLICY);
    assert_eq!(rsa.attributes(), ObjectAttributes(0x0003_00b2));
    assert_eq!(
        rsa.symmetric(),
        Some(SymDef {
            alg: TPM_ALG_AES,
            key_bits: 128,
            mode: TPM_ALG_CFB
        })
    );
    assert_eq!(rsa.rsa_bits(), Some(2048));
    assert_eq!(rsa.rsa_exponent(), Some(65_537));
    assert!(matches!(rsa.key(), PublicKey::Rsa { modulus, .. } if modulus.len() == 256));
    // The hand-written RSA SubjectPublicKeyInfo equals OpenSSL's, byte for byte.
    assert_eq!(rsa.public_key_pem().unwrap(), fixture_str!("ek_rsa.pem"));

    let ecc = Public::from_tpm2b(fixture!("ek_ecc.pub")).unwrap();
    assert_eq!(ecc.name(), fixture!("ek_ecc.name"));
    assert_eq!(hex::encode(ecc.auth_policy()), EK_POLICY);
    assert_eq!(ecc.ecc_curve(), Some(TPM_ECC_NIST_P256));
    assert_eq!(ecc.public_key_pem().unwrap(), fixture_str!("ek_ecc.pem"));
}

#[test]
fn sha384_name_of_a_p384_key() {
    let p384 = Public::from_tpm2b(fixture!("primary_p384.pub")).unwrap();
    assert_eq!(p384.name_alg(), TPM_ALG_SHA384);
    assert_eq!(p384.ecc_curve(), Some(TPM_ECC_NIST_P384));
    assert_eq!(
        p384.symmetric(),
        Some(SymDef {
            alg: TPM_ALG_AES,
            key_bits: 256,
            mode: TPM_ALG_CFB
        })
    );
    assert_eq!(p384.name().len(), 50);
    assert_eq!(p384.name(), fixture!("primary_p384.name"));
    assert_eq!(
        p384.public_key_pem(),
        Err(Error::UnsupportedAlgorithm {
            what: "ECC curve",
            alg: TPM_ECC_NIST_P384
        })
    );
}

#[test]
fn policy_digests_equal_trial_sessions() {
    let zero = |pcrs: &[u8]| -> (PcrSelection, PcrValues) {
        let selection = PcrSelection::new(pcrs.iter().copied()).unwrap();
        (selection, pcrs.iter().map(|&i| (i, [0u8; 32])).collect())
    };
    let (sel, values) = zero(&[23]);
    assert_eq!(
        PolicyDigest::new().pcr(&sel, &values).unwrap().as_bytes(),
        fixture!("policy_pcr23.bin")
    );
    let (sel, values) = zero(&[0, 2, 4, 7, 9]);
    let platform_sign = PolicyDigest::new()
        .pcr(&sel, &values)
        .unwrap()
        .command_code(TPM_CC_SIGN);
    assert_eq!(
        platform_sign.as_bytes(),
        fixture!("policy_platform_sign.bin")
    );
    assert_eq!(
        PolicyDigest::new().auth_value().as_bytes(),
        fixture!("policy_authvalue.bin")
    );
    // The statement-like key was created with that policy.
    assert_eq!(statement_key().auth_policy(), platform_sign.as_bytes());
    assert_eq!(statement_key().name(), fixture!("stmt.name"));
}

#[test]
fn quote_from_the_tpm_verifies() {
    // PCR 0 untouched; 16 and 23 extended once with bb.. and aa.. from zero.
    let extend = |byte: u8| -> [u8; 32] { crate::tpm::hash::sha256(&[&[0u8; 32], &[byte; 32]]) };
    let pcrs: PcrValues = [(0, [0u8; 32]), (16, extend(0xbb)), (23, extend(0xaa))].into();
    let read: Vec<u8> = pcrs.values().flatten().copied().collect();
    assert_eq!(read, fixture!("quote_pcrs.bin"));

    let nonce = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
    let attest = fixture!("quote_attest.bin");
    let sig = fixture!("quote_sig.bin");
    let parsed = verify_quote(attest, sig, &ak(), &nonce, &pcrs).unwrap();
    assert_eq!(parsed.quoted_pcrs().unwrap().pcrs(), vec![0, 16, 23]);
    assert!(parsed.clock_info.safe);
    assert_eq!(parsed.marshal().unwrap(), attest);

    let mut other = pcrs.clone();
    other.insert(16, [0u8; 32]);
    assert_eq!(
        verify_quote(attest, sig, &ak(), &nonce, &other),
        Err(Error::PcrDigestMismatch)
    );
    assert_eq!(
        verify_quote(attest, sig, &ak(), b"other", &pcrs),
        Err(Error::QualifyingDataMismatch)
    );
}

#[test]
fn certification_from_the_tpm_verifies() {
    let attest = fixture!("certify_attest.bin");
    let sig = fixture!("certify_sig.bin");
    // tpm2-tools 5.4's tpm2_certify always passes this qualifying data.
    let nonce = [0x00, 0xff, 0x55, 0xaa];
    let parsed = verify_certify(attest, sig, &ak(), &statement_key(), &nonce).unwrap();
    let Attested::Certify { name, .. } = parsed.attested else {
        panic!("not a certification")
    };
    assert_eq!(name, statement_key().name());
    assert_eq!(
        verify_certify(attest, sig, &ak(), &ak(), &nonce),
        Err(Error::NameMismatch)
    );
    assert_eq!(
        verify_certify(attest, sig, &ak(), &statement_key(), &[]),
        Err(Error::QualifyingDataMismatch)
    );
}

#[test]
fn nv_names_and_certification_from_the_tpm() {
    let sealing = NvPublic {
        index: 0x0150_0001,
        name_alg: TPM_ALG_SHA256,
        attributes: NvAttributes::POLICYREAD | NvAttributes::POLICYWRITE | NvAttributes::NO_DA,
        auth_policy: fixture!("policy_pcr23.bin").to_vec(),
        data_size: 40,
    };
    assert_eq!(sealing.name(), yaml_name(fixture_str!("nv_sealing.yaml")));

    let data = NvPublic {
        index: 0x0150_0002,
        name_alg: TPM_ALG_SHA256,
        attributes: NvAttributes::OWNERREAD
            | NvAttributes::OWNERWRITE
            | NvAttributes::AUTHREAD
            | NvAttributes::AUTHWRITE
            | NvAttributes::WRITTEN,
        auth_policy: vec![],
        data_size: 8,
    };
    assert_eq!(data.attributes.bits(), 0x2006_0006);
    assert_eq!(data.name(), yaml_name(fixture_str!("nv_data.yaml")));
    let parsed = verify_nv_certify(
        fixture!("nvcertify_attest.bin"),
        fixture!("nvcertify_sig.bin"),
        &ak(),
        &data,
        b"nv",
    )
    .unwrap();
    assert_eq!(
        parsed.attested,
        Attested::Nv {
            index_name: data.name(),
            offset: 0,
            contents: b"arbiter!".to_vec()
        }
    );
}

/// The `subjectPublicKey` bits of a PEM `PUBLIC KEY` fixture.
fn spki_key(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    use x509_cert::der::Decode as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(&der).unwrap();
    spki.subject_public_key.as_bytes().unwrap().to_vec()
}

#[test]
fn endorsement_key_templates_are_checked_field_by_field() {
    use crate::tpm::{EkTemplate, check_ek_template};
    let rsa = Public::from_tpm2b(fixture!("ek_rsa.pub")).unwrap();
    assert_eq!(check_ek_template("rsa2048", &rsa), Ok(EkTemplate::RsaL1));
    let wrong_alg = check_ek_template("ecc_nist_p384", &rsa).unwrap_err();
    assert!(
        wrong_alg.to_string().contains("name algorithm"),
        "{wrong_alg}"
    );
    assert!(
        check_ek_template("rsa4096", &rsa)
            .unwrap_err()
            .to_string()
            .contains("unknown EK algorithm")
    );
    // tpm2_createek's default ECC EK is P-256 (template L-2), not H-3.
    let ecc = Public::from_tpm2b(fixture!("ek_ecc.pub")).unwrap();
    let e = check_ek_template("ecc_nist_p384", &ecc).unwrap_err();
    assert!(e.to_string().contains("name algorithm"), "{e}");
    // Under the L-1 rules the P-256 EK passes the common fields and fails on its key.
    let e = check_ek_template("rsa2048", &ecc).unwrap_err();
    assert_eq!(e.to_string(), "EK rsa2048: the key is not the template's");
    // A P-384 primary that is not an EK: its attributes are not the H-3 template's.
    let p384 = Public::from_tpm2b(fixture!("primary_p384.pub")).unwrap();
    let e = check_ek_template("ecc_nist_p384", &p384).unwrap_err();
    assert!(e.to_string().starts_with("EK ecc_nist_p384: "), "{e}");
}

#[test]
fn an_endorsement_keys_certificate_key_must_be_its_public_area() {
    use crate::tpm::{check_cert_matches_ek, check_key_matches_ek};
    let rsa = Public::from_tpm2b(fixture!("ek_rsa.pub")).unwrap();
    let ecc = Public::from_tpm2b(fixture!("ek_ecc.pub")).unwrap();
    let rsa_key = spki_key(fixture_str!("ek_rsa.pem"));
    let ecc_key = spki_key(fixture_str!("ek_ecc.pem"));
    assert_eq!(check_key_matches_ek(&rsa_key, &rsa), Ok(()));
    assert_eq!(check_key_matches_ek(&ecc_key, &ecc), Ok(()));
    assert!(check_key_matches_ek(&ecc_key, &rsa).is_err());
    assert!(check_key_matches_ek(&rsa_key, &ecc).is_err());
    let mut other = ecc_key.clone();
    if let Some(last) = other.last_mut() {
        *last ^= 1;
    }
    assert!(check_key_matches_ek(&other, &ecc).is_err());
    let e = check_cert_matches_ek(b"not a certificate", &rsa).unwrap_err();
    assert!(e.to_string().contains("does not parse"), "{e}");
}
