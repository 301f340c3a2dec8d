//! A ModelInferRequest's protobuf bytes: the pre-scan, prost, then the
//! conversion to kiln's request (typed contents, raw contents, parameters).
#![no_main]
use kiln_types::context::RequestContext;
use kiln_kserve::{grpc, grpc_wire, proto};
use kiln_kserve::shared_memory::SharedMemory;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let limits = kiln_kserve::limits::get();
    if grpc_wire::check_infer_request(data, limits, 1 << 20).is_err() {
        return;
    }
    let Ok(request) = proto::ModelInferRequest::decode(data) else {
        return;
    };
    let _ = grpc::to_infer_request(&SharedMemory::default(), RequestContext::internal(), request);
});
