//! `hostile_wrong_output`: when `INPUT[0] > 0`, returns outputs that do
//! not match what it declared (FP32 `OUTPUT`, dims `[-1]`):
//!
//! * `0 < INPUT[0] < 2`: `OUTPUT` as INT32 with shape `[7, 3]` (21
//!   elements, data consistent with that shape).
//! * `2 <= INPUT[0] < 3`: `OUTPUT` as FP32, shape `[1000]`, but only 4
//!   bytes of data.
//! * `3 <= INPUT[0] < 4`: a correct FP32 tensor named `NOT_DECLARED`
//!   instead of `OUTPUT`.
//! * `INPUT[0] >= 4`: no outputs at all.
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

struct HostileWrongOutput;

impl Plugin for HostileWrongOutput {
    fn metadata() -> Metadata {
        metadata()
    }

    fn process(inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        let x = trigger(&inputs)?;
        if x <= 0.0 {
            return passthrough(inputs);
        }
        Ok(if x < 2.0 {
            vec![Tensor::from_i32("OUTPUT", &[7, 3], &[7; 21])]
        } else if x < 3.0 {
            vec![Tensor::new(
                "OUTPUT",
                Datatype::Fp32,
                &[1000],
                1.0f32.to_le_bytes().to_vec(),
            )]
        } else if x < 4.0 {
            vec![Tensor::from_f32("NOT_DECLARED", &[1], &[x])]
        } else {
            Vec::new()
        })
    }
}

kiln_plugin::export_plugin!(HostileWrongOutput);
