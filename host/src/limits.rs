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

/// At most this many bytes of client-supplied text go into an error message:
/// a name is shown, a 16 MiB name is not echoed.
pub const ECHO_BYTES: usize = 128;

/// A client-supplied string as error messages show it: whole if short, else
/// its first [`ECHO_BYTES`] bytes (on a character boundary) and its length.
pub fn clip(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= ECHO_BYTES {
        return s.into();
    }
    let mut end = ECHO_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len()).into()
}

/// The longest error message any protocol answer carries. Messages are built
/// from clipped client input, so this only trims lists (a model's 1,000
/// input names); it also keeps a gRPC trailer far below the 8 KiB clients
/// accept, so a client sees the error, not RESOURCE_EXHAUSTED.
pub const MAX_ERROR_BYTES: usize = 2048;

/// Trims an error message to [`MAX_ERROR_BYTES`].
pub fn bound_message(mut message: String) -> String {
    if message.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("… (truncated)");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_strings_and_cuts_long_ones_on_a_char_boundary() {
        assert_eq!(clip("INPUT0"), "INPUT0");
        let long = "é".repeat(1000);
        let c = clip(&long);
        assert!(c.len() < ECHO_BYTES + 32, "{}", c.len());
        assert!(c.ends_with("(2000 bytes)"), "{c}");
        let m = bound_message("x".repeat(10_000));
        assert!(m.len() <= MAX_ERROR_BYTES + 16 && m.ends_with("(truncated)"));
    }
}
