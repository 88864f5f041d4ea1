//! `arbiterd`, the Arbiter daemon: an attested trusted third party for multi-party
//! computation on a TPM 2.0 appliance.
//!
//! This crate owns everything that runs on the appliance. Its modules:
//! - [`tpm`]: the only code that talks to the TPM (one owner thread, an async handle);
//! - [`swtpm`]: a private software TPM for development mode, demos and tests;
//! - [`selftest`]: the end-to-end TPM check behind `arbiterd tpm-selftest`;
//! - [`eval`]: the evaluation sandbox (a child process per run, seccomp, Rhai limits).
//! - [`library`]: the shipped function library (`daemon/functions/`), embedded at build time;
//! - [`logging`]: the `tracing` subscriber (journald, human or JSON lines) and bounded fields;
//! - [`keylime`]: Keylime's agent interface (registration, quotes, fleet revocation);
//! - [`storage`]: what a failed write to the state directory means for a client;
//! - [`server`]: from a configuration to serving, for `arbiterd run` and the tests alike.

// One audited exception: the evaluator child closes the descriptors it inherited
// (eval::sandbox::close_inherited_fds); no safe API closes a descriptor by number.
#![deny(unsafe_code)]

pub(crate) mod admission;
pub mod api;
pub mod config;
pub mod engine;
pub mod eval;
pub(crate) mod hardening;
pub mod keylime;
pub mod keys;
pub mod library;
pub mod lock;
pub mod logging;
pub mod measure;
pub(crate) mod metrics;
pub mod selftest;
pub mod server;
pub mod storage;
pub mod store;
pub mod swtpm;
pub(crate) mod tls;
pub mod tpm;
