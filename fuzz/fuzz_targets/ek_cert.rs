//! Fuzz EK certificates as the client reads them at enrolment: `verify_ek_chain` (DER
//! X.509, validity, the issuer found among the CA certificates, basicConstraints, the
//! signature of each link) against the swtpm local CA that issued the seed certificates,
//! `check_cert_matches_ek` against both EKs' public areas, the SPKI identity of a
//! certificate, and PEM CA files (`--ek-ca`). Beyond "no panic": the re-encoding of a
//! certificate that parses is a fixed point (the decoder takes some forms that are not
//! DER and normalises them — a version written out at its default, a GeneralizedTime
//! before 2050 — so the re-encoding is not always the input; the chain check refuses
//! those), and a chain is accepted only for a certificate the CA issued, byte for byte.
#![no_main]

use std::sync::OnceLock;

use arbiter_client::enroll::{check_cert_matches_ek, verify_ek_chain};
use arbiter_fuzz::{
    EK_ISSUER_PEM, EK_P384_CERT, EK_P384_PUBLIC, EK_ROOT_PEM, EK_RSA_CERT, EK_RSA_PUBLIC,
};
use arbiter_policy::identity::{identity_of, spki_sha256};
use arbiter_policy::tpm::Public;
use libfuzzer_sys::fuzz_target;
use x509_cert::Certificate;
use x509_cert::der::{Decode as _, Encode as _};

struct Fixed {
    cas: Vec<Certificate>,
    eks: [Public; 2],
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let mut cas = Certificate::load_pem_chain(EK_ISSUER_PEM).expect("issuer PEM");
        cas.extend(Certificate::load_pem_chain(EK_ROOT_PEM).expect("root PEM"));
        let eks = [
            Public::from_tpm2b(EK_RSA_PUBLIC).expect("RSA EK public"),
            Public::from_tpm2b(EK_P384_PUBLIC).expect("P-384 EK public"),
        ];
        // The fixtures themselves pass: the target checks what the client checks.
        verify_ek_chain(EK_RSA_CERT, &cas).expect("the RSA EK certificate's chain");
        verify_ek_chain(EK_P384_CERT, &cas).expect("the P-384 EK certificate's chain");
        check_cert_matches_ek(EK_RSA_CERT, &eks[0]).expect("RSA certificate and EK");
        check_cert_matches_ek(EK_P384_CERT, &eks[1]).expect("P-384 certificate and EK");
        Fixed { cas, eks }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    if let Ok(cert) = Certificate::from_der(data) {
        let der = cert.to_der().expect("a parsed certificate encodes");
        let again = Certificate::from_der(&der).expect("its encoding decodes");
        assert_eq!(again.to_der().expect("encodes again"), der);
    }
    if verify_ek_chain(data, &f.cas).is_ok() {
        assert!(
            data == EK_RSA_CERT || data == EK_P384_CERT,
            "a chain verified for a certificate the CA did not issue"
        );
    }
    for ek in &f.eks {
        let _ = check_cert_matches_ek(data, ek);
    }
    let spki = spki_sha256(data);
    let identity = identity_of(data);
    assert_eq!(spki.ok().map(hex::encode), identity.ok());
    // A CA file as `--ek-ca` reads it.
    if data.starts_with(b"-----")
        && let Ok(chain) = Certificate::load_pem_chain(data)
    {
        for c in &chain {
            let _ = verify_ek_chain(&c.to_der().expect("encodes"), &chain);
        }
    }
});
