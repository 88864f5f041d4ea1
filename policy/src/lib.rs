//! Pure checks of TPM 2.0 evidence for Arbiter, shared by the daemon and every party's
//! client: TPM wire structures ([`tpm`]), TPM names, policy digests computed in software
//! ([`digest`]) and the verification of quotes and certifications ([`quote`]).
//!
//! No TPM, no I/O: bytes in, verdicts out. Every parser refuses truncated input and
//! trailing bytes and never panics; every failure is a precise [`Error`].
#![forbid(unsafe_code)]

pub mod digest;
mod error;
#[cfg(test)]
mod proptests;
pub mod quote;
#[cfg(test)]
mod swtpm_fixtures;
pub mod tpm;

pub use digest::PolicyDigest;
pub use error::Error;
pub use quote::{verify_certify, verify_nv_certify, verify_quote, verify_signature};
pub use tpm::{
    Attest, Attested, ClockInfo, EcdsaSignature, NvAttributes, NvPublic, ObjectAttributes,
    PcrSelection, PcrValues, Public, PublicKey, Scheme, SymDef, pcr_digest,
};
