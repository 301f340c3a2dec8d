//! What a backend executes.

use kiln_types::{Parameters, Tensor};

/// What a backend executes: the inputs aligned with `ModelSpec::inputs` and
/// the request's KServe parameters (plugins see them; libtorch ignores them).
#[derive(Debug, Default)]
pub struct BackendRequest {
    pub inputs: Vec<Option<Tensor>>,
    pub parameters: Parameters,
}
