"""One plugin, `normalize`, written in every language kiln supports for plugins, held to one
behaviour: each target/plugins/normalize_<lang>.wasm is served as its own models by one kiln
and must answer like numpy.

Semantics (sdk/*/README.md use this plugin as their example):
- FP32 `INPUT` of any shape -> FP32 `OUTPUT` of the same shape = (INPUT - mean) / std;
- `mean` and `std` are config.pbtxt parameters read through `host.get-parameter`, defaults 0
  and 1; `std` = 0, or a value that is not a finite decimal number, fails every request with
  invalid-argument (gRPC INVALID_ARGUMENT, HTTP 400) naming the parameter;
- a request without `INPUT` fails with invalid-argument naming `INPUT`;
- metadata(): inputs [INPUT FP32 [-1]], outputs [OUTPUT FP32 [-1]] (checked here through
  kiln's load-time comparison with config.pbtxt; plugins/tests checks dims in wasmtime).

Languages: REQUIRED must be built (plugins/build.sh builds them); any other language with a
source directory plugins/<lang>/normalize or a built normalize_<lang>.wasm is tested too.
"""
from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from kilnutil import ROOT

PLUGINS = ROOT / "target" / "plugins"
REQUIRED = ["rust", "c", "js", "python", "zig", "go"]


def _languages() -> list[str]:
    found = set(REQUIRED)
    found |= {p.parent.name for p in (ROOT / "plugins").glob("*/normalize") if p.is_dir()}
    found |= {p.stem.removeprefix("normalize_") for p in PLUGINS.glob("normalize_*.wasm")}
    return sorted(found)


LANGUAGES = _languages()

# Model variants served for each language: name suffix -> (parameters, config overrides).
MEAN, STD = 1.5, 2.0
VARIANTS = {
    "": ({"mean": "1.5", "std": "2"}, {}),
    "_default": ({}, {}),
    "_3d": ({"mean": "-0.25", "std": "0.5"}, {"max_batch_size": 0, "dims": "[ -1, -1, -1 ]"}),
    "_std0": ({"mean": "1", "std": "0"}, {}),
    "_stdbad": ({"std": "two"}, {}),
    "_stdinf": ({"std": "inf"}, {}),
    "_meanbad": ({"mean": "1.5x", "std": "2"}, {}),
    "_optional": ({}, {"optional": True}),
    # Load must fail: the plugin's metadata declares OUTPUT as FP32 and no input EXTRA.
    "_wrongtype": ({}, {"output_type": "TYPE_INT32"}),
    "_extra": ({}, {"extra_input": True}),
}


def _model(repo: pathlib.Path, name: str, wasm: pathlib.Path, params: dict, cfg: dict) -> None:
    d = repo / name
    (d / "1").mkdir(parents=True)
    shutil.copy(wasm, d / "1" / "model.wasm")
    dims = cfg.get("dims", "[ -1 ]")
    optional = " optional: true" if cfg.get("optional") else ""
    inputs = f'{{ name: "INPUT" data_type: TYPE_FP32 dims: {dims}{optional} }}'
    if cfg.get("extra_input"):
        inputs += ', { name: "EXTRA" data_type: TYPE_FP32 dims: [ -1 ] optional: true }'
    params_text = "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n'
                          for k, v in params.items())
    (d / "config.pbtxt").write_text(f"""name: "{name}"
backend: "wasm"
max_batch_size: {cfg.get("max_batch_size", 8)}
input [ {inputs} ]
output [ {{ name: "OUTPUT" data_type: {cfg.get("output_type", "TYPE_FP32")} dims: {dims} }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
{params_text}""")


@pytest.fixture(scope="module")
def conformance_server(plugins, module_kiln, tmp_path_factory):
    repo = tmp_path_factory.mktemp("conformance-repo")
    for lang in LANGUAGES:
        wasm = plugins / f"normalize_{lang}.wasm"
        if not wasm.exists():
            continue  # test_plugin_is_built reports it
        for suffix, (params, cfg) in VARIANTS.items():
            _model(repo, f"normalize_{lang}{suffix}", wasm, params, cfg)
    return module_kiln(repo, name="conformance")


@pytest.fixture(params=LANGUAGES)
def lang(request, conformance_server):
    if not (PLUGINS / f"normalize_{request.param}.wasm").exists():
        if request.param in REQUIRED:
            pytest.fail(f"target/plugins/normalize_{request.param}.wasm was not built "
                        f"(plugins/{request.param}/build.sh)", pytrace=False)
        pytest.skip(f"normalize_{request.param}.wasm not built")
    return request.param


def _infer(srv, model: str, x: np.ndarray, client=None) -> np.ndarray:
    mod = httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient
    inp = mod.InferInput("INPUT", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return (client or srv.grpc).infer(model, [inp]).as_numpy("OUTPUT")


def _expected(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    return (x - np.float32(mean)) / np.float32(std)


def _check(out: np.ndarray, x: np.ndarray, mean: float, std: float) -> None:
    assert out.dtype == np.float32 and out.shape == x.shape, (out.dtype, out.shape)
    # Rust, Zig and JS compute in binary32 and match numpy exactly; Python rounds once from
    # binary64, which may differ in the last place.
    np.testing.assert_allclose(out, _expected(x, mean, std), rtol=1e-6, atol=0)


# How each language reaches kiln (sdk/ABI.md): a component, a core module of the
# core-module ABI (wrapped by kiln at load), or a WASI command module (command protocol).
BINARY_KIND = {"c": "core", "zig": "core", "assemblyscript": "core", "go": "command"}


def test_plugin_is_built(lang):
    data = (PLUGINS / f"normalize_{lang}.wasm").read_bytes()
    kind = BINARY_KIND.get(lang, "component")
    if kind == "component":
        assert data[:8] == b"\0asm\x0d\x00\x01\x00", "not a component"
    else:
        assert data[:8] == b"\0asm\x01\x00\x00\x00", "not a core module"
        marked = b"kiln_abi_version_1_0_0" in data
        assert marked == (kind == "core"), "marker export present iff core-module ABI"


def test_model_loads_and_declares_fp32_input_and_output(lang, conformance_server):
    srv = conformance_server
    assert srv.grpc.is_model_ready(f"normalize_{lang}")
    meta = srv.grpc.get_model_metadata(f"normalize_{lang}", as_json=True)
    assert meta["platform"] == "wasm"
    assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [("INPUT", "FP32")]
    assert [(t["name"], t["datatype"]) for t in meta["outputs"]] == [("OUTPUT", "FP32")]


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (3, 5), (8, 1000), (2, 0)])
def test_outputs_match_numpy(lang, conformance_server, shape):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 10).astype(np.float32)
    _check(_infer(conformance_server, f"normalize_{lang}", x), x, MEAN, STD)


def test_special_values(lang, conformance_server):
    x = np.array([[0.0, -0.0, 1.5, -1.5, np.inf, -np.inf, np.nan, 3.4e38, -3.4e38, 1e-45, 123456.789]],
                 dtype=np.float32)
    out = _infer(conformance_server, f"normalize_{lang}", x)
    _check(out, x, MEAN, STD)
    assert np.array_equal(np.isnan(out), np.isnan(x))


def test_defaults_are_mean_0_std_1(lang, conformance_server):
    x = np.linspace(-5, 5, 24, dtype=np.float32).reshape(2, 12)
    np.testing.assert_array_equal(_infer(conformance_server, f"normalize_{lang}_default", x), x)


def test_any_shape_and_http(lang, conformance_server):
    srv = conformance_server
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) / 7
    _check(_infer(srv, f"normalize_{lang}_3d", x), x, -0.25, 0.5)
    x = np.arange(10, dtype=np.float32).reshape(2, 5)
    _check(_infer(srv, f"normalize_{lang}", x, client=srv.http), x, MEAN, STD)


def test_instance_is_reused_across_requests(lang, conformance_server):
    for i in range(5):
        x = np.full((1, 3), float(i), dtype=np.float32)
        _check(_infer(conformance_server, f"normalize_{lang}", x), x, MEAN, STD)


def _grpc_error(srv, model: str, inputs) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as exc:
        srv.grpc.infer(model, inputs)
    return exc.value


def _fp32(x: np.ndarray, mod=grpcclient):
    inp = mod.InferInput("INPUT", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return inp


@pytest.mark.parametrize("variant,param", [("_std0", "std"), ("_stdbad", "std"), ("_stdinf", "std"),
                                           ("_meanbad", "mean")])
def test_bad_config_parameter_is_invalid_argument_naming_it(lang, conformance_server, variant, param):
    srv = conformance_server
    model = f"normalize_{lang}{variant}"
    assert srv.grpc.is_model_ready(model), "a bad parameter must fail requests, not the load"
    x = np.ones((1, 4), dtype=np.float32)
    for _ in range(2):  # every request, and the instance keeps answering
        err = _grpc_error(srv, model, [_fp32(x)])
        assert err.status() == "StatusCode.INVALID_ARGUMENT", (err.status(), err.message())
        assert f"'{param}'" in err.message(), err.message()
    with pytest.raises(InferenceServerException) as exc:
        srv.http.infer(model, [_fp32(x, httpclient)])
    assert exc.value.status() == "400" and f"'{param}'" in exc.value.message(), exc.value


def test_missing_input_is_invalid_argument_naming_it(lang, conformance_server):
    srv = conformance_server
    model = f"normalize_{lang}_optional"  # INPUT optional: kiln passes a request without it
    err = _grpc_error(srv, model, [])
    assert err.status() == "StatusCode.INVALID_ARGUMENT", (err.status(), err.message())
    assert "INPUT" in err.message(), err.message()
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    np.testing.assert_array_equal(_infer(srv, model, x), x)


@pytest.mark.parametrize("variant,words", [
    ("_wrongtype", ["output 'OUTPUT' is INT32 in config.pbtxt but FP32 in plugin"]),
    ("_extra", ["input 'EXTRA'", "(it has: INPUT)"]),
])
def test_metadata_mismatch_fails_the_load(lang, conformance_server, variant, words):
    index = {m["name"]: m for m in conformance_server.grpc.get_model_repository_index(as_json=True)["models"]}
    entry = index[f"normalize_{lang}{variant}"]
    assert entry["state"] == "UNAVAILABLE", entry
    for w in words:
        assert w in entry["reason"], entry
    assert f"plugin 'normalize-{lang}'" in entry["reason"], entry
