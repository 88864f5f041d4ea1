//! Fixed keys, contexts and fixtures shared by the fuzz targets and by the seed generator
//! (`examples/make_seeds.rs`): the same statement key signs the seed statements and
//! verifies what the fuzzer mutates, and the same instance key seals the seed envelopes
//! and opens them. Nothing here is secret: these keys exist only for fuzzing.

use arbiter_policy::hpke::{self, InputContext, PrivateKey};
use arbiter_policy::tpm::{ObjectAttributes, Public};
use p256::ecdsa::SigningKey;

/// The instance secret every HPKE target derives its key pair from.
pub const INSTANCE_SECRET: [u8; 32] = [0x5a; 32];

/// The context every sealed seed input is bound to.
pub const INPUT_CONTEXT: InputContext<'static> = InputContext {
    instance_id: "0123456789abcdef0123456789abcdef",
    slot: "alice",
    round: 1,
    function_sha256: "5757575757575757575757575757575757575757575757575757575757575757",
    submitter: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
};

/// The plaintext of the seed envelopes (JSON padded as the CLI pads it).
pub const PLAINTEXT: &[u8] = br#"{"salary": 123456, "bids": [1, 2, 3]}"#;

/// The instance's HPKE key pair (RFC 9180 `DeriveKeyPair` of [`INSTANCE_SECRET`]).
pub fn instance_keys() -> (PrivateKey, [u8; hpke::ENC_LEN]) {
    hpke::derive_keypair(&INSTANCE_SECRET)
}

/// The statement key's private half (a fixed P-256 scalar).
///
/// # Panics
/// Never: the scalar is a valid, non-zero P-256 scalar.
pub fn statement_signing_key() -> SigningKey {
    #[allow(clippy::expect_used)]
    SigningKey::from_slice(&[0x33; 32]).expect("0x33.. is a valid P-256 scalar")
}

/// The statement key's TPM public area, as the client reads it from `GET /v1/tpm`
/// (attributes of a TPM signing key, an arbitrary 32-byte policy).
///
/// # Panics
/// Never: the key is a valid point.
pub fn statement_public() -> Public {
    #[allow(clippy::expect_used)]
    Public::p256_signing_key(
        statement_signing_key().verifying_key(),
        ObjectAttributes::FIXED_TPM
            | ObjectAttributes::FIXED_PARENT
            | ObjectAttributes::SENSITIVE_DATA_ORIGIN
            | ObjectAttributes::SIGN_ENCRYPT,
        &[0x11; 32],
    )
    .expect("a valid P-256 key makes a public area")
}

/// The swtpm local CA's root certificate (PEM), as `swtpm_setup --create-ek-cert` made it.
pub const EK_ROOT_PEM: &[u8] = include_bytes!("../fixtures/ek_root.pem");
/// The swtpm local CA's issuer certificate (PEM), which signed the EK certificates.
pub const EK_ISSUER_PEM: &[u8] = include_bytes!("../fixtures/ek_issuer.pem");
/// The RSA-2048 EK certificate (DER) that CA issued.
pub const EK_RSA_CERT: &[u8] = include_bytes!("../seeds/ek_cert/ek_rsa2048.der");
/// The P-384 EK certificate (DER) that CA issued.
pub const EK_P384_CERT: &[u8] = include_bytes!("../seeds/ek_cert/ek_p384.der");
/// The RSA-2048 EK's `TPM2B_PUBLIC` (`tpm2_createek -G rsa` on the same swtpm).
pub const EK_RSA_PUBLIC: &[u8] = include_bytes!("../fixtures/ek_rsa.pub");
/// The P-384 EK's `TPM2B_PUBLIC` (`tpm2_createek -G ecc384` on the same swtpm).
pub const EK_P384_PUBLIC: &[u8] = include_bytes!("../fixtures/ek_p384.pub");

/// The inputs a seed instance accepted, in acceptance order (three parties, one round).
pub fn input_leaves() -> Vec<arbiter_policy::jws::InputLeaf> {
    ["alice", "bob", "carol"]
        .iter()
        .enumerate()
        .map(|(i, slot)| arbiter_policy::jws::InputLeaf {
            slot: (*slot).to_owned(),
            submitter: format!("{:x}", i + 10)
                .repeat(64)
                .chars()
                .take(64)
                .collect(),
            round: 1,
            ciphertext_sha256: hex::encode(hpke::ciphertext_sha256(&[i as u8; 65], b"ct")),
        })
        .collect()
}

/// The destruction certificate of the seed instance: its inputs tree over
/// [`input_leaves`].
///
/// # Panics
/// Never: the timestamp is a valid RFC 3339 text.
pub fn destruction_certificate() -> arbiter_policy::jws::DestructionStatement {
    let (inputs_root, inputs_count) = arbiter_policy::jws::inputs_root(&input_leaves());
    #[allow(clippy::expect_used)]
    arbiter_policy::jws::DestructionStatement {
        instance_id: INPUT_CONTEXT.instance_id.to_owned(),
        destroyed_at: arbiter_policy::manifest::Timestamp::parse("2026-11-26T12:00:00Z")
            .expect("a valid timestamp"),
        inputs_root,
        inputs_count,
        epoch_retired: 2,
        log_generation: 1,
        instance_destroyed_recnum: 40,
    }
}

/// The result statement of the seed instance.
///
/// # Panics
/// Never: the timestamp is a valid RFC 3339 text.
pub fn result_statement() -> arbiter_policy::jws::ResultStatement {
    #[allow(clippy::expect_used)]
    arbiter_policy::jws::ResultStatement {
        instance_id: INPUT_CONTEXT.instance_id.to_owned(),
        round: 1,
        function_sha256: INPUT_CONTEXT.function_sha256.to_owned(),
        manifest_sha256: "ab".repeat(32),
        inputs: input_leaves()
            .into_iter()
            .map(|l| arbiter_policy::jws::InputRef {
                slot: l.slot,
                submitter: l.submitter,
                ciphertext_sha256: l.ciphertext_sha256,
            })
            .collect(),
        output: serde_json::json!({"overlap": 42, "ranks": [3, 1, 2], "note": "é ✓"}),
        evaluated_at: arbiter_policy::manifest::Timestamp::parse("2026-11-26T11:59:58.125Z")
            .expect("a valid timestamp"),
        log_generation: 1,
        instance_created_recnum: 7,
    }
}

/// `statement` signed by the statement key as the daemon signs it: compact JWS, ES256.
pub fn sign_statement(statement: &arbiter_policy::jws::Statement) -> String {
    use p256::ecdsa::signature::Signer as _;
    let kid = hex::encode(statement_public().name());
    let input = statement.signing_input(&kid);
    let sig: p256::ecdsa::Signature = statement_signing_key().sign(input.as_bytes());
    arbiter_policy::jws::compact(&input, &sig.to_bytes().into())
}
