//! `hostile_trap`: when `INPUT[0] > 0`, traps.
//!
//! * `0 < INPUT[0] < 2`: `panic!` (the SDK logs the message through the
//!   host, then Rust aborts with a wasm `unreachable`).
//! * `INPUT[0] >= 2`: a bare wasm `unreachable` instruction, no message.
//!
//! Otherwise returns `INPUT` as `OUTPUT`.

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

struct HostileTrap;

impl Plugin for HostileTrap {
    fn metadata() -> Metadata {
        metadata()
    }

    fn process(inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        let x = trigger(&inputs)?;
        if x >= 2.0 {
            #[cfg(target_arch = "wasm32")]
            core::arch::wasm32::unreachable();
            #[cfg(not(target_arch = "wasm32"))]
            std::process::abort();
        }
        if x > 0.0 {
            panic!("hostile_trap: deliberate panic (INPUT[0] = {x})");
        }
        passthrough(inputs)
    }
}

kiln_plugin::export_plugin!(HostileTrap);
