"""Tracing: Triton's trace extension (settings per server and per model over HTTP and gRPC,
driven with tritonclient), Triton's JSON trace files, and OpenTelemetry export over OTLP/HTTP to
a real collector (rotel, tests/realservers.py) with W3C trace context from the caller. Also the
JSON log format (`--log-format json`)."""
from __future__ import annotations

import json
import pathlib
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from kilnutil import ROOT, add_sub_inputs, copy_models, http_json, wait_until
from conftest import MODELS_DIR
from test_tenancy import KEYS, digest

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
TIMESTAMP_ORDER = ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END",
                   "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END"]


def infer_add_sub(srv, mod=grpcclient, headers=None, a=None):
    a = np.arange(16, dtype=np.float32).reshape(1, 16) if a is None else a
    b = np.ones((1, 16), dtype=np.float32)
    client = srv.grpc if mod is grpcclient else srv.http
    return client.infer("add_sub", add_sub_inputs(mod, a, b), headers=headers)


def load_trace_files(directory: pathlib.Path) -> list[dict]:
    entries = []
    for f in sorted(directory.glob("trace.json*")):
        if not f.name.endswith(".tmp"):
            entries.extend(json.loads(f.read_text()))
    return entries


# ---- the settings API ---------------------------------------------------------------------------
def test_trace_settings_follow_triton(kiln, copy_repo, tmp_path):
    trace_file = tmp_path / "trace.json"
    srv = kiln(copy_repo("add_sub", "identity_fp32"), "--trace-config", f"triton,file={trace_file}")
    http = srv.http
    assert "trace" in http.get_server_metadata()["extensions"]
    assert http.get_trace_settings() == {
        "trace_level": ["OFF"], "trace_rate": "1000", "trace_count": "-1", "log_frequency": "0",
        "trace_file": str(trace_file), "trace_mode": "triton"}

    # Global update over HTTP; the model inherits it.
    got = http.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"], "trace_rate": "2"})
    assert got["trace_level"] == ["TIMESTAMPS"] and got["trace_rate"] == "2"
    assert http.get_trace_settings(model_name="add_sub")["trace_rate"] == "2"

    # A model's own settings over gRPC; the rest still follow the global ones.
    grpc = srv.grpc
    got = grpc.update_trace_settings(model_name="add_sub", settings={"trace_rate": "7", "trace_count": "3"},
                                     as_json=True)["settings"]
    assert got["trace_rate"]["value"] == ["7"] and got["trace_count"]["value"] == ["3"]
    assert got["trace_level"]["value"] == ["TIMESTAMPS"]
    assert http.get_trace_settings(model_name="identity_fp32")["trace_rate"] == "2"
    http.update_trace_settings(settings={"trace_level": ["TIMESTAMPS", "TENSORS"]})
    assert http.get_trace_settings(model_name="add_sub")["trace_level"] == ["TIMESTAMPS", "TENSORS"]
    # null (HTTP) or an empty list (gRPC) clears a setting back to the global value.
    got = http.update_trace_settings(model_name="add_sub", settings={"trace_rate": None})
    assert got["trace_rate"] == "2" and got["trace_count"] == "3"
    got = grpc.update_trace_settings(model_name="add_sub", settings={"trace_count": []}, as_json=True)
    assert got["settings"]["trace_count"]["value"] == ["-1"]
    # A cleared global setting goes back to Triton's default.
    assert http.update_trace_settings(settings={"trace_rate": None})["trace_rate"] == "1000"

    # Refusals: 400 / INVALID_ARGUMENT, naming the setting, never echoing a long value.
    for settings, words in [
        ({"trace_file": "/etc/cron.d/x"}, "can not be updated"),
        ({"trace_count": "-2"}, "trace_count"),
        ({"trace_rate": "x" * 100_000}, "Unable to parse 'trace_rate'"),
        ({"trace_level": ["OFF", "TIMESTAMPS"]}, "only one trace level"),
        ({"trace_levl": ["OFF"]}, "unknown trace setting 'trace_levl'"),
    ]:
        status, body = http_json(srv.http_url, "POST", "/v2/trace/setting", settings)
        assert status == 400 and words in body["error"] and len(body["error"]) < 300, (settings, body)
        with pytest.raises(InferenceServerException) as e:
            grpc.update_trace_settings(settings={k: v if isinstance(v, list) else [v] for k, v in settings.items()})
        assert words in e.value.message() and "INVALID_ARGUMENT" in str(e.value.status())
    status, body = http_json(srv.http_url, "GET", "/v2/models/nope/trace/setting")
    assert status in (400, 404) and "nope" in body["error"]
    # No file given: settings that would trace are refused (nothing to write to).
    no_file = kiln(copy_repo("add_sub"), name="no-trace-file")
    status, body = http_json(no_file.http_url, "POST", "/v2/trace/setting", {"trace_level": ["TIMESTAMPS"]})
    assert status == 400 and "trace file name is not given" in body["error"], body


def test_trace_settings_need_the_admin_scope(kiln, copy_repo, tmp_path):
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(f'[[tenant]]\nname = "alpha"\napi_keys = ["{digest(KEYS["alpha"])}"]\nscopes = ["infer"]\n'
                       f'[[tenant]]\nname = "ops"\napi_keys = ["{digest(KEYS["beta"])}"]\nscopes = ["admin"]\n')
    srv = kiln(copy_repo("add_sub"), "--tenants", str(tenants), "--trace-config",
               f"triton,file={tmp_path / 'trace.json'}")
    status, body = http_json(srv.http_url, "POST", "/v2/trace/setting", {"trace_rate": "1"},
                             headers={"Authorization": f"Bearer {KEYS['alpha']}"})
    assert status == 403 and "admin" in body["error"], body
    status, body = http_json(srv.http_url, "POST", "/v2/trace/setting", {"trace_rate": "1"},
                             headers={"Authorization": f"Bearer {KEYS['beta']}"})
    assert status == 200 and body["trace_rate"] == "1", body


# ---- Triton's trace files -----------------------------------------------------------------------
def test_trace_files_in_tritons_format(kiln, copy_repo, tmp_path):
    out = tmp_path / "traces"
    out.mkdir()
    srv = kiln(copy_repo("add_sub"), "--trace-config", f"triton,file={out / 'trace.json'}",
               "--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=1",
               "--trace-config", "triton,log-frequency=2")
    for mod in (grpcclient, httpclient, grpcclient, httpclient):
        infer_add_sub(srv, mod)
    wait_until(lambda: (out / "trace.json.1").exists(), 10, what="trace.json.1")
    entries = load_trace_files(out)
    heads = [e for e in entries if "model_name" in e]
    assert [h["model_name"] for h in heads] == ["add_sub"] * 4
    assert all(h["model_version"] == 1 for h in heads)
    for head in heads:
        stamps = [e["timestamps"][0] for e in entries if e["id"] == head["id"] and "timestamps" in e]
        names = [s["name"] for s in stamps]
        assert [n for n in names if n in TIMESTAMP_ORDER] == TIMESTAMP_ORDER, names
        ns = [s["ns"] for s in stamps]
        assert ns == sorted(ns), stamps
        # Wall-clock nanoseconds: within a minute of now.
        assert abs(ns[0] / 1e9 - time.time()) < 60

    # TENSORS: the inputs and outputs themselves; count: only that many traces.
    http = srv.http
    http.update_trace_settings(settings={"trace_level": ["TENSORS"], "trace_count": "1"})
    for _ in range(3):
        infer_add_sub(srv, httpclient, a=np.full((1, 16), 2.5, dtype=np.float32))
    srv.stop()
    entries = load_trace_files(out)
    tensors = [e for e in entries if "activity" in e]
    assert {e["activity"] for e in tensors} == {"TENSOR_QUEUE_INPUT", "TENSOR_BACKEND_OUTPUT"}
    inputs = {e["tensor"]["name"]: e["tensor"] for e in tensors if e["activity"] == "TENSOR_QUEUE_INPUT"}
    assert inputs["INPUT0"]["data"] == ",".join(["2.5"] * 16) and inputs["INPUT0"]["dtype"] == "FP32"
    assert inputs["INPUT0"]["shape"] == "1,16"
    assert len([e for e in entries if "model_name" in e]) == 5, "count=1 traced one more request"


# ---- OpenTelemetry ------------------------------------------------------------------------------
@pytest.fixture
def otel_kiln(kiln, otel_collector, tmp_path):
    otel_collector.clear()
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(f'[[tenant]]\nname = "alpha"\napi_keys = ["{digest(KEYS["alpha"])}"]\n'
                       f'scopes = ["infer", "metadata", "admin"]\nshared_models = ["*"]\n')
    repo = copy_models(ROOT / "model_repository", tmp_path / "repo",
                       ["digits", "digits_preprocess", "digits_postprocess", "digits_pipeline"])
    copy_models(MODELS_DIR, repo, ["add_sub"])
    # Configured the way a container is: through KILN_* variables.
    env = {"KILN_TRACE_CONFIG": ";".join([
        "mode=opentelemetry", f"opentelemetry,url={otel_collector.traces_url}", "level=TIMESTAMPS",
        "rate=1", "opentelemetry,bsp_schedule_delay=50", "opentelemetry,resource=deployment.environment=ci"]),
        "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=kiln-tests"}
    return kiln(repo, "--tenants", str(tenants), env=env, name="otel")


AUTH = {"authorization": f"Bearer {KEYS['alpha']}"}


def by_name(spans):
    return {s["name"]: s for s in spans}


@pytest.mark.parametrize("mod", [httpclient, grpcclient], ids=["http", "grpc"])
def test_spans_join_the_callers_trace(otel_kiln, otel_collector, mod):
    srv = otel_kiln
    if mod is grpcclient:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
    else:
        client = httpclient.InferenceServerClient(srv.http_url)
    a, b = np.arange(16, dtype=np.float32).reshape(1, 16), np.ones((1, 16), dtype=np.float32)
    client.infer("add_sub", add_sub_inputs(mod, a, b), request_id="req-7",
                 headers={**AUTH, "traceparent": TRACEPARENT, "tracestate": "vendor=x"})
    spans = by_name(otel_collector.spans(trace_id=CALLER_TRACE, min_count=8))
    root, model = spans["InferRequest"], spans["add_sub"]
    assert root["parent_span_id"] == CALLER_SPAN and root["kind"] == "SPAN_KIND_SERVER"
    assert root["attributes"]["kiln.protocol"] == ("grpc" if mod is grpcclient else "http")
    assert root["attributes"]["kiln.tenant"] == "alpha"
    assert spans["admission"]["parent_span_id"] == root["span_id"]
    assert model["parent_span_id"] == root["span_id"]
    attrs = model["attributes"]
    assert (attrs["triton.model_name"], attrs["triton.model_version"]) == ("add_sub", 1)
    assert attrs["triton.request_id"] == "req-7" and attrs["kiln.tenant"] == "alpha"
    assert attrs["kiln.backend"] == "pytorch"
    assert [e["name"] for e in model["events"]] == TIMESTAMP_ORDER
    for phase in ("queue", "compute"):
        assert spans[phase]["parent_span_id"] == model["span_id"]
    for phase in ("compute_input", "compute_infer", "compute_output"):
        assert spans[phase]["parent_span_id"] == spans["compute"]["span_id"]
    # Children lie within their parents.
    for child, parent in [("add_sub", "InferRequest"), ("compute", "add_sub"), ("compute_infer", "compute")]:
        assert spans[parent]["start_time_unix_nano"] <= spans[child]["start_time_unix_nano"]
        assert spans[child]["end_time_unix_nano"] <= spans[parent]["end_time_unix_nano"]
    resource = root["resource"]
    assert resource["service.name"] == "kiln" and resource["deployment.environment"] == "ci"
    assert resource["service.namespace"] == "kiln-tests"


def test_ensemble_steps_and_plugin_calls_are_spans(otel_kiln, otel_collector):
    import test_digits_pipeline as dp
    from sklearn.datasets import load_digits
    png = dp.make_digit_pngs.digit_file(load_digits().images[0])
    client = grpcclient.InferenceServerClient(otel_kiln.grpc_url)
    client.infer("digits_pipeline", [dp.image_input([png])], headers={**AUTH, "traceparent": TRACEPARENT})
    spans = otel_collector.spans(trace_id=CALLER_TRACE, min_count=4,
                                 where=lambda s: s["name"].startswith("digits"))
    named = by_name(spans)
    ensemble = named["digits_pipeline"]
    assert ensemble["attributes"]["kiln.backend"] == "ensemble"
    for step, backend in [("digits_preprocess", "wasm"), ("digits", "pytorch"), ("digits_postprocess", "wasm")]:
        assert named[step]["parent_span_id"] == ensemble["span_id"], step
        assert named[step]["attributes"]["kiln.backend"] == backend
        assert named[step]["attributes"]["triton.trace_parent_id"] == ensemble["attributes"]["triton.trace_id"]


def test_untraced_callers_get_their_own_trace_and_failures_are_marked(otel_kiln, otel_collector):
    client = httpclient.InferenceServerClient(otel_kiln.http_url)
    bad = httpclient.InferInput("INPUT0", [1, 16], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 16), dtype=np.float32))
    with pytest.raises(InferenceServerException):
        client.infer("add_sub", [bad], headers=AUTH, request_id="bad-1")
    spans = otel_collector.spans(name="add_sub", where=lambda s: s["attributes"].get("triton.request_id") == "bad-1")
    model = spans[0]
    assert model["status_code"] == "STATUS_CODE_ERROR" and "INPUT1" in model["status_message"]
    root = otel_collector.spans(trace_id=model["trace_id"], name="InferRequest")[0]
    assert root["parent_span_id"] is None


# ---- logs ---------------------------------------------------------------------------------------
def test_json_logs(kiln, copy_repo):
    srv = kiln(copy_repo("add_sub"), env={"KILN_LOG_FORMAT": "json"}, name="json-logs")
    infer_add_sub(srv)
    srv.stop()
    lines = [ln for ln in srv.log().splitlines() if ln.strip()]
    assert len(lines) >= 3
    records = [json.loads(ln) for ln in lines]
    assert all({"timestamp", "level", "target"} <= r.keys() for r in records), records[:3]
    assert any(r.get("message", "").startswith("shutting down") for r in records)
