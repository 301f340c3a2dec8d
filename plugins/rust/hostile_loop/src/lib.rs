//! `hostile_loop`: when `INPUT[0] > 0`, loops forever (no host calls, no
//! memory traffic). Only the host's deadline (`wasm_timeout_ms`, epoch
//! interruption) stops it. Otherwise returns `INPUT` as `OUTPUT`.

use std::hint::black_box;

use kiln_plugin::{Datatype, Error, Inputs, Metadata, Params, Plugin, Tensor, TensorSpec};

/// FP32 `INPUT` -> FP32 `OUTPUT`, like every hostile plugin.
fn metadata() -> Metadata {
    Metadata::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
        .input(TensorSpec::new("INPUT", Datatype::Fp32, &[-1]))
        .output(TensorSpec::new("OUTPUT", Datatype::Fp32, &[-1]))
}

/// The first element of `INPUT` (0 for an empty tensor): the hostile
/// behaviour runs only when it is > 0.
fn trigger(inputs: &Inputs) -> Result<f32, Error> {
    Ok(inputs
        .get("INPUT")?
        .as_f32()?
        .first()
        .copied()
        .unwrap_or(0.0))
}

/// The harmless path: `INPUT` returned as `OUTPUT`.
fn passthrough(mut inputs: Inputs) -> Result<Vec<Tensor>, Error> {
    Ok(vec![inputs.take("INPUT")?.with_name("OUTPUT")])
}

struct HostileLoop;

impl Plugin for HostileLoop {
    fn metadata() -> Metadata {
        metadata()
    }

    fn process(inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        if trigger(&inputs)? > 0.0 {
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        passthrough(inputs)
    }
}

kiln_plugin::export_plugin!(HostileLoop);
