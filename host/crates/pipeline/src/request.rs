//! A request and its response as every protocol delivers and receives
//! them: gRPC and HTTP both convert to [`InferRequest`] and from
//! [`InferResponse`], so every rule of the pipeline holds for both.

use std::sync::Arc;

use kiln_types::context::RequestContext;
use kiln_types::params::Parameters;
use kiln_types::tensor::Tensor;

use crate::OutputDestination;

#[derive(Debug, Clone)]
pub struct RequestedOutput {
    pub name: String,
    /// The classification extension: answer the top `n` classes as BYTES
    /// `"score:index[:label]"` instead of the raw tensor (0 = off). As many
    /// as the output has when larger (64 bits: a count is never truncated).
    pub class_count: u64,
    /// Write the output here (the caller's shared-memory region) instead of
    /// into the response.
    pub destination: Option<Arc<dyn OutputDestination>>,
}

#[derive(Debug)]
pub struct InferRequest {
    pub ctx: RequestContext,
    pub model_name: String,
    /// Empty: the latest ready version.
    pub model_version: String,
    pub id: String,
    pub inputs: Vec<Tensor>,
    /// Empty: every output of the model.
    pub outputs: Vec<RequestedOutput>,
    /// The request's `parameters` (passed to plugins).
    pub parameters: Parameters,
    /// Set when the request is traced (sampled by the protocol layer; an
    /// ensemble's steps run under the ensemble's).
    pub trace: Option<kiln_trace::RequestTrace>,
}

#[derive(Debug)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: String,
    pub outputs: Vec<ResponseOutput>,
}

#[derive(Debug)]
pub struct ResponseOutput {
    /// Name, datatype and shape always; no data when `in_shared_memory`.
    pub tensor: Tensor,
    /// The data went into the caller's shared-memory region: the response
    /// carries no bytes for it (Triton sends an empty `raw_output_contents`
    /// entry over gRPC and no `data` over HTTP).
    pub in_shared_memory: bool,
}
