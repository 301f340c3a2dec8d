//! The host tensor operations a composed op may apply: an allow-list, each
//! a single aten operation with its usual semantics (broadcasting included),
//! on the device the model runs on. sdk/ABI.md's op section has the table.

/// A tensor handle, valid within one op call.
pub type TensorId = u32;

/// One tensor in, one out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    Neg,
    Abs,
    Relu,
    Sigmoid,
    Tanh,
    Gelu,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    /// A contiguous copy if the tensor is a strided view.
    Contiguous,
}

/// Two tensors in (broadcast), one out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Maximum,
    Minimum,
    Matmul,
}

/// A tensor and a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    /// `leaky_relu(x, negative_slope)`.
    LeakyRelu,
    ClampMin,
    ClampMax,
}

/// Over some dims (all when empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    Sum,
    Mean,
    Amax,
    Amin,
}

#[derive(Clone, Debug, PartialEq)]
pub enum HostOp {
    Unary(Unary, TensorId),
    Binary(Binary, TensorId, TensorId),
    Scalar(ScalarOp, TensorId, f64),
    Reduce {
        op: Reduction,
        input: TensorId,
        dims: Vec<i64>,
        keepdim: bool,
    },
    /// `reshape`: a view where it can be, else a copy; one dim may be -1.
    Reshape(TensorId, Vec<i64>),
    Permute(TensorId, Vec<i64>),
    Flip(TensorId, Vec<i64>),
    /// Constant padding, `F.pad` order (last dim first, before/after
    /// pairs); negative amounts crop.
    Pad {
        input: TensorId,
        pad: Vec<i64>,
        value: f64,
    },
    /// `input[..., start:end:step, ...]` along `dim`.
    Slice {
        input: TensorId,
        dim: i64,
        start: i64,
        end: i64,
        step: i64,
    },
    Cat(Vec<TensorId>, i64),
    Conv2d {
        input: TensorId,
        weight: TensorId,
        bias: Option<TensorId>,
        stride: Vec<i64>,
        padding: Vec<i64>,
        dilation: Vec<i64>,
        groups: i64,
    },
    ConvTranspose2d {
        input: TensorId,
        weight: TensorId,
        bias: Option<TensorId>,
        stride: Vec<i64>,
        padding: Vec<i64>,
        output_padding: Vec<i64>,
        dilation: Vec<i64>,
        groups: i64,
    },
}
