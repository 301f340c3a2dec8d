// kiln's CUDA-stream edge (feature `cuda`): libtorch's stream API is C++
// only and tch does not wrap it. Each GPU model instance takes a stream from
// libtorch's pool and makes it current on its worker thread, so instances on
// one GPU overlap their copies and kernels instead of queueing on the
// default stream, and each waits only for its own work. It also holds the
// TF32 switches, which tch does not wrap either.
#include <ATen/Context.h>
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

// The message of the last failure on this thread (valid until the next call).
const char* kiln_cuda_last_error() { return last_error.c_str(); }
}
