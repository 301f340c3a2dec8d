//! Request tracing, with Triton's trace extension and settings: which
//! requests are traced ([`TraceManager`]: levels, rate, count, per model),
//! what a traced request records on its way ([`RequestTrace`],
//! [`ModelTrace`]), and where it goes: Triton's JSON trace files, or
//! OpenTelemetry spans over OTLP/HTTP, joined to the caller's trace through
//! W3C trace context ([`propagation`]). With tracing off a request costs one
//! atomic load.
#![forbid(unsafe_code)]

mod clock;
pub mod config;
mod file;
mod manager;
mod otlp;
pub mod propagation;
pub mod record;
pub mod settings;

pub use config::{OtlpConfig, TraceConfig};
pub use file::MAX_BUFFERED_TRACES;
pub use manager::TraceManager;
pub use record::{ComputeTimes, ModelTrace, RequestTrace};
pub use settings::{Level, Mode, Update, UpdateError};
