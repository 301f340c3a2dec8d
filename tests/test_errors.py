"""Every error class, over gRPC (status codes) and HTTP (status + {"error": ...}).

Each message must name the offending tensor / field. After every test the default server
must still be live and still compute add_sub correctly.
"""
from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from kilnutil import http_request, wait_until

RNG = np.random.default_rng(99)
MAX_MSG = 2**31 - 1


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def grpc_input(name, arr, datatype="FP32", shape=None):
    inp = grpcclient.InferInput(name, list(arr.shape if shape is None else shape), datatype)
    inp.set_data_from_numpy(arr)
    return inp


@pytest.fixture(autouse=True)
def server_still_serves(server):
    """After each error the default server is live and still answers add_sub correctly."""
    yield
    assert server.grpc.is_server_live()
    a, b = f32(1, 16), f32(1, 16)
    r = server.grpc.infer("add_sub", [grpc_input("INPUT0", a), grpc_input("INPUT1", b)])
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)


def grpc_error(fn, *args, code: str, **kwargs) -> str:
    with pytest.raises(InferenceServerException) as exc:
        fn(*args, **kwargs)
    assert exc.value.status() == f"StatusCode.{code}", f"expected {code}, got {exc.value.status()}: {exc.value.message()}"
    msg = exc.value.message()
    assert msg, "empty error message"
    return msg


def http_error(srv, method, path, body=None, headers=None, expect=400) -> str:
    status, _, raw = http_request(srv.http_url, method, path, body, headers)
    assert status == expect, f"expected HTTP {expect}, got {status}: {raw[:500]!r}"
    err = json.loads(raw)
    assert isinstance(err, dict) and isinstance(err.get("error"), str) and err["error"], raw
    return err["error"]


def json_input(name, arr, datatype="FP32", shape=None):
    return {"name": name, "shape": list(arr.shape if shape is None else shape), "datatype": datatype,
            "data": arr.ravel().tolist()}


@pytest.fixture(scope="module")
def raw_stub(server):
    channel = grpc.insecure_channel(server.grpc_url, options=[("grpc.max_send_message_length", MAX_MSG),
                                                              ("grpc.max_receive_message_length", MAX_MSG)])
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def raw_request(model="add_sub", tensors=(("INPUT0", [1, 16]), ("INPUT1", [1, 16]))):
    req = service_pb2.ModelInferRequest(model_name=model)
    for name, shape in tensors:
        t = req.inputs.add()
        t.name, t.datatype = name, "FP32"
        t.shape.extend(shape)
    return req


def raw_error(stub, req, code=grpc.StatusCode.INVALID_ARGUMENT) -> str:
    with pytest.raises(grpc.RpcError) as exc:
        stub.ModelInfer(req, timeout=30)
    assert exc.value.code() == code, f"expected {code}, got {exc.value.code()}: {exc.value.details()}"
    assert exc.value.details()
    return exc.value.details()


# ---------------------------------------------------------------- unknown / missing inputs


def test_unknown_input_name(server):
    a = f32(1, 16)
    msg = grpc_error(server.grpc.infer, "add_sub",
                     [grpc_input("INPUT0", a), grpc_input("INPUT1", a), grpc_input("INPUTX", a)], code="INVALID_ARGUMENT")
    assert "INPUTX" in msg
    body = {"inputs": [json_input("INPUT0", a), json_input("INPUT1", a), json_input("INPUTX", a)]}
    assert "INPUTX" in http_error(server, "POST", "/v2/models/add_sub/infer", body)


def test_missing_input(server):
    a = f32(1, 16)
    msg = grpc_error(server.grpc.infer, "add_sub", [grpc_input("INPUT0", a)], code="INVALID_ARGUMENT")
    assert "INPUT1" in msg
    assert "INPUT1" in http_error(server, "POST", "/v2/models/add_sub/infer", {"inputs": [json_input("INPUT0", a)]})


def test_duplicate_input(server):
    a = f32(1, 16)
    msg = grpc_error(server.grpc.infer, "add_sub",
                     [grpc_input("INPUT0", a), grpc_input("INPUT0", a), grpc_input("INPUT1", a)], code="INVALID_ARGUMENT")
    assert "INPUT0" in msg


# ---------------------------------------------------------------- datatype / shape / batch


def test_wrong_datatype(server):
    i = RNG.integers(0, 10, (1, 16)).astype(np.int32)
    a = f32(1, 16)
    msg = grpc_error(server.grpc.infer, "add_sub", [grpc_input("INPUT0", i, "INT32"), grpc_input("INPUT1", a)],
                     code="INVALID_ARGUMENT")
    assert "INPUT0" in msg and ("INT32" in msg or "FP32" in msg), msg
    body = {"inputs": [json_input("INPUT0", i, "INT32"), json_input("INPUT1", a)]}
    msg = http_error(server, "POST", "/v2/models/add_sub/infer", body)
    assert "INPUT0" in msg and ("INT32" in msg or "FP32" in msg), msg


def test_unknown_datatype_string(server):
    a = f32(1, 16)
    body = {"inputs": [json_input("INPUT0", a, "FLOAT99"), json_input("INPUT1", a)]}
    msg = http_error(server, "POST", "/v2/models/add_sub/infer", body)
    assert "FLOAT99" in msg or "INPUT0" in msg, msg


def test_wrong_shape(server):
    a, b = f32(1, 15), f32(1, 16)
    msg = grpc_error(server.grpc.infer, "add_sub", [grpc_input("INPUT0", a), grpc_input("INPUT1", b)], code="INVALID_ARGUMENT")
    assert "INPUT0" in msg
    body = {"inputs": [json_input("INPUT0", a), json_input("INPUT1", b)]}
    assert "INPUT0" in http_error(server, "POST", "/v2/models/add_sub/infer", body)


def test_wrong_rank_nobatch(server):
    a = f32(16)
    msg = grpc_error(server.grpc.infer, "add_sub_nobatch", [grpc_input("INPUT0", a), grpc_input("INPUT1", a)],
                     code="INVALID_ARGUMENT")
    assert "INPUT0" in msg


def test_batch_too_large(server):
    a, b = f32(9, 16), f32(9, 16)
    msg = grpc_error(server.grpc.infer, "add_sub", [grpc_input("INPUT0", a), grpc_input("INPUT1", b)], code="INVALID_ARGUMENT")
    assert "batch" in msg.lower() and "8" in msg, msg
    body = {"inputs": [json_input("INPUT0", a), json_input("INPUT1", b)]}
    msg = http_error(server, "POST", "/v2/models/add_sub/infer", body)
    assert "batch" in msg.lower() and "8" in msg, msg


def test_mismatched_batch_between_inputs(server):
    msg = grpc_error(server.grpc.infer, "add_sub", [grpc_input("INPUT0", f32(2, 16)), grpc_input("INPUT1", f32(3, 16))],
                     code="INVALID_ARGUMENT")
    assert "batch" in msg.lower() or "INPUT1" in msg or "INPUT0" in msg, msg


# ---------------------------------------------------------------- tensor contents


def test_raw_byte_size_mismatch(server, raw_stub):
    req = raw_request()
    req.raw_input_contents.append(f32(1, 16).tobytes()[:60])  # 60 bytes for 16 floats
    req.raw_input_contents.append(f32(1, 16).tobytes())
    assert "INPUT0" in raw_error(raw_stub, req)


def test_raw_contents_count_mismatch(server, raw_stub):
    req = raw_request()
    req.raw_input_contents.append(f32(1, 16).tobytes())  # only one raw buffer for two inputs
    msg = raw_error(raw_stub, req)
    assert "INPUT1" in msg or "raw_input_contents" in msg, msg


def test_raw_and_typed_contents_together(server, raw_stub):
    req = raw_request()
    a, b = f32(1, 16), f32(1, 16)
    req.inputs[0].contents.fp32_contents.extend(a.ravel().tolist())
    req.raw_input_contents.append(a.tobytes())
    req.raw_input_contents.append(b.tobytes())
    msg = raw_error(raw_stub, req)
    assert "INPUT0" in msg or "raw_input_contents" in msg or "contents" in msg, msg


def test_typed_contents_wrong_count(server, raw_stub):
    req = raw_request()
    req.inputs[0].contents.fp32_contents.extend(f32(15).tolist())
    req.inputs[1].contents.fp32_contents.extend(f32(16).tolist())
    assert "INPUT0" in raw_error(raw_stub, req)


def test_typed_contents_accepted(server, raw_stub):
    """Control for the two tests above: typed contents alone are a valid request."""
    req = raw_request()
    a, b = f32(16), f32(16)
    req.inputs[0].contents.fp32_contents.extend(a.tolist())
    req.inputs[1].contents.fp32_contents.extend(b.tolist())
    resp = raw_stub.ModelInfer(req, timeout=30)
    outs = {o.name: i for i, o in enumerate(resp.outputs)}
    np.testing.assert_array_equal(np.frombuffer(resp.raw_output_contents[outs["OUTPUT0"]], np.float32), a + b)


def test_json_data_length_mismatch(server):
    a, b = f32(1, 16), f32(1, 16)
    body = {"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "data": a.ravel().tolist()[:15]},
                       json_input("INPUT1", b)]}
    assert "INPUT0" in http_error(server, "POST", "/v2/models/add_sub/infer", body)


def test_json_data_wrong_type(server):
    b = f32(1, 16)
    body = {"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "data": ["x"] * 16},
                       json_input("INPUT1", b)]}
    assert "INPUT0" in http_error(server, "POST", "/v2/models/add_sub/infer", body)


@pytest.mark.parametrize("model,datatype,data,bad", [
    ("identity_bool", "BOOL", [1, 0], "1"),
    ("identity_uint8", "UINT8", [1, 300], "300"),
    ("identity_int8", "INT8", [-129, 0], "-129"),
    ("identity_int32", "INT32", [1.5, 2], "1.5"),
    ("identity_uint32", "UINT32", [-1, 2], "-1"),
])
def test_json_value_out_of_range(server, model, datatype, data, bad):
    body = {"inputs": [{"name": "INPUT__0", "shape": [1, 2], "datatype": datatype, "data": data}]}
    msg = http_error(server, "POST", f"/v2/models/{model}/infer", body)
    assert "INPUT__0" in msg, msg


def test_typed_contents_wrong_field(server, raw_stub):
    req = service_pb2.ModelInferRequest(model_name="identity_fp32")
    t = req.inputs.add()
    t.name, t.datatype = "INPUT__0", "FP32"
    t.shape.extend([1, 2])
    t.contents.int_contents.extend([1, 2])
    msg = raw_error(raw_stub, req)
    assert "INPUT__0" in msg, msg


def test_negative_shape(server):
    body = {"inputs": [{"name": "INPUT__0", "shape": [1, -2], "datatype": "FP32", "data": []}]}
    assert "INPUT__0" in http_error(server, "POST", "/v2/models/identity_fp32/infer", body)


def test_binary_size_mismatch_http(server):
    a, b = f32(1, 16), f32(1, 16)
    header = json.dumps({"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "parameters": {"binary_data_size": 60}},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "FP32", "parameters": {"binary_data_size": 64}},
    ]}).encode()
    body = header + a.tobytes()[:60] + b.tobytes()
    msg = http_error(server, "POST", "/v2/models/add_sub/infer", body, {"Inference-Header-Content-Length": str(len(header))})
    assert "INPUT0" in msg


def test_binary_body_shorter_than_declared(server):
    a = f32(1, 16)
    header = json.dumps({"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "parameters": {"binary_data_size": 64}},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "FP32", "parameters": {"binary_data_size": 64}},
    ]}).encode()
    http_error(server, "POST", "/v2/models/add_sub/infer", header + a.tobytes(),
               {"Inference-Header-Content-Length": str(len(header))})


# ---------------------------------------------------------------- outputs, models, versions


def test_unknown_output(server):
    a = f32(1, 16)
    msg = grpc_error(server.grpc.infer, "add_sub", [grpc_input("INPUT0", a), grpc_input("INPUT1", a)],
                     outputs=[grpcclient.InferRequestedOutput("OUTPUTX")], code="INVALID_ARGUMENT")
    assert "OUTPUTX" in msg
    body = {"inputs": [json_input("INPUT0", a), json_input("INPUT1", a)], "outputs": [{"name": "OUTPUTX"}]}
    assert "OUTPUTX" in http_error(server, "POST", "/v2/models/add_sub/infer", body)


def test_unknown_model(server):
    a = f32(1, 16)
    msg = grpc_error(server.grpc.infer, "no_such_model", [grpc_input("INPUT0", a)], code="NOT_FOUND")
    assert "no_such_model" in msg
    assert "no_such_model" in grpc_error(server.grpc.get_model_metadata, "no_such_model", code="NOT_FOUND")
    assert "no_such_model" in grpc_error(server.grpc.get_model_config, "no_such_model", code="NOT_FOUND")
    body = {"inputs": [json_input("INPUT0", a)]}
    assert "no_such_model" in http_error(server, "POST", "/v2/models/no_such_model/infer", body, expect=404)
    assert "no_such_model" in http_error(server, "GET", "/v2/models/no_such_model", expect=404)
    assert "no_such_model" in http_error(server, "GET", "/v2/models/no_such_model/config", expect=404)


def test_unknown_version(server):
    a = f32(1, 16)
    msg = grpc_error(server.grpc.infer, "add_sub", [grpc_input("INPUT0", a), grpc_input("INPUT1", a)],
                     model_version="7", code="NOT_FOUND")
    assert "7" in msg and "add_sub" in msg, msg
    grpc_error(server.grpc.get_model_metadata, "add_sub", "7", code="NOT_FOUND")
    body = {"inputs": [json_input("INPUT0", a), json_input("INPUT1", a)]}
    msg = http_error(server, "POST", "/v2/models/add_sub/versions/7/infer", body, expect=404)
    assert "7" in msg
    http_error(server, "GET", "/v2/models/add_sub/versions/7", expect=404)


def test_non_numeric_version(server):
    a = f32(1, 16)
    body = {"inputs": [json_input("INPUT0", a), json_input("INPUT1", a)]}
    status, _, raw = http_request(server.http_url, "POST", "/v2/models/add_sub/versions/abc/infer", body)
    assert status in (400, 404), (status, raw)
    assert json.loads(raw)["error"]


def test_bytes_input_rejected(server):
    s = np.array([[b"hello"] * 16], dtype=np.object_)
    a = f32(1, 16)
    msg = grpc_error(server.grpc.infer, "add_sub", [grpc_input("INPUT0", s, "BYTES"), grpc_input("INPUT1", a)],
                     code="INVALID_ARGUMENT")
    assert "BYTES" in msg
    msg = grpc_error(server.grpc.infer, "identity_fp32", [grpc_input("INPUT__0", np.array([[b"a", b"bc"]], dtype=np.object_), "BYTES")],
                     code="INVALID_ARGUMENT")
    assert "BYTES" in msg
    body = {"inputs": [{"name": "INPUT__0", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "bc"]}]}
    assert "BYTES" in http_error(server, "POST", "/v2/models/identity_fp32/infer", body)


# ---------------------------------------------------------------- malformed HTTP bodies


def test_malformed_json(server):
    http_error(server, "POST", "/v2/models/add_sub/infer", b'{"inputs": [ {"name": "INPUT0", ',
               {"Content-Type": "application/json"})
    http_error(server, "POST", "/v2/models/add_sub/infer", b"not json at all", {"Content-Type": "application/json"})
    http_error(server, "POST", "/v2/models/add_sub/infer", b'{"inputs": 5}', {"Content-Type": "application/json"})


def test_malformed_binary_header_length(server):
    a = f32(1, 16)
    header = json.dumps({"inputs": [json_input("INPUT0", a), json_input("INPUT1", a)]}).encode()
    # longer than the body
    http_error(server, "POST", "/v2/models/add_sub/infer", header, {"Inference-Header-Content-Length": str(len(header) + 100)})
    # not a number
    http_error(server, "POST", "/v2/models/add_sub/infer", header, {"Inference-Header-Content-Length": "abc"})
    # cuts the JSON header in the middle
    http_error(server, "POST", "/v2/models/add_sub/infer", header, {"Inference-Header-Content-Length": str(len(header) // 2)})


def test_unknown_route(server):
    status, _, _ = http_request(server.http_url, "GET", "/v2/no/such/route")
    assert status == 404


# ---------------------------------------------------------------- a model that fails to load


BROKEN_CONFIG = """\
name: "broken_config"
platform: "pytorch_libtorch"
max_batch_sise: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""

BROKEN_WEIGHTS_CONFIG = """\
name: "broken_weights"
platform: "pytorch_libtorch"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""


def write_broken_models(repo):
    for name, cfg in (("broken_config", BROKEN_CONFIG), ("broken_weights", BROKEN_WEIGHTS_CONFIG)):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(cfg)
        (repo / name / "1" / "model.pt").write_bytes(b"this is not a TorchScript archive\x00\x01\x02")


@pytest.fixture(scope="module")
def broken_server(model_repo, module_kiln, tmp_path_factory):
    from kilnutil import copy_models

    repo = copy_models(model_repo, tmp_path_factory.mktemp("broken") / "repo", ["add_sub"])
    write_broken_models(repo)
    srv = module_kiln(repo, wait="live", name="broken")

    def settled():
        index = srv.grpc.get_model_repository_index().models
        states = {m.name: m.state for m in index}
        return srv.grpc.is_model_ready("add_sub") and all(
            states.get(n) not in (None, "", "LOADING") for n in ("broken_config", "broken_weights"))

    wait_until(settled, 60, what="add_sub READY and broken models settled")
    return srv


def test_failed_models_unavailable_with_reason(broken_server):
    srv = broken_server
    index = srv.grpc.get_model_repository_index().models
    by_name = {}
    for m in index:
        by_name.setdefault(m.name, []).append(m)
    for name in ("broken_config", "broken_weights"):
        assert name in by_name, f"{name} missing from index: {index}"
        assert all(m.state == "UNAVAILABLE" for m in by_name[name]), by_name[name]
        assert any(m.reason for m in by_name[name]), f"{name}: no reason in index"
        assert srv.grpc.is_model_ready(name) is False
    reason = " ".join(m.reason for m in by_name["broken_config"])
    assert "max_batch_sise" in reason, reason
    # HTTP index shows the same
    status, _, raw = http_request(srv.http_url, "POST", "/v2/repository/index", {})
    assert status == 200
    http_index = json.loads(raw)
    assert any(m["name"] == "broken_weights" and m.get("state") == "UNAVAILABLE" and m.get("reason") for m in http_index)


def test_failed_model_infer_unavailable(broken_server):
    srv = broken_server
    x = f32(1, 4)
    msg = grpc_error(srv.grpc.infer, "broken_weights", [grpc_input("INPUT__0", x)], code="UNAVAILABLE")
    assert "broken_weights" in msg
    body = {"inputs": [json_input("INPUT__0", x)]}
    assert "broken_weights" in http_error(srv, "POST", "/v2/models/broken_weights/infer", body, expect=503)


def test_good_model_still_serves_beside_broken(broken_server):
    srv = broken_server
    a, b = f32(2, 16), f32(2, 16)
    r = srv.grpc.infer("add_sub", [grpc_input("INPUT0", a), grpc_input("INPUT1", b)])
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), a - b)
    assert srv.grpc.is_server_live()


def test_errors_counted_as_failures(server):
    def fails():
        stats = server.grpc.get_inference_statistics("add_sub", "1").model_stats[0]
        return stats.inference_stats.fail.count

    before = fails()
    grpc_error(server.grpc.infer, "add_sub", [grpc_input("INPUT0", f32(1, 15)), grpc_input("INPUT1", f32(1, 16))],
               code="INVALID_ARGUMENT")
    assert fails() >= before + 1
