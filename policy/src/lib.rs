//! Pure checks of TPM 2.0 evidence and of what parties agreed to, for Arbiter, shared by
//! the daemon and every party's client:
//!
//! - TPM wire structures ([`tpm`]), TPM names, policy digests computed in software
//!   ([`digest`]) and the verification of quotes and certifications ([`quote`]);
//! - manifests ([`manifest`]): parsing, validation with a JSON pointer per problem, and
//!   `manifest_sha256`;
//! - input encryption ([`hpke`]: RFC 9180 with the `info` that binds a ciphertext to its
//!   instance, slot, round, function and submitter) and the result-at-rest key;
//! - the quote binding ([`merkle`]: RFC 9162 trees and inclusion proofs) and signed
//!   statements ([`jws`]: ES256 JWS, the result and destruction payloads);
//! - the evidence bundle and its object checks ([`evidence`]) and the appraisal that
//!   lists every reason for a rejection ([`appraisal`]);
//! - the lifecycle of an instance as pure rules ([`lifecycle`]): which requests are
//!   accepted in which state, the trigger, the rounds and the destruction policy;
//! - identities ([`identity`]) and RFC 8785 JSON canonicalisation ([`jcs`]).
//!
//! No TPM, no I/O: bytes in, verdicts out. Every parser refuses truncated input and
//! trailing bytes and never panics; every failure is a precise [`Error`].
#![forbid(unsafe_code)]

pub mod appraisal;
pub mod digest;
mod error;
pub mod evidence;
pub mod hpke;
pub mod identity;
pub mod jcs;
pub mod jws;
pub mod lifecycle;
pub mod manifest;
pub mod merkle;
#[cfg(test)]
mod proptests;
pub mod quote;
#[cfg(test)]
mod swtpm_fixtures;
pub mod tpm;

pub use digest::PolicyDigest;
pub use error::{Error, JwsError, MerkleError};
pub use quote::{
    remember_verified_signatures, verify_certify, verify_nv_certify, verify_quote, verify_signature,
};
pub use tpm::{
    Attest, Attested, ClockInfo, EcdsaSignature, NvAttributes, NvPublic, ObjectAttributes,
    PcrSelection, PcrValues, Public, PublicKey, Scheme, SymDef, pcr_digest,
};
