#!/usr/bin/env python3
"""Creates a Triton-layout repository with a StyleGAN2-style block (the kind of
block GFPGAN is built from) exported to TorchScript twice, for kiln issue 13:
a TorchScript model that calls custom ops, which kiln serves from a Wasm op
plugin.

- `ops` variant: calls `torch.ops.kiln_gfpgan.fused_leaky_relu` and
  `torch.ops.kiln_gfpgan.upfirdn2d`, the two CUDA extensions of StyleGAN2.
  Its config names the op plugin (`parameters { key: "custom_ops" ... }`);
  the server has to provide these ops before the model can load.
- `native` variant: the same block calling the ops' pure-PyTorch rewrites
  (`fused_leaky_relu_native`, `upfirdn2d_native`) inline. It needs no plugin:
  it is the reference for the ops variant's outputs and its benchmark peer.

The pure-PyTorch rewrites are also the ops' Python implementations here,
so both variants compute the same thing. Importing this module registers the
ops (namespace `kiln_gfpgan`), which `torch.jit.load` of the ops variant needs.

    python3 make_gfpgan_block.py OUT_REPO [--channels 32] [--batch-size 0|N]
        [--kind KIND_GPU|KIND_CPU] [--names gfpgan_block_ops,gfpgan_block_native]
        [--op-plugin gfpgan_ops] [--graphs] [--save-io DIR]
"""
import argparse
import math
import pathlib
import zipfile
from typing import Final

import numpy as np
import torch
import torch.nn.functional as F

OP_NAMESPACE = "kiln_gfpgan"

# The server compares these textually (after parsing) with the schemas the
# op plugin declares, so they must not change independently of the plugin.
SCHEMAS = {
    "fused_leaky_relu": "fused_leaky_relu(Tensor input, Tensor bias, float negative_slope=0.2, "
                        "float scale=1.4142135623730951) -> Tensor",
    "upfirdn2d": "upfirdn2d(Tensor input, Tensor kernel, int up_x=1, int up_y=1, int down_x=1, "
                 "int down_y=1, int pad_x0=0, int pad_x1=0, int pad_y0=0, int pad_y1=0) -> Tensor",
}

IMAGE_SIZE = 256
STYLE_DIM = 512  # GFPGAN's num_style_feat
BLUR_TAPS = [1.0, 3.0, 3.0, 1.0]  # StyleGAN2's blur_kernel


def fused_leaky_relu_native(input: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2,
                            scale: float = math.sqrt(2.0)) -> torch.Tensor:
    """StyleGAN2's FusedLeakyReLU: add a per-channel bias (dim 1), leaky ReLU,
    then scale by sqrt(2) by default to keep the activations' variance."""
    bias_shape = [1, bias.shape[0]] + [1] * (input.dim() - 2)
    return F.leaky_relu(input + bias.view(bias_shape), negative_slope) * scale


def upfirdn2d_native(input: torch.Tensor, kernel: torch.Tensor, up_x: int = 1, up_y: int = 1,
                     down_x: int = 1, down_y: int = 1, pad_x0: int = 0, pad_x1: int = 0,
                     pad_y0: int = 0, pad_y1: int = 0) -> torch.Tensor:
    """StyleGAN2's upfirdn2d: upsample by zero insertion, pad (negative pads
    crop), apply the 2-D FIR `kernel` to every channel, downsample by keeping
    every down-th sample. NCHW in and out; `kernel` is [kh, kw]."""
    channels, in_h, in_w = input.shape[1], input.shape[2], input.shape[3]
    kernel_h, kernel_w = kernel.shape[0], kernel.shape[1]

    # One row per input row, with room for (up - 1) zeros after every sample
    # in both directions; the last axis is the (here single) minor channel.
    x = input.reshape(-1, in_h, 1, in_w, 1, 1)
    x = F.pad(x, [0, 0, 0, up_x - 1, 0, 0, 0, up_y - 1])
    # Each channel becomes its own single-channel image, so one conv2d with a
    # [1, 1, kh, kw] weight filters all of them.
    x = x.reshape(-1, 1, in_h * up_y, in_w * up_x)
    x = F.pad(x, [pad_x0, pad_x1, pad_y0, pad_y1])
    # conv2d is a correlation; flipping the kernel makes it the convolution
    # that upfirdn2d is defined as.
    weight = torch.flip(kernel, [0, 1]).view(1, 1, kernel_h, kernel_w)
    x = F.conv2d(x, weight)
    x = x[:, :, ::down_y, ::down_x]
    return x.reshape(-1, channels, x.shape[2], x.shape[3])


# Keeps the registrations alive: they are undone when this object is freed.
_LIBRARY = torch.library.Library(OP_NAMESPACE, "DEF")
for _schema in SCHEMAS.values():
    _LIBRARY.define(_schema)
# CompositeImplicitAutograd: the op is made of other ATen ops, so it runs on
# any device and autograd derives its backward from theirs.
_LIBRARY.impl("fused_leaky_relu", fused_leaky_relu_native, "CompositeImplicitAutograd")
_LIBRARY.impl("upfirdn2d", upfirdn2d_native, "CompositeImplicitAutograd")


class FusedLeakyReLU(torch.nn.Module):
    # Final attributes are TorchScript constants: the untaken `use_ops` branch
    # is not compiled, and the op calls show their arguments as literals.
    use_ops: Final[bool]
    negative_slope: Final[float]
    scale: Final[float]

    def __init__(self, bias: torch.Tensor, use_ops: bool):
        super().__init__()
        self.bias = torch.nn.Parameter(bias)
        self.use_ops = use_ops
        self.negative_slope = 0.2
        self.scale = math.sqrt(2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_ops:
            # The saved code reads `fused_leaky_relu(x, bias)`: TorchScript's
            # serializer drops trailing arguments equal to the schema defaults,
            # and the loader fills them in again from the schema it is given,
            # which is why the plugin's schema has to match SCHEMAS.
            return torch.ops.kiln_gfpgan.fused_leaky_relu(
                x, self.bias, negative_slope=self.negative_slope, scale=self.scale)
        return fused_leaky_relu_native(x, self.bias, self.negative_slope, self.scale)


class UpFirDn2d(torch.nn.Module):
    """upfirdn2d with a fixed kernel and the same factors and pads on both axes
    (StyleGAN2's Upsample and Downsample)."""
    use_ops: Final[bool]
    up: Final[int]
    down: Final[int]
    pad0: Final[int]
    pad1: Final[int]

    def __init__(self, kernel: torch.Tensor, up: int, down: int, pad0: int, pad1: int, use_ops: bool):
        super().__init__()
        self.register_buffer("kernel", kernel)
        self.use_ops = use_ops
        self.up, self.down, self.pad0, self.pad1 = up, down, pad0, pad1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_ops:
            return torch.ops.kiln_gfpgan.upfirdn2d(
                x, self.kernel, up_x=self.up, up_y=self.up, down_x=self.down, down_y=self.down,
                pad_x0=self.pad0, pad_x1=self.pad1, pad_y0=self.pad0, pad_y1=self.pad1)
        return upfirdn2d_native(x, self.kernel, self.up, self.up, self.down, self.down,
                                self.pad0, self.pad1, self.pad0, self.pad1)


class ModulatedConv2d(torch.nn.Module):
    """StyleGAN2's ModulatedConv2d (no up/downsampling): the style scales the
    weight's input channels, demodulation renormalises each output channel,
    and one grouped conv applies every sample's own weight."""
    out_channels: Final[int]
    padding: Final[int]

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 generator: torch.Generator):
        super().__init__()
        self.out_channels = out_channels
        self.padding = kernel_size // 2
        # Equalised learning rate: unit-variance parameters, scaled at run time.
        self.weight = torch.nn.Parameter(
            torch.randn(1, out_channels, in_channels, kernel_size, kernel_size, generator=generator))
        self.weight_scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.modulation_weight = torch.nn.Parameter(torch.randn(in_channels, style_dim, generator=generator))
        self.modulation_scale = 1.0 / math.sqrt(style_dim)
        # StyleGAN2 starts the modulation bias at 1 so styles begin near identity.
        self.modulation_bias = torch.nn.Parameter(torch.ones(in_channels))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, in_channels, height, width = x.shape
        style = F.linear(style, self.modulation_weight * self.modulation_scale, self.modulation_bias)
        weight = self.weight_scale * self.weight * style.view(batch, 1, in_channels, 1, 1)
        demodulation = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
        weight = weight * demodulation.view(batch, self.out_channels, 1, 1, 1)
        weight = weight.view(batch * self.out_channels, in_channels, weight.shape[3], weight.shape[4])
        x = x.reshape(1, batch * in_channels, height, width)
        x = F.conv2d(x, weight, padding=self.padding, groups=batch)
        return x.view(batch, self.out_channels, height, width)


class Block(torch.nn.Module):
    """Modulated 3x3 conv + FusedLeakyReLU at 256x256, upsample to 512x512
    (zero insertion and [1,3,3,1] blur in one upfirdn2d), blur-downsample back
    to 256x256, FusedLeakyReLU. NCHW FP32 in and out, same shape."""

    def __init__(self, channels: int, use_ops: bool, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        # The style latent is a fixed buffer so the model has a single input.
        self.register_buffer("latent", torch.randn(1, STYLE_DIM, generator=generator))
        self.conv = ModulatedConv2d(channels, channels, 3, STYLE_DIM, generator)
        # Non-zero biases (StyleGAN2 starts them at 0) so the bias path matters.
        self.activate_conv = FusedLeakyReLU(0.1 * torch.randn(channels, generator=generator), use_ops)
        taps = torch.tensor(BLUR_TAPS)
        blur = torch.outer(taps, taps)
        blur = blur / blur.sum()
        # Pads from StyleGAN2's Upsample/Downsample for a 4-tap kernel and factor 2;
        # zero insertion leaves 1/4 of the samples, hence the upsampling gain of 4.
        self.upsample = UpFirDn2d(blur * 4, up=2, down=1, pad0=2, pad1=1, use_ops=use_ops)
        self.downsample = UpFirDn2d(blur, up=1, down=2, pad0=1, pad1=1, use_ops=use_ops)
        self.activate_out = FusedLeakyReLU(0.1 * torch.randn(channels, generator=generator), use_ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        style = self.latent.expand(x.shape[0], -1)
        x = self.activate_conv(self.conv(x, style))
        x = self.downsample(self.upsample(x))
        return self.activate_out(x)


def make_block(variant: str, channels: int = 32) -> torch.nn.Module:
    """The eval-mode block of `variant` ("ops" or "native"); same weights for both."""
    if variant not in ("ops", "native"):
        raise ValueError(f"variant must be 'ops' or 'native', not {variant!r}")
    return Block(channels, use_ops=variant == "ops").eval()


def make_input(channels: int) -> torch.Tensor:
    """The deterministic batch-1 input used for verification and --save-io."""
    generator = torch.Generator().manual_seed(1)
    return torch.randn(1, channels, IMAGE_SIZE, IMAGE_SIZE, generator=generator)


def config_text(name: str, channels: int, batch_size: int, kind: str, op_plugin: str | None,
                graphs: bool = False) -> str:
    # With max_batch_size 0 the batch dimension is part of dims.
    dims = [channels, IMAGE_SIZE, IMAGE_SIZE] if batch_size else [1, channels, IMAGE_SIZE, IMAGE_SIZE]
    dims_text = ", ".join(map(str, dims))
    config = f"""name: "{name}"
platform: "pytorch_libtorch"
max_batch_size: {batch_size}
input [
  {{
    name: "INPUT__0"
    data_type: TYPE_FP32
    dims: [ {dims_text} ]
  }}
]
output [
  {{
    name: "OUTPUT__0"
    data_type: TYPE_FP32
    dims: [ {dims_text} ]
  }}
]
instance_group [ {{ count: 1 kind: {kind} }} ]
"""
    if op_plugin:
        config += f'parameters {{ key: "custom_ops" value: {{ string_value: "{op_plugin}" }} }}\n'
    if graphs:
        # kiln captures the forward pass (custom ops included) at load and replays it.
        config += "optimization { cuda { graphs: true } }\n"
    return config


def torchscript_code(model_pt: pathlib.Path) -> str:
    """The Python source TorchScript saved for the model's classes."""
    with zipfile.ZipFile(model_pt) as archive:
        return "".join(archive.read(entry).decode()
                       for entry in archive.namelist()
                       if "/code/__torch__" in entry and entry.endswith(".py"))


def verify(ops_pt: pathlib.Path, native_pt: pathlib.Path, channels: int) -> torch.Tensor:
    """Loads both saved models, checks that they agree and that the ops variant
    really calls the custom ops; returns the native variant's output."""
    x = make_input(channels)
    with torch.no_grad():
        ops_out = torch.jit.load(str(ops_pt)).eval()(x)
        native_out = torch.jit.load(str(native_pt)).eval()(x)
    assert ops_out.shape == x.shape, f"output shape {tuple(ops_out.shape)} != input shape {tuple(x.shape)}"
    max_abs_diff = (ops_out - native_out).abs().max().item()
    print(f"max abs difference ops vs native: {max_abs_diff:.3g}")
    assert max_abs_diff <= 1e-5, f"ops and native variants differ by {max_abs_diff}"

    called = [name for name in SCHEMAS if f"ops.{OP_NAMESPACE}.{name}" in torchscript_code(ops_pt)]
    print(f"ops variant calls: {', '.join(f'{OP_NAMESPACE}::{name}' for name in called) or 'none'}")
    assert called == list(SCHEMAS), f"ops variant calls {called}, expected {list(SCHEMAS)}"
    assert f"ops.{OP_NAMESPACE}." not in torchscript_code(native_pt), "native variant calls custom ops"
    return native_out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("repo", type=pathlib.Path)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=0,
                   help="max_batch_size (0: no batching, dims include the batch of 1)")
    p.add_argument("--kind", default="KIND_GPU", choices=["KIND_GPU", "KIND_CPU"])
    p.add_argument("--names", default="gfpgan_block_ops,gfpgan_block_native",
                   help="model names of the ops and the native variant, comma-separated")
    p.add_argument("--op-plugin", default="gfpgan_ops", help="op plugin named in the ops variant's config")
    p.add_argument("--graphs", action="store_true",
                   help="optimization.cuda.graphs in both configs (GPU instances)")
    p.add_argument("--save-io", type=pathlib.Path, metavar="DIR",
                   help="write input.npy and expected.npy (the native variant's output), batch 1")
    args = p.parse_args()
    names = args.names.split(",")
    if len(names) != 2:
        p.error("--names takes two comma-separated names: ops variant, native variant")

    model_pts = {}
    for variant, name, op_plugin in (("ops", names[0], args.op_plugin), ("native", names[1], None)):
        model_dir = args.repo / name
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        # torch.jit.script resolves torch.ops.kiln_gfpgan.* through the
        # registered schemas, so no tracing is needed and the op calls stay
        # visible in the saved code.
        torch.jit.script(make_block(variant, args.channels)).save(str(model_dir / "1" / "model.pt"))
        (model_dir / "config.pbtxt").write_text(
            config_text(name, args.channels, args.batch_size, args.kind, op_plugin, args.graphs))
        model_pts[variant] = model_dir / "1" / "model.pt"
        print(f"wrote {model_dir}")

    expected = verify(model_pts["ops"], model_pts["native"], args.channels)
    if args.save_io:
        args.save_io.mkdir(parents=True, exist_ok=True)
        np.save(args.save_io / "input.npy", make_input(args.channels).numpy())
        np.save(args.save_io / "expected.npy", expected.numpy())
        print(f"wrote {args.save_io}/input.npy, expected.npy")


if __name__ == "__main__":
    main()
