//! `hostile_giant_output`: when `INPUT[0] > 0`, returns an FP32 `OUTPUT`
//! as large as it can allocate.
//!
//! It tries 2^31 bytes first (a Rust allocation on wasm32 is at most
//! `isize::MAX` = 2^31 - 1 bytes, so the first real try is 2^31 - 4), then
//! halves the size until an allocation succeeds (down to 1 MiB), fills it
//! with zeros, and returns it with a consistent shape `[bytes / 4]`. Under
//! the default 256 MiB cap that is a 128 MiB output; with `wasm_memory_mb`
//! 4096 it is about 2 GiB. Otherwise returns `INPUT` as `OUTPUT`.

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

struct HostileGiantOutput;

impl Plugin for HostileGiantOutput {
    fn metadata() -> Metadata {
        metadata()
    }

    fn process(inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        if trigger(&inputs)? > 0.0 {
            let mut size: usize = 1 << 31;
            let mut data: Vec<u8> = Vec::new();
            loop {
                // Whole FP32 elements, within isize::MAX.
                let bytes = size.min(isize::MAX as usize) & !3;
                if data.try_reserve_exact(bytes).is_ok() {
                    data.resize(bytes, 0);
                    break;
                }
                size /= 2;
                if size < 1 << 20 {
                    return Err(Error::unavailable(
                        "hostile_giant_output: cannot allocate even 1 MiB",
                    ));
                }
            }
            let elements = (data.len() / 4) as i64;
            kiln_plugin::warn!("hostile_giant_output: returning {} bytes", data.len());
            return Ok(vec![Tensor::new(
                "OUTPUT",
                Datatype::Fp32,
                &[elements],
                data,
            )]);
        }
        passthrough(inputs)
    }
}

kiln_plugin::export_plugin!(HostileGiantOutput);
