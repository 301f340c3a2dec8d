"""Model control modes (poll, explicit), repository index states, and `kiln check`."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from kilnutil import add_sub_inputs, http_request, kiln_bin, run_check, wait_until

RNG = np.random.default_rng(7)
POLL_ARGS = ("--model-control-mode", "poll", "--repository-poll-secs", "1")
CHANGE_TIMEOUT_S = 20.0


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def identity_infer(client, x, model="identity_fp32", version=""):
    inp = grpcclient.InferInput("INPUT__0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return client.infer(model, [inp], model_version=version).as_numpy("OUTPUT__0")


def add_sub_infer(client, a, b):
    return client.infer("add_sub", add_sub_inputs(grpcclient, a, b))


def index_entries(client, name):
    return [m for m in client.get_model_repository_index().models if m.name == name]


def atomic_write(path, text):
    tmp = path.with_name(path.name + ".tmp-write")
    tmp.write_text(text)
    os.replace(tmp, path)


def install_version(repo, tmp_path, model, version, source_model_file):
    """Put <repo>/<model>/<version>/model.pt in place atomically (rename of a complete dir)."""
    stage = tmp_path / f"stage-{model}-{version}"
    stage.mkdir()
    shutil.copy(source_model_file, stage / "model.pt")
    os.rename(stage, repo / model / str(version))


def scaled_model_file(model_repo, factor: int):
    """A TorchScript file computing x * factor (factor 1..3): multi_version's version files."""
    path = model_repo / "multi_version" / str(factor) / "model.pt"
    assert path.exists(), path
    return path


# ---------------------------------------------------------------- poll mode


def test_poll_new_version_then_broken_config(model_repo, copy_repo, kiln, tmp_path):
    repo = copy_repo("identity_fp32")
    srv = kiln(repo, *POLL_ARGS, name="poll")
    c = srv.grpc
    x = f32(1, 8)
    np.testing.assert_array_equal(identity_infer(c, x), x)

    # a new version (x * 2) appears: the default policy (latest 1) serves it
    install_version(repo, tmp_path, "identity_fp32", 2, scaled_model_file(model_repo, 2))
    wait_until(lambda: np.array_equal(identity_infer(c, x), x * 2), CHANGE_TIMEOUT_S, 0.25, "version 2 to serve")
    assert c.is_model_ready("identity_fp32", "2") is True
    np.testing.assert_array_equal(identity_infer(c, x, version="2"), x * 2)
    wait_until(lambda: not c.is_model_ready("identity_fp32", "1"), CHANGE_TIMEOUT_S, 0.25, "version 1 to be unloaded")

    # a broken config: the loaded version keeps serving, the index shows why the reload failed
    config = repo / "identity_fp32" / "config.pbtxt"
    good_config = config.read_text()
    atomic_write(config, good_config.replace("max_batch_size: 8", "max_batch_size: 8\nno_such_config_field: 3"))

    def reason_shown():
        return any("no_such_config_field" in m.reason for m in index_entries(c, "identity_fp32"))

    wait_until(reason_shown, CHANGE_TIMEOUT_S, 0.25, "the index to show the reload failure")
    for _ in range(5):
        np.testing.assert_array_equal(identity_infer(c, x), x * 2)
    assert c.is_model_ready("identity_fp32") is True
    assert any(m.state == "READY" for m in index_entries(c, "identity_fp32"))

    # fixing the config recovers
    atomic_write(config, good_config)
    wait_until(lambda: not any(m.reason and "no_such_config_field" in m.reason for m in index_entries(c, "identity_fp32")),
               CHANGE_TIMEOUT_S, 0.25, "the failure reason to clear after the fix")
    np.testing.assert_array_equal(identity_infer(c, x), x * 2)


def test_poll_add_and_remove_model(model_repo, copy_repo, kiln, tmp_path):
    repo = copy_repo("identity_fp32")
    srv = kiln(repo, *POLL_ARGS, name="poll-add")
    c = srv.grpc
    assert c.is_model_ready("add_sub") is False

    staged = copy_repo("add_sub", dst=tmp_path / "staging")
    os.rename(staged / "add_sub", repo / "add_sub")
    wait_until(lambda: c.is_model_ready("add_sub"), CHANGE_TIMEOUT_S, 0.25, "add_sub to load")
    a, b = f32(1, 16), f32(1, 16)
    np.testing.assert_array_equal(add_sub_infer(c, a, b).as_numpy("OUTPUT0"), a + b)

    shutil.rmtree(repo / "add_sub")
    wait_until(lambda: not c.is_model_ready("add_sub"), CHANGE_TIMEOUT_S, 0.25, "add_sub to unload")
    with pytest.raises(InferenceServerException):
        add_sub_infer(c, a, b)
    np.testing.assert_array_equal(identity_infer(c, f32(1, 3) * 0 + 1), np.ones((1, 3), np.float32))


# ---------------------------------------------------------------- explicit mode


def test_explicit_grpc_load_unload(model_repo, kiln):
    srv = kiln(model_repo, "--model-control-mode", "explicit", name="explicit")
    c = srv.grpc
    assert c.is_server_ready()
    assert c.is_model_ready("add_sub") is False
    assert not any(m.state == "READY" for m in c.get_model_repository_index().models), "explicit mode loads nothing at start"
    assert "add_sub" in {m.name for m in c.get_model_repository_index().models}, "the index lists unloaded models too"

    c.load_model("add_sub")
    assert c.is_model_ready("add_sub") is True
    assert any(m.state == "READY" for m in index_entries(c, "add_sub"))
    a, b = f32(3, 16), f32(3, 16)
    np.testing.assert_array_equal(add_sub_infer(c, a, b).as_numpy("OUTPUT1"), a - b)

    c.unload_model("add_sub")
    assert c.is_model_ready("add_sub") is False
    with pytest.raises(InferenceServerException) as exc:
        add_sub_infer(c, a, b)
    # Triton's answer for an unloaded model: NOT_FOUND, no available versions.
    assert exc.value.status() == "StatusCode.NOT_FOUND", exc.value
    assert "'add_sub' has no available versions" in exc.value.message()
    entries = index_entries(c, "add_sub")
    assert entries and all(m.state == "UNAVAILABLE" for m in entries), entries
    assert any("unloaded" in m.reason.lower() for m in entries), entries

    # reload works, and other models stayed unloaded throughout
    c.load_model("add_sub")
    np.testing.assert_array_equal(add_sub_infer(c, a, b).as_numpy("OUTPUT0"), a + b)
    assert c.is_model_ready("identity_fp32") is False

    with pytest.raises(InferenceServerException) as exc:
        c.load_model("no_such_model")
    assert "no_such_model" in exc.value.message()
    assert c.is_server_live()


def test_explicit_load_model_flag(model_repo, kiln):
    srv = kiln(model_repo, "--model-control-mode", "explicit", "--load-model", "add_sub", "--load-model", "list_output",
               name="explicit-flag")
    c = srv.grpc
    assert c.is_model_ready("add_sub") is True
    assert c.is_model_ready("list_output") is True
    assert c.is_model_ready("identity_fp32") is False
    assert c.is_model_ready("multi_version") is False
    # the index can be restricted to ready models
    status, _, raw = http_request(srv.http_url, "POST", "/v2/repository/index", {"ready": True})
    assert status == 200, raw
    ready = json.loads(raw)
    assert {m["name"] for m in ready} == {"add_sub", "list_output"}, ready
    assert all(m["state"] == "READY" for m in ready)


def test_flags_from_kiln_environment_variables(model_repo, kiln):
    """Every flag is also KILN_<NAME> (a container's configuration): control mode, the
    models to load (several, `;`-separated) and a request limit from the environment;
    a flag on the command line wins over its variable (the harness passes --http-port 0,
    KILN_HTTP_PORT says 1)."""
    srv = kiln(model_repo, name="env-flags", env={
        "KILN_MODEL_CONTROL_MODE": "explicit",
        "KILN_LOAD_MODEL": "add_sub;list_output",
        "KILN_MAX_REQUEST_INPUTS": "1",
        "KILN_HTTP_PORT": "1",
    })
    assert srv.http_port not in (0, 1)
    c = srv.grpc
    assert c.is_model_ready("add_sub") and c.is_model_ready("list_output")
    assert not c.is_model_ready("identity_fp32")
    with pytest.raises(InferenceServerException) as exc:
        c.infer("add_sub", add_sub_inputs(grpcclient, np.zeros(16, np.float32), np.zeros(16, np.float32)))
    assert "has more than 1 entries (--max-request-inputs)" in str(exc.value), str(exc.value)
    with pytest.raises(InferenceServerException) as exc:
        c.load_model("identity_fp32")  # explicit mode: loads on request
        c.load_model("no_such_model")
    assert "no_such_model" in str(exc.value)


def test_explicit_load_all_flag(model_repo, kiln):
    srv = kiln(model_repo, "--model-control-mode", "explicit", "--load-model", "*", name="explicit-all")
    for name in ("add_sub", "identity_fp32", "list_output", "multi_version", "slow_identity"):
        assert srv.grpc.is_model_ready(name) is True, name


def test_explicit_http_routes(model_repo, kiln):
    srv = kiln(model_repo, "--model-control-mode", "explicit", name="explicit-http-routes")
    status, _, raw = http_request(srv.http_url, "POST", "/v2/repository/models/identity_fp32/load", {})
    assert status == 200, raw
    status, _, _ = http_request(srv.http_url, "GET", "/v2/models/identity_fp32/ready")
    assert status == 200
    x = f32(1, 5)
    np.testing.assert_array_equal(identity_infer(srv.grpc, x), x)

    status, _, raw = http_request(srv.http_url, "POST", "/v2/repository/models/identity_fp32/unload", {})
    assert status == 200, raw
    status, _, _ = http_request(srv.http_url, "GET", "/v2/models/identity_fp32/ready")
    assert status != 200
    status, _, raw = http_request(srv.http_url, "POST", "/v2/repository/index", {})
    entries = [m for m in json.loads(raw) if m["name"] == "identity_fp32"]
    assert entries and all(m["state"] == "UNAVAILABLE" for m in entries), entries
    assert any("unloaded" in m.get("reason", "").lower() for m in entries), entries

    status, _, raw = http_request(srv.http_url, "POST", "/v2/repository/models/no_such_model/load", {})
    assert 400 <= status < 500, (status, raw)
    assert "no_such_model" in json.loads(raw)["error"]


# ---------------------------------------------------------------- kiln check


BAD_CONFIG = """\
name: "bad_field"
platform: "pytorch_libtorch"
max_batch_sise: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""


def test_check_accepts_fixture_repo(model_repo):
    proc = run_check(model_repo)
    assert proc.returncode == 0, proc.stdout
    for name in ("add_sub", "identity_fp32", "multi_version", "list_output"):
        assert name in proc.stdout, f"{name} missing from check output:\n{proc.stdout}"


def test_check_reports_config_error_with_location(copy_repo):
    repo = copy_repo("add_sub")
    (repo / "bad_field" / "1").mkdir(parents=True)
    (repo / "bad_field" / "config.pbtxt").write_text(BAD_CONFIG)
    shutil.copy(repo / "add_sub" / "1" / "model.pt", repo / "bad_field" / "1" / "model.pt")
    proc = run_check(repo)
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "bad_field" in out and "add_sub" in out, out
    assert "config.pbtxt" in out, out
    assert "max_batch_sise" in out, out
    assert re.search(r"(:3\b|line 3\b)", out), f"line number 3 not reported:\n{out}"


def test_check_reports_garbage_model_file(copy_repo):
    repo = copy_repo("identity_fp32")
    (repo / "identity_fp32" / "1" / "model.pt").write_bytes(b"garbage, not a zip archive")
    proc = run_check(repo)
    assert proc.returncode == 1, proc.stdout
    assert "identity_fp32" in proc.stdout and "model.pt" in proc.stdout, proc.stdout


RESNET50 = """\
# Image classification, in the style of Triton's model repository docs.
name: "resnet50"
platform: "pytorch_libtorch"
max_batch_size: 8
input [
  {
    name: "INPUT__0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 224, 224 ]
  }
]
output [
  {
    name: "OUTPUT__0"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    label_filename: "labels.txt"
  }
]
instance_group [
  {
    count: 2
    kind: KIND_GPU
    gpus: [ 0 ]
  }
]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 100
}
version_policy: { latest: { num_versions: 1 } }
parameters: {
  key: "INFERENCE_MODE"
  value: { string_value: "true" }
}
parameters: {
  key: "DISABLE_OPTIMIZED_EXECUTION"
  value: { string_value: "false" }
}
model_warmup [
  {
    name: "random_batch"
    batch_size: 1
    inputs {
      key: "INPUT__0"
      value: {
        data_type: TYPE_FP32
        dims: [ 3, 224, 224 ]
        random_data: true
      }
    }
  }
]
"""

BERT = """\
name: "bert"
platform: "pytorch_libtorch"
max_batch_size: 16
input [
  {
    name: "input_ids__0"
    data_type: TYPE_INT64
    dims: [ -1 ]
  },
  {
    name: "attention_mask__1"
    data_type: TYPE_INT64
    dims: [ -1 ]
  },
  {
    name: "token_type_ids__2"
    data_type: TYPE_INT64
    dims: [ -1 ]
    optional: false
  }
]
output [
  {
    name: "logits__0"
    data_type: TYPE_FP32
    dims: [ -1, 2 ]
  }
]
dynamic_batching { }
instance_group [ { count: 1, kind: KIND_CPU } ]
version_policy: { all { } }
"""

NOBATCH = """\
name: "segmenter"
backend: "pytorch"
max_batch_size: 0
input [
  {
    name: "image"
    data_type: TYPE_FP32
    dims: [ 1, 3, 256, 256 ]
  }
]
output [
  {
    name: "mask"
    data_type: TYPE_FP32
    dims: [ 1, 1, 256, 256 ]
  }
]
instance_group [
  {
    kind: KIND_CPU
  }
]
version_policy: { specific: { versions: [ 1 ] } }
"""


def test_check_accepts_triton_docs_configs(tmp_path):
    repo = tmp_path / "docs_repo"
    for name, cfg in (("resnet50", RESNET50), ("bert", BERT), ("segmenter", NOBATCH)):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(cfg)
    (repo / "resnet50" / "labels.txt").write_text("\n".join(f"class_{i}" for i in range(1000)) + "\n")
    proc = run_check(repo)
    out = proc.stdout
    # model.pt is missing everywhere: check fails, and says so ...
    assert proc.returncode == 1, out
    parse_error = re.compile(r"config\.pbtxt:\d+|line \d+|unknown field|pars(e|ing) error", re.IGNORECASE)
    for name in ("resnet50", "bert", "segmenter"):
        lines = [ln for ln in out.splitlines() if name in ln]
        assert lines, f"{name} missing from check output:\n{out}"
        assert any("model.pt" in ln for ln in lines), f"{name}: missing model.pt not reported:\n{out}"
        # ... but not as a config problem: the configs themselves parse
        assert not any(parse_error.search(ln) for ln in lines), f"{name}: config rejected:\n{out}"
    assert not parse_error.search(out), out


def identity_variants(model_repo, repo, extras):
    """A repository of identity_fp32 copies, one per name, each with its text appended to the config."""
    repo.mkdir()
    config = (model_repo / "identity_fp32" / "config.pbtxt").read_text()
    for name, extra in extras.items():
        shutil.copytree(model_repo / "identity_fp32", repo / name)
        (repo / name / "config.pbtxt").write_text(config.replace('"identity_fp32"', f'"{name}"') + extra + "\n")
    return repo


def test_precision_and_jit_parameters_are_validated_at_load(model_repo, kiln, tmp_path):
    """`precision` (fp32, fp16, bf16) converts a TorchScript model's floating-point
    weights for GPU instances. fp32 serves anywhere; a reduced precision on a CPU
    instance, or an unknown value, fails that model's load with the parameter named
    while the others serve. (Reduced precision on the GPU: bench/gpu_proof.sh.)"""
    repo = identity_variants(model_repo, tmp_path / "repo", {
        name: f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}'
        for name, key, value in [("as_fp32", "precision", "fp32"), ("as_fp16", "precision", "fp16"),
                                 ("as_fp8", "precision", "fp8"), ("no_profiling", "ENABLE_JIT_PROFILING", "false"),
                                 ("profiling_maybe", "ENABLE_JIT_PROFILING", "maybe")]})
    srv = kiln(repo, name="precision")
    x = f32(2, 3)
    np.testing.assert_array_equal(identity_infer(srv.grpc, x, model="as_fp32"), x)
    reasons = {e["name"]: e for e in srv.grpc.get_model_repository_index(as_json=True)["models"]}
    assert reasons["as_fp16"]["state"] == "UNAVAILABLE"
    assert "parameter 'precision'" in reasons["as_fp16"]["reason"]
    assert "needs a GPU instance" in reasons["as_fp16"]["reason"]
    assert "expected fp32, fp16 or bf16, got 'fp8'" in reasons["as_fp8"]["reason"]
    # Triton's PyTorch-backend switches: true/false, anything else fails the load naming it.
    np.testing.assert_array_equal(identity_infer(srv.grpc, x, model="no_profiling"), x)
    assert reasons["profiling_maybe"]["state"] == "UNAVAILABLE"
    assert "parameter 'ENABLE_JIT_PROFILING': expected true or false, got 'maybe'" in reasons["profiling_maybe"]["reason"]


def test_cuda_tf32_needs_a_cuda_build(tmp_path):
    """The TF32 switch is process-wide libtorch state reached through the `cuda` C++ edge; a
    build without it refuses the setting at start-up, naming it, instead of ignoring it. (The
    suite runs the CPU build; bench/gpu_vs_triton.sh exercises the cuda build.)"""
    binary = kiln_bin()
    if b"kiln_cuda_set_tf32" in binary.read_bytes():  # the C++ edge's symbol
        pytest.skip("this kiln is a cuda build")
    for where in ("flag", "file"):
        args = [str(binary), "serve", "--model-repository", str(tmp_path)]
        if where == "flag":
            args += ["--cuda-tf32", "true"]
        else:
            cfg = tmp_path / "kiln.toml"
            cfg.write_text("cuda_tf32 = false\n")
            args += ["--config", str(cfg)]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0, f"{where}: kiln started with cuda_tf32 on a CPU build"
        assert "cuda_tf32" in proc.stderr + proc.stdout, f"{where}: {proc.stderr}"
        assert "cuda" in (proc.stderr + proc.stdout).split("cuda_tf32", 1)[1], proc.stderr


def test_cuda_graphs_config_is_validated_and_cpu_instances_run_eagerly(model_repo, kiln, tmp_path):
    """`optimization { cuda { graphs: true } }` (Triton's field, given its TensorRT meaning for
    TorchScript): GPU instances capture a forward pass per listed shape at load. Shapes come
    from config dims or graph_spec; a variable dim without a graph_spec shape, or a batch size
    past max_batch_size, fails that model's load naming the field. A CPU instance has nothing
    to capture: it serves eagerly and the load log says so. (Capture and replay on a GPU,
    padded batches included: bench/gpu_vs_triton.sh, which checks every answer against PyTorch.)"""
    spec = 'graph_spec [ { batch_size: 4 input { key: "INPUT__0" value { dim: [ 3 ] } } } ]'
    repo = identity_variants(model_repo, tmp_path / "repo", {
        name: f"optimization {{ {optimization} }}" for name, optimization in [
            ("graphs_cpu", f"cuda {{ graphs: true {spec} }}"),
            ("graphs_variable", "cuda { graphs: true }"),
            ("graphs_batch_9", f"cuda {{ graphs: true {spec.replace('batch_size: 4', 'batch_size: 9')} }}"),
            ("graphs_busy_wait", "cuda { graphs: false busy_wait_events: true }"),
        ]})
    srv = kiln(repo, name="graphs")
    x = f32(2, 3)
    np.testing.assert_array_equal(identity_infer(srv.grpc, x, model="graphs_cpu"), x)
    np.testing.assert_array_equal(identity_infer(srv.grpc, x, model="graphs_busy_wait"), x)
    reasons = {e["name"]: e for e in srv.grpc.get_model_repository_index(as_json=True)["models"]}
    assert reasons["graphs_variable"]["state"] == "UNAVAILABLE"
    assert ("field 'optimization.cuda.graphs': input 'INPUT__0' has variable dims [-1]; "
            "give its shape in a graph_spec entry's 'input'") in reasons["graphs_variable"]["reason"]
    assert reasons["graphs_batch_9"]["state"] == "UNAVAILABLE"
    assert ("field 'optimization.cuda.graph_spec[0].batch_size': must be between 1 and "
            "max_batch_size 8, got 9") in reasons["graphs_batch_9"]["reason"]
    log = srv.log()
    assert "optimization.cuda.graphs applies to GPU instances; this CPU instance runs eagerly" in log
    assert "'optimization.cuda.busy_wait_events' is accepted and ignored" in log
