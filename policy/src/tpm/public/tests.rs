//! Unit tests of public areas: hand-built and TPM-shaped ECC and RSA areas parse, name,
//! round-trip and marshal like a TPM; bad fields are named; keys convert to `p256` and PEM.

use p256::ecdsa::SigningKey;

use super::*;
use crate::tpm::{
    TPM_ALG_AES, TPM_ALG_CFB, TPM_ALG_ECDH, TPM_ALG_ECDSA, TPM_ALG_KDF1_SP800_56A, TPM_ALG_MGF1,
    TPM_ALG_NULL, TPM_ALG_RSAES, TPM_ALG_SHA256, TPM_ALG_SHA384, TPM_ECC_NIST_P256,
    TPM_ECC_NIST_P384,
};

/// A small ECC P-256 signing public area, written out field by field (the point is
/// not on the curve; names do not care).
fn hand_built_ecc(name_alg: [u8; 2]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&[0x00, 0x23]); // type: TPM_ALG_ECC
    t.extend_from_slice(&name_alg); // nameAlg
    t.extend_from_slice(&[0x00, 0x05, 0x00, 0x72]); // objectAttributes
    t.extend_from_slice(&[0x00, 0x00]); // authPolicy: empty
    t.extend_from_slice(&[0x00, 0x10]); // symmetric: TPM_ALG_NULL
    t.extend_from_slice(&[0x00, 0x18, 0x00, 0x0b]); // scheme: ECDSA, SHA-256
    t.extend_from_slice(&[0x00, 0x03]); // curveID: NIST P-256
    t.extend_from_slice(&[0x00, 0x10]); // kdf: TPM_ALG_NULL
    t.extend_from_slice(&[0x00, 0x20]);
    t.extend_from_slice(&[0x11; 32]); // x
    t.extend_from_slice(&[0x00, 0x20]);
    t.extend_from_slice(&[0x22; 32]); // y
    t
}

#[test]
fn parses_hand_built_ecc_area_and_computes_its_name() {
    let tpmt = hand_built_ecc([0x00, 0x0b]);
    assert_eq!(tpmt.len(), 88);
    let public = Public::from_tpmt(&tpmt).unwrap();
    assert_eq!(public.object_type(), TPM_ALG_ECC);
    assert_eq!(public.name_alg(), TPM_ALG_SHA256);
    assert_eq!(public.attributes(), ObjectAttributes(0x0005_0072));
    assert!(public.auth_policy().is_empty());
    assert_eq!(public.symmetric(), None);
    assert_eq!(
        public.scheme(),
        Some(Scheme {
            alg: TPM_ALG_ECDSA,
            hash: TPM_ALG_SHA256
        })
    );
    assert_eq!(public.kdf(), None);
    assert_eq!(public.ecc_curve(), Some(TPM_ECC_NIST_P256));
    assert_eq!(public.rsa_bits(), None);
    assert_eq!(
        public.key(),
        &PublicKey::Ecc {
            curve: TPM_ECC_NIST_P256,
            x: vec![0x11; 32],
            y: vec![0x22; 32]
        }
    );
    assert_eq!(public.tpmt_bytes(), tpmt.as_slice());
    // Computed independently: 000b || sha256(the 88 bytes above).
    assert_eq!(
        hex::encode(public.name()),
        "000bcfcbce8506a2969de190d4dd4045e9241e5c01bded771b4323a0d2e08c9836ad"
    );
    // The same area with nameAlg SHA-384: 000c || sha384(...).
    let sha384 = Public::from_tpmt(&hand_built_ecc([0x00, 0x0c])).unwrap();
    assert_eq!(
        hex::encode(sha384.name()),
        "000c7ec5cd5167c364ca82354bd689d3b8835f7743cbe2da393d971d15e3fe2f81f4\
         3d9b9f3c3d0f12bcb90fa4028fc87ceb"
    );
    // A point off the curve is refused when used as a key.
    assert_eq!(
        public.p256_verifying_key(),
        Err(Error::InvalidKey {
            reason: "point is not on the P-256 curve"
        })
    );
}

#[test]
fn tpm2b_round_trip_and_framing_errors() {
    let tpmt = hand_built_ecc([0x00, 0x0b]);
    let mut tpm2b = vec![0x00, 88];
    tpm2b.extend_from_slice(&tpmt);
    let public = Public::from_tpm2b(&tpm2b).unwrap();
    assert_eq!(public.to_tpm2b(), tpm2b);
    assert_eq!(Public::from_tpmt(public.tpmt_bytes()).unwrap(), public);

    let mut trailing = tpm2b.clone();
    trailing.push(0);
    assert_eq!(
        Public::from_tpm2b(&trailing),
        Err(Error::TrailingBytes {
            what: "TPM2B_PUBLIC"
        })
    );
    // A size that covers one byte more than the TPMT_PUBLIC.
    let mut inner_trailing = vec![0x00, 89];
    inner_trailing.extend_from_slice(&tpmt);
    inner_trailing.push(0);
    assert_eq!(
        Public::from_tpm2b(&inner_trailing),
        Err(Error::TrailingBytes {
            what: "TPMT_PUBLIC"
        })
    );
    assert_eq!(
        Public::from_tpm2b(&tpm2b[..tpm2b.len() - 1]),
        Err(Error::Truncated {
            what: "TPM2B_PUBLIC"
        })
    );
    assert_eq!(
        Public::from_tpmt(&tpmt[..tpmt.len() - 1]),
        Err(Error::Truncated {
            what: "TPMS_ECC_POINT.y"
        })
    );
    assert_eq!(
        Public::from_tpmt(&[]),
        Err(Error::Truncated {
            what: "TPMT_PUBLIC.type"
        })
    );
    // Every strict prefix is refused.
    for len in 0..tpmt.len() {
        assert!(matches!(
            Public::from_tpmt(&tpmt[..len]),
            Err(Error::Truncated { .. })
        ));
    }
}

#[test]
fn unsupported_and_invalid_fields_are_named() {
    let mut keyedhash = hand_built_ecc([0x00, 0x0b]);
    keyedhash[1] = 0x08;
    assert_eq!(
        Public::from_tpmt(&keyedhash),
        Err(Error::UnsupportedAlgorithm {
            what: "TPMT_PUBLIC.type",
            alg: 0x0008
        })
    );
    let sm3 = hand_built_ecc([0x00, 0x12]);
    assert_eq!(
        Public::from_tpmt(&sm3),
        Err(Error::UnsupportedAlgorithm {
            what: "TPMT_PUBLIC.nameAlg",
            alg: 0x0012
        })
    );
    let mut ecdaa = hand_built_ecc([0x00, 0x0b]);
    ecdaa[13] = 0x1a;
    assert_eq!(
        Public::from_tpmt(&ecdaa),
        Err(Error::UnsupportedAlgorithm {
            what: "public key scheme",
            alg: 0x001a
        })
    );
    // An RSA scheme on an ECC key.
    let mut rsassa = hand_built_ecc([0x00, 0x0b]);
    rsassa[13] = 0x14;
    assert_eq!(
        Public::from_tpmt(&rsassa),
        Err(Error::UnsupportedAlgorithm {
            what: "public key scheme",
            alg: 0x0014
        })
    );
    // An authPolicy of 3 bytes under a SHA-256 nameAlg.
    let mut bad_policy = hand_built_ecc([0x00, 0x0b]);
    bad_policy.splice(8..10, [0x00, 0x03, 0xaa, 0xbb, 0xcc]);
    assert_eq!(
        Public::from_tpmt(&bad_policy),
        Err(Error::InvalidValue {
            what: "TPMT_PUBLIC.authPolicy size",
            value: 3
        })
    );
}

fn rsa_storage_key() -> Public {
    // Shaped like the TCG EK template L-1: RSA-2048, AES-128-CFB, restricted decrypt.
    Public::new(
        TPM_ALG_SHA256,
        ObjectAttributes(0x0003_00b2),
        &[0x5a; 32],
        Some(SymDef {
            alg: TPM_ALG_AES,
            key_bits: 128,
            mode: TPM_ALG_CFB,
        }),
        None,
        None,
        PublicKey::Rsa {
            bits: 2048,
            exponent: 0,
            modulus: vec![0xc3; 256],
        },
    )
    .unwrap()
}

#[test]
fn new_marshals_like_a_tpm() {
    let public = rsa_storage_key();
    let mut want = hex::decode("0001000b000300b20020").unwrap();
    want.extend_from_slice(&[0x5a; 32]);
    want.extend_from_slice(&hex::decode("00060080004300100800000000000100").unwrap());
    want.extend_from_slice(&[0xc3; 256]);
    assert_eq!(hex::encode(public.tpmt_bytes()), hex::encode(&want));
    assert_eq!(public.rsa_bits(), Some(2048));
    assert_eq!(public.rsa_exponent(), Some(65_537));
    assert_eq!(public.ecc_curve(), None);
    assert_eq!(public.kdf(), None);
    assert_eq!(public.object_type(), TPM_ALG_RSA);
    assert_eq!(
        public.p256_verifying_key(),
        Err(Error::UnsupportedAlgorithm {
            what: "key type (P-256 needed)",
            alg: TPM_ALG_RSA
        })
    );

    // RSAES has no hash on the wire; OAEP has one.
    let rsaes = Public::new(
        TPM_ALG_SHA256,
        ObjectAttributes::DECRYPT,
        &[],
        None,
        Some(Scheme {
            alg: TPM_ALG_RSAES,
            hash: TPM_ALG_SHA256,
        }),
        None,
        PublicKey::Rsa {
            bits: 1024,
            exponent: 3,
            modulus: vec![0xff; 128],
        },
    )
    .unwrap();
    assert_eq!(
        rsaes.scheme(),
        Some(Scheme {
            alg: TPM_ALG_RSAES,
            hash: TPM_ALG_NULL
        })
    );
    assert_eq!(rsaes.rsa_exponent(), Some(3));
    assert_eq!(
        &rsaes.tpmt_bytes()[10..16],
        &[0x00, 0x10, 0x00, 0x15, 0x04, 0x00]
    );

    // An ECC key with a KDF, and the KDF refused on an RSA key.
    let ecdh = Public::new(
        TPM_ALG_SHA384,
        ObjectAttributes::DECRYPT,
        &[],
        None,
        Some(Scheme {
            alg: TPM_ALG_ECDH,
            hash: TPM_ALG_SHA384,
        }),
        Some(Scheme {
            alg: TPM_ALG_KDF1_SP800_56A,
            hash: TPM_ALG_SHA384,
        }),
        PublicKey::Ecc {
            curve: TPM_ECC_NIST_P384,
            x: vec![1; 48],
            y: vec![2; 48],
        },
    )
    .unwrap();
    assert_eq!(
        ecdh.kdf(),
        Some(Scheme {
            alg: TPM_ALG_KDF1_SP800_56A,
            hash: TPM_ALG_SHA384
        })
    );
    assert_eq!(ecdh.name().len(), 50);
    assert_eq!(
        ecdh.p256_verifying_key(),
        Err(Error::UnsupportedAlgorithm {
            what: "ECC curve",
            alg: TPM_ECC_NIST_P384
        })
    );
    assert_eq!(
        Public::new(
            TPM_ALG_SHA256,
            ObjectAttributes(0),
            &[],
            None,
            None,
            Some(Scheme {
                alg: TPM_ALG_MGF1,
                hash: TPM_ALG_SHA256
            }),
            PublicKey::Rsa {
                bits: 1024,
                exponent: 0,
                modulus: vec![1; 128]
            },
        ),
        Err(Error::InvalidValue {
            what: "kdf of an RSA key (only ECC keys have one)",
            value: u64::from(TPM_ALG_MGF1),
        })
    );
}

#[test]
fn p256_signing_key_round_trips_the_point() {
    let signing = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let vk = *signing.verifying_key();
    let attrs = ObjectAttributes::FIXED_TPM | ObjectAttributes::SIGN_ENCRYPT;
    let public = Public::p256_signing_key(&vk, attrs, &[7; 32]).unwrap();
    assert_eq!(public.p256_verifying_key().unwrap(), vk);
    assert_eq!(public.auth_policy(), &[7; 32]);
    assert_eq!(public.tpmt_bytes().len(), 88 + 32);
    assert_eq!(Public::from_tpm2b(&public.to_tpm2b()).unwrap(), public);
    assert!(
        public
            .public_key_pem()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----\n")
    );
    assert_eq!(
        Public::p256_signing_key(&vk, attrs, &[7; 5]),
        Err(Error::InvalidValue {
            what: "TPMT_PUBLIC.authPolicy size",
            value: 5
        })
    );
}

#[test]
fn short_coordinates_are_left_padded() {
    // Find a key whose x coordinate has a leading zero byte, and give it stripped.
    let (vk, x, y) = (0u32..10_000)
        .find_map(|seed| {
            let secret = crate::tpm::hash::sha256(&[&seed.to_be_bytes()]);
            let vk = *SigningKey::from_slice(&secret).ok()?.verifying_key();
            let point = vk.to_sec1_point(false);
            let (x, y) = (point.x()?.to_vec(), point.y()?.to_vec());
            (x[0] == 0).then(|| (vk, x[1..].to_vec(), y))
        })
        .unwrap();
    let public = Public::new(
        TPM_ALG_SHA256,
        ObjectAttributes::SIGN_ENCRYPT,
        &[],
        None,
        None,
        None,
        PublicKey::Ecc {
            curve: TPM_ECC_NIST_P256,
            x,
            y: y.clone(),
        },
    )
    .unwrap();
    assert_eq!(public.p256_verifying_key().unwrap(), vk);
    let too_long = Public::new(
        TPM_ALG_SHA256,
        ObjectAttributes::SIGN_ENCRYPT,
        &[],
        None,
        None,
        None,
        PublicKey::Ecc {
            curve: TPM_ECC_NIST_P256,
            x: vec![1; 33],
            y,
        },
    )
    .unwrap();
    assert_eq!(
        too_long.p256_verifying_key(),
        Err(Error::TooLong {
            what: "ECC x coordinate",
            len: 33,
            max: 32
        })
    );
}

#[test]
fn require_attributes_names_missing_and_forbidden_bits() {
    let public = rsa_storage_key(); // 0x000300b2: restricted | decrypt | ...
    public
        .require_attributes(
            "EK",
            ObjectAttributes::RESTRICTED,
            ObjectAttributes::SIGN_ENCRYPT,
        )
        .unwrap();
    assert_eq!(
        public.require_attributes(
            "AK",
            ObjectAttributes::RESTRICTED | ObjectAttributes::SIGN_ENCRYPT,
            ObjectAttributes::DECRYPT,
        ),
        Err(Error::AttributeMismatch {
            what: "AK",
            found: 0x0003_00b2,
            missing: ObjectAttributes::SIGN_ENCRYPT.bits(),
            forbidden: ObjectAttributes::DECRYPT.bits(),
        })
    );
}

#[test]
fn rsa_pem_is_a_subject_public_key_info() {
    let pem = rsa_storage_key().public_key_pem().unwrap();
    let (label, der) = p256::pkcs8::der::pem::decode_vec(pem.as_bytes()).unwrap();
    assert_eq!(label, "PUBLIC KEY");
    let spki = p256::pkcs8::SubjectPublicKeyInfoRef::try_from(der.as_slice()).unwrap();
    assert_eq!(spki.algorithm.oid.to_string(), "1.2.840.113549.1.1.1");
    let key = spki.subject_public_key.raw_bytes();
    // SEQUENCE { INTEGER 00 c3.. (257 bytes), INTEGER 01 00 01 }
    assert_eq!(&key[..8], &[0x30, 0x82, 0x01, 0x0a, 0x02, 0x82, 0x01, 0x01]);
    assert_eq!(key[8], 0x00);
    assert_eq!(&key[key.len() - 5..], &[0x02, 0x03, 0x01, 0x00, 0x01]);
}
