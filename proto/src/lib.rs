//! Arbiter's wire contract, shared by the daemon (which serializes it) and the client and
//! outside verifiers (which parse it): instance states, and the types of the API's requests,
//! answers and errors. Pure: no I/O, no TPM, no clock.

pub mod error;
pub mod state;

pub use error::ProtoError;
pub use state::InstanceState;
