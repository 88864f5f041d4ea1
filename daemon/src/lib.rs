//! `arbiterd`, the Arbiter daemon: an attested trusted third party for multi-party
//! computation on a TPM 2.0 appliance.
//!
//! This crate owns everything that runs on the appliance. Its modules:
//! - [`tpm`]: the only code that talks to the TPM (one owner thread, an async handle);
//! - [`swtpm`]: a private software TPM for development mode, demos and tests;
//! - [`selftest`]: the end-to-end TPM check behind `arbiterd tpm-selftest`.

#![forbid(unsafe_code)]

pub mod selftest;
pub mod swtpm;
pub mod tpm;
