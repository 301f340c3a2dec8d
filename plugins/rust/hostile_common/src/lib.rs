//! What every hostile test plugin shares: FP32 `INPUT` -> FP32 `OUTPUT`,
//! hostile behaviour only when `INPUT[0] > 0` (so the same model also serves
//! harmless requests, which shows its instance was replaced after a trap),
//! and the harmless path returning `INPUT` as `OUTPUT`.

use kiln_plugin::{Datatype, Error, Inputs, Metadata, Tensor, TensorSpec};

/// FP32 `INPUT` -> FP32 `OUTPUT` under the plugin's own name and version.
pub fn metadata(name: &str, version: &str) -> Metadata {
    Metadata::new(name, version)
        .input(TensorSpec::new("INPUT", Datatype::Fp32, &[-1]))
        .output(TensorSpec::new("OUTPUT", Datatype::Fp32, &[-1]))
}

/// The first element of `INPUT` (0 for an empty tensor).
pub fn trigger(inputs: &Inputs) -> Result<f32, Error> {
    Ok(inputs
        .get("INPUT")?
        .as_f32()?
        .first()
        .copied()
        .unwrap_or(0.0))
}

/// The harmless path: `INPUT` returned as `OUTPUT`.
pub fn passthrough(mut inputs: Inputs) -> Result<Vec<Tensor>, Error> {
    Ok(vec![inputs.take("INPUT")?.with_name("OUTPUT")])
}
