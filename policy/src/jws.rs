//! Signed statements (docs/protocol.md): JWS compact serialisation (RFC 7515) with ES256 under
//! the TPM statement key, header exactly `{"alg":"ES256","typ":T,"kid":<statement key
//! TPM name, hex>}`, and the two payloads — the result and the destruction certificate.
//!
//! The daemon builds the signing input, has the TPM sign its SHA-256 and assembles the
//! compact form; verifiers check it against the statement key they certified (its name
//! is the `kid`). Base64url without padding, as RFC 7515 says; header and payload are
//! JCS (RFC 8785), so the same statement always has the same bytes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Error;
use crate::error::{JwsError, MerkleError};
use crate::manifest::Timestamp;
use crate::tpm::Public;
use crate::tpm::hash::sha256;

/// `typ` of a result statement.
pub const TYP_RESULT: &str = "arbiter-result+jws";
/// `typ` of a destruction certificate.
pub const TYP_DESTRUCTION: &str = "arbiter-destruction+jws";
/// The only algorithm: ECDSA P-256 with SHA-256, signature `r || s`.
pub const ALG: &str = "ES256";

/// A JWS protected header as docs/protocol.md fixes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always `ES256`.
    pub alg: String,
    /// `arbiter-result+jws` or `arbiter-destruction+jws`.
    pub typ: String,
    /// The statement key's TPM name, hex.
    pub kid: String,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(part: &'static str, text: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD.decode(text).map_err(|e| {
        Error::Jws(JwsError::BadPart {
            part,
            reason: e.to_string(),
        })
    })
}

/// The JWS signing input `BASE64URL(JCS(header)) || "." || BASE64URL(JCS(payload))` for
/// a statement of type `typ` signed by the key named `kid_hex`.
pub fn signing_input(typ: &str, kid_hex: &str, payload: &Value) -> String {
    let header = json!({ "alg": ALG, "typ": typ, "kid": kid_hex });
    format!(
        "{}.{}",
        b64(&crate::jcs::to_vec(&header)),
        b64(&crate::jcs::to_vec(payload))
    )
}

/// SHA-256 of a signing input: the digest the TPM signs (`TPM2_Sign` with the
/// statement key).
pub fn signing_digest(signing_input: &str) -> [u8; 32] {
    sha256(&[signing_input.as_bytes()])
}

/// The compact serialisation: the signing input, `.`, BASE64URL(`r || s`).
pub fn compact(signing_input: &str, signature_rs: &[u8; 64]) -> String {
    format!("{signing_input}.{}", b64(signature_rs))
}

/// Builds a compact JWS: `sign` receives the signing input (ASCII) and returns the
/// ES256 signature `r || s` over it.
///
/// # Errors
/// Whatever `sign` returns.
pub fn sign_with<E>(
    typ: &str,
    kid_hex: &str,
    payload: &Value,
    sign: impl FnOnce(&[u8]) -> Result<[u8; 64], E>,
) -> Result<String, E> {
    let input = signing_input(typ, kid_hex, payload);
    let signature = sign(input.as_bytes())?;
    Ok(compact(&input, &signature))
}

/// A JWS whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedJws {
    /// The protected header.
    pub header: Header,
    /// The payload as JSON.
    pub payload: Value,
}

/// Verifies a compact JWS: three base64url parts (no padding); a header with exactly
/// `alg` `ES256`, `typ` equal to `expected_typ` and `kid` (equal to `expected_kid_hex`
/// when given); a JSON object payload; and an ES256 signature (`r || s`, 64 bytes) by
/// `key` over the signing input.
///
/// # Errors
/// `Jws(..)` naming the failing part; `BadSignature`.
pub fn verify(
    jws: &str,
    key: &VerifyingKey,
    expected_typ: &str,
    expected_kid_hex: Option<&str>,
) -> Result<VerifiedJws, Error> {
    let mut parts = jws.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Jws(JwsError::Malformed));
    };
    let header_bytes = unb64("header", h)?;
    let header: Header = serde_json::from_slice(&header_bytes)
        .map_err(|e| Error::Jws(JwsError::BadHeader(e.to_string())))?;
    if header.alg != ALG {
        return Err(Error::Jws(JwsError::BadHeader(format!(
            "alg {:?}, only ES256 is accepted",
            header.alg
        ))));
    }
    if header.typ != expected_typ {
        return Err(Error::Jws(JwsError::WrongType {
            expected: expected_typ.to_owned(),
            found: header.typ,
        }));
    }
    if let Some(kid) = expected_kid_hex
        && header.kid != kid
    {
        return Err(Error::Jws(JwsError::WrongKid {
            expected: kid.to_owned(),
            found: header.kid,
        }));
    }
    let signature = unb64("signature", s)?;
    let signature = Signature::from_slice(&signature).map_err(|_| Error::BadSignature)?;
    let input_len = h.len() + 1 + p.len();
    let input = jws
        .get(..input_len)
        .ok_or(Error::Jws(JwsError::Malformed))?;
    key.verify(input.as_bytes(), &signature)
        .map_err(|_| Error::BadSignature)?;
    let payload_bytes = unb64("payload", p)?;
    let payload: Value = crate::jcs::parse_strict(&payload_bytes).map_err(|e| {
        Error::Jws(JwsError::BadPart {
            part: "payload",
            reason: e.to_string(),
        })
    })?;
    if !payload.is_object() {
        return Err(Error::Jws(JwsError::BadPart {
            part: "payload",
            reason: "not a JSON object".to_owned(),
        }));
    }
    Ok(VerifiedJws { header, payload })
}

/// One input as a statement lists it: every party sees its own input was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputRef {
    /// The slot.
    pub slot: String,
    /// The submitter's identity.
    pub submitter: String,
    /// `sha256(enc || ciphertext)`, hex.
    pub ciphertext_sha256: String,
}

/// The payload of a result statement (`typ` `arbiter-result+jws`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultStatement {
    /// The instance.
    pub instance_id: String,
    /// The round evaluated (from 1).
    pub round: u64,
    /// The function's measurement.
    pub function_sha256: String,
    /// The instance's manifest digest.
    pub manifest_sha256: String,
    /// The inputs used.
    pub inputs: Vec<InputRef>,
    /// The function's output.
    pub output: Value,
    /// When the evaluation finished.
    pub evaluated_at: Timestamp,
    /// The measurement-log generation the instance's records are in.
    pub log_generation: u64,
    /// `recnum` of the instance's `instance_created` record in that generation.
    pub instance_created_recnum: u64,
}

/// The payload of a destruction certificate (`typ` `arbiter-destruction+jws`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestructionStatement {
    /// The instance.
    pub instance_id: String,
    /// When destruction completed.
    pub destroyed_at: Timestamp,
    /// RFC 9162 Merkle root (hex) over one [`InputLeaf`] per input the instance ever
    /// accepted, in acceptance order (docs/protocol.md).
    pub inputs_root: String,
    /// The number of leaves under `inputs_root`.
    pub inputs_count: u64,
    /// The sealing epoch retired by the key rotation (docs/protocol.md).
    pub epoch_retired: u64,
    /// The measurement-log generation of the `instance_destroyed` record.
    pub log_generation: u64,
    /// `recnum` of the instance's `instance_destroyed` record.
    pub instance_destroyed_recnum: u64,
}

pub use arbiter_proto::api::{InputInclusion, InputLeaf};

/// The tree head (hex) and size of a destruction certificate's inputs tree over `leaves`
/// in acceptance order.
pub fn inputs_root(leaves: &[InputLeaf]) -> (String, u64) {
    let bytes: Vec<Vec<u8>> = leaves.iter().map(InputLeaf::to_bytes).collect();
    (
        hex::encode(crate::merkle::root(&bytes)),
        leaves.len() as u64,
    )
}

/// The inclusion of leaf `index` among `leaves` (acceptance order), as the certificate
/// endpoint returns it.
///
/// # Errors
/// `Merkle(IndexOutOfRange)` when `index` is not below the number of leaves.
pub fn inclusion_of(leaves: &[InputLeaf], index: usize) -> Result<InputInclusion, Error> {
    let bytes: Vec<Vec<u8>> = leaves.iter().map(InputLeaf::to_bytes).collect();
    let proof = crate::merkle::inclusion_proof(&bytes, index)?;
    let leaf = leaves
        .get(index)
        .cloned()
        .ok_or(Error::Merkle(MerkleError::IndexOutOfRange {
            index: index as u64,
            tree_size: leaves.len() as u64,
        }))?;
    Ok(InputInclusion {
        leaf,
        leaf_index: index as u64,
        proof: proof.iter().map(hex::encode).collect(),
    })
}

/// Checking a leaf's inclusion (the wire type lives in the protocol crate; the check
/// needs this crate's Merkle tree and statements).
pub trait VerifyInclusion {
    /// Checks that this leaf is included under the certificate's signed `inputs_root`
    /// (tree size `inputs_count`).
    ///
    /// # Errors
    /// `Merkle(BadHash)` for a root or proof element that is not 32 bytes of hex; the
    /// errors of [`crate::merkle::verify_inclusion`].
    fn verify(&self, certificate: &DestructionStatement) -> Result<(), Error>;
}

impl VerifyInclusion for InputInclusion {
    fn verify(&self, certificate: &DestructionStatement) -> Result<(), Error> {
        let hash = |text: &str| -> Result<[u8; 32], Error> {
            hex::decode(text)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| Error::Merkle(MerkleError::BadHash(text.to_owned())))
        };
        let root = hash(&certificate.inputs_root)?;
        let proof = self
            .proof
            .iter()
            .map(|p| hash(p))
            .collect::<Result<Vec<_>, _>>()?;
        crate::merkle::verify_inclusion(
            &self.leaf.to_bytes(),
            self.leaf_index,
            certificate.inputs_count,
            &proof,
            &root,
        )
    }
}

/// A statement payload, tagged by its `"type"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Statement {
    /// `"type": "result"`.
    Result(ResultStatement),
    /// `"type": "destruction"`.
    Destruction(DestructionStatement),
}

impl Statement {
    /// The JWS `typ` of this statement.
    pub fn typ(&self) -> &'static str {
        match self {
            Self::Result(_) => TYP_RESULT,
            Self::Destruction(_) => TYP_DESTRUCTION,
        }
    }

    /// The payload JSON (with `"type"`).
    pub fn to_value(&self) -> Value {
        // Serialising these plain structs into a `Value` cannot fail (no non-string map
        // keys, no non-finite floats in a `Value`).
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The signing input of this statement for the key named `kid_hex`.
    pub fn signing_input(&self, kid_hex: &str) -> String {
        signing_input(self.typ(), kid_hex, &self.to_value())
    }
}

/// Verifies a statement signed by `statement_key` (whose certification the caller has
/// checked, e.g. with [`crate::appraisal`]): the `kid` must be its TPM name, the `typ`
/// must be one of the two statement types and match the payload's `type`, and the
/// payload must parse as that statement.
///
/// # Errors
/// As [`verify`]; `Jws(PayloadTypeMismatch)`; `Jws(BadPart)` for a payload that is not
/// a statement.
pub fn verify_statement(jws: &str, statement_key: &Public) -> Result<Statement, Error> {
    let key = statement_key.p256_verifying_key()?;
    let kid = hex::encode(statement_key.name());
    let typ = peek_typ(jws)?;
    if typ != TYP_RESULT && typ != TYP_DESTRUCTION {
        return Err(Error::Jws(JwsError::BadHeader(format!(
            "typ {typ:?} is not a statement type"
        ))));
    }
    let verified = verify(jws, &key, &typ, Some(&kid))?;
    let statement: Statement = serde_json::from_value(verified.payload).map_err(|e| {
        Error::Jws(JwsError::BadPart {
            part: "payload",
            reason: e.to_string(),
        })
    })?;
    if statement.typ() != typ {
        return Err(Error::Jws(JwsError::PayloadTypeMismatch {
            typ,
            found: match statement {
                Statement::Result(_) => "result".to_owned(),
                Statement::Destruction(_) => "destruction".to_owned(),
            },
        }));
    }
    Ok(statement)
}

/// The header's `typ`, read before verification to pick the expected type.
fn peek_typ(jws: &str) -> Result<String, Error> {
    let h = jws
        .split('.')
        .next()
        .ok_or(Error::Jws(JwsError::Malformed))?;
    let header: Header = serde_json::from_slice(&unb64("header", h)?)
        .map_err(|e| Error::Jws(JwsError::BadHeader(e.to_string())))?;
    Ok(header.typ)
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;

    use super::*;
    use crate::tpm::ObjectAttributes;

    fn key() -> SigningKey {
        SigningKey::from_slice(&[0x33; 32]).unwrap()
    }

    fn statement_public() -> Public {
        Public::p256_signing_key(
            key().verifying_key(),
            ObjectAttributes::FIXED_TPM
                | ObjectAttributes::FIXED_PARENT
                | ObjectAttributes::SENSITIVE_DATA_ORIGIN
                | ObjectAttributes::SIGN_ENCRYPT,
            &[0x11; 32],
        )
        .unwrap()
    }

    fn sign(input: &[u8]) -> Result<[u8; 64], ()> {
        let sig: Signature = key().sign(input);
        Ok(sig.to_bytes().into())
    }

    fn result_statement() -> Statement {
        Statement::Result(ResultStatement {
            instance_id: "0123456789abcdef0123456789abcdef".into(),
            round: 1,
            function_sha256: "57".repeat(32),
            manifest_sha256: "ab".repeat(32),
            inputs: vec![InputRef {
                slot: "a".into(),
                submitter: "aa".repeat(32),
                ciphertext_sha256: "cc".repeat(32),
            }],
            output: json!({"overlap": 42}),
            evaluated_at: Timestamp::parse("2026-11-26T12:00:00Z").unwrap(),
            log_generation: 3,
            instance_created_recnum: 7,
        })
    }

    fn signed(statement: &Statement) -> String {
        let kid = hex::encode(statement_public().name());
        sign_with(statement.typ(), &kid, &statement.to_value(), sign).unwrap()
    }

    #[test]
    fn header_and_payload_layout() {
        let jws = signed(&result_statement());
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
        let kid = hex::encode(statement_public().name());
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"arbiter-result+jws"}}"#)
        );
        let payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(payload["type"], "result");
        assert_eq!(payload["evaluated_at"], "2026-11-26T12:00:00Z");
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 64);
        assert!(!jws.contains('=') && !jws.contains('+') && !jws.contains('/'));
        // The signature is over the ASCII signing input, as any JOSE library checks it.
        let input = format!("{}.{}", parts[0], parts[1]);
        let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        key()
            .verifying_key()
            .verify(input.as_bytes(), &sig)
            .unwrap();
        assert_eq!(signing_digest(&input), sha256(&[input.as_bytes()]));
    }

    #[test]
    fn statements_verify_and_round_trip() {
        for statement in [
            result_statement(),
            Statement::Destruction(DestructionStatement {
                instance_id: "0123456789abcdef0123456789abcdef".into(),
                destroyed_at: Timestamp::parse("2026-11-27T00:00:00Z").unwrap(),
                inputs_root: inputs_root(&[]).0,
                inputs_count: 0,
                epoch_retired: 4,
                log_generation: 3,
                instance_destroyed_recnum: 12,
            }),
        ] {
            let jws = signed(&statement);
            assert_eq!(
                verify_statement(&jws, &statement_public()).unwrap(),
                statement
            );
            let v = verify(
                &jws,
                key().verifying_key(),
                statement.typ(),
                Some(&hex::encode(statement_public().name())),
            )
            .unwrap();
            assert_eq!(v.header.alg, "ES256");
            assert_eq!(v.payload, statement.to_value());
        }
    }

    fn leaf(slot: &str, who: u8, round: u64, ct: u8) -> InputLeaf {
        InputLeaf {
            slot: slot.into(),
            submitter: hex::encode([who; 32]),
            round,
            ciphertext_sha256: hex::encode([ct; 32]),
        }
    }

    #[test]
    fn input_leaves_are_jcs_and_their_proofs_verify_under_the_signed_root() {
        let l = leaf("a", 0xaa, 2, 0xcc);
        assert_eq!(
            String::from_utf8(l.to_bytes()).unwrap(),
            format!(
                r#"{{"ciphertext_sha256":"{}","round":2,"slot":"a","submitter":"{}"}}"#,
                "cc".repeat(32),
                "aa".repeat(32)
            )
        );
        // Two rounds, a resubmission (same slot and round) and another party's inputs.
        let leaves = vec![
            leaf("a", 0xaa, 1, 1),
            leaf("b", 0xbb, 1, 2),
            leaf("a", 0xaa, 1, 3),
            leaf("a", 0xaa, 2, 4),
            leaf("b", 0xbb, 2, 5),
        ];
        let (root, count) = inputs_root(&leaves);
        assert_eq!(count, 5);
        let bytes: Vec<Vec<u8>> = leaves.iter().map(InputLeaf::to_bytes).collect();
        assert_eq!(root, hex::encode(crate::merkle::root(&bytes)));
        let certificate = DestructionStatement {
            instance_id: "0123456789abcdef0123456789abcdef".into(),
            destroyed_at: Timestamp::parse("2026-11-27T00:00:00Z").unwrap(),
            inputs_root: root,
            inputs_count: count,
            epoch_retired: 1,
            log_generation: 0,
            instance_destroyed_recnum: 9,
        };
        for i in 0..leaves.len() {
            let inclusion = inclusion_of(&leaves, i).unwrap();
            assert_eq!(inclusion.leaf, leaves[i]);
            inclusion.verify(&certificate).unwrap();
            // Another leaf in its place, another index, or a tampered proof fail.
            let mut other = inclusion.clone();
            other.leaf = leaves[(i + 1) % leaves.len()].clone();
            assert!(other.verify(&certificate).is_err());
            let mut moved = inclusion.clone();
            moved.leaf_index = ((i + 1) % leaves.len()) as u64;
            assert!(moved.verify(&certificate).is_err());
            let mut bad = inclusion.clone();
            bad.proof[0] = "zz".into();
            assert!(matches!(
                bad.verify(&certificate),
                Err(Error::Merkle(MerkleError::BadHash(_)))
            ));
        }
        // A tree without the last input has another root.
        let (fewer, _) = inputs_root(&leaves[..4]);
        assert_ne!(fewer, certificate.inputs_root);
        assert!(inclusion_of(&leaves, 5).is_err());
    }

    #[test]
    fn forged_and_mismatched_statements_are_refused() {
        let jws = signed(&result_statement());
        let kid = hex::encode(statement_public().name());
        // Another key.
        let other = SigningKey::from_slice(&[0x44; 32]).unwrap();
        assert_eq!(
            verify(&jws, other.verifying_key(), TYP_RESULT, None),
            Err(Error::BadSignature)
        );
        // Wrong typ asked for.
        assert!(matches!(
            verify(&jws, key().verifying_key(), TYP_DESTRUCTION, None),
            Err(Error::Jws(JwsError::WrongType { .. }))
        ));
        // Wrong kid.
        assert!(matches!(
            verify(&jws, key().verifying_key(), TYP_RESULT, Some("000b00")),
            Err(Error::Jws(JwsError::WrongKid { .. }))
        ));
        // A payload swapped in.
        let parts: Vec<&str> = jws.split('.').collect();
        let forged_payload = b64(br#"{"type":"result","output":1}"#);
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            verify(&forged, key().verifying_key(), TYP_RESULT, None),
            Err(Error::BadSignature)
        );
        // alg none / HS256, even when "signed".
        for alg in ["none", "HS256", "ES384"] {
            let header = b64(format!(
                r#"{{"alg":"{alg}","kid":"{kid}","typ":"arbiter-result+jws"}}"#
            )
            .as_bytes());
            let input = format!("{header}.{}", parts[1]);
            let sig = sign(input.as_bytes()).unwrap();
            let token = compact(&input, &sig);
            assert!(matches!(
                verify(&token, key().verifying_key(), TYP_RESULT, None),
                Err(Error::Jws(JwsError::BadHeader(_)))
            ));
        }
        // Extra header fields (e.g. "jwk", "crit") are refused.
        let header = b64(format!(
            r#"{{"alg":"ES256","crit":["x"],"kid":"{kid}","typ":"arbiter-result+jws"}}"#
        )
        .as_bytes());
        let input = format!("{header}.{}", parts[1]);
        let token = compact(&input, &sign(input.as_bytes()).unwrap());
        assert!(matches!(
            verify(&token, key().verifying_key(), TYP_RESULT, None),
            Err(Error::Jws(JwsError::BadHeader(_)))
        ));
        // A result payload under the destruction typ.
        let input = signing_input(TYP_DESTRUCTION, &kid, &result_statement().to_value());
        let token = compact(&input, &sign(input.as_bytes()).unwrap());
        assert!(matches!(
            verify_statement(&token, &statement_public()),
            Err(Error::Jws(JwsError::PayloadTypeMismatch { .. }))
        ));
        // A payload with an unknown field.
        let mut value = result_statement().to_value();
        value["extra"] = json!(1);
        let input = signing_input(TYP_RESULT, &kid, &value);
        let token = compact(&input, &sign(input.as_bytes()).unwrap());
        assert!(matches!(
            verify_statement(&token, &statement_public()),
            Err(Error::Jws(JwsError::BadPart {
                part: "payload",
                ..
            }))
        ));
    }

    #[test]
    fn malformed_serialisations_are_refused() {
        let jws = signed(&result_statement());
        let vk = key().verifying_key().to_owned();
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            &format!("{jws}."),
            &format!("{jws}="),
            &jws.replacen('.', "=.", 1),
        ] {
            assert!(verify(bad, &vk, TYP_RESULT, None).is_err(), "{bad}");
        }
        // A 63- or 65-byte signature.
        let parts: Vec<&str> = jws.split('.').collect();
        for len in [63, 65, 0] {
            let token = format!("{}.{}.{}", parts[0], parts[1], b64(&vec![1u8; len]));
            assert_eq!(
                verify(&token, &vk, TYP_RESULT, None),
                Err(Error::BadSignature)
            );
        }
        // Standard (non-URL) base64 alphabet.
        let std_header = parts[0].replace('-', "+").replace('_', "/");
        if std_header != parts[0] {
            let token = format!("{std_header}.{}.{}", parts[1], parts[2]);
            assert!(verify(&token, &vk, TYP_RESULT, None).is_err());
        }
    }
}
