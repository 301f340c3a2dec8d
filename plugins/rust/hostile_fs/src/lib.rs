//! `hostile_fs`: uses `std::fs`, so the component imports
//! `wasi:filesystem/*`; kiln must refuse it at load, naming the import.
//!
//! If a host did load it: when `INPUT[0] > 0` it reads `/etc/passwd` and
//! returns its bytes as FP32 `OUTPUT` (one element per byte), or an
//! `unavailable` error saying why the read failed. Otherwise returns
//! `INPUT` as `OUTPUT`.

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

struct HostileFs;

impl Plugin for HostileFs {
    fn metadata() -> Metadata {
        metadata()
    }

    fn process(inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        if trigger(&inputs)? > 0.0 {
            return match std::fs::read("/etc/passwd") {
                Ok(bytes) => {
                    let values: Vec<f32> = bytes.iter().map(|&b| f32::from(b)).collect();
                    Ok(vec![Tensor::from_f32(
                        "OUTPUT",
                        &[values.len() as i64],
                        &values,
                    )])
                }
                Err(e) => Err(Error::unavailable(format!(
                    "hostile_fs: cannot read /etc/passwd: {e}"
                ))),
            };
        }
        passthrough(inputs)
    }
}

kiln_plugin::export_plugin!(HostileFs);
