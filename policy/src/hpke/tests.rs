//! Known-answer tests of the input encryption: RFC 9180 A.3's DHKEM(P-256, HKDF-SHA256)
//! values for key derivation and the full RFC vector through the same HPKE code path;
//! for this suite (AES-256-GCM) and Arbiter's `info`, a vector computed by an
//! independent implementation of the RFC 9180 key schedule (Python, pyca/cryptography,
//! itself checked against RFC 9180 A.3). Then round trips and every replay the `info`
//! must stop.

use hpke::aead::AesGcm128;

use super::*;

const FUNCTION: &str = "579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63";

// RFC 9180, A.3. DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, Base Setup.
const IKM_E: &str = "4270e54ffd08d79d5928020af4686d8f6b7d35dbe470265f1f5aa22816ce860e";
const PK_EM: &str = "04a92719c6195d5085104f469a8b9814d5838ff72b60501e2c4466e5e67b325ac98536d7b61a1af4b78e5b7f951c0900be863c403ce65c9bfcb9382657222d18c4";
const IKM_R: &str = "668b37171f1072f3cf12ea8a236a45df23fc13b82af3609ad1e354f6ef817550";
const PK_RM: &str = "04fe8c19ce0905191ebc298a9245792531f26f0cece2460639e8bc39cb7f706a826a779b4cf969b8a0e539c7f62fb3d30ad6aa8f80e30f1d128aafd68a2ce72ea0";
const SK_RM: &str = "f3ce7fdae57e1a310d87f1ebbde6f328be0a99cdbcadf4d6589cf29de4b8ffd2";
const RFC_INFO: &str = "4f6465206f6e2061204772656369616e2055726e";
const RFC_PT: &str = "4265617574792069732074727574682c20747275746820626561757479";
const RFC_CT0: &str =
    "5ad590bb8baa577f8619db35a36311226a896e7342a6d836d8b7bcd2f20b6c7f9076ac232e3ab2523f39513434";

fn ikm(hex_str: &str) -> [u8; 32] {
    hex::decode(hex_str).unwrap().try_into().unwrap()
}

fn ctx() -> InputContext<'static> {
    InputContext {
        instance_id: "0123456789abcdef0123456789abcdef",
        slot: "customers_a",
        round: 2,
        function_sha256: FUNCTION,
        submitter: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    }
}

#[test]
fn suite_constants() {
    assert_eq!(<Kem as hpke::Kem>::KEM_ID, KEM_ID);
    assert_eq!(SUITE, "DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM");
    assert_eq!((KDF_ID, AEAD_ID), (0x0001, 0x0002));
    assert_eq!(INFO_LEN, 49);
}

#[test]
fn derive_keypair_matches_rfc9180_a3() {
    let (sk, pk) = derive_keypair(&ikm(IKM_R));
    assert_eq!(hex::encode(pk), PK_RM);
    assert_eq!(hex::encode(sk.0.to_bytes()), SK_RM);
    assert_eq!(sk.public_key(), pk);
    let (_, pk_e) = derive_keypair(&ikm(IKM_E));
    assert_eq!(hex::encode(pk_e), PK_EM);
    assert_eq!(format!("{sk:?}"), "PrivateKey(..)");
}

#[test]
fn the_rfc9180_a3_ciphertext_opens_through_the_same_code_path() {
    // Same KEM, same receiver key derivation, AES-128-GCM as in the RFC's vector.
    let (sk, _) = derive_keypair(&ikm(IKM_R));
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&hex::decode(PK_EM).unwrap()).unwrap();
    let pt = hpke::single_shot_open::<AesGcm128, HkdfSha256, Kem>(
        &OpModeR::Base,
        &sk.0,
        &enc,
        &hex::decode(RFC_INFO).unwrap(),
        &hex::decode(RFC_CT0).unwrap(),
        &hex::decode("436f756e742d30").unwrap(),
    )
    .unwrap();
    assert_eq!(hex::encode(pt), RFC_PT);
}

#[test]
fn input_info_layout() {
    let info = input_info(&ctx());
    assert_eq!(info.len(), 49);
    assert_eq!(&info[..17], b"arbiter/v1/input\0");
    // SHA-256 of the JCS text written out by hand (keys sorted, no whitespace).
    let jcs = concat!(
        r#"{"function_sha256":"579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63","#,
        r#""instance_id":"0123456789abcdef0123456789abcdef","round":2,"slot":"customers_a","#,
        r#""submitter":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#
    );
    assert_eq!(&info[17..], sha256(&[jcs.as_bytes()]).as_slice());
    // The independent implementation's value.
    assert_eq!(
        hex::encode(&info),
        "617262697465722f76312f696e70757400342c79b23e9d725b8821b2e3aec483bee749f0dc6a0627604471f7e60adde4ae"
    );
}

#[test]
fn opens_a_known_answer_ciphertext_of_this_suite() {
    // Sender: ephemeral key from RFC 9180 A.3's ikmE; recipient: A.3's ikmR; key
    // schedule, key b62be94e…, nonce 7c36932a… and ciphertext from the independent
    // implementation.
    let (sk, _) = derive_keypair(&ikm(IKM_R));
    let ct = hex::decode(
        "1a6d31f30c5a25385a42b9f7203e78ac5665cef3650e6119e7cfb4adad6393776891423d70a12feebb33fc09bdfc5c065a66ae59e5f77476dacdc9ead531cbbc0c5cca33c5",
    )
    .unwrap();
    let enc = hex::decode(PK_EM).unwrap();
    let pt = open(&sk, &ctx(), &enc, &ct).unwrap();
    assert_eq!(
        pt.as_slice(),
        br#"{"customers":["alice@example.com","bob@example.com"]}"#
    );
}

#[test]
fn seal_open_round_trip() {
    let secret = [0x42u8; 32];
    let (sk, pk) = derive_keypair(&secret);
    let plaintext = pad_json(br#"{"n": 7}"#, DEFAULT_PAD_BLOCK);
    let (enc, ct) = seal(&pk, &ctx(), &plaintext).unwrap();
    assert_eq!(enc.len(), ENC_LEN);
    assert_eq!(ct.len(), plaintext.len() + 16);
    assert_eq!(open(&sk, &ctx(), &enc, &ct).unwrap().as_slice(), plaintext);
    // Fresh encapsulation every time.
    let (enc2, ct2) = seal(&pk, &ctx(), &plaintext).unwrap();
    assert_ne!(enc, enc2);
    assert_ne!(ct, ct2);
    assert_eq!(
        open(&sk, &ctx(), &enc2, &ct2).unwrap().as_slice(),
        plaintext
    );
    // Empty plaintexts work too.
    let (enc3, ct3) = seal(&pk, &ctx(), b"").unwrap();
    assert!(open(&sk, &ctx(), &enc3, &ct3).unwrap().is_empty());
}

#[test]
fn replays_into_another_context_and_tampering_are_refused() {
    let (sk, pk) = derive_keypair(&[7u8; 32]);
    let (enc, ct) = seal(&pk, &ctx(), b"{\"secret\":1}").unwrap();
    let other_function = "0".repeat(64);
    let other_submitter = "b".repeat(64);
    let contexts = [
        InputContext {
            slot: "customers_b",
            ..ctx()
        },
        InputContext { round: 3, ..ctx() },
        InputContext {
            function_sha256: &other_function,
            ..ctx()
        },
        InputContext {
            submitter: &other_submitter,
            ..ctx()
        },
        InputContext {
            instance_id: "fedcba9876543210fedcba9876543210",
            ..ctx()
        },
    ];
    for other in contexts {
        assert_eq!(
            open(&sk, &other, &enc, &ct),
            Err(Error::Decrypt),
            "{other:?}"
        );
    }
    // Another instance's key.
    let (other_sk, _) = derive_keypair(&[8u8; 32]);
    assert_eq!(open(&other_sk, &ctx(), &enc, &ct), Err(Error::Decrypt));
    // A flipped bit anywhere in the ciphertext or the tag.
    for i in [0, ct.len() / 2, ct.len() - 1] {
        let mut bad = ct.clone();
        bad[i] ^= 0x01;
        assert_eq!(open(&sk, &ctx(), &enc, &bad), Err(Error::Decrypt));
    }
    // A truncated ciphertext, one shorter than a tag, an empty one.
    assert_eq!(
        open(&sk, &ctx(), &enc, &ct[..ct.len() - 1]),
        Err(Error::Decrypt)
    );
    assert_eq!(open(&sk, &ctx(), &enc, &ct[..10]), Err(Error::Decrypt));
    assert_eq!(open(&sk, &ctx(), &enc, &[]), Err(Error::Decrypt));
    // A different, valid encapsulated key; a malformed one; a truncated one.
    let (other_enc, _) = seal(&pk, &ctx(), b"x").unwrap();
    assert_eq!(open(&sk, &ctx(), &other_enc, &ct), Err(Error::Decrypt));
    let mut off_curve = enc.clone();
    off_curve[64] ^= 0x01;
    assert_eq!(open(&sk, &ctx(), &off_curve, &ct), Err(Error::Decrypt));
    assert_eq!(open(&sk, &ctx(), &enc[..64], &ct), Err(Error::Decrypt));
    assert_eq!(open(&sk, &ctx(), &[], &ct), Err(Error::Decrypt));
    // Still opens in its own context.
    assert!(open(&sk, &ctx(), &enc, &ct).is_ok());
}

#[test]
fn seal_refuses_bad_public_keys() {
    let (_, pk) = derive_keypair(&[1u8; 32]);
    for bad in [&pk[..64], &[][..], &[0x04; 65][..]] {
        assert!(matches!(
            seal(bad, &ctx(), b"x"),
            Err(Error::InvalidKey { .. })
        ));
    }
    // Compressed points are not the SEC1 uncompressed form that docs/protocol.md (encodings) fixes.
    let mut compressed = vec![0x02 | (pk[64] & 1)];
    compressed.extend_from_slice(&pk[1..33]);
    assert!(matches!(
        seal(&compressed, &ctx(), b"x"),
        Err(Error::InvalidKey { .. })
    ));
}

#[test]
fn ciphertext_digest_padding_and_result_key() {
    assert_eq!(
        hex::encode(ciphertext_sha256(b"enc", b"ct")),
        "112e86daff91f89b773ac8fd8c723ab21f5eb0705f9b1a3b743427d803cab989"
    );
    let padded = pad_json(br#"{"a":1}"#, 256);
    assert_eq!(padded.len(), 256);
    assert!(padded[7..].iter().all(|&b| b == b' '));
    let value: serde_json::Value = serde_json::from_slice(&padded).unwrap();
    assert_eq!(value, serde_json::json!({"a": 1}));
    assert_eq!(pad_json(&[b'1'; 256], 256).len(), 256);
    assert_eq!(pad_json(&[b'1'; 257], 256).len(), 512);
    assert_eq!(pad_json(b"", 256), b"");
    assert_eq!(pad_json(b"12", 0), b"12");
    assert_eq!(pad_json(b"12", 5), b"12   ");
    // HKDF-SHA256(salt = "", ikm = 42^32, info = "arbiter/v1/result-at-rest"), computed
    // with Python's hmac.
    assert_eq!(
        hex::encode(*result_at_rest_key(&[0x42; 32])),
        "b685486db00217457cc3437ee6ce664d049528c125ac2df1366f30c2cc7ea270"
    );
    assert_ne!(
        *result_at_rest_key(&[0x43; 32]),
        *result_at_rest_key(&[0x42; 32])
    );
}
