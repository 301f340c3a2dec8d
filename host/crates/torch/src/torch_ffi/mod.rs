//! The FFI edge of the TorchScript backend: libtorch's unsigned 16/32/64-bit
//! scalar types, which tch 0.24's `Kind` does not name (here); the CUDA
//! streams, events, graphs and pinned memory of csrc/cuda.cpp (`cuda`); and
//! gathering request buffers into an instance's double-buffered pinned
//! staging memory for the GPU (`staging`). Everything else goes through
//! tch's safe API.
#![allow(unsafe_code)]

mod cuda;
mod staging;

pub use cuda::{set_tf32, to_pinned_async, CudaEvent, CudaGraph, CudaStream};
pub use staging::{InputStaging, Upload};

use std::ffi::{c_int, c_void, CStr};

use kiln_types::tensor::DataType;

/// c10::ScalarType codes (stable since PyTorch 2.3).
const UINT16: c_int = 27;
const UINT32: c_int = 28;
const UINT64: c_int = 29;

fn code(datatype: DataType) -> Option<(c_int, usize)> {
    match datatype {
        DataType::Uint16 => Some((UINT16, 2)),
        DataType::Uint32 => Some((UINT32, 4)),
        DataType::Uint64 => Some((UINT64, 8)),
        _ => None,
    }
}

/// Takes libtorch's pending error message, if any.
fn last_error() -> Option<String> {
    // SAFETY: torch-sys returns null or a malloc'd NUL-terminated string that
    // the caller owns; we copy it and free it exactly once.
    unsafe {
        let p = torch_sys::get_and_reset_last_err();
        if p.is_null() {
            return None;
        }
        let msg = CStr::from_ptr(p).to_string_lossy().into_owned();
        libc::free(p as *mut c_void);
        Some(msg)
    }
}

/// A CPU tensor of an unsigned wide type, copied from little-endian bytes.
pub fn unsigned_tensor(
    data: &[u8],
    shape: &[i64],
    datatype: DataType,
) -> Result<tch::Tensor, String> {
    let (code, size) =
        code(datatype).ok_or_else(|| format!("{datatype} is not an unsigned wide type"))?;
    let numel = kiln_types::tensor::element_count(shape).ok_or("invalid shape")?;
    if numel.checked_mul(size) != Some(data.len()) {
        return Err(format!(
            "{} bytes do not match shape {shape:?} of {datatype}",
            data.len()
        ));
    }
    // SAFETY: `data` holds exactly numel * size bytes (checked above) and
    // `shape` outlives the call; libtorch copies both into a new tensor.
    let ptr = unsafe {
        torch_sys::at_tensor_of_data(
            data.as_ptr() as *const c_void,
            shape.as_ptr(),
            shape.len(),
            size,
            code,
        )
    };
    if let Some(e) = last_error() {
        return Err(e);
    }
    if ptr.is_null() {
        return Err("libtorch returned no tensor".into());
    }
    // SAFETY: a non-null tensor freshly allocated by libtorch, owned by us.
    Ok(unsafe { tch::Tensor::from_ptr(ptr) })
}

/// The datatype of a tensor whose scalar type tch cannot name, if it is one
/// of the unsigned wide types.
pub fn unsigned_datatype(t: &tch::Tensor) -> Option<DataType> {
    // SAFETY: `t` is a live tensor; at_scalar_type only reads its dtype.
    let code = unsafe { torch_sys::at_scalar_type(t.as_ptr() as *mut _) };
    last_error();
    match code {
        UINT16 => Some(DataType::Uint16),
        UINT32 => Some(DataType::Uint32),
        UINT64 => Some(DataType::Uint64),
        _ => None,
    }
}

/// Little-endian bytes of a contiguous CPU tensor of an unsigned wide type.
pub fn unsigned_bytes(t: &tch::Tensor, datatype: DataType) -> Result<Vec<u8>, String> {
    let (_, size) =
        code(datatype).ok_or_else(|| format!("{datatype} is not an unsigned wide type"))?;
    let numel = t.numel();
    let mut buf = vec![0u8; numel * size];
    // SAFETY: `buf` has room for numel elements of `size` bytes; the tensor is
    // contiguous on the CPU (the caller's contract), so libtorch memcpys
    // exactly that many bytes.
    unsafe {
        torch_sys::at_copy_data(
            t.as_ptr() as *mut _,
            buf.as_mut_ptr() as *const c_void,
            numel,
            size,
        )
    };
    match last_error() {
        Some(e) => Err(e),
        None => Ok(buf),
    }
}
