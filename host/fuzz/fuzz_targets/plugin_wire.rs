//! A WASI command plugin's answer on stdout (command protocol 1): what a
//! hostile plugin can make kiln decode.
#![no_main]
use kiln_wasm::wire::{decode_answer, Call};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_answer(data, Call::Metadata);
    let _ = decode_answer(data, Call::Process);
});
