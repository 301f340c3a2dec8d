//! `gfpgan_ops`: the two CUDA extensions StyleGAN2 (and so GFPGAN) ships,
//! as a kiln op plugin that composes host tensor operations: the tensors
//! stay on the model's device, and the op costs a handful of host calls.
//!
//! - `kiln_gfpgan::fused_leaky_relu(input, bias, negative_slope, scale)`:
//!   `leaky_relu(input + bias[None, :, None, ...], negative_slope) * scale`.
//! - `kiln_gfpgan::upfirdn2d(input, kernel, up_x, up_y, down_x, down_y,
//!   pad_x0, pad_x1, pad_y0, pad_y1)`: upsample by zero insertion, pad
//!   (negative pads crop), filter every channel with the 2-D FIR `kernel`,
//!   keep every down-th sample. NCHW in and out.
//!
//! The compositions are the usual pure-PyTorch rewrites of the two ops
//! (bench/gpu/make_gfpgan_block.py has them in Python, the reference).
//! Config parameter `ops` (comma-separated) limits the ops it declares.

use kiln_plugin::config;
use kiln_plugin::ops::{
    self, conv_options, BinaryOp, DeviceTensor, OpArgs, OpDecl, OpPlugin, ScalarOp,
};

const FUSED_LEAKY_RELU: &str = "kiln_gfpgan::fused_leaky_relu(Tensor input, Tensor bias, float negative_slope=0.2, float scale=1.4142135623730951) -> Tensor";
const UPFIRDN2D: &str = "kiln_gfpgan::upfirdn2d(Tensor input, Tensor kernel, int up_x=1, int up_y=1, int down_x=1, int down_y=1, int pad_x0=0, int pad_x1=0, int pad_y0=0, int pad_y1=0) -> Tensor";

struct GfpganOps;

impl OpPlugin for GfpganOps {
    /// Both ops, or those the config parameter `ops` lists
    /// (`fused_leaky_relu`, `upfirdn2d`, comma-separated), so that another
    /// op plugin can provide the other one.
    fn declare() -> Vec<OpDecl> {
        let wanted = config::get("ops").unwrap_or_else(|| "fused_leaky_relu,upfirdn2d".into());
        let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
        let mut ops = Vec::new();
        if wanted.contains(&"fused_leaky_relu") {
            ops.push(OpDecl::new(FUSED_LEAKY_RELU).output_like(0));
        }
        if wanted.contains(&"upfirdn2d") {
            ops.push(OpDecl::new(UPFIRDN2D));
        }
        ops
    }

    fn call(op: &str, args: OpArgs) -> Result<Vec<DeviceTensor>, String> {
        match op {
            "kiln_gfpgan::fused_leaky_relu" => fused_leaky_relu(&args).map(|t| vec![t]),
            "kiln_gfpgan::upfirdn2d" => upfirdn2d(&args).map(|t| vec![t]),
            _ => Err(format!("gfpgan_ops does not provide {op}")),
        }
    }
}

fn fused_leaky_relu(args: &OpArgs) -> Result<DeviceTensor, String> {
    let (input, bias) = (args.tensor(0)?, args.tensor(1)?);
    let (slope, scale) = (args.f64(2)?, args.f64(3)?);
    let rank = input.shape().len();
    if rank < 2 {
        return Err(format!("input has rank {rank}; fused_leaky_relu needs NC...: rank 2 or more"));
    }
    // The bias runs along dim 1: [1, C, 1, ...].
    let mut bias_shape = vec![1, -1];
    bias_shape.resize(rank, 1);
    let bias = ops::reshape(bias, &bias_shape)?;
    let sum = then(bias, |bias| ops::binary(BinaryOp::Add, input, bias))?;
    let leaky = then(sum, |sum| ops::scalar(ScalarOp::LeakyRelu, sum, slope))?;
    then(leaky, |leaky| ops::scalar(ScalarOp::Mul, leaky, scale))
}

fn upfirdn2d(args: &OpArgs) -> Result<DeviceTensor, String> {
    let (input, kernel) = (args.tensor(0)?, args.tensor(1)?);
    let [up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1] =
        [2, 3, 4, 5, 6, 7, 8, 9].map(|i| args.i64(i));
    let (up_x, up_y, down_x, down_y) = (up_x?, up_y?, down_x?, down_y?);
    let (pad_x0, pad_x1, pad_y0, pad_y1) = (pad_x0?, pad_x1?, pad_y0?, pad_y1?);
    if up_x < 1 || up_y < 1 || down_x < 1 || down_y < 1 {
        return Err("up and down factors must be at least 1".into());
    }
    let shape = input.shape();
    let kshape = kernel.shape();
    let (&[_, channels, in_h, in_w], &[kernel_h, kernel_w]) = (&shape[..], &kshape[..]) else {
        return Err(format!(
            "upfirdn2d takes an NCHW input and a 2-D kernel, not {shape:?} and {kshape:?}"
        ));
    };
    // Room for (up - 1) zeros after every sample, in both directions.
    let x = ops::reshape(input, &[-1, in_h, 1, in_w, 1, 1])?;
    let x = then(x, |x| ops::pad(x, &[0, 0, 0, up_x - 1, 0, 0, 0, up_y - 1], 0.0))?;
    // Every channel its own single-channel image: one conv2d filters all.
    let x = then(x, |x| ops::reshape(x, &[-1, 1, in_h * up_y, in_w * up_x]))?;
    let x = then(x, |x| ops::pad(x, &[pad_x0, pad_x1, pad_y0, pad_y1], 0.0))?;
    // conv2d correlates; the flipped kernel makes it a convolution.
    let weight = then(ops::flip(kernel, &[0, 1])?, |w| {
        ops::reshape(w, &[1, 1, kernel_h, kernel_w])
    })?;
    let conv = conv_options(&[1, 1], &[0, 0], &[1, 1], 1);
    let x = then(x, |x| ops::conv2d(x, &weight, None, &conv))?;
    let out = x.shape();
    let x = then(x, |x| ops::slice(x, 2, 0, out[2], down_y))?;
    let x = then(x, |x| ops::slice(x, 3, 0, out[3], down_x))?;
    let out = x.shape();
    then(x, |x| ops::reshape(x, &[-1, channels, out[2], out[3]]))
}

/// `step(x)`, dropping `x` as soon as the step has made its result: an
/// intermediate's memory goes back before the next one is allocated, as in
/// the same code written in PyTorch (shadowing a binding would keep every
/// intermediate alive to the end of the function).
fn then(
    x: DeviceTensor,
    step: impl FnOnce(&DeviceTensor) -> Result<DeviceTensor, String>,
) -> Result<DeviceTensor, String> {
    step(&x)
}

kiln_plugin::export_op_plugin!(GfpganOps);
