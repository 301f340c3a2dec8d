"""fused_leaky_relu_ops: StyleGAN2's FusedLeakyReLU as a kiln op plugin written in
Python that computes on the tensors' bytes (no host tensor operations):

    kiln_gfpgan::fused_leaky_relu(input, bias, negative_slope, scale)
        = leaky_relu(input + bias[None, :, None, ...], negative_slope) * scale

FP32 only. It reads its inputs with `device-tensor.read()` and returns a tensor
made with `tensors.create()`: slow next to a composed op (a CPython loop over the
elements, in wasm), and not capturable in a CUDA graph, but it shows the second way
an op can be written, in any language. Built by plugins/python/build.sh against
sdk/wit/plugin.wit, world `op-plugin` (directories named *_ops are op plugins).
"""

from array import array

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import ops
from wit_world.imports import tensors
from wit_world.imports.types import Datatype, Tensor

OP = "kiln_gfpgan::fused_leaky_relu"
SCHEMA = (OP + "(Tensor input, Tensor bias, float negative_slope=0.2, "
          "float scale=1.4142135623730951) -> Tensor")


def tensor_arg(args, i):
    arg = args[i]
    if not isinstance(arg, ops.OpValue_Tensor):
        raise Err(f"argument {i} is not a tensor")
    return arg.value.read()


def number_arg(args, i):
    arg = args[i]
    if not isinstance(arg, (ops.OpValue_Float, ops.OpValue_Int)):
        raise Err(f"argument {i} is not a number")
    return float(arg.value)


def fp32(t: Tensor, what: str) -> array:
    if t.datatype != Datatype.FP32:
        raise Err(f"{what} is {t.datatype.name}; this op plugin takes FP32")
    values = array("f")
    values.frombytes(bytes(t.data))
    return values


class Ops(exports.Ops):
    def declare(self):
        return [ops.OpDecl(SCHEMA, 0)]

    def call(self, op, args):
        if op != OP:
            raise Err(f"fused_leaky_relu_ops does not provide {op}")
        x, bias = tensor_arg(args, 0), tensor_arg(args, 1)
        slope, scale = number_arg(args, 2), number_arg(args, 3)
        if len(x.shape) < 2 or list(bias.shape) != [x.shape[1]]:
            raise Err(f"input {list(x.shape)} and bias {list(bias.shape)}: the bias runs along dim 1")
        xs, bs = fp32(x, "input"), fp32(bias, "bias")
        channels = x.shape[1]
        inner = len(xs) // (x.shape[0] * channels) if len(xs) else 0
        out = array("f")
        for start in range(0, len(xs), inner or 1):
            b = bs[(start // inner) % channels] if inner else 0.0
            out.extend((v + b) * scale if v + b >= 0 else (v + b) * slope * scale
                       for v in xs[start:start + inner])
        made = Tensor("", Datatype.FP32, list(x.shape), out.tobytes(), [])
        return [tensors.create(made)]
