//! `hostile_giant_output`: when `INPUT[0] > 0`, returns an FP32 `OUTPUT`
//! as large as it can allocate.
//!
//! It tries 2^31 bytes first (a Rust allocation on wasm32 is at most
//! `isize::MAX` = 2^31 - 1 bytes, so the first real try is 2^31 - 4), then
//! halves the size until an allocation succeeds (down to 1 MiB), fills it
//! with zeros, and returns it with a consistent shape `[bytes / 4]`. Under
//! the default 256 MiB cap that is a 128 MiB output; with `wasm_memory_mb`
//! 4096 it is about 2 GiB. Otherwise returns `INPUT` as `OUTPUT`.

use kiln_plugin::{Datatype, Error, Inputs, Metadata, Params, Plugin, Tensor};

struct HostileGiantOutput;

impl Plugin for HostileGiantOutput {
    fn metadata() -> Metadata {
        hostile_common::metadata(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    }

    fn process(inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        if hostile_common::trigger(&inputs)? > 0.0 {
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
        hostile_common::passthrough(inputs)
    }
}

kiln_plugin::export_plugin!(HostileGiantOutput);
