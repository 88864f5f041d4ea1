//! Destruction: `POST /v1/instances/{id}/destroy` and
//! `GET /v1/instances/{id}/destruction-certificate` (the signed certificate with the
//! caller's own leaves of the inputs tree), and `POST /v1/admin/epoch-reset`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::InstanceId;

/// One leaf of a destruction certificate's inputs tree: an input the instance accepted.
/// Its bytes are `JCS({"slot","submitter","round","ciphertext_sha256"})`, the same
/// fields a party's receipt holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputLeaf {
    /// The slot.
    pub slot: String,
    /// The submitter's identity.
    pub submitter: String,
    /// The round the input was submitted in.
    pub round: u64,
    /// `sha256(enc || ciphertext)`, hex.
    pub ciphertext_sha256: String,
}

impl InputLeaf {
    /// The leaf's bytes: `JCS` of the object (RFC 8785).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Four plain fields serialise without failing; an empty output would match no
        // tree anyone computes, so the fallback fails closed.
        serde_jcs::to_vec(self).unwrap_or_default()
    }
}

/// One of the caller's leaves with its index and RFC 9162 inclusion proof (hex hashes,
/// from the leaf's sibling up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputInclusion {
    /// The leaf (its bytes are `JCS(leaf)`).
    pub leaf: InputLeaf,
    /// Its index in acceptance order.
    pub leaf_index: u64,
    /// The inclusion proof, hex.
    pub proof: Vec<String>,
}

/// The answer of the destruction certificate endpoint and of `destroy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DestructionCertificate {
    /// The caller's own leaves of the signed inputs tree, with their inclusion proofs.
    pub inputs: Vec<InputInclusion>,
    /// The signed certificate (compact JWS).
    pub jws: String,
    /// Its payload, decoded for convenience (unverified: check `jws`); null if it does
    /// not decode.
    pub payload: serde_json::Value,
}

/// The answer of `POST /v1/admin/epoch-reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EpochReset {
    /// The new sealing epoch.
    pub epoch: u64,
    /// The instances given up.
    pub unrecoverable: Vec<InstanceId>,
}
