// kiln's CUDA edge (feature `cuda`): libtorch's stream API is C++
// only and tch does not wrap it. Each GPU model instance takes a stream from
// libtorch's pool and makes it current on its worker thread, so instances on
// one GPU overlap their copies and kernels instead of queueing on the
// default stream, and each waits only for its own work. It also holds the
// TF32 switches, which tch does not wrap either, and CUDA graphs
// (at::cuda::CUDAGraph): a model's forward pass captured once per input
// shape and replayed with one launch.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/core/Event.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>

#include <exception>
#include <string>

namespace {
thread_local std::string last_error;

template <typename F>
int guarded(F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return -1;
}
}  // namespace

extern "C" {

// A stream from the pool of `device`, or null (see kiln_cuda_last_error).
void* kiln_cuda_stream_new(int device) {
  c10::cuda::CUDAStream* stream = nullptr;
  guarded([&] {
    stream = new c10::cuda::CUDAStream(
        c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(device)));
  });
  return stream;
}

// Makes the stream current for its device on the calling thread.
int kiln_cuda_stream_make_current(void* stream) {
  return guarded([&] {
    c10::cuda::setCurrentCUDAStream(*static_cast<c10::cuda::CUDAStream*>(stream));
  });
}

// Waits for the work queued on the stream only.
int kiln_cuda_stream_synchronize(void* stream) {
  return guarded([&] { static_cast<c10::cuda::CUDAStream*>(stream)->synchronize(); });
}

void kiln_cuda_stream_free(void* stream) {
  delete static_cast<c10::cuda::CUDAStream*>(stream);
}

// TF32 for FP32 matmuls (cuBLAS) and convolutions (cuDNN), process-wide;
// reads both back into `cublas` and `cudnn`.
int kiln_cuda_set_tf32(int on, int* cublas, int* cudnn) {
  return guarded([&] {
    at::globalContext().setAllowTF32CuBLAS(on != 0);
    at::globalContext().setAllowTF32CuDNN(on != 0);
    *cublas = at::globalContext().allowTF32CuBLAS() ? 1 : 0;
    *cudnn = at::globalContext().allowTF32CuDNN() ? 1 : 0;
  });
}

// An uninitialised pinned (page-locked) host byte tensor from libtorch's
// caching host allocator, handed out as tch's C API hands out tensors (a
// heap at::Tensor that tch deletes), or null. Replaces tch's pin_memory(device),
// whose device argument libtorch 2.11 deprecates with a warning.
void* kiln_cuda_pinned_bytes(int64_t bytes) {
  at::Tensor* tensor = nullptr;
  guarded([&] {
    tensor = new at::Tensor(at::empty({bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true)));
  });
  return tensor;
}

// A CUDA event (timing off), or null. Events order an instance's copy
// stream and compute stream against each other on the device, and tell the
// host when a batch's results have arrived, without synchronizing a stream.
// c10's device-generic Event, not c10::cuda::CUDAEvent: its calls go through
// libc10_cuda's guard implementation, so this file calls no CUDA runtime
// function itself and links without libcudart.
void* kiln_cuda_event_new() {
  c10::Event* event = nullptr;
  guarded([&] { event = new c10::Event(c10::DeviceType::CUDA, c10::EventFlag::PYTORCH_DEFAULT); });
  return event;
}

// Records, on `stream`, the point after everything queued on it so far.
int kiln_cuda_event_record(void* event, void* stream) {
  return guarded([&] {
    static_cast<c10::Event*>(event)->record(static_cast<c10::cuda::CUDAStream*>(stream)->unwrap());
  });
}

// Makes the work queued on `stream` from now on wait (on the device) for the
// event's last record. An event never recorded does not hold the stream.
int kiln_cuda_event_block(void* event, void* stream) {
  return guarded([&] {
    static_cast<c10::Event*>(event)->block(static_cast<c10::cuda::CUDAStream*>(stream)->unwrap());
  });
}

// Waits on the host until the event's last record has passed.
int kiln_cuda_event_synchronize(void* event) {
  return guarded([&] { static_cast<c10::Event*>(event)->synchronize(); });
}

void kiln_cuda_event_free(void* event) {
  delete static_cast<c10::Event*>(event);
}

// dst.copy_(src) without waiting for it: queued on the current stream
// (a copy from pinned host memory, or to it, runs asynchronously).
int kiln_cuda_copy_async(void* dst, void* src) {
  return guarded([&] {
    static_cast<at::Tensor*>(dst)->copy_(*static_cast<at::Tensor*>(src), /*non_blocking=*/true);
  });
}

// A pinned host tensor of `src`'s shape and type (from libtorch's caching
// host allocator, which keeps the block until the copy has run) and the
// copy into it queued on the current stream; or null.
void* kiln_cuda_to_pinned_async(void* src) {
  at::Tensor* out = nullptr;
  guarded([&] {
    const at::Tensor& s = *static_cast<at::Tensor*>(src);
    at::Tensor host = at::empty(s.sizes(), s.options().device(at::kCPU).pinned_memory(true));
    host.copy_(s, /*non_blocking=*/true);
    out = new at::Tensor(std::move(host));
  });
  return out;
}

// A CUDA graph, not yet captured, or null (see kiln_cuda_last_error).
void* kiln_cuda_graph_new() {
  at::cuda::CUDAGraph* graph = nullptr;
  guarded([&] { graph = new at::cuda::CUDAGraph(); });
  return graph;
}

// Starts capturing the work the calling thread queues on its current stream
// (which must not be the default stream). Thread-local mode: other threads
// (other instances loading, requests on other models) keep allocating and
// synchronising freely meanwhile. With `share_pool_of` non-null, the
// capture's memory comes from that graph's pool: an instance replays its
// graphs one at a time and reads each one's outputs before the next replay,
// so graphs of one instance can share blocks.
int kiln_cuda_graph_capture_begin(void* graph, void* share_pool_of) {
  return guarded([&] {
    c10::MempoolId_t pool{0, 0};
    if (share_pool_of != nullptr) {
      pool = static_cast<at::cuda::CUDAGraph*>(share_pool_of)->pool();
    }
    static_cast<at::cuda::CUDAGraph*>(graph)->capture_begin(pool, cudaStreamCaptureModeThreadLocal);
  });
}

// Ends the capture and instantiates the graph. Also called after a failed
// forward pass, to take the stream out of capture mode (its error then
// says why the capture is unusable).
int kiln_cuda_graph_capture_end(void* graph) {
  return guarded([&] { static_cast<at::cuda::CUDAGraph*>(graph)->capture_end(); });
}

// Launches the captured work on the calling thread's current stream.
int kiln_cuda_graph_replay(void* graph) {
  return guarded([&] { static_cast<at::cuda::CUDAGraph*>(graph)->replay(); });
}

void kiln_cuda_graph_free(void* graph) {
  delete static_cast<at::cuda::CUDAGraph*>(graph);
}

// The message of the last failure on this thread (valid until the next call).
const char* kiln_cuda_last_error() { return last_error.c_str(); }
}
