//! The `pytorch` backend: TorchScript modules through libtorch (tch), on the
//! CPU or a GPU, with CUDA graphs (`cuda_graphs`) and kiln's FFI edge to
//! what tch does not wrap (`torch_ffi`, `csrc/`), and custom ops served by op
//! plugins (`custom_ops`). The only crate besides the shared-memory edge
//! where `unsafe` is allowed, and only in `torch_ffi` and `custom_ops`.

pub mod cuda_graphs;
pub mod custom_ops;
mod kinds;
mod torch_ffi;
mod torchscript;

pub use torch_ffi::set_tf32;
pub use torchscript::{cuda_device_count, TorchScriptFactory, TorchScriptInstance};
