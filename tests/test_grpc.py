"""Every GRPCInferenceService RPC through the unmodified tritonclient.grpc package."""
from __future__ import annotations

import queue
import threading

import grpc
import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

RNG = np.random.default_rng(1234)


def add_sub_inputs(a: np.ndarray, b: np.ndarray, names=("INPUT0", "INPUT1")):
    inputs = []
    for name, arr in zip(names, (a, b)):
        inp = grpcclient.InferInput(name, list(arr.shape), "FP32")
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
    return inputs


def identity_input(arr: np.ndarray, datatype: str, name: str = "INPUT__0"):
    inp = grpcclient.InferInput(name, list(arr.shape), datatype)
    inp.set_data_from_numpy(arr)
    return inp


def rand_f32(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def model_stats(client, model: str, version: str = "1"):
    resp = client.get_inference_statistics(model, version)
    [stats] = [s for s in resp.model_stats if s.name == model and s.version == version]
    return stats


# ---------------------------------------------------------------- health and metadata


def test_server_live_and_ready(server):
    assert server.grpc.is_server_live() is True
    assert server.grpc.is_server_ready() is True


def test_grpc_health_check(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_server_metadata(server):
    md = server.grpc.get_server_metadata()
    assert md.name == "kiln"
    assert md.version, "server version must be a non-empty string"
    as_json = server.grpc.get_server_metadata(as_json=True)
    assert as_json["name"] == "kiln"
    assert isinstance(as_json.get("extensions", []), list)
    assert all(isinstance(e, str) and e for e in as_json.get("extensions", []))


def test_model_ready(server):
    assert server.grpc.is_model_ready("add_sub") is True
    assert server.grpc.is_model_ready("add_sub", "1") is True
    # unknown model: OK with ready=false (as real Triton does), not an exception
    assert server.grpc.is_model_ready("no_such_model") is False
    assert server.grpc.is_model_ready("add_sub", "7") is False


def test_model_metadata_add_sub(server):
    md = server.grpc.get_model_metadata("add_sub")
    assert md.name == "add_sub"
    assert list(md.versions) == ["1"]
    assert md.platform == "pytorch_libtorch"
    assert [(t.name, t.datatype, list(t.shape)) for t in md.inputs] == [
        ("INPUT0", "FP32", [-1, 16]),
        ("INPUT1", "FP32", [-1, 16]),
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in md.outputs] == [
        ("OUTPUT0", "FP32", [-1, 16]),
        ("OUTPUT1", "FP32", [-1, 16]),
    ]
    # explicit version
    md1 = server.grpc.get_model_metadata("add_sub", "1")
    assert md1.name == "add_sub"


def test_model_metadata_nobatch_and_variable_dims(server):
    md = server.grpc.get_model_metadata("add_sub_nobatch")
    assert [list(t.shape) for t in md.inputs] == [[1, 16], [1, 16]]
    md = server.grpc.get_model_metadata("identity_int64")
    assert [(t.name, t.datatype, list(t.shape)) for t in md.inputs] == [("INPUT__0", "INT64", [-1, -1])]
    assert [(t.name, t.datatype, list(t.shape)) for t in md.outputs] == [("OUTPUT__0", "INT64", [-1, -1])]


def test_model_config(server):
    cfg = server.grpc.get_model_config("add_sub").config
    assert cfg.name == "add_sub"
    assert cfg.platform == "pytorch_libtorch"
    assert cfg.max_batch_size == 8
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [
        ("INPUT0", grpcclient.model_config_pb2.TYPE_FP32, [16]),
        ("INPUT1", grpcclient.model_config_pb2.TYPE_FP32, [16]),
    ]
    assert [o.name for o in cfg.output] == ["OUTPUT0", "OUTPUT1"]
    as_json = server.grpc.get_model_config("add_sub", as_json=True)
    assert as_json["config"]["name"] == "add_sub"


def test_model_config_version_policy(server):
    cfg = server.grpc.get_model_config("multi_version").config
    assert cfg.version_policy.latest.num_versions == 2


# ---------------------------------------------------------------- inference


@pytest.mark.parametrize("batch", [1, 8])
def test_infer_add_sub(server, batch):
    a, b = rand_f32(batch, 16), rand_f32(batch, 16)
    result = server.grpc.infer("add_sub", add_sub_inputs(a, b))
    out0, out1 = result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")
    assert out0.shape == (batch, 16) and out0.dtype == np.float32
    np.testing.assert_array_equal(out0, a + b)
    np.testing.assert_array_equal(out1, a - b)
    resp = result.get_response()
    assert resp.model_name == "add_sub"
    assert resp.model_version == "1"
    assert {o.name: (o.datatype, list(o.shape)) for o in resp.outputs} == {
        "OUTPUT0": ("FP32", [batch, 16]),
        "OUTPUT1": ("FP32", [batch, 16]),
    }


def test_infer_explicit_version(server):
    a, b = rand_f32(2, 16), rand_f32(2, 16)
    result = server.grpc.infer("add_sub", add_sub_inputs(a, b), model_version="1")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)


def test_only_requested_outputs(server):
    a, b = rand_f32(3, 16), rand_f32(3, 16)
    result = server.grpc.infer("add_sub", add_sub_inputs(a, b), outputs=[grpcclient.InferRequestedOutput("OUTPUT1")])
    names = [o.name for o in result.get_response().outputs]
    assert names == ["OUTPUT1"]
    assert result.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_request_id_echoed(server):
    a, b = rand_f32(1, 16), rand_f32(1, 16)
    result = server.grpc.infer("add_sub", add_sub_inputs(a, b), request_id="my-request-42")
    assert result.get_response().id == "my-request-42"


def _identity_data(t: str, shape=(3, 37)) -> tuple[np.ndarray, str]:
    if t == "bool":
        return RNG.integers(0, 2, shape).astype(bool), "BOOL"
    if t == "bf16":
        vals = RNG.standard_normal(shape).astype(np.float32)
        vals.flat[:4] = [np.inf, -np.inf, -0.0, 1e38]
        return vals.astype(ml_dtypes.bfloat16), "BF16"
    if t.startswith("fp"):
        np_t = {"fp16": np.float16, "fp32": np.float32, "fp64": np.float64}[t]
        vals = (RNG.standard_normal(shape) * 100).astype(np_t)
        vals.flat[:5] = [np.inf, -np.inf, -0.0, np.nan, np.finfo(np_t).tiny]
        return vals, t.upper()
    np_t = np.dtype(t)
    info = np.iinfo(np_t)
    vals = RNG.integers(info.min, info.max, shape, dtype=np_t, endpoint=True)
    vals.flat[:2] = [info.min, info.max]
    return vals, t.upper()


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return a.tobytes() == b.tobytes()


ALL_TYPES = ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "fp16", "fp32", "fp64", "bf16"]


@pytest.mark.parametrize("t", ALL_TYPES)
def test_identity_roundtrip(server, t):
    data, datatype = _identity_data(t)
    result = server.grpc.infer(f"identity_{t}", [identity_input(data, datatype)])
    out = result.as_numpy("OUTPUT__0")
    [meta] = result.get_response().outputs
    assert meta.datatype == datatype
    assert list(meta.shape) == list(data.shape)
    assert _same_bits(out, data), f"identity_{t}: output differs from input"


TYPED_FIELD = {
    "bool": ("BOOL", "bool_contents"), "uint8": ("UINT8", "uint_contents"), "uint16": ("UINT16", "uint_contents"),
    "uint32": ("UINT32", "uint_contents"), "uint64": ("UINT64", "uint64_contents"), "int8": ("INT8", "int_contents"),
    "int16": ("INT16", "int_contents"), "int32": ("INT32", "int_contents"), "int64": ("INT64", "int64_contents"),
    "fp32": ("FP32", "fp32_contents"), "fp64": ("FP64", "fp64_contents"),
}


@pytest.mark.parametrize("t", sorted(TYPED_FIELD))
def test_typed_contents_roundtrip(server, t):
    """InferTensorContents (typed fields instead of raw_input_contents), via the raw stub."""
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    datatype, field = TYPED_FIELD[t]
    data, _ = _identity_data(t, shape=(2, 5))
    if t.startswith("fp"):
        data = np.nan_to_num(data, nan=1.0, posinf=2.0, neginf=-2.0)
    req = service_pb2.ModelInferRequest(model_name=f"identity_{t}")
    tensor = req.inputs.add()
    tensor.name, tensor.datatype = "INPUT__0", datatype
    tensor.shape.extend(data.shape)
    getattr(tensor.contents, field).extend(data.ravel().tolist())
    with grpc.insecure_channel(server.grpc_url) as channel:
        resp = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req, timeout=30)
    [out] = resp.outputs
    assert out.datatype == datatype and list(out.shape) == [2, 5]
    assert resp.raw_output_contents[0] == data.tobytes()


def test_empty_tensor(server):
    x = np.zeros((1, 0), np.float32)
    result = server.grpc.infer("identity_fp32", [identity_input(x, "FP32")])
    assert result.as_numpy("OUTPUT__0").shape == (1, 0)


def test_list_output(server):
    x = rand_f32(2, 5)
    result = server.grpc.infer("list_output", [identity_input(x, "FP32")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT__0"), x + 1)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT__1"), x + 2)


def test_multi_version(server):
    c = server.grpc
    assert c.is_model_ready("multi_version", "1") is False
    assert c.is_model_ready("multi_version", "2") is True
    assert c.is_model_ready("multi_version", "3") is True
    assert c.is_model_ready("multi_version") is True
    assert sorted(c.get_model_metadata("multi_version").versions) == ["2", "3"]
    x = rand_f32(1, 8)
    np.testing.assert_array_equal(c.infer("multi_version", [identity_input(x, "FP32")], model_version="2").as_numpy("OUTPUT__0"), x * 2)
    np.testing.assert_array_equal(c.infer("multi_version", [identity_input(x, "FP32")], model_version="3").as_numpy("OUTPUT__0"), x * 3)
    default = c.infer("multi_version", [identity_input(x, "FP32")])
    np.testing.assert_array_equal(default.as_numpy("OUTPUT__0"), x * 3)
    assert default.get_response().model_version == "3"
    with pytest.raises(InferenceServerException) as exc:
        c.infer("multi_version", [identity_input(x, "FP32")], model_version="1")
    assert exc.value.status() in ("StatusCode.NOT_FOUND", "StatusCode.UNAVAILABLE"), exc.value


def test_add_sub_nobatch(server):
    a, b = rand_f32(1, 16), rand_f32(1, 16)
    result = server.grpc.infer("add_sub_nobatch", add_sub_inputs(a, b))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    assert list(result.get_response().outputs[0].shape) == [1, 16]


def test_gzip_compression(server):
    """Triton's gRPC endpoint accepts gzip-compressed messages (tritonclient: compression_algorithm)."""
    a, b = rand_f32(4, 16), rand_f32(4, 16)
    result = server.grpc.infer("add_sub", add_sub_inputs(a, b), compression_algorithm="gzip")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_classification_extension(server):
    x = np.array([[5.0, -1.0, 7.5, 0.25, 3.0]], dtype=np.float32)
    result = server.grpc.infer("identity_fp32", [identity_input(x, "FP32")],
                               outputs=[grpcclient.InferRequestedOutput("OUTPUT__0", class_count=2)])
    [meta] = result.get_response().outputs
    assert meta.datatype == "BYTES" and list(meta.shape) == [1, 2]
    entries = [v.decode() for v in result.as_numpy("OUTPUT__0").ravel()]
    assert [(float(e.split(":")[0]), e.split(":")[1]) for e in entries] == [(7.5, "2"), (5.0, "0")], entries


# ---------------------------------------------------------------- streaming


def test_stream_infer(server):
    client = server.new_grpc_client()
    responses: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        sent = {}
        for i in range(10):
            a, b = rand_f32(1, 16), rand_f32(1, 16)
            sent[f"s{i}"] = (a, b)
            client.async_stream_infer("add_sub", add_sub_inputs(a, b), request_id=f"s{i}")
        got = {}
        for _ in range(10):
            result, error = responses.get(timeout=30)
            assert error is None, error
            rid = result.get_response().id
            assert rid in sent and rid not in got
            got[rid] = result
        assert set(got) == set(sent)
        for rid, (a, b) in sent.items():
            np.testing.assert_array_equal(got[rid].as_numpy("OUTPUT0"), a + b)
            np.testing.assert_array_equal(got[rid].as_numpy("OUTPUT1"), a - b)

        # A bad request (dims [15]) comes back in-band as an error ...
        bad = grpcclient.InferInput("INPUT0", [1, 15], "FP32")
        bad.set_data_from_numpy(rand_f32(1, 15))
        good = grpcclient.InferInput("INPUT1", [1, 16], "FP32")
        good.set_data_from_numpy(rand_f32(1, 16))
        client.async_stream_infer("add_sub", [bad, good], request_id="bad")
        result, error = responses.get(timeout=30)
        assert result is None
        assert isinstance(error, InferenceServerException)
        assert "INPUT0" in error.message(), error.message()

        # ... and the stream keeps working after it.
        a, b = rand_f32(1, 16), rand_f32(1, 16)
        client.async_stream_infer("add_sub", add_sub_inputs(a, b), request_id="after")
        result, error = responses.get(timeout=30)
        assert error is None, error
        assert result.get_response().id == "after"
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    finally:
        client.stop_stream()
        client.close()
    assert responses.empty(), "unexpected extra stream responses"


# ---------------------------------------------------------------- statistics and repository


def test_inference_statistics(server):
    before = model_stats(server.grpc, "add_sub")
    n = 5
    for _ in range(n):
        server.grpc.infer("add_sub", add_sub_inputs(rand_f32(2, 16), rand_f32(2, 16)))
    after = model_stats(server.grpc, "add_sub")
    assert after.inference_stats.success.count - before.inference_stats.success.count == n
    assert after.execution_count > before.execution_count
    # 5 requests of batch 2 -> 10 inferences
    assert after.inference_count - before.inference_count == 2 * n
    assert after.inference_stats.success.ns > before.inference_stats.success.ns
    assert after.last_inference > 0
    # all models: the response lists every loaded model
    everything = server.grpc.get_inference_statistics()
    assert {"add_sub", "identity_fp32"} <= {s.name for s in everything.model_stats}


def test_repository_index(server):
    index = server.grpc.get_model_repository_index()
    entries = {(m.name, m.version): m for m in index.models}
    names = {m.name for m in index.models}
    assert {"add_sub", "add_sub_nobatch", "identity_fp32", "multi_version", "list_output"} <= names
    add_sub = [m for m in index.models if m.name == "add_sub"]
    assert add_sub and all(m.state == "READY" for m in add_sub)
    if ("multi_version", "3") in entries:
        assert entries[("multi_version", "3")].state == "READY"


# ---------------------------------------------------------------- load


def test_concurrent_requests(server):
    client = server.new_grpc_client()
    done: queue.Queue = queue.Queue()
    sent = []
    try:
        for i in range(64):
            a, b = rand_f32(1 + i % 8, 16), rand_f32(1 + i % 8, 16)
            sent.append((a, b))
            client.async_infer("add_sub", add_sub_inputs(a, b), request_id=str(i),
                               callback=lambda result, error: done.put((result, error)))
        results = {}
        for _ in range(64):
            result, error = done.get(timeout=60)
            assert error is None, error
            results[int(result.get_response().id)] = result
        assert sorted(results) == list(range(64))
        for i, (a, b) in enumerate(sent):
            np.testing.assert_array_equal(results[i].as_numpy("OUTPUT0"), a + b)
            np.testing.assert_array_equal(results[i].as_numpy("OUTPUT1"), a - b)
    finally:
        client.close()


def test_concurrent_threads_separate_clients(server):
    errors = []

    def worker(k):
        try:
            c = server.new_grpc_client()
            for _ in range(4):
                a, b = rand_f32(4, 16), rand_f32(4, 16)
                r = c.infer("add_sub", add_sub_inputs(a, b))
                if not (np.array_equal(r.as_numpy("OUTPUT0"), a + b) and np.array_equal(r.as_numpy("OUTPUT1"), a - b)):
                    errors.append(f"worker {k}: wrong result")
            c.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"worker {k}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


def test_large_tensor_64mib(server):
    x = RNG.standard_normal((1, 16 * 1024 * 1024), dtype=np.float32)  # 64 MiB
    client = server.new_grpc_client()
    try:
        out = client.infer("identity_fp32", [identity_input(x, "FP32")], client_timeout=120).as_numpy("OUTPUT__0")
    finally:
        client.close()
    assert out.shape == x.shape
    assert np.array_equal(out, x)


# ---------------------------------------------------------------- unimplemented RPCs


def _assert_unimplemented(fn, *args):
    with pytest.raises(InferenceServerException) as exc:
        fn(*args)
    assert exc.value.status() == "StatusCode.UNIMPLEMENTED", f"{fn.__name__}: {exc.value.status()} {exc.value}"
    assert exc.value.message(), f"{fn.__name__}: empty error message"
    return exc.value.message()


def test_cuda_shared_memory_rpcs_unimplemented(server):
    """System shared memory is implemented (tests/test_shared_memory.py); CUDA's is not."""
    c = server.grpc
    for fn, args in ((c.get_cuda_shared_memory_status, ()),
                     (c.register_cuda_shared_memory, ("cuda_region", b"\x00" * 64, 0, 64)),
                     (c.unregister_cuda_shared_memory, ("cuda_region",))):
        msg = _assert_unimplemented(fn, *args)
        assert "CUDA shared memory" in msg and "not implemented" in msg, f"{fn.__name__}: {msg}"


def test_trace_settings_without_a_trace_file(server):
    """Tracing is tests/test_tracing.py's; a default server reports Triton's defaults and refuses
    settings that could not trace (no trace file to write to)."""
    got = server.grpc.get_trace_settings(as_json=True)["settings"]
    assert got["trace_level"]["value"] == ["OFF"] and got["trace_mode"]["value"] == ["triton"]
    with pytest.raises(InferenceServerException) as exc:
        server.grpc.update_trace_settings("add_sub", {"trace_level": ["TIMESTAMPS"]})
    assert "trace file name is not given" in exc.value.message()


def test_log_settings_answers(server):
    """LogSettings is not specified for kiln: either real settings or a clean UNIMPLEMENTED."""
    try:
        settings = server.grpc.get_log_settings(as_json=True)
    except InferenceServerException as exc:
        assert exc.status() == "StatusCode.UNIMPLEMENTED", exc
        assert exc.message()
    else:
        assert isinstance(settings, dict)
    assert server.grpc.is_server_live()
