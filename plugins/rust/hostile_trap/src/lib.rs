//! `hostile_trap`: when `INPUT[0] > 0`, traps.
//!
//! * `0 < INPUT[0] < 2`: `panic!` (the SDK logs the message through the
//!   host, then Rust aborts with a wasm `unreachable`).
//! * `INPUT[0] >= 2`: a bare wasm `unreachable` instruction, no message.
//!
//! Otherwise returns `INPUT` as `OUTPUT`.

use kiln_plugin::{Error, Inputs, Metadata, Params, Plugin, Tensor};

struct HostileTrap;

impl Plugin for HostileTrap {
    fn metadata() -> Metadata {
        hostile_common::metadata(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    }

    fn process(inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        let x = hostile_common::trigger(&inputs)?;
        if x >= 2.0 {
            #[cfg(target_arch = "wasm32")]
            core::arch::wasm32::unreachable();
            #[cfg(not(target_arch = "wasm32"))]
            std::process::abort();
        }
        if x > 0.0 {
            panic!("hostile_trap: deliberate panic (INPUT[0] = {x})");
        }
        hostile_common::passthrough(inputs)
    }
}

kiln_plugin::export_plugin!(HostileTrap);
