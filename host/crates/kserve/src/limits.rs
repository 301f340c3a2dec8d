//! What one request may make kiln spend, checked before kiln spends it.
//!
//! The byte size of a request is bounded by the protocol layer (gRPC message
//! size, HTTP body size, both after decompression). That alone does not bound
//! memory: decoding can multiply it (an empty protobuf submessage is 2 bytes
//! on the wire and a few hundred in memory; a JSON `0,` is 2 bytes and a
//! parsed value 32). So the counts that multiply are bounded too, and checked
//! on the raw bytes before anything is allocated for them.
//!
//! The limits are process-wide, set once at start from the server settings
//! ([`set`]); code that has none set (unit tests, `kiln check`) sees the
//! defaults.

use std::sync::OnceLock;

/// Per-request limits. Every field has a flag of the same name (with
/// dashes) and a documented default.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestLimits {
    /// Inputs of one request (and `raw_input_contents` entries).
    pub max_inputs: usize,
    /// Requested outputs of one request.
    pub max_outputs: usize,
    /// Entries of one `parameters` map (the request's or one tensor's).
    pub max_parameters: usize,
    /// Dimensions of one tensor's shape.
    pub max_dims: usize,
    /// Elements of one tensor, from its shape or its typed/JSON contents.
    pub max_tensor_elements: u64,
    /// Nesting depth of JSON arrays in an HTTP tensor's `data`.
    pub max_json_depth: usize,
    /// Bytes of a control-plane gRPC message (everything but inference).
    pub max_control_message_bytes: usize,
    /// Bytes of an HTTP request body, after decompression
    /// (`--http-max-input-size`).
    pub http_max_input_size: usize,
    /// Bytes of a gRPC request message, after decompression
    /// (`--grpc-max-input-size`).
    pub grpc_max_input_size: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_inputs: 1024,
            max_outputs: 1024,
            max_parameters: 256,
            max_dims: 64,
            max_tensor_elements: 1 << 31,
            max_json_depth: 65,
            max_control_message_bytes: 1 << 20,
            // Triton's default.
            http_max_input_size: 64 << 20,
            // What gRPC clients (tritonclient, perf_analyzer) allow.
            grpc_max_input_size: i32::MAX as usize,
        }
    }
}

static LIMITS: OnceLock<RequestLimits> = OnceLock::new();

/// Sets the process's limits; the first call wins (the server calls it once
/// before it listens).
pub fn set(limits: RequestLimits) {
    let _ = LIMITS.set(limits);
}

/// The limits in force.
pub fn get() -> &'static RequestLimits {
    LIMITS.get_or_init(RequestLimits::default)
}
