//! What runs a model: the [`Backend`] trait (one loaded copy of a model on
//! one device) and the [`BackendFactory`] each kind of backend registers,
//! which checks a config for what only that backend cares about and loads
//! instances. Adding a backend is one crate implementing these two traits and
//! one `register` line where kiln builds its [`BackendRegistry`].
//!
//! Each instance is synchronous and owned by one scheduler worker thread, so
//! a backend never needs to be `Sync` and never blocks the async runtime.
#![forbid(unsafe_code)]

pub mod batch;
mod instance;
mod registry;
mod request;

pub use instance::{Backend, BackendError, ExecTimings, InFlight, Submitted};
pub use registry::{BackendFactory, BackendRegistry};
pub use request::BackendRequest;
