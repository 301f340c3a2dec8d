"""Custom ops from Wasm op plugins (issue 13): TorchScript models that call
`torch.ops.<ns>.<op>` served with the ops from `backend: "wasm_ops"` plugins of their
repository, named in the model's `custom_ops` parameter.

Covered here, with the real binary and tritonclient: the StyleGAN2-style block of
bench/gpu/make_gfpgan_block.py served with plugins/rust/gfpgan_ops (compose) against its
pure-PyTorch rewrite; two models calling the same op name served side by side by two op
plugins (compose and compute), each getting its own; the load errors for a missing op, a
missing op plugin and a schema that does not fit the model's call; hostile op plugins
(error, trap, endless loop, wrong result shape) failing only their own model's requests;
an op plugin reloaded under a loaded model, whose next request runs the new one.

The test op `kiln_test::scale(Tensor x, float factor=2.0) -> Tensor` is defined here with
torch.library (as an op's author does to export a model) and implemented in kiln by
plugins/rust/test_ops, whose config parameter `mode` picks the behaviour.
"""
from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from kilnutil import ROOT, wait_until

PLUGINS = ROOT / "target" / "plugins"  # built by the session fixture `plugins` (conftest.py)
MAKE_BLOCK = ROOT / "bench" / "gpu" / "make_gfpgan_block.py"

# The op as the model's author defines it for export; kiln never sees this implementation.
_LIBRARY = torch.library.Library("kiln_test", "DEF")
_LIBRARY.define("scale(Tensor x, float factor=2.0) -> Tensor")
_LIBRARY.impl("scale", lambda x, factor: x * factor, "CompositeImplicitAutograd")


class CallsScale(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.kiln_test.scale(x)


def scale_model(repo: pathlib.Path, name: str, custom_ops: str | None) -> None:
    """A TorchScript model calling kiln_test::scale with the default factor."""
    d = repo / name
    (d / "1").mkdir(parents=True, exist_ok=True)
    torch.jit.script(CallsScale()).save(str(d / "1" / "model.pt"))
    ops = f'parameters {{ key: "custom_ops" value: {{ string_value: "{custom_ops}" }} }}\n' if custom_ops else ""
    (d / "config.pbtxt").write_text(f"""name: "{name}"
platform: "pytorch_libtorch"
max_batch_size: 0
input [ {{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
{ops}""")


def op_plugin(repo: pathlib.Path, name: str, plugin: str = "test_ops", **params: str) -> pathlib.Path:
    """An op plugin model (backend "wasm_ops") serving target/plugins/<plugin>.wasm."""
    d = repo / name
    (d / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy(PLUGINS / f"{plugin}.wasm", d / "1" / "model.wasm")
    text = "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in params.items())
    (d / "config.pbtxt").write_text(f'name: "{name}"\nbackend: "wasm_ops"\n{text}')
    return d


def infer(srv, model: str, x: np.ndarray, name: str = "INPUT__0") -> np.ndarray:
    inp = grpcclient.InferInput(name, list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return srv.grpc.infer(model, [inp]).as_numpy("OUTPUT__0")


def failure(srv, model: str, x: np.ndarray) -> str:
    with pytest.raises(InferenceServerException) as exc:
        infer(srv, model, x)
    return str(exc.value)


def index_reason(srv, model: str) -> str:
    rows = [r for r in srv.grpc.get_model_repository_index(as_json=True).get("models", []) if r["name"] == model]
    return " ".join(f"{r.get('state', '')} {r.get('reason', '')}" for r in rows)


def test_gfpgan_block_with_ops_from_a_wasm_plugin_matches_the_native_rewrite(plugins, kiln, tmp_path):
    """The guide's case on the CPU: the block exported with torch.ops.kiln_gfpgan.* runs with
    plugins/rust/gfpgan_ops composing the ops, and matches the pure-PyTorch rewrite."""
    repo, io = tmp_path / "repo", tmp_path / "io"
    subprocess.run([sys.executable, str(MAKE_BLOCK), str(repo), "--kind", "KIND_CPU", "--channels", "8",
                    "--save-io", str(io)], check=True, stdout=subprocess.DEVNULL)
    op_plugin(repo, "gfpgan_ops", plugin="gfpgan_ops")
    srv = kiln(repo, name="gfpgan")
    x, expected = np.load(io / "input.npy"), np.load(io / "expected.npy")
    with_ops = infer(srv, "gfpgan_block_ops", x)
    native = infer(srv, "gfpgan_block_native", x)
    assert with_ops.shape == expected.shape == (1, 8, 256, 256)
    assert np.abs(with_ops - native).max() <= 1e-5
    assert np.abs(with_ops - expected).max() <= 1e-5
    # The op plugin itself takes no requests.
    inp = grpcclient.InferInput("INPUT__0", [1], "FP32")
    inp.set_data_from_numpy(np.zeros(1, dtype=np.float32))
    with pytest.raises(InferenceServerException) as exc:
        srv.grpc.infer("gfpgan_ops", [inp])
    assert exc.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "'gfpgan_ops' is an op plugin" in str(exc.value)


def test_an_op_computed_in_python_beside_one_composed_in_rust(plugins, kiln, tmp_path):
    """fused_leaky_relu from plugins/python/fused_leaky_relu_ops (compute: the bytes, in
    CPython) and upfirdn2d from gfpgan_ops limited to it (compose): the block still
    matches the native rewrite. Two op plugins declaring the same op would fail the load."""
    repo, io = tmp_path / "repo", tmp_path / "io"
    subprocess.run([sys.executable, str(MAKE_BLOCK), str(repo), "--kind", "KIND_CPU", "--channels", "2",
                    "--op-plugin", "fused_python,upfirdn_rust", "--save-io", str(io)],
                   check=True, stdout=subprocess.DEVNULL)
    op_plugin(repo, "fused_python", plugin="fused_leaky_relu_ops_python", wasm_timeout_ms="20000")
    op_plugin(repo, "upfirdn_rust", plugin="gfpgan_ops", ops="upfirdn2d")
    srv = kiln(repo, name="python-op")
    x, expected = np.load(io / "input.npy"), np.load(io / "expected.npy")
    assert np.abs(infer(srv, "gfpgan_block_ops", x) - expected).max() <= 1e-5


def test_two_models_calling_one_op_each_get_their_own_implementation(plugins, kiln, tmp_path):
    """Same op name, two op plugins (compose: x * 2; compute on the bytes: x * (2 + 1)),
    two models, requests interleaved from several threads."""
    repo = tmp_path / "repo"
    op_plugin(repo, "ops_compose", mode="compose")
    op_plugin(repo, "ops_compute", mode="compute", offset="1")
    scale_model(repo, "m_compose", "ops_compose")
    scale_model(repo, "m_compute", "ops_compute")
    srv = kiln(repo, name="two-impls")
    x = np.arange(6, dtype=np.float32)

    def one(i: int) -> None:
        model, factor = ("m_compose", 2.0) if i % 2 == 0 else ("m_compute", 3.0)
        np.testing.assert_array_equal(infer(srv, model, x + i), (x + i) * factor)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(64)))


def test_missing_ops_and_plugins_fail_the_load_naming_them(plugins, kiln, tmp_path):
    repo = tmp_path / "repo"
    scale_model(repo, "no_plugins", None)
    scale_model(repo, "absent_plugin", "nowhere")
    op_plugin(repo, "not_ops_but_wasm")
    (repo / "not_ops_but_wasm" / "config.pbtxt").write_text(
        'name: "not_ops_but_wasm"\nbackend: "wasm_ops"\ninput [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]\n')
    srv = kiln(repo, wait="live", name="missing-ops")
    wait_until(lambda: "calls custom op" in index_reason(srv, "no_plugins"), 60, what="no_plugins failed")
    reason = index_reason(srv, "no_plugins")
    assert "UNAVAILABLE" in reason and "calls custom op kiln_test::scale" in reason, reason
    assert "names no op plugins" in reason and "ops.kiln_test.scale(x" in reason, reason
    wait_until(lambda: "nowhere" in index_reason(srv, "absent_plugin"), 60, what="absent_plugin failed")
    assert "op plugin 'nowhere' did not load" in index_reason(srv, "absent_plugin")
    reason = index_reason(srv, "not_ops_but_wasm")
    assert "takes no inference requests: leave out 'input' and 'output'" in reason, reason


def test_a_schema_that_does_not_fit_the_models_call_fails_the_load_naming_both(plugins, kiln, tmp_path):
    """The plugin declares kiln_test::scale(Tensor x, int factor); the model calls
    scale(x) against (Tensor x, float factor=2.0). A fresh process: one name has one schema
    per process."""
    repo = tmp_path / "repo"
    op_plugin(repo, "ops_mismatch", mode="mismatch")
    scale_model(repo, "m", "ops_mismatch")
    srv = kiln(repo, wait="live", name="mismatch")
    wait_until(lambda: "UNAVAILABLE" in index_reason(srv, "m"), 60, what="m failed")
    reason = index_reason(srv, "m")
    assert "calls custom op kiln_test::scale in a way its op plugin 'ops_mismatch' does not declare" in reason, reason
    assert "kiln_test::scale(Tensor x, int factor) -> Tensor" in reason, reason


HOSTILE = {
    # mode: words the request's error must contain
    "error": "refused by test_ops",
    "trap": "trap",
    "loop": "deadline",
    "wrong_shape": "the op declares it like argument 0",
}


def test_hostile_op_plugins_fail_only_their_own_requests(plugins, kiln, tmp_path):
    repo = tmp_path / "repo"
    op_plugin(repo, "ops_good", mode="compose")
    scale_model(repo, "good", "ops_good")
    for mode in HOSTILE:
        op_plugin(repo, f"ops_{mode}", mode=mode, wasm_timeout_ms="300")
        scale_model(repo, f"m_{mode}", f"ops_{mode}")
    srv = kiln(repo, name="hostile-ops")
    x = np.arange(4, dtype=np.float32)
    for _ in range(2):  # the second time, on a fresh plugin instance where one was dropped
        for mode, words in HOSTILE.items():
            message = failure(srv, f"m_{mode}", x)
            assert "kiln_test::scale" in message and f"'ops_{mode}'" in message and f"'m_{mode}'" in message, message
            assert words in message, message
            np.testing.assert_array_equal(infer(srv, "good", x), x * 2)
    assert srv.grpc.is_server_live()


def test_an_op_plugin_leaking_handles_is_replaced_and_keeps_serving(plugins, kiln, tmp_path):
    """Each call leaks 100 tensor handles in the guest; past 4,096 the instance is replaced
    (logged), and every request still gets its answer."""
    repo = tmp_path / "repo"
    op_plugin(repo, "ops_leak", mode="leak")
    scale_model(repo, "m", "ops_leak")
    srv = kiln(repo, name="leak-ops")
    x = np.arange(3, dtype=np.float32)
    for _ in range(60):
        np.testing.assert_array_equal(infer(srv, "m", x), x * 2)
    assert "op plugin instance leaked" in srv.log(), srv.log_tail()


def test_a_reloaded_op_plugin_serves_the_models_next_request(plugins, kiln, tmp_path):
    """Explicit model control: reloading the op plugin (its config changed from compose to
    compute with an offset) changes what the loaded model's next request runs; the model
    itself is not reloaded."""
    repo = tmp_path / "repo"
    op_plugin(repo, "ops", mode="compose")
    scale_model(repo, "m", "ops")
    srv = kiln(repo, "--model-control-mode", "explicit", "--load-model", "m", name="reload-ops")
    x = np.arange(5, dtype=np.float32)
    assert srv.grpc.is_model_ready("ops"), "loading m loads the op plugin it names"
    np.testing.assert_array_equal(infer(srv, "m", x), x * 2)
    op_plugin(repo, "ops", mode="compute", offset="5")
    srv.grpc.load_model("ops")
    np.testing.assert_array_equal(infer(srv, "m", x), x * 7)
    srv.grpc.unload_model("ops")
    message = failure(srv, "m", x)
    assert "op plugin 'ops'" in message and "not loaded" in message, message
