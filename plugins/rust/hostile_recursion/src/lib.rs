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
        metadata()
    }

    fn process(inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        let x = trigger(&inputs)?;
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
        passthrough(inputs)
    }
}

kiln_plugin::export_plugin!(HostileRecursion);
