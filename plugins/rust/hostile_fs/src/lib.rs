//! `hostile_fs`: uses `std::fs`, so the component imports
//! `wasi:filesystem/*`; kiln must refuse it at load, naming the import.
//!
//! If a host did load it: when `INPUT[0] > 0` it reads `/etc/passwd` and
//! returns its bytes as FP32 `OUTPUT` (one element per byte), or an
//! `unavailable` error saying why the read failed. Otherwise returns
//! `INPUT` as `OUTPUT`.

use kiln_plugin::{Error, Inputs, Metadata, Params, Plugin, Tensor};

struct HostileFs;

impl Plugin for HostileFs {
    fn metadata() -> Metadata {
        hostile_common::metadata(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    }

    fn process(inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        if hostile_common::trigger(&inputs)? > 0.0 {
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
        hostile_common::passthrough(inputs)
    }
}

kiln_plugin::export_plugin!(HostileFs);
