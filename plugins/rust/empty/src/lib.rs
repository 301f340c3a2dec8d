//! `empty`: FP32 `INPUT` -> the same tensor, unchanged, as `OUTPUT`.
//!
//! Does as little as a plugin can (no checks, no copies inside the guest):
//! what it costs per call is kiln's and the component model's overhead.

use kiln_plugin::{Datatype, Error, Inputs, Metadata, Params, Plugin, Tensor, TensorSpec};

struct Empty;

impl Plugin for Empty {
    fn metadata() -> Metadata {
        Metadata::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
            .input(TensorSpec::new("INPUT", Datatype::Fp32, &[-1]))
            .output(TensorSpec::new("OUTPUT", Datatype::Fp32, &[-1]))
    }

    fn process(mut inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        Ok(vec![inputs.take("INPUT")?.with_name("OUTPUT")])
    }
}

kiln_plugin::export_plugin!(Empty);
