//! `GET /v1/attestation` (a quote bound to the caller's nonce and TLS channel, with the
//! AK, the measurement log, the sealing index and the firmware log), `GET /v1/tpm` (the
//! TPM's public parts) and `POST /v1/tpm/activate-credential`.

use std::collections::BTreeMap;

use arbiter_measured_boot::cel::{Base64Bytes, HexBytes, Record};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::instances::InstanceDescription;
use super::schema::{Base64, CelRecord, Hex};
use crate::ProtoError;
use crate::ids::{InstanceId, Sha256Digest};

/// The answer of `GET /v1/attestation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Attestation {
    /// The attestation key.
    pub ak: TpmKey,
    /// How the quote is bound to this request.
    pub binding: Binding,
    /// Set while Keylime's verifier has revoked this appliance (docs/fleet.md): the
    /// daemon then refuses inputs and evaluations, and a party must not use it. Absent
    /// otherwise (older daemons never send it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_revoked: Option<super::fleet::FleetRevoked>,
    /// The host's firmware event log (`binary_bios_measurements`), when it exposes one.
    #[schemars(with = "Option<Base64>")]
    pub firmware_log: Option<Base64Bytes>,
    /// The description of the instance asked about (`?instance=`), or null.
    pub instance: Option<InstanceDescription>,
    /// The measurement log of the current generation (CEL-JSON records, in order).
    #[schemars(with = "Vec<CelRecord>")]
    pub log: Vec<Record>,
    /// The measurement log's generation.
    pub log_generation: u64,
    /// The quote and the PCR values it covers.
    pub quote: Quote,
    /// The sealing NV index.
    pub sealing: Sealing,
}

/// A TPM key as published: its SubjectPublicKeyInfo PEM, `TPM2B_PUBLIC` and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TpmKey {
    /// The TPM name (`nameAlg || digest`), hex.
    #[schemars(with = "Hex")]
    pub name: HexBytes,
    /// SubjectPublicKeyInfo PEM.
    pub public_pem: String,
    /// The marshalled `TPM2B_PUBLIC`, base64.
    #[schemars(with = "Base64")]
    pub tpm2b_public: Base64Bytes,
}

/// A `TPM2_Quote` and the PCR values read beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Quote {
    /// The marshalled `TPMS_ATTEST`, base64.
    #[schemars(with = "Base64")]
    pub attest: Base64Bytes,
    /// The quoted PCR values, by bank.
    pub pcrs: QuotedPcrs,
    /// The marshalled `TPMT_SIGNATURE`, base64.
    #[schemars(with = "Base64")]
    pub signature: Base64Bytes,
}

/// Quoted PCR values by bank: `{"sha256": {"0": hex, …}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QuotedPcrs {
    /// The SHA-256 bank, by PCR index (decimal text; keys in text order).
    pub sha256: BTreeMap<String, Sha256Digest>,
}

impl QuotedPcrs {
    /// The values by numeric PCR index.
    ///
    /// # Errors
    /// [`ProtoError::Malformed`] for a key that is not a PCR index.
    pub fn by_index(&self) -> Result<BTreeMap<u8, Sha256Digest>, ProtoError> {
        self.sha256
            .iter()
            .map(|(k, v)| {
                k.parse::<u8>()
                    .map(|i| (i, *v))
                    .map_err(|_| ProtoError::Malformed {
                        what: "a PCR index",
                        text: k.clone(),
                    })
            })
            .collect()
    }
}

/// The leaf of one request in the quote's Merkle tree: `JCS` of this object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingLeaf {
    /// The instance asked about, or null.
    pub instance_id: Option<InstanceId>,
    /// The verifier's nonce, lowercase hex of 16 to 64 bytes.
    pub nonce: String,
    /// SHA-256 of the daemon's TLS certificate SubjectPublicKeyInfo.
    pub tls_spki_sha256: Sha256Digest,
}

/// The request's leaf, its RFC 9162 inclusion proof and the tree head (the quote's
/// `qualifyingData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Binding {
    /// The leaf.
    pub leaf: BindingLeaf,
    /// Its index in the tree.
    pub leaf_index: u64,
    /// The inclusion proof, from the leaf's sibling up.
    pub proof: Vec<Sha256Digest>,
    /// The tree head.
    pub root: Sha256Digest,
    /// The number of leaves.
    pub tree_size: u64,
}

/// The sealing NV index (its contents are never revealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Sealing {
    /// The current sealing epoch.
    pub epoch: u64,
    /// The index's TPM name, hex.
    #[schemars(with = "Hex")]
    pub name: HexBytes,
    /// The `TPM2B_NV_PUBLIC` as read back from the TPM, base64.
    #[schemars(with = "Base64")]
    pub nv_public: Base64Bytes,
    /// Degraded: why the index does not open in this platform state (unsigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// The answer of `GET /v1/tpm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TpmInfo {
    /// The attestation key.
    pub ak: TpmKey,
    /// The endorsement keys, with their certificates where the TPM holds them.
    pub eks: Vec<EndorsementKey>,
    /// The statement key and its certification by the AK.
    pub statement_key: StatementKey,
}

/// The algorithm of an endorsement key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum EkAlgorithm {
    /// RSA 2048 (the low range template).
    #[serde(rename = "rsa2048")]
    Rsa2048,
    /// ECC NIST P-384 (the high range template).
    #[serde(rename = "ecc_nist_p384")]
    EccNistP384,
}

impl EkAlgorithm {
    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            EkAlgorithm::Rsa2048 => "rsa2048",
            EkAlgorithm::EccNistP384 => "ecc_nist_p384",
        }
    }
}

/// One endorsement key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EndorsementKey {
    /// Its algorithm.
    pub alg: EkAlgorithm,
    /// Its certificate (DER, base64), or null when the TPM holds none.
    #[schemars(with = "Option<Base64>")]
    pub cert_der: Option<Base64Bytes>,
    /// Its `TPM2B_PUBLIC`, base64.
    #[schemars(with = "Base64")]
    pub tpm2b_public: Base64Bytes,
}

/// The statement key (which signs results and destruction certificates) and its
/// `TPM2_Certify` by the AK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatementKey {
    /// The certification's `TPMS_ATTEST`, base64.
    #[schemars(with = "Base64")]
    pub attest: Base64Bytes,
    /// The key's TPM name, hex.
    #[schemars(with = "Hex")]
    pub name: HexBytes,
    /// SubjectPublicKeyInfo PEM.
    pub public_pem: String,
    /// The certification's qualifying data, base64.
    #[schemars(with = "Base64")]
    pub qualifying_data: Base64Bytes,
    /// The certification's `TPMT_SIGNATURE`, base64.
    #[schemars(with = "Base64")]
    pub signature: Base64Bytes,
    /// The key's `TPM2B_PUBLIC`, base64.
    #[schemars(with = "Base64")]
    pub tpm2b_public: Base64Bytes,
}

/// The body of `POST /v1/tpm/activate-credential`: base64 of the size-prefixed
/// `TPM2B_ID_OBJECT` and `TPM2B_ENCRYPTED_SECRET`, for the EK of `ek_alg`. Unknown fields
/// are ignored. Parse with [`ActivateCredential::from_body`], which answers the
/// endpoint's own error codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ActivateCredential {
    /// The EK that the credential was made for.
    pub ek_alg: EkAlgorithm,
    /// `TPM2B_ID_OBJECT`, base64.
    #[schemars(with = "Base64")]
    pub credential_blob: Base64Bytes,
    /// `TPM2B_ENCRYPTED_SECRET`, base64.
    #[schemars(with = "Base64")]
    pub encrypted_secret: Base64Bytes,
}

impl ActivateCredential {
    /// Reads the body, checking `ek_alg` first, then `credential_blob`, then
    /// `encrypted_secret`.
    ///
    /// # Errors
    /// [`ProtoError::Json`] for text that is not JSON; [`ProtoError::Field`] with code
    /// `invalid_ek_alg`, `missing_field` or `invalid_base64`.
    pub fn from_body(bytes: &[u8]) -> Result<Self, ProtoError> {
        let value =
            crate::json::parse_strict(bytes).map_err(|e| ProtoError::Json(e.to_string()))?;
        Self::from_value(&value)
    }

    /// As [`ActivateCredential::from_body`], from parsed JSON.
    ///
    /// # Errors
    /// As [`ActivateCredential::from_body`], without the JSON error.
    pub fn from_value(request: &serde_json::Value) -> Result<Self, ProtoError> {
        use base64::Engine as _;
        let ek_alg = match request.get("ek_alg").and_then(serde_json::Value::as_str) {
            Some("rsa2048") => EkAlgorithm::Rsa2048,
            Some("ecc_nist_p384") => EkAlgorithm::EccNistP384,
            _ => {
                return Err(ProtoError::Field {
                    code: "invalid_ek_alg",
                    message: "`ek_alg` is `rsa2048` or `ecc_nist_p384`".into(),
                });
            }
        };
        let field = |name: &str| -> Result<Base64Bytes, ProtoError> {
            let text = request
                .get(name)
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| ProtoError::Field {
                    code: "missing_field",
                    message: format!("`{name}` (base64) is required"),
                })?;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(Base64Bytes)
                .map_err(|e| ProtoError::Field {
                    code: "invalid_base64",
                    message: format!("`{name}`: {e}"),
                })
        };
        Ok(Self {
            ek_alg,
            credential_blob: field("credential_blob")?,
            encrypted_secret: field("encrypted_secret")?,
        })
    }
}

/// The answer of `POST /v1/tpm/activate-credential`: the credential's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Secret {
    /// The secret, base64.
    #[schemars(with = "Base64")]
    pub secret: Base64Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> Option<&'static str> {
        match ActivateCredential::from_body(body.as_bytes()) {
            Err(ProtoError::Field { code, .. }) => Some(code),
            _ => None,
        }
    }

    #[test]
    fn activation_bodies_are_checked_in_order() {
        assert_eq!(code("[]"), Some("invalid_ek_alg"));
        assert_eq!(code(r#"{"ek_alg":"rsa"}"#), Some("invalid_ek_alg"));
        assert_eq!(code(r#"{"ek_alg":"rsa2048"}"#), Some("missing_field"));
        assert_eq!(
            code(r#"{"ek_alg":"rsa2048","credential_blob":"*","encrypted_secret":"AA=="}"#),
            Some("invalid_base64")
        );
        let ok = ActivateCredential::from_body(
            br#"{"ek_alg":"ecc_nist_p384","credential_blob":"AAE=","encrypted_secret":"AA==","x":1}"#,
        );
        assert_eq!(ok.map(|r| r.credential_blob.0).ok(), Some(vec![0, 1]));
        assert!(matches!(
            ActivateCredential::from_body(b"{"),
            Err(ProtoError::Json(_))
        ));
    }

    #[test]
    fn pcr_keys_parse_as_indices() {
        let pcrs = QuotedPcrs {
            sha256: [("23".to_owned(), Sha256Digest([1; 32]))].into(),
        };
        assert_eq!(
            pcrs.by_index().ok().and_then(|m| m.get(&23).copied()),
            Some(Sha256Digest([1; 32]))
        );
        let bad = QuotedPcrs {
            sha256: [("x".to_owned(), Sha256Digest([1; 32]))].into(),
        };
        assert!(bad.by_index().is_err());
    }
}
