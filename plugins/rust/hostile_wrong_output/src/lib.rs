//! `hostile_wrong_output`: when `INPUT[0] > 0`, returns outputs that do
//! not match what it declared (FP32 `OUTPUT`, dims `[-1]`):
//!
//! * `0 < INPUT[0] < 2`: `OUTPUT` as INT32 with shape `[7, 3]` (21
//!   elements, data consistent with that shape).
//! * `2 <= INPUT[0] < 3`: `OUTPUT` as FP32, shape `[1000]`, but only 4
//!   bytes of data.
//! * `3 <= INPUT[0] < 4`: a correct FP32 tensor named `NOT_DECLARED`
//!   instead of `OUTPUT`.
//! * `4 <= INPUT[0] < 5`: no outputs at all.
//! * `5 <= INPUT[0] < 6`: `OUTPUT` twice (both correct).
//! * `INPUT[0] >= 6`: `OUTPUT` as BYTES `[1]` carrying its element in
//!   `data` (which BYTES must leave empty) instead of `elements`.
//!
//! Otherwise returns `INPUT` as `OUTPUT`.

use kiln_plugin::{Datatype, Error, Inputs, Metadata, Params, Plugin, Tensor};

struct HostileWrongOutput;

impl Plugin for HostileWrongOutput {
    fn metadata() -> Metadata {
        hostile_common::metadata(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    }

    fn process(inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        let x = hostile_common::trigger(&inputs)?;
        if x <= 0.0 {
            return hostile_common::passthrough(inputs);
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
        } else if x < 5.0 {
            Vec::new()
        } else if x < 6.0 {
            let out = Tensor::from_f32("OUTPUT", &[1, 1], &[x]);
            vec![out.clone(), out]
        } else {
            vec![Tensor::new(
                "OUTPUT",
                Datatype::Bytes,
                &[1],
                [1u8, 0, 0, 0, b'x'].to_vec(),
            )]
        })
    }
}

kiln_plugin::export_plugin!(HostileWrongOutput);
