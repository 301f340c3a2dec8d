"""normalize: FP32 INPUT (any shape) -> FP32 OUTPUT = (INPUT - mean) / std.

`mean` and `std` are the model's config.pbtxt parameters (defaults 0 and 1),
read through the host import `get-parameter`. A `std` of 0, or a value that
is not a finite decimal number, fails the request with invalid-argument
naming the parameter; so does a request without INPUT.

Built into a component by plugins/python/build.sh (componentize-py, with
--stub-wasi) against sdk/wit/plugin.wit, world `plugin`. See
sdk/python/README.md.
"""

import math
import re
from array import array

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import Datatype, Error, ErrorKind, Metadata, Tensor, TensorSpec

# A decimal number: optional sign, digits with an optional fraction, optional
# exponent. Stricter than float(), which also takes 'nan', 'inf' and '1_0'.
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def invalid(message: str) -> Err:
    return Err(Error(ErrorKind.INVALID_ARGUMENT, message))


def f32(value: float) -> float:
    """Rounds a Python float (binary64) to binary32."""
    return array("f", [value])[0]


def param(key: str, default: float) -> float:
    raw = host.get_parameter(key)
    if raw is None:
        return default
    text = raw.strip()
    value = float(text) if NUMBER.fullmatch(text) else math.nan
    if not math.isfinite(value):
        raise invalid(f"config parameter '{key}' must be a finite number, got '{raw}'")
    return value


_settings = None  # (mean, std) or an Err; config parameters never change


def settings():
    global _settings
    if _settings is None:
        try:
            mean, std = f32(param("mean", 0.0)), f32(param("std", 1.0))
            if std == 0:
                raise invalid("config parameter 'std' must not be 0")
            _settings = (mean, std)
        except Err as e:
            _settings = e
    if isinstance(_settings, Err):
        raise _settings
    return _settings


def spec(name: str) -> TensorSpec:
    return TensorSpec(name, Datatype.FP32, [-1])


class Processor(exports.Processor):
    def metadata(self) -> Metadata:
        return Metadata("normalize-python", "1.0.0", [spec("INPUT")], [spec("OUTPUT")])

    def process(self, inputs, parameters):
        try:
            mean, std = settings()
            t = next((t for t in inputs if t.name == "INPUT"), None)
            if t is None:
                raise invalid("missing input 'INPUT'")
            if t.datatype != Datatype.FP32:
                raise invalid(f"input 'INPUT' is {t.datatype.name}, expected FP32")
            if len(t.data) % 4:
                raise invalid(f"input 'INPUT' has {len(t.data)} bytes, not a multiple of 4")
            x = array("f", t.data)  # wasm is little-endian, like the wire format
            y = array("f", [(v - mean) / std for v in x])
            return [Tensor("OUTPUT", Datatype.FP32, t.shape, y.tobytes(), [])]
        except Err:
            raise
        except Exception as e:  # a bug here: report it instead of trapping
            raise Err(Error(ErrorKind.INTERNAL, f"normalize-python: {e!r}"))
