//! `hostile_memory`: when `INPUT[0] > 0`, allocates until allocation fails.
//!
//! It grabs 1 GiB chunks (writing every byte, so the pages are really
//! used); when a chunk cannot be had it halves the chunk size, down to
//! 64 KiB, so it ends up holding about everything the memory cap allows.
//! Then it logs how much it holds and makes one more 1 GiB allocation that
//! cannot fail gracefully: Rust aborts (a trap). With a host that traps on
//! a refused `memory.grow` instead, the trap comes at the first refusal.
//! Otherwise returns `INPUT` as `OUTPUT`.

use std::hint::black_box;

use kiln_plugin::{Error, Inputs, Metadata, Params, Plugin, Tensor};

const GIB: usize = 1 << 30;
const MIN_CHUNK: usize = 64 << 10;

struct HostileMemory;

impl Plugin for HostileMemory {
    fn metadata() -> Metadata {
        hostile_common::metadata(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    }

    fn process(inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
        if hostile_common::trigger(&inputs)? > 0.0 {
            let mut hoard: Vec<Vec<u8>> = Vec::with_capacity(1024);
            let mut held = 0usize;
            let mut chunk = GIB;
            while chunk >= MIN_CHUNK {
                let mut v: Vec<u8> = Vec::new();
                if v.try_reserve_exact(chunk).is_ok() {
                    v.resize(chunk, 0xa5);
                    held += chunk;
                    hoard.push(v);
                } else {
                    chunk /= 2;
                }
            }
            kiln_plugin::warn!(
                "hostile_memory: holding {} MiB in {} chunks; allocating 1 GiB more",
                held >> 20,
                hoard.len()
            );
            let more = vec![0x5au8; GIB];
            black_box(&more);
            black_box(&hoard);
            return Err(Error::internal(format!(
                "hostile_memory: allocated {} MiB and 1 GiB more without failing",
                held >> 20
            )));
        }
        hostile_common::passthrough(inputs)
    }
}

kiln_plugin::export_plugin!(HostileMemory);
