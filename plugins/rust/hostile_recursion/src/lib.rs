//! `hostile_recursion`: when `INPUT[0] > 0`, recurses without bound.
//!
//! * `0 < INPUT[0] < 2`: a function with no address-taken locals, so each
//!   level uses only wasm's own call stack: wasmtime's stack limit
//!   (`max_wasm_stack`) traps with a stack overflow.
//! * `INPUT[0] >= 2`: each level keeps a 1 KiB buffer on Rust's shadow
//!   stack in linear memory (1 MiB, at the bottom of memory): the shadow
//!   stack pointer runs below address 0 and the next store traps (out of
//!   bounds), usually before the wasm call stack is exhausted.
//!
//! Otherwise returns `INPUT` as `OUTPUT`.

use std::hint::black_box;

use kiln_plugin::{Error, Inputs, Metadata, Params, Plugin, Tensor};

/// Recursion on the wasm call stack only.
#[inline(never)]
fn deep(n: u64) -> u64 {
    if black_box(n) == u64::MAX {
        return 0;
    }
    // black_box around the recursive result defeats tail-call and
    // accumulator transformations.
    black_box(deep(n + 1)).wrapping_mul(3).wrapping_add(n)
}

/// Recursion that also consumes the shadow stack in linear memory.
#[inline(never)]
fn deep_with_buffer(n: u64) -> u64 {
    let mut buffer = [0u8; 1024];
    buffer[(n % 1024) as usize] = n as u8;
    black_box(&mut buffer);
    if black_box(n) == u64::MAX {
        return 0;
    }
    black_box(deep_with_buffer(n + 1)).wrapping_add(u64::from(buffer[(n % 1024) as usize]))
}

struct HostileRecursion;

impl Plugin for HostileRecursion {
    fn metadata() -> Metadata {
        hostile_common::metadata(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    }

    fn process(inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        let x = hostile_common::trigger(&inputs)?;
        if x > 0.0 {
            let r = if x < 2.0 {
                deep(0)
            } else {
                deep_with_buffer(0)
            };
            return Err(Error::internal(format!(
                "hostile_recursion: the recursion returned ({r})"
            )));
        }
        hostile_common::passthrough(inputs)
    }
}

kiln_plugin::export_plugin!(HostileRecursion);
