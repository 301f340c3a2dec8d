//! csrc/cuda.cpp's handles: an instance's streams, the events that order
//! them, CUDA graphs, pinned host memory and asynchronous copies. Without
//! the `cuda` feature every constructor fails and no GPU instance loads.

#[cfg(feature = "cuda")]
use std::ffi::{c_int, c_void, CStr};

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
    fn kiln_cuda_event_new() -> *mut c_void;
    fn kiln_cuda_event_record(event: *mut c_void, stream: *mut c_void) -> c_int;
    fn kiln_cuda_event_block(event: *mut c_void, stream: *mut c_void) -> c_int;
    fn kiln_cuda_event_synchronize(event: *mut c_void) -> c_int;
    fn kiln_cuda_event_free(event: *mut c_void);
    fn kiln_cuda_copy_async(dst: *mut c_void, src: *mut c_void) -> c_int;
    fn kiln_cuda_to_pinned_async(src: *mut c_void) -> *mut c_void;
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
pub fn pinned_bytes(bytes: usize) -> Result<tch::Tensor, String> {
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
pub fn pinned_bytes(_bytes: usize) -> Result<tch::Tensor, String> {
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

/// A CUDA event (csrc/cuda.cpp, c10::Event without timing): a
/// point in one stream's work that another stream can wait for on the
/// device, or the host can wait for.
pub struct CudaEvent {
    #[cfg(feature = "cuda")]
    raw: *mut c_void,
}

// SAFETY: a heap c10::Event; CUDA events may be recorded, waited for and
// destroyed from any thread, and kiln's users take &mut for record.
#[cfg(feature = "cuda")]
unsafe impl Send for CudaEvent {}

impl CudaEvent {
    #[cfg(feature = "cuda")]
    pub fn new() -> Result<Self, String> {
        // SAFETY: plain FFI call; null means failure, reported by last_error.
        let raw = unsafe { kiln_cuda_event_new() };
        if raw.is_null() {
            return Err(cuda_error());
        }
        Ok(Self { raw })
    }

    #[cfg(not(feature = "cuda"))]
    pub fn new() -> Result<Self, String> {
        Err("CUDA events need a kiln built with the `cuda` feature".into())
    }

    /// Marks the end of what is queued on `stream` so far.
    pub fn record(&mut self, stream: &CudaStream) -> Result<(), String> {
        #[cfg(feature = "cuda")]
        // SAFETY: both are live handles from csrc/cuda.cpp.
        checked(unsafe { kiln_cuda_event_record(self.raw, stream.raw) })?;
        #[cfg(not(feature = "cuda"))]
        let _ = stream;
        Ok(())
    }

    /// Makes work queued on `stream` from now on wait, on the device, for
    /// the last record (the host does not wait).
    pub fn block(&self, stream: &CudaStream) -> Result<(), String> {
        #[cfg(feature = "cuda")]
        // SAFETY: both are live handles from csrc/cuda.cpp.
        checked(unsafe { kiln_cuda_event_block(self.raw, stream.raw) })?;
        #[cfg(not(feature = "cuda"))]
        let _ = stream;
        Ok(())
    }

    /// Waits on the host until the last record has passed.
    pub fn synchronize(&self) -> Result<(), String> {
        #[cfg(feature = "cuda")]
        // SAFETY: `raw` is a live event from kiln_cuda_event_new.
        checked(unsafe { kiln_cuda_event_synchronize(self.raw) })?;
        Ok(())
    }
}

#[cfg(feature = "cuda")]
impl Drop for CudaEvent {
    fn drop(&mut self) {
        // SAFETY: `raw` came from kiln_cuda_event_new and is freed once.
        unsafe { kiln_cuda_event_free(self.raw) }
    }
}

/// Queues `dst.copy_(src)` on the current stream without waiting for it
/// (between pinned host memory and a device, the copy runs asynchronously;
/// the caller keeps both alive, or orders their reuse, until it has run).
pub fn copy_async(dst: &mut tch::Tensor, src: &tch::Tensor) -> Result<(), String> {
    #[cfg(feature = "cuda")]
    // SAFETY: both are live tensors; libtorch checks shapes and types.
    checked(unsafe {
        kiln_cuda_copy_async(dst.as_mut_ptr() as *mut c_void, src.as_ptr() as *mut c_void)
    })?;
    #[cfg(not(feature = "cuda"))]
    let _ = (dst, src);
    Ok(())
}

/// A pinned host tensor with `src`'s shape and type, and the copy into it
/// queued on the current stream: readable once an event recorded after it
/// has passed. libtorch's caching host allocator keeps the memory until the
/// copy has run, even if the tensor is dropped first.
#[cfg(feature = "cuda")]
pub fn to_pinned_async(src: &tch::Tensor) -> Result<tch::Tensor, String> {
    // SAFETY: `src` is a live tensor; null means failure.
    let raw = unsafe { kiln_cuda_to_pinned_async(src.as_ptr() as *mut c_void) };
    if raw.is_null() {
        return Err(cuda_error());
    }
    // SAFETY: a heap at::Tensor from `new`, owned by us (as pinned_bytes).
    Ok(unsafe { tch::Tensor::from_ptr(raw as *mut torch_sys::C_tensor) })
}

#[cfg(not(feature = "cuda"))]
pub fn to_pinned_async(_src: &tch::Tensor) -> Result<tch::Tensor, String> {
    Err("pinned host memory needs a kiln built with the `cuda` feature".into())
}
