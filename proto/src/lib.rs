//! Arbiter's wire contract, shared by the daemon (which serializes it) and the client and
//! outside verifiers (which parse it): validated ids and digests, instance states, strict
//! JSON reading, and the types of the API's request bodies, answers and errors. Pure: no
//! I/O, no TPM, no clock.

pub mod api;
pub mod error;
pub mod ids;
pub mod json;
pub mod state;

pub use error::ProtoError;
pub use ids::{FunctionId, IdentityId, InstanceId, Sha256Digest};
pub use state::InstanceState;
