//! The `pytorch` backend: TorchScript modules through libtorch (tch), on the
//! CPU or a GPU, with CUDA graphs (`cuda_graphs`) and kiln's FFI edge to
//! what tch does not wrap (`torch_ffi`, `csrc/`). The only crate besides the
//! shared-memory edge where `unsafe` is allowed, and only in `torch_ffi`.

pub mod cuda_graphs;
mod kinds;
mod torch_ffi;
mod torchscript;

pub use torch_ffi::set_tf32;
pub use torchscript::{cuda_device_count, TorchScriptFactory, TorchScriptInstance};
