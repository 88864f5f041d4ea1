//! The evidence a party checks (docs/protocol.md): the attestation bundle the daemon returns
//! (quote, AK, statement-key certification, quote binding, sealing index, measurement
//! log, firmware log, instance), and the structural checks of its TPM objects — the AK's
//! and the statement key's attributes, the statement key's and the sealing index's
//! policies recomputed from the appraised PCR values, and the TPM clock comparison that
//! tells whether two quotes come from one TPM startup.
//!
//! Quotes and certifications themselves are verified by [`crate::quote`]; the appraisal
//! that puts everything together and lists every failure is [`crate::appraisal`].
//!
//! # The bundle as JSON
//!
//! ```json
//! {
//!   "quote": { "attest": "<base64 TPMS_ATTEST>", "signature": "<base64 TPMT_SIGNATURE>",
//!              "pcrs": { "sha256": { "0": "<hex>", "2": "<hex>", "23": "<hex>" } } },
//!   "ak": { "public_pem": "-----BEGIN PUBLIC KEY-----…", "tpm2b_public": "<base64>",
//!           "name": "<hex>" },
//!   "statement_key": { "tpm2b_public": "<base64>", "attest": "<base64 TPMS_ATTEST of
//!                      TPM2_Certify by the AK>", "signature": "<base64 TPMT_SIGNATURE>",
//!                      "name": "<hex>" },
//!   "binding": { "leaf": { "nonce": "<hex>", "instance_id": "<id>" | null,
//!                          "tls_spki_sha256": "<hex>" },
//!                "leaf_index": 0, "tree_size": 1, "proof": ["<hex>"], "root": "<hex>" },
//!   "sealing": { "nv_public": "<base64 TPM2B_NV_PUBLIC>", "name": "<hex>", "epoch": 3,
//!                "certify": { "attest": "<base64>", "signature": "<base64>" } },
//!   "log_generation": 2,
//!   "log": [ <CEL-JSON records of the current generation> ],
//!   "firmware_log": "<base64 binary_bios_measurements>" | null,
//!   "instance": { "id": "<id>", "public_key": "<hex SEC1, 65 bytes>",
//!                 "manifest_sha256": "<hex>", "manifest": { … } } | null
//! }
//! ```
//!
//! Base64 is RFC 4648 §4 with padding, hex lowercase (docs/protocol.md, encodings). This is the
//! daemon's attestation response (`GET /v1/attestation`) with the statement key and its
//! certification from `GET /v1/tpm` added as `statement_key` (a verifier fetches it once
//! per daemon start). `statement_key.name`, `sealing.certify`, `log_generation`,
//! `firmware_log`, `instance` and `instance.manifest` may be absent (an absent
//! `statement_key` makes the appraisal fail). Unknown fields are ignored: nothing outside
//! this shape is trusted. `instance.instance_id` is accepted for `instance.id`.

use std::collections::BTreeMap;

use arbiter_measured_boot::cel::{Base64Bytes, HexBytes, Record, Sha256Digest};
use serde::{Deserialize, Serialize};

use crate::digest::PolicyDigest;
use crate::tpm::{
    ClockInfo, NvAttributes, NvPublic, ObjectAttributes, PcrSelection, PcrValues, Public,
    TPM_ALG_ECDSA, TPM_ALG_NULL, TPM_ALG_SHA256, TPM_CC_SIGN, TPM_ECC_NIST_P256,
};
use crate::{Error, merkle};

/// The attestation bundle: everything a verifier needs, as the daemon returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The quote and the PCR values it covers.
    pub quote: QuoteEvidence,
    /// The attestation key.
    pub ak: AkEvidence,
    /// The statement key and its certification by the AK (from `GET /v1/tpm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_key: Option<StatementKeyEvidence>,
    /// How the quote is bound to this request.
    pub binding: BindingEvidence,
    /// The sealing NV index.
    pub sealing: SealingEvidence,
    /// The log generation the daemon reports (checked against `daemon_started`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_generation: Option<u64>,
    /// The measurement log of the current generation (CEL-JSON records, in order).
    pub log: Vec<Record>,
    /// The host's firmware event log, when it exposes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_log: Option<Base64Bytes>,
    /// The instance asked about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceEvidence>,
}

impl Evidence {
    /// Parses a bundle from JSON text.
    ///
    /// # Errors
    /// `Evidence` with the parser's message.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map_err(|e| Error::Evidence {
            reason: e.to_string(),
        })
    }

    /// Parses a bundle from a JSON value.
    ///
    /// # Errors
    /// `Evidence` with the parser's message.
    pub fn from_value(value: serde_json::Value) -> Result<Self, Error> {
        serde_json::from_value(value).map_err(|e| Error::Evidence {
            reason: e.to_string(),
        })
    }
}

/// A `TPM2_Quote` and the PCR values read beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteEvidence {
    /// The marshalled `TPMS_ATTEST`.
    pub attest: Base64Bytes,
    /// The marshalled `TPMT_SIGNATURE`.
    pub signature: Base64Bytes,
    /// The quoted PCR values, by bank.
    pub pcrs: QuotedPcrs,
}

/// Quoted PCR values by bank: `{"sha256": {"0": hex, …}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotedPcrs {
    /// The SHA-256 bank, by PCR index.
    pub sha256: BTreeMap<u8, Sha256Digest>,
}

impl QuoteEvidence {
    /// The PCR values as [`PcrValues`].
    pub fn pcr_values(&self) -> PcrValues {
        self.pcrs.sha256.iter().map(|(i, v)| (*i, v.0)).collect()
    }
}

/// The attestation key as published: the wire contract's TPM key (`ak` of
/// `GET /v1/attestation` and `GET /v1/tpm`), one definition for daemon, client and
/// verifier.
pub type AkEvidence = arbiter_proto::api::TpmKey;

/// The statement key and its `TPM2_Certify` by the AK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementKeyEvidence {
    /// The `TPM2B_PUBLIC`.
    pub tpm2b_public: Base64Bytes,
    /// The certification's `TPMS_ATTEST`.
    pub attest: Base64Bytes,
    /// The certification's `TPMT_SIGNATURE`.
    pub signature: Base64Bytes,
    /// The TPM name the daemon reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<HexBytes>,
}

/// A certification (`TPMS_ATTEST` and its signature by the AK).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certification {
    /// The `TPMS_ATTEST`.
    pub attest: Base64Bytes,
    /// The `TPMT_SIGNATURE`.
    pub signature: Base64Bytes,
}

/// The leaf of one request in the quote's Merkle tree (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingLeaf {
    /// The verifier's nonce, hex.
    pub nonce: String,
    /// The instance asked about, or none.
    pub instance_id: Option<String>,
    /// SHA-256 of the daemon's TLS certificate SubjectPublicKeyInfo, hex.
    pub tls_spki_sha256: String,
}

impl BindingLeaf {
    /// The leaf's bytes: `JCS({"nonce", "instance_id", "tls_spki_sha256"})`.
    pub fn to_bytes(&self) -> Vec<u8> {
        merkle::binding_leaf(
            &self.nonce,
            self.instance_id.as_deref(),
            &self.tls_spki_sha256,
        )
    }
}

/// The request's leaf, its inclusion proof and the root (the quote's
/// `qualifyingData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingEvidence {
    /// The leaf.
    pub leaf: BindingLeaf,
    /// Its index in the tree.
    pub leaf_index: u64,
    /// The number of leaves.
    pub tree_size: u64,
    /// The inclusion proof, from the leaf's sibling up.
    pub proof: Vec<Sha256Digest>,
    /// The tree head.
    pub root: Sha256Digest,
}

impl BindingEvidence {
    /// Checks the leaf's inclusion under `root`.
    ///
    /// # Errors
    /// As [`merkle::verify_inclusion`].
    pub fn verify(&self) -> Result<(), Error> {
        let proof: Vec<[u8; 32]> = self.proof.iter().map(|d| d.0).collect();
        merkle::verify_inclusion(
            &self.leaf.to_bytes(),
            self.leaf_index,
            self.tree_size,
            &proof,
            &self.root.0,
        )
    }
}

/// The sealing NV index (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealingEvidence {
    /// The `TPM2B_NV_PUBLIC` as read back from the TPM.
    pub nv_public: Base64Bytes,
    /// The name the TPM reports.
    pub name: HexBytes,
    /// The current sealing epoch (as the daemon reports it; the index's contents are
    /// never revealed).
    pub epoch: u64,
    /// A `TPM2_NV_Certify` of the index by the AK, where the daemon provides one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certify: Option<Certification>,
}

/// The instance an attestation is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceEvidence {
    /// The instance id.
    #[serde(rename = "id", alias = "instance_id")]
    pub instance_id: String,
    /// The input-encryption public key, SEC1 uncompressed (65 bytes).
    pub public_key: HexBytes,
    /// `sha256(JCS(manifest))`.
    pub manifest_sha256: Sha256Digest,
    /// The manifest as submitted, when returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<serde_json::Value>,
}

/// docs/protocol.md: the AK is a restricted ECC P-256 ECDSA-SHA256 signing key, fixedTPM,
/// fixedParent, sensitiveDataOrigin, userWithAuth, with `adminWithPolicy` and `decrypt`
/// clear, name algorithm SHA-256.
///
/// # Errors
/// `AttributeMismatch`; `UnsupportedAlgorithm` for another name algorithm, curve or
/// scheme.
pub fn require_ak(ak: &Public) -> Result<(), Error> {
    ak.require_attributes(
        "attestation key",
        ObjectAttributes::RESTRICTED
            | ObjectAttributes::SIGN_ENCRYPT
            | ObjectAttributes::FIXED_TPM
            | ObjectAttributes::FIXED_PARENT
            | ObjectAttributes::SENSITIVE_DATA_ORIGIN
            | ObjectAttributes::USER_WITH_AUTH,
        ObjectAttributes::DECRYPT | ObjectAttributes::ADMIN_WITH_POLICY,
    )?;
    require_p256_sha256("attestation key", ak)?;
    match ak.scheme() {
        Some(s) if s.alg == TPM_ALG_ECDSA && s.hash == TPM_ALG_SHA256 => Ok(()),
        Some(s) => Err(Error::UnsupportedAlgorithm {
            what: "attestation key scheme (ECDSA with SHA-256 needed)",
            alg: if s.alg == TPM_ALG_ECDSA {
                s.hash
            } else {
                s.alg
            },
        }),
        None => Err(Error::UnsupportedAlgorithm {
            what: "attestation key scheme (ECDSA with SHA-256 needed)",
            alg: TPM_ALG_NULL,
        }),
    }
}

fn require_p256_sha256(what: &'static str, key: &Public) -> Result<(), Error> {
    if key.name_alg() != TPM_ALG_SHA256 {
        return Err(Error::UnsupportedAlgorithm {
            what,
            alg: key.name_alg(),
        });
    }
    match key.ecc_curve() {
        Some(TPM_ECC_NIST_P256) => Ok(()),
        Some(curve) => Err(Error::UnsupportedAlgorithm { what, alg: curve }),
        None => Err(Error::UnsupportedAlgorithm {
            what,
            alg: key.object_type(),
        }),
    }
}

/// The `authPolicy` docs/protocol.md gives the statement key: PolicyPCR over `platform` with
/// `values`, then PolicyCommandCode(TPM2_Sign).
///
/// # Errors
/// `PcrSelectionMismatch` when `values` does not hold exactly the platform PCRs.
pub fn statement_key_policy(
    platform: &PcrSelection,
    values: &PcrValues,
) -> Result<PolicyDigest, Error> {
    Ok(PolicyDigest::new()
        .pcr(platform, values)?
        .command_code(TPM_CC_SIGN))
}

/// The `authPolicy` docs/protocol.md gives the sealing index: PolicyPCR over `platform` with
/// `values`.
///
/// # Errors
/// `PcrSelectionMismatch` when `values` does not hold exactly the platform PCRs.
pub fn sealing_policy(platform: &PcrSelection, values: &PcrValues) -> Result<PolicyDigest, Error> {
    PolicyDigest::new().pcr(platform, values)
}

/// `values` restricted to the PCRs of `selection`.
pub fn select(values: &PcrValues, selection: &PcrSelection) -> PcrValues {
    values
        .iter()
        .filter(|(i, _)| selection.contains(**i))
        .map(|(i, v)| (*i, *v))
        .collect()
}

/// docs/protocol.md: the statement key is an ECC P-256 signing key, fixedTPM, fixedParent,
/// sensitiveDataOrigin, with `userWithAuth`, `adminWithPolicy` and `decrypt` clear, name
/// algorithm SHA-256, and `authPolicy` = PolicyPCR(platform PCRs at the appraised
/// `values`) then PolicyCommandCode(TPM2_Sign) — so it signs only in the attested state.
///
/// # Errors
/// `AttributeMismatch`, `UnsupportedAlgorithm`, `PcrSelectionMismatch`,
/// `AuthPolicyMismatch`.
pub fn require_statement_key(
    key: &Public,
    platform: &PcrSelection,
    values: &PcrValues,
) -> Result<(), Error> {
    key.require_attributes(
        "statement key",
        ObjectAttributes::SIGN_ENCRYPT
            | ObjectAttributes::FIXED_TPM
            | ObjectAttributes::FIXED_PARENT
            | ObjectAttributes::SENSITIVE_DATA_ORIGIN,
        ObjectAttributes::DECRYPT
            | ObjectAttributes::USER_WITH_AUTH
            | ObjectAttributes::ADMIN_WITH_POLICY,
    )?;
    require_p256_sha256("statement key", key)?;
    if let Some(s) = key.scheme()
        && !(s.alg == TPM_ALG_ECDSA && s.hash == TPM_ALG_SHA256)
    {
        return Err(Error::UnsupportedAlgorithm {
            what: "statement key scheme (ECDSA with SHA-256 or none needed)",
            alg: s.alg,
        });
    }
    let expected = statement_key_policy(platform, values)?;
    if key.auth_policy() != expected.as_bytes() {
        return Err(Error::AuthPolicyMismatch {
            what: "statement key",
            expected: expected.to_hex(),
            found: hex::encode(key.auth_policy()),
        });
    }
    Ok(())
}

/// The attributes docs/protocol.md fixes for the sealing index as read back after its first
/// write: exactly `POLICYREAD | POLICYWRITE | NO_DA | WRITTEN` (an ordinary index).
pub const SEALING_ATTRIBUTES: NvAttributes = NvAttributes(
    NvAttributes::POLICYREAD.bits()
        | NvAttributes::POLICYWRITE.bits()
        | NvAttributes::NO_DA.bits()
        | NvAttributes::WRITTEN.bits(),
);

/// The sealing index's data size: `key[32] || epoch (u64)`.
pub const SEALING_DATA_SIZE: u16 = 40;

/// docs/protocol.md: the sealing index has name algorithm SHA-256, attributes exactly
/// [`SEALING_ATTRIBUTES`], 40 bytes of data and `authPolicy` = PolicyPCR(platform PCRs
/// at the appraised `values`).
///
/// # Errors
/// `UnsupportedAlgorithm` (name algorithm), `AttributeMismatch` (any difference from the
/// exact set), `InvalidValue` (data size), `PcrSelectionMismatch`,
/// `AuthPolicyMismatch`.
pub fn require_sealing_index(
    nv: &NvPublic,
    platform: &PcrSelection,
    values: &PcrValues,
) -> Result<(), Error> {
    if nv.name_alg != TPM_ALG_SHA256 {
        return Err(Error::UnsupportedAlgorithm {
            what: "sealing index nameAlg",
            alg: nv.name_alg,
        });
    }
    let found = nv.attributes.bits();
    let wanted = SEALING_ATTRIBUTES.bits();
    if found != wanted {
        return Err(Error::AttributeMismatch {
            what: "sealing index",
            found,
            missing: wanted & !found,
            forbidden: found & !wanted,
        });
    }
    if nv.data_size != SEALING_DATA_SIZE {
        return Err(Error::InvalidValue {
            what: "sealing index dataSize",
            value: u64::from(nv.data_size),
        });
    }
    let expected = sealing_policy(platform, values)?;
    if nv.auth_policy != expected.as_bytes() {
        return Err(Error::AuthPolicyMismatch {
            what: "sealing index",
            expected: expected.to_hex(),
            found: hex::encode(&nv.auth_policy),
        });
    }
    Ok(())
}

/// Checks that `later` comes from the same TPM startup as `earlier` (two attestations
/// by one AK in the endorsement hierarchy, whose counts are not obfuscated): equal
/// `resetCount` and `restartCount`, and a clock that did not go backwards. The TPM clock
/// counts time the TPM was powered, not wall time.
///
/// # Errors
/// `StartupChanged`.
pub fn check_same_startup(earlier: &ClockInfo, later: &ClockInfo) -> Result<(), Error> {
    if earlier.reset_count == later.reset_count
        && earlier.restart_count == later.restart_count
        && later.clock >= earlier.clock
    {
        Ok(())
    } else {
        Err(Error::StartupChanged {
            earlier_reset: earlier.reset_count,
            earlier_restart: earlier.restart_count,
            earlier_clock: earlier.clock,
            later_reset: later.reset_count,
            later_restart: later.restart_count,
            later_clock: later.clock,
        })
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;

    use super::*;

    fn platform() -> PcrSelection {
        PcrSelection::new([0, 2, 4, 7, 9]).unwrap()
    }

    fn values() -> PcrValues {
        [0u8, 2, 4, 7, 9]
            .into_iter()
            .map(|i| (i, [i; 32]))
            .collect()
    }

    fn key(attributes: ObjectAttributes, policy: &[u8]) -> Public {
        let sk = SigningKey::from_slice(&[9; 32]).unwrap();
        Public::p256_signing_key(sk.verifying_key(), attributes, policy).unwrap()
    }

    fn ak_attributes() -> ObjectAttributes {
        ObjectAttributes::FIXED_TPM
            | ObjectAttributes::FIXED_PARENT
            | ObjectAttributes::SENSITIVE_DATA_ORIGIN
            | ObjectAttributes::USER_WITH_AUTH
            | ObjectAttributes::RESTRICTED
            | ObjectAttributes::SIGN_ENCRYPT
    }

    fn stmt_attributes() -> ObjectAttributes {
        ObjectAttributes::FIXED_TPM
            | ObjectAttributes::FIXED_PARENT
            | ObjectAttributes::SENSITIVE_DATA_ORIGIN
            | ObjectAttributes::SIGN_ENCRYPT
    }

    #[test]
    fn ak_requirements() {
        require_ak(&key(ak_attributes(), &[])).unwrap();
        let unrestricted = ak_attributes().bits() & !ObjectAttributes::RESTRICTED.bits();
        assert!(matches!(
            require_ak(&key(ObjectAttributes(unrestricted), &[])),
            Err(Error::AttributeMismatch { missing, .. }) if missing == ObjectAttributes::RESTRICTED.bits()
        ));
        let admin = ak_attributes() | ObjectAttributes::ADMIN_WITH_POLICY;
        assert!(matches!(
            require_ak(&key(admin, &[])),
            Err(Error::AttributeMismatch { forbidden, .. }) if forbidden == ObjectAttributes::ADMIN_WITH_POLICY.bits()
        ));
        let not_fixed = ak_attributes().bits() & !ObjectAttributes::FIXED_TPM.bits();
        assert!(require_ak(&key(ObjectAttributes(not_fixed), &[])).is_err());
    }

    #[test]
    fn statement_key_requirements_and_policy() {
        let policy = statement_key_policy(&platform(), &values()).unwrap();
        let good = key(stmt_attributes(), policy.as_bytes());
        require_statement_key(&good, &platform(), &values()).unwrap();
        // Another PCR value: the policy no longer matches.
        let mut other = values();
        other.insert(7, [0x77; 32]);
        assert!(matches!(
            require_statement_key(&good, &platform(), &other),
            Err(Error::AuthPolicyMismatch {
                what: "statement key",
                ..
            })
        ));
        // PolicyPCR alone (no command code) is refused.
        let pcr_only = sealing_policy(&platform(), &values()).unwrap();
        assert!(matches!(
            require_statement_key(
                &key(stmt_attributes(), pcr_only.as_bytes()),
                &platform(),
                &values()
            ),
            Err(Error::AuthPolicyMismatch { .. })
        ));
        // userWithAuth would let anyone who can open the TPM sign without the policy.
        let uwa = stmt_attributes() | ObjectAttributes::USER_WITH_AUTH;
        assert!(matches!(
            require_statement_key(&key(uwa, policy.as_bytes()), &platform(), &values()),
            Err(Error::AttributeMismatch { .. })
        ));
        // Values for other PCRs than the platform set.
        let mut extra = values();
        extra.insert(23, [0; 32]);
        assert!(matches!(
            require_statement_key(&good, &platform(), &extra),
            Err(Error::PcrSelectionMismatch { .. })
        ));
        assert_eq!(select(&extra, &platform()), values());
    }

    fn sealing_index(attributes: NvAttributes, data_size: u16) -> NvPublic {
        NvPublic {
            index: 0x0130_0023,
            name_alg: TPM_ALG_SHA256,
            attributes,
            auth_policy: sealing_policy(&platform(), &values())
                .unwrap()
                .as_bytes()
                .to_vec(),
            data_size,
        }
    }

    #[test]
    fn sealing_index_requirements() {
        require_sealing_index(
            &sealing_index(SEALING_ATTRIBUTES, 40),
            &platform(),
            &values(),
        )
        .unwrap();
        // Not yet written, or with owner read: refused, naming the bits.
        let unwritten = NvAttributes(SEALING_ATTRIBUTES.bits() & !NvAttributes::WRITTEN.bits());
        assert_eq!(
            require_sealing_index(&sealing_index(unwritten, 40), &platform(), &values()),
            Err(Error::AttributeMismatch {
                what: "sealing index",
                found: unwritten.bits(),
                missing: NvAttributes::WRITTEN.bits(),
                forbidden: 0
            })
        );
        let owner_read = SEALING_ATTRIBUTES | NvAttributes::OWNERREAD;
        assert!(matches!(
            require_sealing_index(&sealing_index(owner_read, 40), &platform(), &values()),
            Err(Error::AttributeMismatch { forbidden, .. }) if forbidden == NvAttributes::OWNERREAD.bits()
        ));
        assert_eq!(
            require_sealing_index(
                &sealing_index(SEALING_ATTRIBUTES, 32),
                &platform(),
                &values()
            ),
            Err(Error::InvalidValue {
                what: "sealing index dataSize",
                value: 32
            })
        );
        let mut other = values();
        other.insert(0, [0xff; 32]);
        assert!(matches!(
            require_sealing_index(&sealing_index(SEALING_ATTRIBUTES, 40), &platform(), &other),
            Err(Error::AuthPolicyMismatch {
                what: "sealing index",
                ..
            })
        ));
        let mut sha1 = sealing_index(SEALING_ATTRIBUTES, 40);
        sha1.name_alg = crate::tpm::TPM_ALG_SHA1;
        assert!(matches!(
            require_sealing_index(&sha1, &platform(), &values()),
            Err(Error::UnsupportedAlgorithm { .. })
        ));
    }

    /// The structures a real TPM (swtpm, through tpm2-tools; `testdata/swtpm`) made pass
    /// the same checks as the software stand-ins the other tests use.
    #[test]
    fn real_tpm_objects_pass_the_checks() {
        let ak = Public::from_tpm2b(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/swtpm/ak.pub"
        )))
        .unwrap();
        require_ak(&ak).unwrap();
        // The statement-like key's policy is PolicyPCR(0, 2, 4, 7, 9 all zero) then
        // PolicyCommandCode(Sign), made in a trial session.
        let stmt = Public::from_tpm2b(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/swtpm/stmt.pub"
        )))
        .unwrap();
        let zeros: PcrValues = platform()
            .pcrs()
            .into_iter()
            .map(|i| (i, [0; 32]))
            .collect();
        require_statement_key(&stmt, &platform(), &zeros).unwrap();
        assert!(matches!(
            require_statement_key(&stmt, &platform(), &values()),
            Err(Error::AuthPolicyMismatch { .. })
        ));
        // Its certification by the AK, whatever the qualifying data (tpm2-tools passes
        // 00ff55aa).
        let attest: &[u8] = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/swtpm/certify_attest.bin"
        ));
        let sig: &[u8] = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/swtpm/certify_sig.bin"
        ));
        let extra = crate::tpm::Attest::parse(attest).unwrap().extra_data;
        crate::verify_certify(attest, sig, &ak, &stmt, &extra).unwrap();
        // The sealing index as defined, before its first write, lacks WRITTEN: the daemon
        // checks (and publishes) the area as read back after the write.
        let defined = NvPublic {
            index: 0x0150_0001,
            name_alg: TPM_ALG_SHA256,
            attributes: NvAttributes(0x0208_0008),
            auth_policy: hex::decode(
                "3c87a4b3fb85ebeea58c5fb36ac22d3f280cec27a9f6dd0fa23be9ce560deec8",
            )
            .unwrap(),
            data_size: 40,
        };
        let pcr23 = PcrSelection::new([23]).unwrap();
        let zero23: PcrValues = [(23, [0; 32])].into_iter().collect();
        assert_eq!(
            require_sealing_index(&defined, &pcr23, &zero23),
            Err(Error::AttributeMismatch {
                what: "sealing index",
                found: 0x0208_0008,
                missing: NvAttributes::WRITTEN.bits(),
                forbidden: 0
            })
        );
        let written = NvPublic {
            attributes: SEALING_ATTRIBUTES,
            ..defined
        };
        require_sealing_index(&written, &pcr23, &zero23).unwrap();
    }

    #[test]
    fn same_startup() {
        let a = ClockInfo {
            clock: 1_000,
            reset_count: 3,
            restart_count: 0,
            safe: true,
        };
        let later = ClockInfo { clock: 2_000, ..a };
        check_same_startup(&a, &later).unwrap();
        check_same_startup(&a, &a).unwrap();
        let rebooted = ClockInfo {
            reset_count: 4,
            clock: 5_000,
            ..a
        };
        assert!(matches!(
            check_same_startup(&a, &rebooted),
            Err(Error::StartupChanged { later_reset: 4, .. })
        ));
        let resumed = ClockInfo {
            restart_count: 1,
            ..later
        };
        assert!(check_same_startup(&a, &resumed).is_err());
        let backwards = ClockInfo { clock: 999, ..a };
        assert!(check_same_startup(&a, &backwards).is_err());
    }
}
