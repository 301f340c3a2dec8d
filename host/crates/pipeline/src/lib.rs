//! A request end to end, below the protocols: gRPC and HTTP both convert to
//! [`InferRequest`] and from [`InferResponse`], so every rule here holds for
//! both. [`infer`] resolves the model version, checks the request against its
//! config, runs it (a model through its scheduler, or an ensemble of models
//! as a pipeline of such requests) and shapes the response.
//!
//! Two small traits keep this crate below the ones that implement them: the
//! repository resolves model names ([`ModelResolver`]), and the protocol
//! layer's shared memory receives outputs ([`OutputDestination`]).
#![forbid(unsafe_code)]

pub mod ensemble;
mod infer;
mod request;

use std::sync::Arc;

use kiln_scheduler::ModelRunner;
use kiln_types::Result;

pub use infer::{arrange_inputs, infer};
pub use request::{InferRequest, InferResponse, RequestedOutput, ResponseOutput};

/// Finds the serving runner of a model version (kiln's model repository,
/// or a caller's namespace of repositories).
pub trait ModelResolver: Send + Sync {
    /// `version` empty: the latest ready version. Errors are the answers a
    /// client gets (NOT_FOUND, UNAVAILABLE, ...). With the runner comes the
    /// resolver of the namespace that owns the model: an ensemble's steps
    /// are resolved there, not in the caller's namespace.
    fn resolve(&self, name: &str, version: &str) -> Result<(Arc<ModelRunner>, &dyn ModelResolver)>;
}

/// Where a requested output goes instead of the response: a caller's
/// shared-memory region.
pub trait OutputDestination: Send + Sync + std::fmt::Debug {
    /// Writes output `name`'s bytes; an error fails the request.
    fn write(&self, name: &str, data: &[u8]) -> Result<()>;
}
