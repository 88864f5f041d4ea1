//! Fuzz TPM public areas as the client reads them beyond parsing (`tpms_attest` already
//! fuzzes `Public::from_tpm2b` and its round trip): the EK template check for both EK
//! algorithms, the AK requirements, the key's PEM form, the certificate-to-EK key match
//! against the seed certificates, and `TPM2_MakeCredential` in software with the parsed
//! EK (RSA-OAEP from the certificate's SPKI, or ECDH with the area's P-384 point).
//! Beyond "no panic": an area that passes a template check is exactly that template's
//! shape, and a credential made for an EK that passed is a well-formed `TPM2B`.
#![no_main]

use arbiter_client::enroll::{check_cert_matches_ek, make_credential};
use arbiter_fuzz::{EK_P384_CERT, EK_RSA_CERT};
use arbiter_policy::evidence::require_ak;
use arbiter_policy::tpm::{EkTemplate, Public, PublicKey, check_ek_template};
use libfuzzer_sys::fuzz_target;
use x509_cert::Certificate;
use x509_cert::der::{Decode as _, Encode as _};

/// An AK name: `TPM_ALG_SHA256 || digest`.
const AK_NAME: [u8; 34] = {
    let mut n = [0x42; 34];
    n[0] = 0x00;
    n[1] = 0x0b;
    n
};

fn spki(cert: &[u8]) -> Vec<u8> {
    Certificate::from_der(cert)
        .expect("a seed certificate")
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .expect("encodes")
}

fuzz_target!(|data: &[u8]| {
    let Ok(public) = Public::from_tpm2b(data) else {
        return;
    };
    let _ = require_ak(&public);
    let _ = public.public_key_pem();
    for (alg, cert) in [("rsa2048", EK_RSA_CERT), ("ecc_nist_p384", EK_P384_CERT)] {
        let template = check_ek_template(alg, &public);
        if let Ok(t) = &template {
            match (t, public.key()) {
                (EkTemplate::RsaL1, PublicKey::Rsa { .. }) => {}
                (EkTemplate::EccH3, PublicKey::Ecc { .. }) => {}
                other => panic!("{alg} template accepted a {other:?}"),
            }
        }
        let matches = check_cert_matches_ek(cert, &public).is_ok();
        if let Ok(made) = make_credential(&public, &spki(cert), &AK_NAME, &[7; 32])
            && template.is_ok()
            && matches
        {
            let (blob, secret) = made;
            let len = |b: &[u8]| usize::from(u16::from_be_bytes([b[0], b[1]]));
            assert_eq!(len(&blob) + 2, blob.len(), "TPM2B_ID_OBJECT size");
            assert_eq!(
                len(&secret) + 2,
                secret.len(),
                "TPM2B_ENCRYPTED_SECRET size"
            );
        }
    }
});
