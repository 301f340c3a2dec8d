//! An HTTP inference body with Triton's binary tensor extension: the first
//! byte picks the `Inference-Header-Content-Length` split, the rest is the
//! body (JSON head + binary tensors).
#![no_main]
use kiln_types::context::RequestContext;
use kiln_kserve::shared_memory::SharedMemory;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let header_length = (split != 0).then(|| (split as usize * 7) % (body.len() + 1));
    let _ = kiln_kserve::http::parse_infer_body(
        &SharedMemory::default(),
        RequestContext::internal(),
        header_length,
        bytes::Bytes::copy_from_slice(body),
    );
});
