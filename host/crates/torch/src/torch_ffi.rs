//! The FFI edge of the TorchScript backend: libtorch's unsigned 16/32/64-bit
//! scalar types, which tch 0.24's `Kind` does not name, and gathering
//! request buffers into pinned staging memory for the GPU. Everything else
//! goes through tch's safe API.
#![allow(unsafe_code)]

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

/// Below this many bytes a gather copies on the calling thread; above it,
/// the parts are spread over threads (a batch of 64 ResNet-50 images is
/// 38 MB, several milliseconds on one core).
const PARALLEL_GATHER_BYTES: usize = 4 << 20;
/// Smallest staging buffer, and the alignment of each input within it.
const MIN_STAGING_BYTES: usize = 1 << 20;
const STAGING_ALIGN: usize = 64;

/// One input to send to the GPU: its parts (a request's buffer, or one per
/// request of a batch, concatenated along the batch dimension) and what
/// they hold together.
pub struct Upload<'a> {
    pub parts: Vec<&'a [u8]>,
    pub shape: Vec<i64>,
    pub kind: tch::Kind,
}

/// A model instance's pinned (page-locked) host buffer, reused for every
/// execution and grown when an execution needs more. Inputs are gathered
/// into it straight from the requests' receive buffers (no merged host
/// tensor in between) and sent with asynchronous copies, which from pinned
/// memory run at full DMA speed instead of through the driver's own
/// pageable staging.
pub struct PinnedStaging {
    device: tch::Device,
    buffer: Option<tch::Tensor>,
    capacity: usize,
    /// Copies from the buffer may still be running on the device.
    in_flight: bool,
}

impl PinnedStaging {
    pub fn new(device: tch::Device) -> Self {
        Self {
            device,
            buffer: None,
            capacity: 0,
            in_flight: false,
        }
    }

    /// The caller has synchronized the device: no copy reads the buffer.
    pub fn mark_idle(&mut self) {
        self.in_flight = false;
    }

    fn reserve(&mut self, len: usize) -> Result<(), String> {
        if self.in_flight {
            // An execution failed between upload and synchronization.
            if let tch::Device::Cuda(i) = self.device {
                tch::Cuda::synchronize(i as i64);
            }
            self.in_flight = false;
        }
        if len <= self.capacity {
            return Ok(());
        }
        let capacity = len.next_power_of_two().max(MIN_STAGING_BYTES);
        self.buffer = None;
        let buffer = pinned_bytes(capacity)
            .map_err(|e| format!("cannot allocate {capacity} bytes of pinned host memory: {e}"))?;
        self.buffer = Some(buffer);
        self.capacity = capacity;
        Ok(())
    }

    /// Gathers every upload into the buffer and queues its copy to the
    /// device; returns the device tensors in order. The caller must call
    /// `mark_idle` after synchronizing the device.
    pub fn upload(&mut self, uploads: &[Upload]) -> Result<Vec<tch::Tensor>, String> {
        let mut offsets = Vec::with_capacity(uploads.len());
        let mut total = 0usize;
        for u in uploads {
            let len: usize = u.parts.iter().map(|p| p.len()).sum();
            let numel = kiln_types::tensor::element_count(&u.shape).ok_or("invalid shape")?;
            if numel.checked_mul(u.kind.elt_size_in_bytes()) != Some(len) {
                return Err(format!("{len} bytes do not match shape {:?}", u.shape));
            }
            offsets.push((total, len));
            total = (total + len).next_multiple_of(STAGING_ALIGN);
        }
        self.reserve(total)?;
        let buffer = self.buffer.as_ref().expect("reserved");
        let base = buffer.data_ptr() as usize;
        // (destination offset, source) for every part of every upload.
        let mut jobs = Vec::new();
        for (u, &(start, _)) in uploads.iter().zip(&offsets) {
            let mut at = start;
            for part in &u.parts {
                jobs.push((at, *part));
                at += part.len();
            }
        }
        let copy = |jobs: &[(usize, &[u8])]| {
            for (offset, part) in jobs {
                // SAFETY: the buffer holds `capacity` >= `total` bytes; the
                // destination ranges [offset, offset + len) are disjoint and
                // within `total` (running sums of the lengths, per upload
                // from an aligned start); no device copy reads the buffer
                // now (`reserve` waited for any left in flight), and nothing
                // else writes it (the instance owns it, &mut self).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        part.as_ptr(),
                        (base + offset) as *mut u8,
                        part.len(),
                    )
                };
            }
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        if total < PARALLEL_GATHER_BYTES || threads < 2 || jobs.len() < 2 {
            copy(&jobs);
        } else {
            let per_thread = jobs.len().div_ceil(threads);
            std::thread::scope(|scope| {
                for chunk in jobs.chunks(per_thread) {
                    scope.spawn(move || copy(chunk));
                }
            });
        }
        self.in_flight = true;
        uploads
            .iter()
            .zip(&offsets)
            .map(|(u, &(start, len))| {
                buffer
                    .f_narrow(0, start as i64, len as i64)
                    .and_then(|t| t.f_view_dtype(u.kind))
                    .and_then(|t| t.f_reshape(&u.shape))
                    .and_then(|t| t.f_to_device_(self.device, u.kind, true, false))
                    .map_err(|e| e.to_string())
            })
            .collect()
    }
}

#[cfg(feature = "cuda")]
extern "C" {
    fn kiln_cuda_stream_new(device: c_int) -> *mut c_void;
    fn kiln_cuda_stream_make_current(stream: *mut c_void) -> c_int;
    fn kiln_cuda_stream_synchronize(stream: *mut c_void) -> c_int;
    fn kiln_cuda_stream_free(stream: *mut c_void);
    fn kiln_cuda_last_error() -> *const std::ffi::c_char;
    fn kiln_cuda_set_tf32(on: c_int, cublas: *mut c_int, cudnn: *mut c_int) -> c_int;
    fn kiln_cuda_pinned_bytes(bytes: i64) -> *mut c_void;
    fn kiln_cuda_graph_new() -> *mut c_void;
    fn kiln_cuda_graph_capture_begin(graph: *mut c_void, share_pool_of: *mut c_void) -> c_int;
    fn kiln_cuda_graph_capture_end(graph: *mut c_void) -> c_int;
    fn kiln_cuda_graph_replay(graph: *mut c_void) -> c_int;
    fn kiln_cuda_graph_free(graph: *mut c_void);
}

/// Turns TF32 math on or off for FP32 matmuls (cuBLAS) and convolutions
/// (cuDNN), process-wide (libtorch's global context); returns the switches
/// as libtorch reads them back, (cuBLAS, cuDNN).
#[cfg(feature = "cuda")]
pub fn set_tf32(on: bool) -> Result<(bool, bool), String> {
    let (mut cublas, mut cudnn): (c_int, c_int) = (0, 0);
    // SAFETY: plain FFI call writing two ints we own.
    checked(unsafe { kiln_cuda_set_tf32(on as c_int, &mut cublas, &mut cudnn) })?;
    Ok((cublas != 0, cudnn != 0))
}

#[cfg(not(feature = "cuda"))]
pub fn set_tf32(_on: bool) -> Result<(bool, bool), String> {
    Err(
        "TF32 switches need a kiln built with the `cuda` feature (cargo build --features cuda)"
            .into(),
    )
}

/// `bytes` of uninitialised pinned host memory, as a CPU byte tensor.
#[cfg(feature = "cuda")]
fn pinned_bytes(bytes: usize) -> Result<tch::Tensor, String> {
    // SAFETY: plain FFI call; null means failure, reported by last_error.
    let raw = unsafe { kiln_cuda_pinned_bytes(bytes as i64) };
    if raw.is_null() {
        return Err(cuda_error());
    }
    // SAFETY: a heap at::Tensor from `new`, which is what tch's own C API
    // returns and what Tensor's Drop deletes; we own it.
    Ok(unsafe { tch::Tensor::from_ptr(raw as *mut torch_sys::C_tensor) })
}

/// Without the `cuda` feature there is no GPU instance to stage for.
#[cfg(not(feature = "cuda"))]
fn pinned_bytes(_bytes: usize) -> Result<tch::Tensor, String> {
    Err("pinned host memory needs a kiln built with the `cuda` feature".into())
}

/// A CUDA stream of one model instance (csrc/cuda.cpp): made current
/// on the instance's worker thread before each execution, so copies and
/// kernels of instances sharing a GPU overlap, and synchronized alone.
pub struct CudaStream {
    #[cfg(feature = "cuda")]
    raw: *mut c_void,
}

// SAFETY: the handle is a heap copy of a c10::cuda::CUDAStream (a device
// index and a stream id, both immutable); libtorch's stream API may be used
// from any thread. The instance owns it and moves it with itself.
#[cfg(feature = "cuda")]
unsafe impl Send for CudaStream {}

/// Ok, or the edge's error message, for one of its 0 / -1 return codes.
#[cfg(feature = "cuda")]
fn checked(rc: c_int) -> Result<(), String> {
    if rc == 0 {
        Ok(())
    } else {
        Err(cuda_error())
    }
}

#[cfg(feature = "cuda")]
fn cuda_error() -> String {
    // SAFETY: a NUL-terminated thread-local string owned by the C++ side,
    // copied before any other call on this thread.
    unsafe { CStr::from_ptr(kiln_cuda_last_error()) }
        .to_string_lossy()
        .into_owned()
}

impl CudaStream {
    #[cfg(feature = "cuda")]
    pub fn new(device: usize) -> Result<Self, String> {
        // SAFETY: plain FFI call; null means failure, reported by last_error.
        let raw = unsafe { kiln_cuda_stream_new(device as c_int) };
        if raw.is_null() {
            return Err(format!("cannot create a CUDA stream: {}", cuda_error()));
        }
        Ok(Self { raw })
    }

    #[cfg(not(feature = "cuda"))]
    pub fn new(_device: usize) -> Result<Self, String> {
        Err("this kiln was built without the `cuda` feature".into())
    }

    /// Makes this the current stream of its device on the calling thread.
    pub fn make_current(&self) -> Result<(), String> {
        #[cfg(feature = "cuda")]
        // SAFETY: `raw` is a live handle from kiln_cuda_stream_new.
        checked(unsafe { kiln_cuda_stream_make_current(self.raw) })?;
        Ok(())
    }

    /// Waits for the work queued on this stream (not the whole device).
    pub fn synchronize(&self) -> Result<(), String> {
        #[cfg(feature = "cuda")]
        // SAFETY: `raw` is a live handle from kiln_cuda_stream_new.
        checked(unsafe { kiln_cuda_stream_synchronize(self.raw) })?;
        Ok(())
    }
}

#[cfg(feature = "cuda")]
impl Drop for CudaStream {
    fn drop(&mut self) {
        // SAFETY: `raw` came from kiln_cuda_stream_new and is freed once.
        unsafe { kiln_cuda_stream_free(self.raw) }
    }
}

/// A CUDA graph (csrc/cuda.cpp, libtorch's at::cuda::CUDAGraph): the
/// kernels and copies one thread queues on its current stream between
/// `capture_begin` and `capture_end`, replayed later with one launch on the
/// same memory. Owned by one model instance, used from its worker thread.
pub struct CudaGraph {
    #[cfg(feature = "cuda")]
    raw: *mut c_void,
}

// SAFETY: a heap CUDAGraph used by one thread at a time (the instance that
// owns it, &mut self for capture, replay on the instance's thread); moving it
// between threads is allowed by libtorch.
#[cfg(feature = "cuda")]
unsafe impl Send for CudaGraph {}

impl CudaGraph {
    #[cfg(feature = "cuda")]
    pub fn new() -> Result<Self, String> {
        // SAFETY: plain FFI call; null means failure, reported by last_error.
        let raw = unsafe { kiln_cuda_graph_new() };
        if raw.is_null() {
            return Err(cuda_error());
        }
        Ok(Self { raw })
    }

    #[cfg(not(feature = "cuda"))]
    pub fn new() -> Result<Self, String> {
        Err("CUDA graphs need a kiln built with the `cuda` feature".into())
    }

    /// Starts capturing what this thread queues on its current stream
    /// (thread-local capture mode); with `share_pool_of`, the capture takes
    /// its memory from that graph's pool.
    pub fn capture_begin(&mut self, share_pool_of: Option<&CudaGraph>) -> Result<(), String> {
        #[cfg(feature = "cuda")]
        {
            let pool = share_pool_of.map_or(std::ptr::null_mut(), |g| g.raw);
            // SAFETY: both handles are live graphs from kiln_cuda_graph_new.
            checked(unsafe { kiln_cuda_graph_capture_begin(self.raw, pool) })?;
        }
        #[cfg(not(feature = "cuda"))]
        let _ = share_pool_of;
        Ok(())
    }

    /// Ends the capture and instantiates the graph. Must follow every
    /// successful `capture_begin`, also after a failed forward pass (to
    /// take the stream out of capture mode).
    pub fn capture_end(&mut self) -> Result<(), String> {
        #[cfg(feature = "cuda")]
        // SAFETY: `raw` is a live graph from kiln_cuda_graph_new.
        checked(unsafe { kiln_cuda_graph_capture_end(self.raw) })?;
        Ok(())
    }

    /// Launches the captured work on this thread's current stream.
    pub fn replay(&self) -> Result<(), String> {
        #[cfg(feature = "cuda")]
        // SAFETY: `raw` is a live, captured graph (replaying an uncaptured
        // one is an error libtorch reports, not undefined behaviour).
        checked(unsafe { kiln_cuda_graph_replay(self.raw) })?;
        Ok(())
    }
}

#[cfg(feature = "cuda")]
impl Drop for CudaGraph {
    fn drop(&mut self) {
        // SAFETY: `raw` came from kiln_cuda_graph_new and is freed once.
        unsafe { kiln_cuda_graph_free(self.raw) }
    }
}
