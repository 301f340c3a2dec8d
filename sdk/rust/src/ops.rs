//! Op plugins (ABI 1.2.0, world `op-plugin`): custom ops for TorchScript
//! models, served by kiln as `backend: "wasm_ops"` models and named in a
//! model's `custom_ops` parameter (sdk/ABI.md, "Op plugins").
//!
//! Implement [`OpPlugin`] and export it with [`export_op_plugin!`]:
//!
//! ```ignore
//! use kiln_plugin::ops::{self, DeviceTensor, OpArgs, OpDecl, OpPlugin, ScalarOp};
//!
//! struct Ops;
//!
//! impl OpPlugin for Ops {
//!     fn declare() -> Vec<OpDecl> {
//!         vec![OpDecl::new("my_ns::double(Tensor x) -> Tensor").output_like(0)]
//!     }
//!     fn call(op: &str, args: OpArgs) -> Result<Vec<DeviceTensor>, String> {
//!         match op {
//!             "my_ns::double" => Ok(vec![ops::scalar(ScalarOp::Mul, args.tensor(0)?, 2.0)?]),
//!             _ => Err(format!("unknown op {op}")),
//!         }
//!     }
//! }
//!
//! kiln_plugin::export_op_plugin!(Ops);
//! ```
//!
//! An op *composes* host operations on [`DeviceTensor`]s (the data stays on
//! the model's device, GPU included), or *computes* on bytes:
//! [`DeviceTensor::read`] copies a tensor in, [`create`] makes one from
//! bytes. Handles are valid for the call; dropping one frees its tensor.

pub use crate::bindings_ops::exports::kiln::plugin::ops::OpValue;
pub use crate::bindings_ops::kiln::plugin::tensors::{
    binary, cat, conv2d, conv_transpose2d, create, flip, pad, permute, reduce, reshape, scalar,
    slice, unary, BinaryOp, ConvOptions, DeviceTensor, Reduction, ScalarOp, UnaryOp,
};

/// One op a plugin provides: its TorchScript schema, namespace included.
pub type OpDecl = crate::bindings_ops::exports::kiln::plugin::ops::OpDecl;

impl OpDecl {
    /// An op with this schema, e.g.
    /// `my_ns::fused_leaky_relu(Tensor input, Tensor bias, float negative_slope=0.2) -> Tensor`.
    pub fn new(schema: &str) -> Self {
        Self {
            schema: schema.to_string(),
            output_like: None,
        }
    }

    /// Its one result has the shape and datatype of argument `index`
    /// (0-based); kiln checks it.
    pub fn output_like(mut self, index: u32) -> Self {
        self.output_like = Some(index);
        self
    }
}

/// An op plugin.
pub trait OpPlugin {
    /// The ops it provides; asked once when kiln loads it.
    fn declare() -> Vec<OpDecl>;
    /// Runs `op` (`ns::name`); one tensor per result of its schema. An
    /// error fails the model's request with a message naming the op.
    fn call(op: &str, args: OpArgs) -> Result<Vec<DeviceTensor>, String>;
}

/// An op's arguments, in schema order, defaults filled in.
pub struct OpArgs(pub Vec<OpValue>);

impl OpArgs {
    fn get(&self, i: usize) -> Result<&OpValue, String> {
        self.0
            .get(i)
            .ok_or_else(|| format!("argument {i} is missing ({} given)", self.0.len()))
    }

    /// Tensor argument `i`.
    pub fn tensor(&self, i: usize) -> Result<&DeviceTensor, String> {
        match self.get(i)? {
            OpValue::Tensor(t) => Ok(t),
            other => Err(format!("argument {i} is not a tensor but {}", kind(other))),
        }
    }

    /// Optional tensor argument `i` (`Tensor?`).
    pub fn optional_tensor(&self, i: usize) -> Result<Option<&DeviceTensor>, String> {
        match self.get(i)? {
            OpValue::None => Ok(None),
            _ => self.tensor(i).map(Some),
        }
    }

    /// Number argument `i` (a `float`, or an `int` read as one).
    pub fn f64(&self, i: usize) -> Result<f64, String> {
        match self.get(i)? {
            OpValue::Float(v) => Ok(*v),
            OpValue::Int(v) => Ok(*v as f64),
            other => Err(format!("argument {i} is not a number but {}", kind(other))),
        }
    }

    /// Integer argument `i`.
    pub fn i64(&self, i: usize) -> Result<i64, String> {
        match self.get(i)? {
            OpValue::Int(v) => Ok(*v),
            other => Err(format!("argument {i} is not an int but {}", kind(other))),
        }
    }

    /// Boolean argument `i`.
    pub fn bool(&self, i: usize) -> Result<bool, String> {
        match self.get(i)? {
            OpValue::Bool(v) => Ok(*v),
            other => Err(format!("argument {i} is not a bool but {}", kind(other))),
        }
    }

    /// Int-list argument `i` (`int[]`).
    pub fn ints(&self, i: usize) -> Result<&[i64], String> {
        match self.get(i)? {
            OpValue::IntList(v) => Ok(v),
            other => Err(format!("argument {i} is not an int[] but {}", kind(other))),
        }
    }
}

fn kind(v: &OpValue) -> &'static str {
    match v {
        OpValue::None => "None",
        OpValue::Tensor(_) => "a tensor",
        OpValue::Float(_) => "a float",
        OpValue::Int(_) => "an int",
        OpValue::Bool(_) => "a bool",
        OpValue::IntList(_) => "an int[]",
        OpValue::FloatList(_) => "a float[]",
    }
}

/// Convolution settings: stride, padding and dilation per spatial dim.
pub fn conv_options(stride: &[i64], padding: &[i64], dilation: &[i64], groups: i64) -> ConvOptions {
    ConvOptions {
        stride: stride.to_vec(),
        padding: padding.to_vec(),
        dilation: dilation.to_vec(),
        groups,
        output_padding: vec![0; stride.len()],
    }
}

/// Exports an [`OpPlugin`] as the component's op-plugin world.
#[macro_export]
macro_rules! export_op_plugin {
    ($ops:ty) => {
        const _: () = {
            struct __KilnOpsExport;

            impl $crate::bindings_ops::exports::kiln::plugin::ops::Guest for __KilnOpsExport {
                fn declare() -> ::std::vec::Vec<$crate::ops::OpDecl> {
                    <$ops as $crate::ops::OpPlugin>::declare()
                }

                fn call(
                    op: ::std::string::String,
                    args: ::std::vec::Vec<$crate::ops::OpValue>,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<$crate::ops::DeviceTensor>,
                    ::std::string::String,
                > {
                    <$ops as $crate::ops::OpPlugin>::call(&op, $crate::ops::OpArgs(args))
                }
            }

            $crate::bindings_ops::__export_op_world!(__KilnOpsExport with_types_in $crate::bindings_ops);
        };
    };
}
