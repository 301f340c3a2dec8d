"""Hostile and careless clients: every request kiln can be made to spend on is bounded, bad
input gets a clear error, and the server keeps answering health checks throughout.

Each test reproduces one finding of the hardening review (issue 10) against the real binary:
decompression bombs and amplifying messages, shared-memory abuse, slow and idle connections,
shutdown with idle streams, and the answers that differed from Triton's. Sizes are scaled down
with the limit flags where the default limits would need gigabytes; bench/reliability.sh runs
the full-size attacks.

The connection tests (slow heads, idle and aged connections, never-reading clients, the exit
timeout) test features that are time limits by definition, so they wait on the clock; each
bound they assert has a margin of 2x or more over the limit under test. Nothing here orders
requests by sleeping: test_batching and test_shutdown do that through the pending/executing
gauges.
"""
from __future__ import annotations

import gzip
import json
import os
import pathlib
import signal
import socket
import struct
import threading
import time
import uuid
import zlib

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from kilnutil import add_sub_inputs, http_request

MAX_MSG = 2**31 - 1
INFER = "/inference.GRPCInferenceService/ModelInfer"


def rss_mib(srv) -> float:
    for line in pathlib.Path(f"/proc/{srv.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def assert_healthy(srv, within: float = 1.0):
    """Both protocols answer a liveness check within `within` seconds on a new connection."""
    t0 = time.monotonic()
    status, _, _ = http_request(srv.http_url, "GET", "/v2/health/live", timeout=within + 1)
    assert status == 200
    with grpc.insecure_channel(srv.grpc_url) as ch:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
        assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=within + 1).live
    took = time.monotonic() - t0
    assert took < 2 * within, f"health checks took {took:.2f} s"


def raw_channel(srv, **options):
    opts = [("grpc.max_send_message_length", MAX_MSG), ("grpc.max_receive_message_length", MAX_MSG)]
    opts += list(options.items())
    return grpc.insecure_channel(srv.grpc_url, options=opts)


def raw_infer(channel, payload: bytes, timeout=60, compression=None):
    """ModelInfer with hand-made protobuf bytes (no Python message is built)."""
    call = channel.unary_unary(INFER, request_serializer=lambda b: b,
                               response_deserializer=service_pb2.ModelInferResponse.FromString)
    return call(payload, timeout=timeout, compression=compression)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def add_sub_grpc_inputs(a, b):
    return add_sub_inputs(grpcclient, a, b)


@pytest.fixture(scope="module")
def small(model_repo, module_kiln, tmp_path_factory):
    """A server with small limits, so that the amplification attacks fit a test."""
    from kilnutil import copy_models
    repo = copy_models(model_repo, tmp_path_factory.mktemp("small-repo"), ["add_sub", "identity_fp32", "identity_int64"])
    return module_kiln(repo, "--grpc-max-input-size", str(16 << 20), "--http-max-input-size", str(8 << 20),
                       "--max-request-inputs", "64", "--shared-memory-max-regions", "8", name="small")


# ---------------------------------------------------------------- amplification over gRPC


def test_grpc_message_of_empty_inputs_is_refused_before_decoding(server):
    """16 million empty `inputs` (32 MiB) took 6 GiB and stalled health checks."""
    payload = field(1, b"add_sub") + b"\x2a\x00" * 16_000_000
    before = rss_mib(server)
    with raw_channel(server) as ch:
        with pytest.raises(grpc.RpcError) as exc:
            raw_infer(ch, payload)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.value
    assert "'inputs' has more than 1024 entries" in exc.value.details()
    assert "max-request-inputs" in exc.value.details()
    assert rss_mib(server) - before < 400, "decoding allocated for the inputs it refused"
    assert_healthy(server)


def test_grpc_gzip_bomb_is_refused_by_its_inflated_size(small):
    """A gzip body that inflates past the limit is refused as it inflates (tonic 0.12 checked
    the compressed size, and a 16 MiB body inflating to 16 GiB got kiln OOM-killed)."""
    req = service_pb2.ModelInferRequest(model_name="identity_fp32")
    t = req.inputs.add(name="INPUT__0", datatype="FP32", shape=[1, 8 << 20])
    req.raw_input_contents.append(bytes(32 << 20))  # 32 MiB of zeros, 32 KiB gzipped
    before = rss_mib(small)
    with raw_channel(small) as ch:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
        with pytest.raises(grpc.RpcError) as exc:
            stub.ModelInfer(req, timeout=60, compression=grpc.Compression.Gzip)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.value
    assert rss_mib(small) - before < 64
    assert_healthy(small)
    del t


def test_grpc_typed_contents_may_not_decode_past_the_message_limit(small):
    """One-byte int64 varints decode to 8 bytes each: 4 Mi zeros (4 MiB, gzipped to 4 KiB)
    would be 32 MiB in memory, twice the 16 MiB message limit of this server."""
    n = 4 << 20
    tensor = field(1, b"INPUT__0") + field(2, b"INT64") + field(3, varint(1) + varint(n)) + field(5, field(3, bytes(n)))
    payload = field(1, b"identity_int64") + field(5, tensor)
    with raw_channel(small) as ch:
        with pytest.raises(grpc.RpcError) as exc:
            raw_infer(ch, payload, compression=grpc.Compression.Gzip)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.value
    assert "decode to more than" in exc.value.details()
    assert_healthy(small)


def test_grpc_control_messages_are_small(server):
    big = service_pb2.RepositoryIndexRequest(repository_name="x" * (2 << 20))
    with raw_channel(server) as ch:
        with pytest.raises(grpc.RpcError) as exc:
            service_pb2_grpc.GRPCInferenceServiceStub(ch).RepositoryIndex(big, timeout=30)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.value


def test_grpc_counts_dims_and_parameters_are_bounded(small):
    client = small.new_grpc_client()
    try:
        a = np.zeros((1, 16), np.float32)
        too_many = [grpcclient.InferInput(f"X{i}", [1], "FP32") for i in range(65)]
        for t in too_many:
            t.set_data_from_numpy(np.zeros(1, np.float32))
        with pytest.raises(InferenceServerException) as exc:
            client.infer("add_sub", too_many)
        assert "more than 64 entries" in exc.value.message()
        deep = service_pb2.ModelInferRequest(model_name="add_sub")
        deep.inputs.add(name="INPUT0", datatype="FP32", shape=[1] * 70)
        deep.raw_input_contents.append(bytes(4))
        with raw_channel(small) as ch:
            with pytest.raises(grpc.RpcError) as rpc:
                service_pb2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(deep, timeout=30)
        assert "70 dimensions" in rpc.value.details()
        with pytest.raises(InferenceServerException) as exc:
            client.infer("add_sub", add_sub_grpc_inputs(a, a), parameters={f"p{i}": i for i in range(300)})
        assert "parameters" in exc.value.message() and "256" in exc.value.message()
    finally:
        client.close()


def test_grpc_request_that_is_not_protobuf_is_invalid_argument(server):
    with raw_channel(server) as ch:
        with pytest.raises(grpc.RpcError) as exc:
            raw_infer(ch, b"\x0a\xff\xff\xff\xff\x0f")
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.value


# ---------------------------------------------------------------- amplification over HTTP


def test_http_gzip_json_is_bounded_after_inflation(small):
    """A gzipped JSON `data` array of 512 KiB inflates to far more than the body limit: 413."""
    data = b"0," * (6 << 20)
    body = b'{"inputs":[{"name":"INPUT__0","shape":[1,6291457],"datatype":"FP32","data":[' + data + b'0]}]}'
    status, _, raw = http_request(small.http_url, "POST", "/v2/models/identity_fp32/infer", gzip.compress(body, 1),
                                  {"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert status == 413, (status, raw[:300])
    assert "--http-max-input-size" in json.loads(raw)["error"]
    assert_healthy(small)


def test_http_json_data_costs_what_its_tensor_costs(small):
    """3 Mi zeros in JSON (6 MiB, under this server's 8 MiB limit) decode straight into a 12 MiB
    tensor; as parsed JSON values they were over 100 MiB."""
    n = 3 << 20
    body = (b'{"inputs":[{"name":"INPUT__0","shape":[1,%d],"datatype":"FP32","data":[' % n
            + b"0," * (n - 1) + b'0]}],"outputs":[{"name":"OUTPUT__0","parameters":{"binary_data":true}}]}')
    before = rss_mib(small)
    status, headers, raw = http_request(small.http_url, "POST", "/v2/models/identity_fp32/infer", body)
    assert status == 200, raw[:300]
    head = int(headers["inference-header-content-length"])
    assert len(raw) - head == 4 * n
    assert rss_mib(small) - before < 96
    assert_healthy(small)


@pytest.mark.parametrize("case,body,needle", [
    # Triton 2.51 crashed (SIGSEGV) between 30,000 and 50,000 levels.
    ("deep", '{"inputs":[{"name":"INPUT__0","shape":[1],"datatype":"FP32","data":' + "[" * 100000 + "]" * 100000 + "}]}",
     "deeper than 65 (--max-json-depth)"),
    ("deep unknown field", '{"x":' + "[" * 1000000 + "]" * 1000000 + ',"inputs":[]}', "missing input"),
    ("many inputs", json.dumps({"inputs": [{"name": f"I{i}", "shape": [1], "datatype": "FP32", "data": [0]}
                                           for i in range(70)]}), "more than 64 entries"),
    ("nested parameter", '{"inputs":[],"parameters":{"p":[[1]]}}', "parameter 'p'"),
    ("too many elements", '{"inputs":[{"name":"INPUT__0","shape":[1,2],"datatype":"FP32","data":[1,2,3]}]}',
     "more than the 2 elements"),
    ("fp32 out of range", '{"inputs":[{"name":"INPUT__0","shape":[1,1],"datatype":"FP32","data":[1e39]}]}',
     "not a valid FP32"),
])
def test_http_json_limits(small, case, body, needle):
    status, _, raw = http_request(small.http_url, "POST", "/v2/models/identity_fp32/infer", body,
                                  {"Content-Type": "application/json"})
    assert status == 400, (case, status, raw[:300])
    assert needle in json.loads(raw)["error"], (case, raw[:300])


def test_http_json_floats_print_shortest(server):
    body = {"inputs": [{"name": "INPUT__0", "shape": [1, 3], "datatype": "FP32", "data": [0.1, 1e-8, 3.4e38]}]}
    status, _, raw = http_request(server.http_url, "POST", "/v2/models/identity_fp32/infer", body)
    assert status == 200, raw
    assert b'"data":[0.1,1e-8,3.4e+38]' in raw, raw


# ---------------------------------------------------------------- errors never echo unbounded input


def test_errors_do_not_echo_a_huge_model_name(server):
    """A 16 MiB model name went whole into the gRPC trailer; the client saw RESOURCE_EXHAUSTED."""
    name = "m" * (16 << 20)
    with raw_channel(server) as ch:
        with pytest.raises(grpc.RpcError) as exc:
            raw_infer(ch, field(1, name.encode()))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND, exc.value.code()
    assert len(exc.value.details()) < 1024
    client = server.grpc
    with pytest.raises(InferenceServerException) as exc:
        client.get_model_metadata("n" * (512 << 10))
    assert "NOT_FOUND" in exc.value.status() and len(exc.value.message()) < 1024


# ---------------------------------------------------------------- Triton's answers


def test_stream_errors_carry_the_request_id(server):
    with raw_channel(server) as ch:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
        good = service_pb2.ModelInferRequest(model_name="add_sub", id="good")
        for name in ("INPUT0", "INPUT1"):
            good.inputs.add(name=name, datatype="FP32", shape=[1, 16])
            good.raw_input_contents.append(bytes(64))
        bad = service_pb2.ModelInferRequest(model_name="add_sub", id="bad-1")
        bad.inputs.add(name="NOPE", datatype="FP32", shape=[1, 16])
        bad.raw_input_contents.append(bytes(64))
        unknown = service_pb2.ModelInferRequest(model_name="no_such_model", id="bad-2")
        answers = list(stub.ModelStreamInfer(iter([good, bad, unknown]), timeout=30))
    assert [a.error_message == "" for a in answers] == [True, False, False]
    # As Triton answers: the failed request's id, nothing else.
    assert [a.infer_response.id for a in answers] == ["good", "bad-1", "bad-2"]
    assert answers[2].infer_response.model_name == ""
    assert "NOPE" in answers[1].error_message


def test_unloaded_model_is_not_found(copy_repo, kiln):
    srv = kiln(copy_repo("add_sub", "identity_fp32"), "--model-control-mode", "explicit", "--load-model", "*",
               name="unload")
    a = np.zeros((1, 16), np.float32)
    srv.grpc.infer("add_sub", add_sub_grpc_inputs(a, a))
    srv.grpc.unload_model("add_sub")
    with pytest.raises(InferenceServerException) as exc:
        srv.grpc.infer("add_sub", add_sub_grpc_inputs(a, a))
    assert exc.value.status() == "StatusCode.NOT_FOUND", exc.value
    assert "add_sub" in exc.value.message()
    body = {"inputs": [{"name": n, "shape": [1, 16], "datatype": "FP32", "data": [0.0] * 16} for n in ("INPUT0", "INPUT1")]}
    status, _, raw = http_request(srv.http_url, "POST", "/v2/models/add_sub/infer", body)
    assert status == 404, (status, raw)
    status, _, raw = http_request(srv.http_url, "GET", "/v2/models/add_sub/ready")
    assert status == 400 and json.loads(raw)["error"], (status, raw)
    srv.grpc.load_model("add_sub")
    srv.grpc.infer("add_sub", add_sub_grpc_inputs(a, a))


def test_http_model_ready_errors_have_a_json_body(server):
    status, headers, raw = http_request(server.http_url, "GET", "/v2/models/no_such_model/ready")
    assert status == 400
    assert "no_such_model" in json.loads(raw)["error"], raw
    status, _, raw = http_request(server.http_url, "GET", "/v2/models/add_sub/versions/7/ready")
    assert status == 400 and "version 7" in json.loads(raw)["error"], raw


def test_grpc_deflate_requests_are_accepted(server):
    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    req = service_pb2.ModelInferRequest(model_name="add_sub")
    for name in ("INPUT0", "INPUT1"):
        req.inputs.add(name=name, datatype="FP32", shape=[1, 16])
        req.raw_input_contents.append(a.tobytes())
    with raw_channel(server) as ch:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
        for compression in (grpc.Compression.Deflate, grpc.Compression.Gzip):
            resp = stub.ModelInfer(req, timeout=30, compression=compression)
            out = np.frombuffer(resp.raw_output_contents[0], np.float32)
            np.testing.assert_array_equal(out, (a + a).ravel())


def test_classification_count_is_not_truncated_to_32_bits(server):
    """2^32 + 3 classes asked for: all 16 come back (the count was truncated to 3)."""
    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    out = grpcclient.InferRequestedOutput("OUTPUT0", class_count=2**32 + 3)
    result = server.grpc.infer("add_sub", add_sub_grpc_inputs(a, a), outputs=[out])
    classes = result.as_numpy("OUTPUT0")
    assert classes.shape == (1, 16), classes.shape
    assert classes[0][0].decode().startswith("30.000000:15")


# ---------------------------------------------------------------- shared memory


def make_object(nbytes: int) -> str:
    key = f"/kiln_hard_{uuid.uuid4().hex[:12]}"
    with open("/dev/shm" + key, "wb") as f:
        f.write(bytes(nbytes))
    return key


@pytest.fixture
def objects():
    made = []

    def make(nbytes):
        key = make_object(nbytes)
        made.append(key)
        return key
    yield make
    for key in made:
        for path in ("/dev/shm" + key,):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def test_shared_memory_key_registers_once_and_regions_are_capped(small, objects):
    c = small.grpc
    key = objects(64)
    c.register_system_shared_memory("r0", key, 64)
    try:
        with pytest.raises(InferenceServerException) as exc:
            c.register_system_shared_memory("r0-again", key, 32)
        assert exc.value.status() == "StatusCode.ALREADY_EXISTS", exc.value
        for i in range(1, 8):
            c.register_system_shared_memory(f"r{i}", objects(64), 64)
        with pytest.raises(InferenceServerException) as exc:
            c.register_system_shared_memory("r8", objects(64), 64)
        assert exc.value.status() == "StatusCode.RESOURCE_EXHAUSTED", exc.value
        assert "--shared-memory-max-regions" in exc.value.message()
    finally:
        c.unregister_system_shared_memory()
    assert_healthy(small)


def test_truncated_shared_memory_fails_the_request_not_the_server(server, objects):
    """A client that truncated its object under a registered window killed kiln with SIGBUS."""
    key = objects(128)
    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    with open("/dev/shm" + key, "r+b") as f:
        f.write(a.tobytes() * 2)
    c = server.new_grpc_client()
    c.register_system_shared_memory("trunc_in", key, 128)
    try:
        inputs = []
        for i, name in enumerate(("INPUT0", "INPUT1")):
            inp = grpcclient.InferInput(name, [1, 16], "FP32")
            inp.set_shared_memory("trunc_in", 64, 64 * i)
            inputs.append(inp)
        np.testing.assert_array_equal(c.infer("add_sub", inputs).as_numpy("OUTPUT0"), a + a)
        os.truncate("/dev/shm" + key, 16)
        with pytest.raises(InferenceServerException) as exc:
            c.infer("add_sub", inputs)
        assert exc.value.status() == "StatusCode.INVALID_ARGUMENT", exc.value
        assert "truncated" in exc.value.message()
        out = grpcclient.InferRequestedOutput("OUTPUT0")
        out.set_shared_memory("trunc_in", 64, 64)
        with pytest.raises(InferenceServerException) as exc:
            c.infer("add_sub", add_sub_grpc_inputs(a, a), outputs=[out])
        assert "truncated" in exc.value.message()
        assert os.path.getsize("/dev/shm" + key) == 16, "an output write grew the object"
    finally:
        c.unregister_system_shared_memory("trunc_in")
        c.close()
    assert_healthy(server)


def test_shared_memory_symlinks_are_refused(server, tmp_path):
    """A /dev/shm symlink to an ordinary file, named as an output region, overwrote that file."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious" * 16)
    link = f"/kiln_hard_link_{uuid.uuid4().hex[:8]}"
    os.symlink(victim, "/dev/shm" + link)
    try:
        with pytest.raises(InferenceServerException) as exc:
            server.grpc.register_system_shared_memory("link", link, 64)
        assert "symbolic link" in exc.value.message(), exc.value
        status, _, raw = http_request(server.http_url, "POST", "/v2/systemsharedmemory/region/link/register",
                                      {"key": link, "offset": 0, "byte_size": 64})
        assert status == 400 and "symbolic link" in json.loads(raw)["error"]
    finally:
        os.unlink("/dev/shm" + link)
    assert victim.read_bytes() == b"precious" * 16


def test_restricted_apis_need_their_header(copy_repo, kiln, objects):
    srv = kiln(copy_repo("add_sub"), "--grpc-restricted-protocol", "shared-memory,model-repository:admin-key=s3cret",
               "--http-restricted-api", "shared-memory:admin-key=s3cret", name="restricted")
    key = objects(64)
    # gRPC carries the key as Triton's metadata `triton-grpc-protocol-<key>`.
    admin = {"triton-grpc-protocol-admin-key": "s3cret"}
    with pytest.raises(InferenceServerException) as exc:
        srv.grpc.register_system_shared_memory("r", key, 64)
    assert exc.value.status() == "StatusCode.UNAVAILABLE"
    assert "expecting header 'triton-grpc-protocol-admin-key'" in exc.value.message()
    with pytest.raises(InferenceServerException):
        srv.grpc.register_system_shared_memory("r", key, 64, headers={"triton-grpc-protocol-admin-key": "wrong"})
    with pytest.raises(InferenceServerException):
        srv.grpc.get_model_repository_index()
    srv.grpc.register_system_shared_memory("r", key, 64, headers=admin)
    assert "r" in [r.name for r in srv.grpc.get_system_shared_memory_status(headers=admin).regions.values()]
    status, _, raw = http_request(srv.http_url, "GET", "/v2/systemsharedmemory/status")
    assert status == 403 and "expecting header 'admin-key'" in json.loads(raw)["error"], (status, raw)
    status, _, _ = http_request(srv.http_url, "GET", "/v2/systemsharedmemory/status", headers={"admin-key": "s3cret"})
    assert status == 200
    # Everything else stays open.
    a = np.zeros((1, 16), np.float32)
    srv.grpc.infer("add_sub", add_sub_grpc_inputs(a, a))
    assert srv.grpc.is_server_ready()
    status, _, _ = http_request(srv.http_url, "POST", "/v2/repository/index", {})
    assert status == 200
    srv.grpc.unregister_system_shared_memory(headers=admin)


# ---------------------------------------------------------------- slow, idle and greedy clients


@pytest.fixture(scope="module")
def strict(model_repo, module_kiln, tmp_path_factory):
    from kilnutil import copy_models
    repo = copy_models(model_repo, tmp_path_factory.mktemp("strict-repo"), ["add_sub", "identity_fp32"])
    return module_kiln(repo, "--header-read-timeout-secs", "1", "--idle-timeout-secs", "2", "--write-timeout-secs", "2",
                       "--max-connections", "40", name="strict")


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the peer closes (or resets) the socket within `seconds`."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
            if not data:
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def test_slowloris_heads_are_cut_off(strict):
    socks = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", strict.http_port))
        s.sendall(b"POST /v2/models/add_sub/infer HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    time.sleep(0.5)
    for s in socks:
        s.send(b"X-Slow: 1\r\n")
    assert all(closed_within(s, 5) for s in socks), "a connection that never finished its head stayed open"
    for s in socks:
        s.close()
    assert_healthy(strict)


def test_idle_connections_are_closed(strict):
    http = socket.create_connection(("127.0.0.1", strict.http_port))
    http.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert http.recv(4096).startswith(b"HTTP/1.1 200")
    h2 = socket.create_connection(("127.0.0.1", strict.grpc_port))
    h2.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    t0 = time.monotonic()
    assert closed_within(http, 6), "an idle HTTP keep-alive connection stayed open"
    assert closed_within(h2, 6), "an idle HTTP/2 connection stayed open"
    assert time.monotonic() - t0 > 1.0, "closed before the idle timeout"
    http.close()
    h2.close()


def test_idle_connections_make_room_at_the_cap(strict):
    """Idle sockets up to the connection cap locked every new client out: now the one idle the
    longest is closed to make room."""
    held = [socket.create_connection(("127.0.0.1", strict.http_port)) for _ in range(40)]
    try:
        time.sleep(0.3)
        status, _, _ = http_request(strict.http_url, "GET", "/v2/health/live", timeout=5)
        assert status == 200
        assert sum(closed_within(s, 0.2) for s in held) >= 1, "no idle connection made room"
    finally:
        for s in held:
            s.close()


def test_connection_cap_refuses_with_503_when_every_connection_is_busy(strict):
    busy = []
    try:
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", strict.http_port))
            # A request whose body never finishes: in flight, not evictable.
            s.sendall(b"POST /v2/models/add_sub/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            busy.append(s)
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", strict.http_port))
        extra.settimeout(5)
        reply = extra.recv(4096)
        assert reply.startswith(b"HTTP/1.1 503"), reply
        assert b"too many open connections" in reply
        extra.close()
    finally:
        for s in busy:
            s.close()
    # The slots come back as the connections close.
    time.sleep(0.5)
    assert_healthy(strict)


def test_replies_are_not_held_for_clients_that_never_read(strict):
    """40 HTTP clients that never read their 16 MiB JSON replies pinned 3.3 GiB."""
    n = 4 << 20
    body = json.dumps({"inputs": [{"name": "INPUT__0", "shape": [1, n], "datatype": "FP32", "parameters": {"binary_data_size": 4 * n}}]})
    head = body.encode()
    payload = bytes(4 * n)
    request = (b"POST /v2/models/identity_fp32/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
               b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(head), len(head) + len(payload)))
    socks = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", strict.http_port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(request + head + payload)
        socks.append(s)
    # Never read: the server gives up on each within its write timeout and frees the reply.
    time.sleep(5)
    for s in socks:
        got = 0
        s.settimeout(5)
        try:
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
        except OSError:
            pass
        s.close()
        assert got < 40 * n, f"a client that never read got its whole reply ({got} bytes)"
    assert_healthy(strict)


def test_grpc_connections_age_out(copy_repo, kiln):
    """Triton's --grpc-max-connection-age / -grace: a connection past its age gets a GOAWAY and,
    after the grace, is closed, so clients spread over replicas again."""
    srv = kiln(copy_repo("add_sub"), "--grpc-max-connection-age", "1000", "--grpc-max-connection-age-grace", "1000",
               name="age")
    h2 = socket.create_connection(("127.0.0.1", srv.grpc_port))
    h2.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    t0 = time.monotonic()
    assert closed_within(h2, 6), "a connection past its maximum age stayed open"
    assert time.monotonic() - t0 > 0.8, "closed before its age"
    h2.close()
    # New connections keep working.
    a = np.zeros((1, 16), np.float32)
    srv.grpc.infer("add_sub", add_sub_grpc_inputs(a, a))


# ---------------------------------------------------------------- shutdown


def test_shutdown_does_not_wait_for_idle_streams_and_heads(copy_repo, kiln):
    """An idle ModelStreamInfer stream or an unfinished request head held shutdown for the
    whole grace period (20 s)."""
    srv = kiln(copy_repo("add_sub"), name="idle-streams")
    client = srv.new_grpc_client()
    client.start_stream(callback=lambda result, error: None)
    head = socket.create_connection(("127.0.0.1", srv.http_port))
    head.sendall(b"POST /v2/models/add_sub/infer HTTP/1.1\r\nHost: x\r\n")
    keep = socket.create_connection(("127.0.0.1", srv.http_port))
    keep.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    keep.recv(4096)
    time.sleep(0.3)
    t0 = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    rc = srv.wait_exit(30)
    took = time.monotonic() - t0
    client.stop_stream()
    head.close()
    keep.close()
    assert rc == 0
    assert took < 5, f"shutdown took {took:.1f} s with only idle connections"


def test_exit_timeout_bounds_the_drain_and_a_second_signal_exits_now(copy_repo, kiln):
    srv = kiln(copy_repo("add_sub"), "--exit-timeout-secs", "3", name="exit-timeout")
    # A request whose body never finishes is in flight forever.
    stuck = socket.create_connection(("127.0.0.1", srv.http_port))
    stuck.sendall(b"POST /v2/models/add_sub/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
    time.sleep(0.3)
    t0 = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    rc = srv.wait_exit(30)
    took = time.monotonic() - t0
    # A drain the timeout cut short exits 1, as Triton's does.
    assert rc == 1 and 2.5 < took < 12, (rc, took)
    assert "exiting anyway" in srv.log()
    stuck.close()

    srv = kiln(copy_repo("add_sub"), "--exit-timeout-secs", "60", name="second-signal")
    stuck = socket.create_connection(("127.0.0.1", srv.http_port))
    stuck.sendall(b"POST /v2/models/add_sub/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
    time.sleep(0.3)
    srv.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    t0 = time.monotonic()
    srv.send_signal(signal.SIGINT)
    rc = srv.wait_exit(10)
    assert time.monotonic() - t0 < 3
    assert rc != 0
    stuck.close()


# ---------------------------------------------------------------- libtorch threads


def test_libtorch_thread_counts_are_model_parameters(copy_repo, kiln):
    repo = copy_repo("add_sub", "identity_fp32")
    cfg = repo / "add_sub" / "config.pbtxt"
    cfg.write_text(cfg.read_text() + '\nparameters { key: "INTRA_OP_THREAD_COUNT" value: { string_value: "2" } }\n')
    cfg = repo / "identity_fp32" / "config.pbtxt"
    cfg.write_text(cfg.read_text() + '\nparameters { key: "INTRA_OP_THREAD_COUNT" value: { string_value: "zero" } }\n')
    srv = kiln(repo, name="threads")
    a = np.ones((1, 16), np.float32)
    np.testing.assert_array_equal(srv.grpc.infer("add_sub", add_sub_grpc_inputs(a, a)).as_numpy("OUTPUT0"), a + a)
    index = {m["name"]: m for m in srv.grpc.get_model_repository_index(as_json=True)["models"]}
    assert index["identity_fp32"]["state"] == "UNAVAILABLE"
    assert "INTRA_OP_THREAD_COUNT" in index["identity_fp32"]["reason"]
