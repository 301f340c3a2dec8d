//! kiln: a GPU inference server for Triton model repositories.
//!
//! A request's path through the crate:
//! `protocol` (gRPC, HTTP) → `context` (who is calling) → `inference`
//! (checks against the model's config) → `repository` (which loaded version)
//! → `pipeline` (ensembles) → `scheduler` (queue, instance workers) →
//! `backend` (libtorch, wasm plugins).

pub mod backend;
pub mod check;
pub mod limits;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod settings;
pub mod shared_memory;
pub mod transport;
