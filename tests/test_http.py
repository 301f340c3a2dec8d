"""KServe v2 HTTP/REST through tritonclient.http and through raw HTTP requests."""
from __future__ import annotations

import json
import struct

import ml_dtypes
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from kilnutil import http_json, http_request, listening_addresses

RNG = np.random.default_rng(4321)


def rand_f32(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def add_sub_inputs(a, b, binary=True):
    inputs = []
    for name, arr in (("INPUT0", a), ("INPUT1", b)):
        inp = httpclient.InferInput(name, list(arr.shape), "FP32")
        inp.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(inp)
    return inputs


def outputs(*names, binary=True):
    return [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]


# ---------------------------------------------------------------- health and metadata


def test_health(server):
    assert server.http.is_server_live() is True
    assert server.http.is_server_ready() is True
    assert server.http.is_model_ready("add_sub") is True
    assert server.http.is_model_ready("add_sub", "1") is True
    assert server.http.is_model_ready("no_such_model") is False


def test_host_flag_binds_loopback_only(server):
    """The suite starts kiln with --host 127.0.0.1: all three listeners must honour it."""
    for port in (server.http_port, server.grpc_port, server.metrics_port):
        assert listening_addresses(port) == ["127.0.0.1"], (port, listening_addresses(port))


def test_server_metadata(server):
    md = server.http.get_server_metadata()
    assert md["name"] == "kiln"
    assert isinstance(md["version"], str) and md["version"]
    assert isinstance(md["extensions"], list)
    assert all(isinstance(e, str) and e for e in md["extensions"])


def test_model_metadata(server):
    md = server.http.get_model_metadata("add_sub")
    assert md["name"] == "add_sub"
    assert md["versions"] == ["1"]
    assert md["platform"] == "pytorch_libtorch"
    assert md["inputs"] == [
        {"name": "INPUT0", "datatype": "FP32", "shape": [-1, 16]},
        {"name": "INPUT1", "datatype": "FP32", "shape": [-1, 16]},
    ]
    assert md["outputs"] == [
        {"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 16]},
        {"name": "OUTPUT1", "datatype": "FP32", "shape": [-1, 16]},
    ]
    assert server.http.get_model_metadata("add_sub", "1")["name"] == "add_sub"


def test_model_config(server):
    cfg = server.http.get_model_config("add_sub")
    assert cfg["name"] == "add_sub"
    assert cfg["platform"] == "pytorch_libtorch"
    assert cfg["max_batch_size"] == 8
    assert [(i["name"], i["data_type"], i["dims"]) for i in cfg["input"]] == [
        ("INPUT0", "TYPE_FP32", [16]),
        ("INPUT1", "TYPE_FP32", [16]),
    ]
    assert [o["name"] for o in cfg["output"]] == ["OUTPUT0", "OUTPUT1"]


# ---------------------------------------------------------------- inference via tritonclient


@pytest.mark.parametrize("in_binary", [True, False], ids=["in-binary", "in-json"])
@pytest.mark.parametrize("out_binary", [True, False], ids=["out-binary", "out-json"])
def test_infer_add_sub(server, in_binary, out_binary):
    a, b = rand_f32(4, 16), rand_f32(4, 16)
    result = server.http.infer("add_sub", add_sub_inputs(a, b, in_binary), outputs=outputs("OUTPUT0", "OUTPUT1", binary=out_binary))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    header = result.get_response()
    assert header["model_name"] == "add_sub"
    assert header["model_version"] == "1"
    for out in header["outputs"]:
        assert out["datatype"] == "FP32" and out["shape"] == [4, 16]
        if out_binary:
            assert "data" not in out
            assert out["parameters"]["binary_data_size"] == 4 * 16 * 4
        else:
            assert "data" in out and len(out["data"]) == 64
            assert "binary_data_size" not in out.get("parameters", {})


def test_only_requested_outputs(server):
    a, b = rand_f32(1, 16), rand_f32(1, 16)
    result = server.http.infer("add_sub", add_sub_inputs(a, b), outputs=outputs("OUTPUT1"))
    assert [o["name"] for o in result.get_response()["outputs"]] == ["OUTPUT1"]
    assert result.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_request_id_echoed(server):
    a, b = rand_f32(1, 16), rand_f32(1, 16)
    result = server.http.infer("add_sub", add_sub_inputs(a, b), request_id="http-req-7")
    assert result.get_response()["id"] == "http-req-7"


def _identity_data(t: str, shape=(2, 9)):
    if t == "bool":
        return RNG.integers(0, 2, shape).astype(bool), "BOOL"
    if t == "bf16":
        return RNG.standard_normal(shape).astype(np.float32).astype(ml_dtypes.bfloat16), "BF16"
    if t.startswith("fp"):
        np_t = {"fp16": np.float16, "fp32": np.float32, "fp64": np.float64}[t]
        return (RNG.standard_normal(shape) * 1000).astype(np_t), t.upper()
    info = np.iinfo(np.dtype(t))
    vals = RNG.integers(info.min, info.max, shape, dtype=np.dtype(t), endpoint=True)
    vals.flat[:2] = [info.min, info.max]
    return vals, t.upper()


ALL_TYPES = ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "fp16", "fp32", "fp64", "bf16"]


@pytest.mark.parametrize("t", ALL_TYPES)
def test_identity_binary(server, t):
    data, dt = _identity_data(t)
    inp = httpclient.InferInput("INPUT__0", list(data.shape), dt)
    inp.set_data_from_numpy(data, binary_data=True)
    result = server.http.infer(f"identity_{t}", [inp], outputs=outputs("OUTPUT__0"))
    out = result.as_numpy("OUTPUT__0")
    assert out.dtype == data.dtype and out.shape == data.shape
    assert out.tobytes() == data.tobytes()


@pytest.mark.parametrize("t", ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "fp32", "fp64"])
def test_identity_json(server, t):
    data, dt = _identity_data(t)
    inp = httpclient.InferInput("INPUT__0", list(data.shape), dt)
    inp.set_data_from_numpy(data, binary_data=False)
    result = server.http.infer(f"identity_{t}", [inp], outputs=outputs("OUTPUT__0", binary=False))
    [out_meta] = result.get_response()["outputs"]
    assert out_meta["datatype"] == dt
    assert out_meta["shape"] == list(data.shape)
    flat = out_meta["data"]
    assert len(flat) == data.size
    if t == "bool":
        assert all(isinstance(v, bool) for v in flat)
    elif not t.startswith("fp"):
        assert all(isinstance(v, int) and not isinstance(v, bool) for v in flat)
    np.testing.assert_array_equal(np.array(flat, dtype=data.dtype).reshape(data.shape), data)


def test_list_output_and_multi_version(server):
    x = rand_f32(1, 6)
    inp = httpclient.InferInput("INPUT__0", [1, 6], "FP32")
    inp.set_data_from_numpy(x)
    r = server.http.infer("list_output", [inp])
    np.testing.assert_array_equal(r.as_numpy("OUTPUT__0"), x + 1)
    np.testing.assert_array_equal(r.as_numpy("OUTPUT__1"), x + 2)
    r2 = server.http.infer("multi_version", [inp], model_version="2")
    np.testing.assert_array_equal(r2.as_numpy("OUTPUT__0"), x * 2)
    r3 = server.http.infer("multi_version", [inp])
    np.testing.assert_array_equal(r3.as_numpy("OUTPUT__0"), x * 3)
    assert server.http.is_model_ready("multi_version", "1") is False


def test_nobatch(server):
    a, b = rand_f32(1, 16), rand_f32(1, 16)
    r = server.http.infer("add_sub_nobatch", add_sub_inputs(a, b))
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), a - b)


def test_large_binary_tensor(server):
    x = RNG.standard_normal((1, 4 * 1024 * 1024), dtype=np.float32)  # 16 MiB
    inp = httpclient.InferInput("INPUT__0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    out = server.http.infer("identity_fp32", [inp]).as_numpy("OUTPUT__0")
    assert np.array_equal(out, x)


@pytest.mark.parametrize("alg", ["gzip", "deflate"])
@pytest.mark.parametrize("direction", ["request", "response"])
def test_compression(server, alg, direction):
    """Triton accepts Content-Encoding gzip/deflate bodies and honours Accept-Encoding;
    tritonclient exposes both as infer(request_/response_compression_algorithm=...)."""
    a, b = rand_f32(2, 16), rand_f32(2, 16)
    kw = {f"{direction}_compression_algorithm": alg}
    result = server.http.infer("add_sub", add_sub_inputs(a, b), **kw)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_classification_extension(server):
    """class_count=k returns the top k as BYTES "value:index" strings (no label file here)."""
    x = np.array([[5.0, -1.0, 7.5, 0.25, 3.0]], dtype=np.float32)
    inp = httpclient.InferInput("INPUT__0", [1, 5], "FP32")
    inp.set_data_from_numpy(x)
    result = server.http.infer("identity_fp32", [inp], outputs=[httpclient.InferRequestedOutput("OUTPUT__0", class_count=3)])
    [meta] = result.get_response()["outputs"]
    assert meta["datatype"] == "BYTES" and meta["shape"] == [1, 3]
    entries = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("OUTPUT__0").ravel()]
    assert [e.split(":")[1] for e in entries] == ["2", "0", "4"], entries
    assert [float(e.split(":")[0]) for e in entries] == [7.5, 5.0, 3.0], entries


# ---------------------------------------------------------------- repository and statistics


def test_repository_index(server):
    index = server.http.get_model_repository_index()
    assert isinstance(index, list)
    names = {m["name"] for m in index}
    assert {"add_sub", "identity_fp32", "multi_version"} <= names
    add_sub = [m for m in index if m["name"] == "add_sub"]
    assert add_sub and all(m.get("state") == "READY" for m in add_sub)


def test_model_statistics(server):
    def success(stats):
        [s] = [m for m in stats["model_stats"] if m["name"] == "add_sub" and m["version"] == "1"]
        return s["inference_stats"]["success"]["count"], s["execution_count"], s["inference_count"]

    before = success(server.http.get_inference_statistics("add_sub", "1"))
    for _ in range(3):
        server.http.infer("add_sub", add_sub_inputs(rand_f32(1, 16), rand_f32(1, 16)))
    after = success(server.http.get_inference_statistics("add_sub", "1"))
    assert after[0] - before[0] == 3
    assert after[1] > before[1]
    assert after[2] - before[2] == 3


def test_explicit_load_unload(model_repo, module_kiln):
    srv = module_kiln(model_repo, "--model-control-mode", "explicit", name="explicit-http")
    c = srv.http
    assert c.is_model_ready("add_sub") is False
    c.load_model("add_sub")
    assert c.is_model_ready("add_sub") is True
    a, b = rand_f32(1, 16), rand_f32(1, 16)
    np.testing.assert_array_equal(c.infer("add_sub", add_sub_inputs(a, b)).as_numpy("OUTPUT0"), a + b)
    c.unload_model("add_sub")
    assert c.is_model_ready("add_sub") is False
    with pytest.raises(InferenceServerException) as exc:
        c.infer("add_sub", add_sub_inputs(a, b))
    # Triton's answer for an unloaded model: 404, no available versions.
    assert exc.value.status() == "404", exc.value
    assert "'add_sub' has no available versions" in exc.value.message()
    # and it can come back
    c.load_model("add_sub")
    np.testing.assert_array_equal(c.infer("add_sub", add_sub_inputs(a, b)).as_numpy("OUTPUT1"), a - b)


def test_cuda_shared_memory_unimplemented(server):
    """System shared memory is implemented (tests/test_shared_memory.py); CUDA's is not."""
    c = server.http
    calls = [
        (c.get_cuda_shared_memory_status, (), "CUDA shared memory"),
        (c.register_cuda_shared_memory, ("cuda_region", b"\x00" * 64, 0, 64), "CUDA shared memory"),
        (c.unregister_cuda_shared_memory, ("cuda_region",), "CUDA shared memory"),
    ]
    for fn, args, what in calls:
        with pytest.raises(InferenceServerException) as exc:
            fn(*args)
        assert exc.value.status() == "501", f"{fn.__name__}: {exc.value.status()} {exc.value}"
        msg = exc.value.message()
        assert msg, fn.__name__
        if what:
            assert what in msg and "not implemented" in msg, f"{fn.__name__}: {msg}"


# ---------------------------------------------------------------- raw HTTP routes


def test_raw_health_routes(server):
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/add_sub/ready", "/v2/models/add_sub/versions/1/ready"):
        status, _, _ = http_request(server.http_url, "GET", path)
        assert status == 200, path
    status, _, _ = http_request(server.http_url, "GET", "/v2/models/no_such_model/ready")
    assert status != 200


def test_raw_server_metadata(server):
    status, headers, body = http_request(server.http_url, "GET", "/v2")
    assert status == 200
    assert headers.get("content-type", "").startswith("application/json")
    md = json.loads(body)
    assert md["name"] == "kiln"
    assert isinstance(md["extensions"], list)


def test_raw_model_metadata_and_config(server):
    status, md = http_json(server.http_url, "GET", "/v2/models/add_sub")
    assert status == 200
    assert md["name"] == "add_sub" and md["platform"] == "pytorch_libtorch"
    assert [i["shape"] for i in md["inputs"]] == [[-1, 16], [-1, 16]]
    status, md1 = http_json(server.http_url, "GET", "/v2/models/add_sub/versions/1")
    assert status == 200 and md1["name"] == "add_sub"
    status, cfg = http_json(server.http_url, "GET", "/v2/models/add_sub/config")
    assert status == 200
    assert cfg["max_batch_size"] == 8
    assert cfg["input"][0]["dims"] == [16]
    status, cfg1 = http_json(server.http_url, "GET", "/v2/models/add_sub/versions/1/config")
    assert status == 200 and cfg1["name"] == "add_sub"


def test_raw_model_stats(server):
    status, stats = http_json(server.http_url, "GET", "/v2/models/add_sub/stats")
    assert status == 200
    [s] = [m for m in stats["model_stats"] if m["name"] == "add_sub"]
    assert s["version"] == "1"
    for key in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
        assert set(s["inference_stats"][key]) >= {"count", "ns"}, key
    status, all_stats = http_json(server.http_url, "GET", "/v2/models/stats")
    assert status == 200
    assert "add_sub" in {m["name"] for m in all_stats["model_stats"]}


def test_raw_repository_index(server):
    status, index = http_json(server.http_url, "POST", "/v2/repository/index", {})
    assert status == 200
    assert any(m["name"] == "add_sub" and m.get("state") == "READY" for m in index)


def test_raw_json_infer(server):
    a, b = rand_f32(1, 16), rand_f32(1, 16)
    body = {
        "id": "raw-1",
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "data": a.ravel().tolist()},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "FP32", "data": b.ravel().tolist()},
        ],
    }
    status, headers, raw = http_request(server.http_url, "POST", "/v2/models/add_sub/infer", body)
    assert status == 200, raw
    assert "inference-header-content-length" not in headers
    resp = json.loads(raw)
    assert resp["id"] == "raw-1"
    assert resp["model_name"] == "add_sub"
    outs = {o["name"]: o for o in resp["outputs"]}
    assert set(outs) == {"OUTPUT0", "OUTPUT1"}
    assert outs["OUTPUT0"]["datatype"] == "FP32" and outs["OUTPUT0"]["shape"] == [1, 16]
    np.testing.assert_array_equal(np.array(outs["OUTPUT0"]["data"], dtype=np.float32), (a + b).ravel())
    np.testing.assert_array_equal(np.array(outs["OUTPUT1"]["data"], dtype=np.float32), (a - b).ravel())

    # nested (row-major) data arrays are accepted too
    body["inputs"][0]["data"] = a.tolist()
    body["inputs"][1]["data"] = b.tolist()
    status, _, raw = http_request(server.http_url, "POST", "/v2/models/add_sub/versions/1/infer", body)
    assert status == 200, raw
    outs = {o["name"]: o for o in json.loads(raw)["outputs"]}
    np.testing.assert_array_equal(np.array(outs["OUTPUT0"]["data"], dtype=np.float32).ravel(), (a + b).ravel())


def test_raw_binary_infer(server):
    """Binary tensor extension on the wire: JSON header + raw bytes, both directions."""
    a, b = rand_f32(2, 16), rand_f32(2, 16)
    header = json.dumps({
        "inputs": [
            {"name": "INPUT0", "shape": [2, 16], "datatype": "FP32", "parameters": {"binary_data_size": a.nbytes}},
            {"name": "INPUT1", "shape": [2, 16], "datatype": "FP32", "parameters": {"binary_data_size": b.nbytes}},
        ],
        "outputs": [
            {"name": "OUTPUT0", "parameters": {"binary_data": True}},
            {"name": "OUTPUT1", "parameters": {"binary_data": False}},
        ],
    }).encode()
    body = header + a.tobytes() + b.tobytes()
    status, headers, raw = http_request(
        server.http_url, "POST", "/v2/models/add_sub/infer", body,
        {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
    )
    assert status == 200, raw
    hlen = int(headers["inference-header-content-length"])
    resp = json.loads(raw[:hlen])
    outs = {o["name"]: o for o in resp["outputs"]}
    assert outs["OUTPUT0"]["parameters"]["binary_data_size"] == 2 * 16 * 4
    assert "data" not in outs["OUTPUT0"]
    assert len(raw) == hlen + 2 * 16 * 4
    np.testing.assert_array_equal(np.frombuffer(raw[hlen:], dtype=np.float32).reshape(2, 16), a + b)
    np.testing.assert_array_equal(np.array(outs["OUTPUT1"]["data"], dtype=np.float32).reshape(2, 16), a - b)


def test_raw_binary_data_output_parameter(server):
    """Request-level `binary_data_output: true` makes every output binary."""
    a, b = rand_f32(1, 16), rand_f32(1, 16)
    body = {
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "data": a.ravel().tolist()},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "FP32", "data": b.ravel().tolist()},
        ],
        "parameters": {"binary_data_output": True},
    }
    status, headers, raw = http_request(server.http_url, "POST", "/v2/models/add_sub/infer", body)
    assert status == 200, raw
    hlen = int(headers["inference-header-content-length"])
    resp = json.loads(raw[:hlen])
    offset = hlen
    got = {}
    for out in resp["outputs"]:
        size = out["parameters"]["binary_data_size"]
        got[out["name"]] = np.frombuffer(raw[offset:offset + size], dtype=np.float32)
        offset += size
    assert offset == len(raw)
    np.testing.assert_array_equal(got["OUTPUT0"], (a + b).ravel())
    np.testing.assert_array_equal(got["OUTPUT1"], (a - b).ravel())


def test_raw_bool_and_fp16_binary(server):
    x = np.array([[True, False, True, True]])
    header = json.dumps({"inputs": [{"name": "INPUT__0", "shape": [1, 4], "datatype": "BOOL",
                                     "parameters": {"binary_data_size": 4}}],
                         "outputs": [{"name": "OUTPUT__0", "parameters": {"binary_data": True}}]}).encode()
    status, headers, raw = http_request(server.http_url, "POST", "/v2/models/identity_bool/infer", header + x.tobytes(),
                                        {"Inference-Header-Content-Length": str(len(header))})
    assert status == 200, raw
    hlen = int(headers["inference-header-content-length"])
    assert raw[hlen:] == x.tobytes()
    h = np.array([[1.5, -2.25, 65504.0]], dtype=np.float16)
    header = json.dumps({"inputs": [{"name": "INPUT__0", "shape": [1, 3], "datatype": "FP16",
                                     "parameters": {"binary_data_size": h.nbytes}}],
                         "outputs": [{"name": "OUTPUT__0", "parameters": {"binary_data": True}}]}).encode()
    status, headers, raw = http_request(server.http_url, "POST", "/v2/models/identity_fp16/infer", header + h.tobytes(),
                                        {"Inference-Header-Content-Length": str(len(header))})
    assert status == 200, raw
    hlen = int(headers["inference-header-content-length"])
    assert raw[hlen:] == h.tobytes()
    assert struct.unpack("<3e", raw[hlen:]) == (1.5, -2.25, 65504.0)
