//! A KServe v2 JSON inference request, and each input's `data` decoded for
//! every datatype its shape allows.
#![no_main]
use kiln_kserve::json;
use kiln_types::tensor::{element_count, DataType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = json::parse_request(data) else {
        return;
    };
    for input in &request.inputs.0 {
        let (Some(raw), Some(expected)) = (input.data, element_count(&input.shape.0)) else {
            continue;
        };
        for datatype in DataType::ALL {
            if let Ok(bytes) = json::decode_data(&input.name, datatype, expected, raw) {
                if let Some(size) = datatype.element_size() {
                    assert_eq!(bytes.len(), expected * size);
                }
            }
        }
    }
});
