//! BYTES tensor payloads (4-byte length + bytes, repeated): splitting,
//! re-encoding and the shape check.
#![no_main]
use kiln_types::tensor::{bytes_elements, encode_bytes_elements, DataType, Tensor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(elements) = bytes_elements(data) {
        assert_eq!(encode_bytes_elements(elements.iter().copied()), data);
        let n = elements.len() as i64;
        let t = Tensor::new("x", DataType::Bytes, vec![n], bytes::Bytes::copy_from_slice(data));
        assert!(t.check_byte_size().is_ok());
    }
    let t = Tensor::new("y", DataType::Bytes, vec![2, 3], bytes::Bytes::copy_from_slice(data));
    let _ = t.check_byte_size();
});
