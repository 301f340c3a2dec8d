//! Custom ops (issue 13): a TorchScript model that calls `ns::name(...)`, an
//! op its author wrote in C++/CUDA, gets it from an *op plugin* instead of a
//! native library. This crate is the contract between the backend that runs
//! the model (kiln-torch registers each op with libtorch's dispatcher and
//! calls the calling model's provider) and what provides ops (kiln-wasm's op
//! plugins; a test's native provider). Neither side's types appear here.
//!
//! An op runs in one of two ways, both through [`TensorArena`]:
//! - **compose**: it applies [`HostOp`]s (an allow-listed set of aten
//!   operations) to opaque tensor handles. The data stays where the model
//!   runs (GPU included) and the op costs a few host calls; with CUDA graphs
//!   the composition is captured like the model's own kernels.
//! - **compute**: it reads its inputs' bytes ([`TensorArena::read`]) and
//!   makes new tensors from bytes ([`TensorArena::create`]).
#![forbid(unsafe_code)]

mod host_op;

use std::sync::Arc;

pub use host_op::{Binary, HostOp, Reduction, ScalarOp, TensorId, Unary};
use kiln_types::tensor::Tensor;

/// An op argument or result, as the op's schema types it.
#[derive(Clone, Debug, PartialEq)]
pub enum OpValue {
    /// An optional argument left out (`Tensor?`, `int?` ...).
    None,
    Tensor(TensorId),
    Float(f64),
    Int(i64),
    Bool(bool),
    IntList(Vec<i64>),
    FloatList(Vec<f64>),
}

/// One op a provider implements.
#[derive(Clone, Debug, PartialEq)]
pub struct OpDecl {
    /// Its TorchScript schema, namespace included:
    /// `kiln_gfpgan::fused_leaky_relu(Tensor input, Tensor bias, float negative_slope=0.2, float scale=1.4142135623730951) -> Tensor`.
    pub schema: String,
    /// When set, the op's (one) result must have the shape and datatype of
    /// this argument (0-based): kiln checks it and fails the request naming
    /// the op otherwise.
    pub output_like: Option<u32>,
}

impl OpDecl {
    /// The op's name, `ns::name`: the schema up to its argument list.
    pub fn name(&self) -> &str {
        let end = self.schema.find('(').unwrap_or(self.schema.len());
        self.schema[..end].trim()
    }
}

/// The tensors of one op call: its tensor arguments, what host ops made,
/// and tensors made from bytes. Implemented by the backend running the
/// model; every tensor lives on that model's device.
pub trait TensorArena {
    fn shape(&self, t: TensorId) -> Result<Vec<i64>, String>;
    fn datatype(&self, t: TensorId) -> Result<kiln_types::tensor::DataType, String>;
    /// Runs one host op; its result is a new handle.
    fn apply(&mut self, op: &HostOp) -> Result<TensorId, String>;
    /// The tensor's elements, copied to host memory (compute ops).
    fn read(&mut self, t: TensorId) -> Result<Tensor, String>;
    /// A new tensor from host bytes, on the model's device (compute ops).
    fn create(&mut self, t: &Tensor) -> Result<TensorId, String>;
    /// The handle is no longer needed (a composed op drops intermediates).
    fn release(&mut self, t: TensorId);
}

/// Ops from one op plugin, callable from any model thread.
pub trait OpProvider: Send + Sync {
    /// The plugin's name (its model name in the repository), for errors.
    fn name(&self) -> &str;
    fn ops(&self) -> &[OpDecl];
    /// Runs `op` (`ns::name`) on `args` (the schema's arguments, defaults
    /// filled in); the results, one per schema return. The provider owns
    /// `tensors` for the call (a sandboxed one keeps it in its store); the
    /// backend that made it reads the results through its own handle.
    fn call(
        &self,
        op: &str,
        args: &[OpValue],
        tensors: Box<dyn TensorArena + Send>,
    ) -> Result<Vec<TensorId>, String>;
}

/// Finds an op plugin by the name a model's config gives it
/// (`custom_ops`), in the model's namespace, when the model loads.
pub trait OpResolver: Send + Sync {
    fn op_plugin(&self, name: &str) -> Result<Arc<dyn OpProvider>, String>;
}

/// What a model can resolve when nothing provides ops (the default).
pub struct NoOpPlugins;

impl OpResolver for NoOpPlugins {
    fn op_plugin(&self, name: &str) -> Result<Arc<dyn OpProvider>, String> {
        Err(format!("no op plugin '{name}' is loaded"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ops_name_is_its_schema_up_to_the_arguments() {
        let decl = OpDecl {
            schema: "kiln_gfpgan::fused_leaky_relu(Tensor input, Tensor bias) -> Tensor".into(),
            output_like: Some(0),
        };
        assert_eq!(decl.name(), "kiln_gfpgan::fused_leaky_relu");
    }
}
