"""Guest tests of the `normalize` plugin in every language (target/plugins/normalize_*.wasm),
run in wasmtime through the harness of test_guest_plugins.py (normalize_go.wasm, a WASI
command module, through its Command protocol 1 harness): what kiln cannot show from
outside (metadata dims, the exact error messages). tests/test_plugin_conformance.py holds
the same plugins to the same behaviour through kiln itself.

    python3 -m pytest plugins/tests/test_guest_normalize.py -q
"""

import struct

import pytest

from test_guest_plugins import PLUGINS, engine, floats, fp32, is_error, tensor  # noqa: E402,F401
from test_guest_plugins import open_plugin as Plugin  # a component, or a command module (Go)

NAMES = sorted(p.stem for p in PLUGINS.glob("normalize_*.wasm"))
if not NAMES:
    pytest.skip("no normalize_*.wasm built (run plugins/build.sh)", allow_module_level=True)


@pytest.fixture(params=NAMES)
def name(request):
    return request.param


def test_metadata(engine, name):
    meta = Plugin(engine, name).metadata()
    assert meta.name == name.replace("_", "-")
    assert [(t.name, t.datatype, t.dims) for t in meta.inputs] == [("INPUT", "fp32", [-1])]
    assert [(t.name, t.datatype, t.dims) for t in meta.outputs] == [("OUTPUT", "fp32", [-1])]


def test_values_shape_and_reuse(engine, name):
    p = Plugin(engine, name, parameters={"mean": "1.5", "std": "2"})
    for _ in range(3):
        (out,) = p.process(fp32("INPUT", [1.5, 3.5, -0.5, 0, 7.5, 11.5], shape=[2, 3]))
        assert (out.name, out.datatype, out.shape) == ("OUTPUT", "fp32", [2, 3])
        assert floats(out) == [0, 1, -1, -0.75, 3, 5]


def test_other_inputs_are_ignored_and_defaults_apply(engine, name):
    (out,) = Plugin(engine, name).process(fp32("OTHER", [9]), fp32("INPUT", [2, -4]))
    assert floats(out) == [2, -4]


@pytest.mark.parametrize("params,message", [
    ({"std": "0"}, "config parameter 'std' must not be 0"),
    ({"std": " 0.0 "}, "config parameter 'std' must not be 0"),
    ({"std": "nan"}, "config parameter 'std' must be a finite number, got 'nan'"),
    ({"std": ""}, "config parameter 'std' must be a finite number, got ''"),
    ({"mean": "0x10"}, "config parameter 'mean' must be a finite number, got '0x10'"),
    ({"mean": "1e999"}, "config parameter 'mean' must be a finite number, got '1e999'"),
])
def test_bad_parameters(engine, name, params, message):
    p = Plugin(engine, name, parameters=params)
    for _ in range(2):
        err = p.process(fp32("INPUT", [1]))
        assert is_error(err) and (err.kind, err.message) == ("invalid-argument", message)


def test_accepted_number_forms(engine, name):
    p = Plugin(engine, name, parameters={"mean": " +.5e1 ", "std": "-2."})
    assert floats(p.process(fp32("INPUT", [1]))[0]) == [2]


def test_missing_input_and_wrong_datatype(engine, name):
    p = Plugin(engine, name)
    err = p.process(fp32("OTHER", [1]))
    assert is_error(err) and err.kind == "invalid-argument" and "'INPUT'" in err.message
    err = p.process(tensor("INPUT", "int32", [1], struct.pack("<i", 3)))
    assert is_error(err) and err.kind == "invalid-argument" and "FP32" in err.message
