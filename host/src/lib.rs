//! kiln: a GPU inference server for Triton model repositories. This crate is
//! the binary's: settings, the server's wiring, metrics, `kiln check`, and
//! the registry of backends. A request's path runs through the crates below
//! it: kiln-kserve (transport, admission, gRPC and HTTP) → kiln-repository
//! (which loaded version) → kiln-pipeline (checks, ensembles) →
//! kiln-scheduler (queues, batching, instance threads) → the backends
//! (kiln-torch, kiln-wasm on kiln-sandbox). host/ARCHITECTURE.md
//! has the graph.
#![forbid(unsafe_code)]

pub mod backend;
pub mod check;
pub mod logging;
pub mod metrics;
pub mod repository;
pub mod server;
pub mod settings;
