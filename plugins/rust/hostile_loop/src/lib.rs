//! `hostile_loop`: when `INPUT[0] > 0`, loops forever (no host calls, no
//! memory traffic). Only the host's deadline (`wasm_timeout_ms`, epoch
//! interruption) stops it. Otherwise returns `INPUT` as `OUTPUT`.

use std::hint::black_box;

use kiln_plugin::{Error, Inputs, Metadata, Params, Plugin, Tensor};

struct HostileLoop;

impl Plugin for HostileLoop {
    fn metadata() -> Metadata {
        hostile_common::metadata(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    }

    fn process(inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        if hostile_common::trigger(&inputs)? > 0.0 {
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        hostile_common::passthrough(inputs)
    }
}

kiln_plugin::export_plugin!(HostileLoop);
