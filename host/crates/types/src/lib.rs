//! The words every layer of kiln shares, and nothing else: a tensor and its
//! datatype, a request's parameters and context, and the one error enum of
//! the request path. No transport types live here (the protocol crate maps
//! [`KilnError`] to gRPC and HTTP statuses), so every crate below the
//! protocol layer can depend on this one without pulling in tonic or axum.
#![forbid(unsafe_code)]

pub mod context;
pub mod error;
pub mod params;
pub mod tensor;
pub mod text;

pub use context::{RemoteSpan, RequestContext, Share};
pub use error::{KilnError, Result};
pub use params::{ParamValue, Parameters};
pub use tensor::{DataType, Tensor};
