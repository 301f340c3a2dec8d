"""Prometheus metrics on the metrics port, Triton's metric names and labels."""
from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from kilnutil import http_request, metric, parse_metrics, wait_until

RNG = np.random.default_rng(5)
LABELS = {"model": "add_sub", "version": "1"}


def scrape(server):
    status, headers, body = http_request(server.metrics_url, "GET", "/metrics")
    assert status == 200
    assert headers.get("content-type", "").startswith("text/plain"), headers
    text = body.decode()
    return text, parse_metrics(text)


def infer_add_sub(server, batch=1, shape16=16):
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        arr = RNG.standard_normal((batch, shape16)).astype(np.float32)
        inp = grpcclient.InferInput(name, list(arr.shape), "FP32")
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
    return server.grpc.infer("add_sub", inputs)


def value(samples, name):
    v = metric(samples, name, **LABELS)
    return 0.0 if v is None else v


def test_inference_metrics(server):
    _, before = scrape(server)
    n, batch = 6, 2
    for _ in range(n):
        infer_add_sub(server, batch)

    def settled():
        _, s = scrape(server)
        return s if value(s, "nv_inference_request_success") - value(before, "nv_inference_request_success") >= n else None

    after = wait_until(settled, 5, what="nv_inference_request_success to count the requests")
    text, _ = scrape(server)

    success = metric(after, "nv_inference_request_success", **LABELS)
    assert success is not None and success >= n, text
    assert success - value(before, "nv_inference_request_success") == n
    assert value(after, "nv_inference_count") - value(before, "nv_inference_count") == n * batch
    exec_delta = value(after, "nv_inference_exec_count") - value(before, "nv_inference_exec_count")
    assert 1 <= exec_delta <= n
    for name in ("nv_inference_request_duration_us", "nv_inference_queue_duration_us",
                 "nv_inference_compute_infer_duration_us"):
        assert metric(after, name, **LABELS) is not None, f"{name} missing:\n{text}"
    assert value(after, "nv_inference_request_duration_us") > value(before, "nv_inference_request_duration_us")
    assert value(after, "nv_inference_compute_infer_duration_us") > value(before, "nv_inference_compute_infer_duration_us")
    for name in ("nv_inference_request_success", "nv_inference_count", "nv_inference_exec_count",
                 "nv_inference_request_duration_us"):
        assert f"# TYPE {name} counter" in text, f"{name} has no counter TYPE line"
    # Every request answered: nothing pending or executing (the tests that order requests
    # rely on these gauges: test_batching, test_shutdown).
    for name in ("nv_inference_pending_request_count", "kiln_inference_executing_request_count"):
        assert f"# TYPE {name} gauge" in text, f"{name} has no gauge TYPE line"
        assert metric(after, name, **LABELS) == 0, text


def test_failure_metric(server):
    _, before = scrape(server)
    bad = grpcclient.InferInput("INPUT0", [1, 15], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 15), np.float32))
    good = grpcclient.InferInput("INPUT1", [1, 16], "FP32")
    good.set_data_from_numpy(np.zeros((1, 16), np.float32))
    with pytest.raises(InferenceServerException):
        server.grpc.infer("add_sub", [bad, good])

    def counted():
        _, s = scrape(server)
        return s if value(s, "nv_inference_request_failure") >= value(before, "nv_inference_request_failure") + 1 else None

    after = wait_until(counted, 5, what="nv_inference_request_failure{model=add_sub} to grow")
    assert metric(after, "nv_inference_request_failure", **LABELS) is not None
    # a failure is not a success
    assert value(after, "nv_inference_request_success") == value(before, "nv_inference_request_success")


def test_metrics_list_every_loaded_model(server):
    infer_add_sub(server)
    _, samples = scrape(server)
    models = {dict(labels).get("model") for (name, labels) in samples if name == "nv_inference_request_success"}
    assert {"add_sub", "identity_fp32"} <= models
    versions = {dict(labels).get("version") for (name, labels) in samples
                if name == "nv_inference_request_success" and dict(labels).get("model") == "multi_version"}
    assert versions == {"2", "3"}
