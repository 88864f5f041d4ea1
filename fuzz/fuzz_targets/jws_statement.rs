//! Fuzz signed statements as the client verifies them: `verify_statement` (compact JWS,
//! ES256 under the certified statement key, header, `typ`/`type` agreement, payload) with a
//! fixed P-256 statement key whose valid statements seed the corpus. Beyond "no panic":
//! an accepted statement's signing input is exactly the one the signer built from it
//! (JCS header and payload), so nothing but a signed text is ever accepted; a valid
//! statement with the input XOR-ed over it is accepted only unchanged; a payload parsed
//! alone round-trips; an inclusion proof is checked against the seed certificate.
#![no_main]

use std::sync::OnceLock;

use arbiter_fuzz::{destruction_certificate, input_leaves, sign_statement, statement_public};
use arbiter_policy::jws::{
    DestructionStatement, InputInclusion, InputLeaf, Statement, VerifyInclusion as _,
    verify_statement,
};
use arbiter_policy::tpm::Public;
use libfuzzer_sys::fuzz_target;

struct Fixed {
    public: Public,
    kid: String,
    /// A valid destruction certificate (compact JWS) and its payload.
    jws: String,
    certificate: DestructionStatement,
    leaves: Vec<InputLeaf>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let public = statement_public();
        let certificate = destruction_certificate();
        let jws = sign_statement(&Statement::Destruction(certificate.clone()));
        assert!(verify_statement(&jws, &public).is_ok());
        Fixed {
            kid: hex::encode(public.name()),
            public,
            jws,
            certificate,
            leaves: input_leaves(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(statement) = verify_statement(text, &f.public)
    {
        let (signed, _) = text
            .rsplit_once('.')
            .expect("an accepted JWS has three parts");
        assert_eq!(
            signed,
            statement.signing_input(&f.kid),
            "an accepted statement's signed text is the one the signer builds from it"
        );
    }
    // Tampering: the input is a mask over a valid certificate.
    let mut tampered = f.jws.clone().into_bytes();
    for (b, m) in tampered.iter_mut().zip(data) {
        *b ^= m;
    }
    if let Ok(text) = std::str::from_utf8(&tampered)
        && verify_statement(text, &f.public).is_ok()
    {
        assert_eq!(text, f.jws, "a tampered statement verified");
    }
    // The payload alone, as the statement types read it.
    if let Ok(statement) = serde_json::from_slice::<Statement>(data) {
        let again: Statement =
            serde_json::from_value(statement.to_value()).expect("a statement's JSON reads back");
        assert_eq!(again, statement);
    }
    // An inclusion proof as `GET .../destruction-certificate` returns it, checked against
    // the signed certificate.
    if let Ok(inclusion) = serde_json::from_slice::<InputInclusion>(data)
        && inclusion.verify(&f.certificate).is_ok()
    {
        let index = usize::try_from(inclusion.leaf_index).expect("a small index");
        assert_eq!(
            f.leaves.get(index),
            Some(&inclusion.leaf),
            "only a leaf of the tree, at its index, is proven included"
        );
    }
});
