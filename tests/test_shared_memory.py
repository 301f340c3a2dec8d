"""Triton's system shared memory extension, over gRPC and HTTP, with tritonclient's own helpers.

A test creates POSIX shared memory objects (tritonclient.utils.shared_memory, i.e. /dev/shm),
registers windows of them with kiln and names those regions in place of tensor bytes. The
`regions` fixture gives every object a unique key and, at teardown, unregisters what the test
registered and unlinks the objects, whatever happened. Expected messages are the ones the real
Triton (2.51) answers to the same calls.
"""
from __future__ import annotations

import json
import os
import uuid

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from kilnutil import http_json, http_request

RNG = np.random.default_rng(2468)
MODEL = "add_sub"  # FP32 INPUT0, INPUT1 [-1, 16] -> OUTPUT0 = a + b, OUTPUT1 = a - b
ROW = 16 * 4  # bytes of one [1, 16] FP32 tensor

# expected error status per protocol: tritonclient's gRPC status string, the HTTP status code
CODES = {
    "not_found": {"grpc": "StatusCode.NOT_FOUND", "http": "404"},
    "invalid": {"grpc": "StatusCode.INVALID_ARGUMENT", "http": "400"},
}


def rand_f32(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def nan_f32(*shape) -> np.ndarray:
    return np.full(shape, np.nan, dtype=np.float32)


def shm_path(key: str) -> str:
    return "/dev/shm/" + key.lstrip("/")


class Api:
    """One protocol's client and tensor classes, with the status answer normalised to
    {name: {"name", "key", "offset", "byte_size"}}."""

    def __init__(self, kind: str, server):
        self.kind = kind
        self.server = server
        self.client = server.grpc if kind == "grpc" else server.http
        self.mod = grpcclient if kind == "grpc" else httpclient

    def __repr__(self):
        return self.kind

    def status(self, name: str = "", headers=None) -> dict[str, dict]:
        resp = self.client.get_system_shared_memory_status(name, headers=headers)
        if self.kind == "grpc":
            out = {}
            for key, r in resp.regions.items():
                assert key == r.name, f"status map key {key!r} != region name {r.name!r}"
                out[key] = {"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
            return out
        assert isinstance(resp, list), resp
        out = {r["name"]: {k: r.get(k) for k in ("name", "key", "offset", "byte_size")} for r in resp}
        assert len(out) == len(resp), f"a region is listed twice: {resp}"
        return out

    def register(self, name, key, byte_size, offset=0, headers=None):
        self.client.register_system_shared_memory(name, key, byte_size, offset, headers=headers)

    def unregister(self, name="", headers=None):
        self.client.unregister_system_shared_memory(name, headers=headers)

    # -- tensors -----------------------------------------------------------------------
    def shm_input(self, name, shape, region, byte_size, offset=0):
        inp = self.mod.InferInput(name, list(shape), "FP32")
        inp.set_shared_memory(region, byte_size, offset)
        return inp

    def data_input(self, name, arr):
        inp = self.mod.InferInput(name, list(arr.shape), "FP32")
        inp.set_data_from_numpy(arr)
        return inp

    def shm_output(self, name, region, byte_size, offset=0):
        out = self.mod.InferRequestedOutput(name)
        out.set_shared_memory(region, byte_size, offset)
        return out

    def output(self, name):
        return self.mod.InferRequestedOutput(name)

    def infer(self, inputs, outputs, headers=None):
        return self.client.infer(MODEL, inputs, outputs=outputs, headers=headers)

    def expect_error(self, code: str, fn, *args, **kwargs) -> str:
        """Call fn, require an InferenceServerException with `code`; return its message."""
        with pytest.raises(InferenceServerException) as exc:
            fn(*args, **kwargs)
        status, msg = exc.value.status(), exc.value.message()
        assert status == CODES[code][self.kind], f"{self.kind}: expected {code}, got {status}: {msg}"
        assert msg, "empty error message"
        return msg

    def assert_not_in_shm(self, result, name: str):
        """The response carries `name` without data (its bytes went to shared memory)."""
        resp = result.get_response()
        if self.kind == "grpc":
            names = [o.name for o in resp.outputs]
            assert name in names, names
            raw = list(resp.raw_output_contents)
            # raw_output_contents is either empty or parallel to outputs
            if raw:
                assert len(raw) == len(names), (len(raw), names)
                assert raw[names.index(name)] == b"", f"{name} was in shared memory, yet also sent back"
        else:
            [out] = [o for o in resp["outputs"] if o["name"] == name]
            assert "data" not in out, out
            assert not out.get("parameters", {}).get("binary_data_size"), out


@pytest.fixture(params=["grpc", "http"])
def api(request, server) -> Api:
    return Api(request.param, server)


class Regions:
    """Shared memory objects with unique keys, and the regions registered from them."""

    def __init__(self, server):
        self.server = server
        self.handles: list = []
        self.registered: list[tuple[str, dict | None]] = []

    def create(self, byte_size: int, *arrays_at: tuple[int, np.ndarray]):
        """A fresh object of byte_size bytes, NaN-poisoned, then each (offset, array) written."""
        key = f"/kiln_test_{uuid.uuid4().hex[:16]}"
        h = shm.create_shared_memory_region(key, key, byte_size, create_only=True)
        self.handles.append(h)
        assert os.path.getsize(shm_path(key)) == byte_size
        assert byte_size % 4 == 0
        self.write(h, 0, nan_f32(byte_size // 4))
        for offset, arr in arrays_at:
            self.write(h, offset, arr)
        return h

    @staticmethod
    def key(h) -> str:
        return h._shm_key

    @staticmethod
    def write(h, offset: int, arr: np.ndarray):
        shm.set_shared_memory_region(h, [np.ascontiguousarray(arr, dtype=np.float32)], offset=offset)

    @staticmethod
    def read(h, offset: int, *shape) -> np.ndarray:
        return np.array(shm.get_contents_as_numpy(h, np.float32, list(shape), offset=offset), copy=True)

    def register(self, api: Api, name: str, h, byte_size: int, offset: int = 0, headers=None):
        self.registered.append((name, headers))
        api.register(name, self.key(h), byte_size, offset, headers=headers)

    def close(self):
        for name, headers in self.registered:
            try:  # unknown names succeed; a failure here must not stop the unlinking below
                self.server.grpc.unregister_system_shared_memory(name, headers=headers)
            except Exception:  # noqa: BLE001
                pass
        for h in self.handles:
            key = self.key(h)
            try:
                shm.destroy_shared_memory_region(h)
            except Exception:  # noqa: BLE001 - e.g. a view still exported; unlink anyway
                shm._key_mapping.pop(key, None)
            try:
                os.unlink(shm_path(key))
            except FileNotFoundError:
                pass


@pytest.fixture
def regions(server):
    r = Regions(server)
    try:
        yield r
    finally:
        r.close()


def add_sub_in_shm(api: Api, regions: Regions, a=None, b=None):
    """Region 'in' (128 bytes: INPUT0 at 0, INPUT1 at 64) and 'out' (64 bytes, NaN)."""
    a = rand_f32(1, 16) if a is None else a
    b = rand_f32(1, 16) if b is None else b
    h_in = regions.create(2 * ROW, (0, a), (ROW, b))
    h_out = regions.create(ROW)
    regions.register(api, "in", h_in, 2 * ROW)
    regions.register(api, "out", h_out, ROW)
    return a, b, h_in, h_out


def shm_request(api: Api, in_region="in", out_region="out"):
    inputs = [api.shm_input("INPUT0", [1, 16], in_region, ROW, 0),
              api.shm_input("INPUT1", [1, 16], in_region, ROW, ROW)]
    outputs = [api.shm_output("OUTPUT0", out_region, ROW), api.output("OUTPUT1")]
    return inputs, outputs


def check_shm_infer(api: Api, regions: Regions, h_out, a, b, in_region="in", out_region="out"):
    """One inference with both inputs in `in_region` and OUTPUT0 into `out_region` (poisoned
    first); checks OUTPUT0 there and OUTPUT1 in the response."""
    regions.write(h_out, 0, nan_f32(1, 16))
    result = api.infer(*shm_request(api, in_region, out_region))
    np.testing.assert_array_equal(regions.read(h_out, 0, 1, 16), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    api.assert_not_in_shm(result, "OUTPUT0")
    return result


# ---------------------------------------------------------------- register, status, unregister


def test_register_status_unregister(api, regions):
    h1 = regions.create(128)
    h2 = regions.create(256)
    regions.register(api, "r1", h1, 128)
    regions.register(api, "r2", h2, 64, offset=128)

    status = api.status()
    assert status.get("r1") == {"name": "r1", "key": regions.key(h1), "offset": 0, "byte_size": 128}, status
    assert status.get("r2") == {"name": "r2", "key": regions.key(h2), "offset": 128, "byte_size": 64}, status
    assert api.status("r2") == {"r2": status["r2"]}

    api.unregister("r1")
    status = api.status()
    assert "r1" not in status, status
    assert status.get("r2", {}).get("key") == regions.key(h2), status
    msg = api.expect_error("not_found", api.status, "r1")
    assert "'r1'" in msg, msg

    api.unregister("r2")
    assert "r2" not in api.status()


def test_status_of_unknown_region(api):
    msg = api.expect_error("not_found", api.status, "nope")
    assert "Unable to find system shared memory region: 'nope'" in msg, msg


def test_register_name_twice(api, regions):
    h1 = regions.create(128)
    h2 = regions.create(64)
    regions.register(api, "in", h1, 128)
    with pytest.raises(InferenceServerException) as exc:
        api.register("in", regions.key(h2), 64)
    status, msg = exc.value.status(), exc.value.message()
    if api.kind == "grpc":
        assert status == "StatusCode.ALREADY_EXISTS", f"{status}: {msg}"
    else:
        assert 400 <= int(status) < 500, f"{status}: {msg}"
    assert "already" in msg and "'in'" in msg, msg
    # the first registration stands
    assert api.status("in")["in"] == {"name": "in", "key": regions.key(h1), "offset": 0, "byte_size": 128}


def test_unregister_unknown_and_all(api, regions):
    api.unregister("never_registered")  # succeeds, as in Triton
    for i in range(3):
        regions.register(api, f"r{i}", regions.create(64), 64)
    assert {"r0", "r1", "r2"} <= set(api.status())
    api.unregister()  # no name: all of them
    assert api.status() == {}
    # names are free again
    regions.register(api, "r0", regions.create(64), 64)
    assert set(api.status()) == {"r0"}


def test_register_missing_key(api, regions):
    key = f"/kiln_test_missing_{uuid.uuid4().hex[:12]}"
    assert not os.path.exists(shm_path(key))
    regions.registered.append(("ghost", None))  # unregistered at teardown should it appear
    with pytest.raises(InferenceServerException) as exc:
        api.register("ghost", key, 64)
    assert key in exc.value.message(), f"{exc.value.status()}: {exc.value.message()}"
    assert "ghost" not in api.status()
    assert not os.path.exists(shm_path(key)), "registering must not create the object"


@pytest.mark.parametrize("offset,byte_size", [(0, 256), (64, 128), (128, 1)], ids=["size", "offset+size", "offset"])
def test_register_past_end_of_object(api, regions, offset, byte_size):
    h = regions.create(128)
    regions.registered.append(("big", None))
    msg = api.expect_error("invalid", api.register, "big", regions.key(h), byte_size, offset)
    assert "'big'" in msg, msg
    assert "big" not in api.status()
    # the whole object is fine
    regions.register(api, "big", h, 128)
    assert api.status("big")["big"]["byte_size"] == 128


def test_register_http_body_errors(server, regions):
    """Malformed register bodies are the client's fault (400), not the server's. The key names
    a real object, so only the body is wrong."""
    key = regions.key(regions.create(64))
    regions.registered.append(("bad", None))
    for body in ({}, {"key": key, "offset": 0}, {"offset": 0, "byte_size": 64}, {"key": 7, "offset": 0, "byte_size": 64},
                 {"key": key, "offset": 0, "byte_size": -1}):
        status, resp = http_json(server.http_url, "POST", "/v2/systemsharedmemory/region/bad/register", body)
        assert status == 400, (body, status, resp)
        assert isinstance(resp, dict) and resp.get("error"), (body, resp)
    status, resp = http_json(server.http_url, "POST", "/v2/systemsharedmemory/region/bad/register", "not json",
                             {"Content-Type": "application/json"})
    assert status == 400, (status, resp)
    assert "bad" not in Api("grpc", server).status()


def test_registry_shared_between_protocols(server, regions):
    """A region registered over gRPC is listed and usable over HTTP, and the other way round."""
    grpc_api, http_api = Api("grpc", server), Api("http", server)
    a, b = rand_f32(1, 16), rand_f32(1, 16)
    h_in = regions.create(2 * ROW, (0, a), (ROW, b))
    h_out = regions.create(ROW)
    regions.register(grpc_api, "in", h_in, 2 * ROW)
    regions.register(http_api, "out", h_out, ROW)
    assert {"in", "out"} <= set(grpc_api.status())
    assert grpc_api.status() == http_api.status()
    check_shm_infer(http_api, regions, h_out, a, b)
    check_shm_infer(grpc_api, regions, h_out, a, b)
    http_api.unregister("in")
    assert "in" not in grpc_api.status()


def test_tenants_see_only_their_regions(api, regions):
    """kiln keeps regions per caller (the kiln-tenant header); anonymous callers share one set."""
    alice, bob = {"kiln-tenant": "alice"}, {"kiln-tenant": "bob"}
    a, b = rand_f32(1, 16), rand_f32(1, 16)
    h_in = regions.create(2 * ROW, (0, a), (ROW, b))
    h_out = regions.create(ROW)
    regions.register(api, "t_in", h_in, 2 * ROW, headers=alice)
    regions.register(api, "t_out", h_out, ROW, headers=alice)
    assert {"t_in", "t_out"} <= set(api.status(headers=alice))
    assert "t_in" not in api.status()
    assert "t_in" not in api.status(headers=bob)
    api.expect_error("not_found", api.status, "t_in", headers=bob)

    inputs, outputs = shm_request(api, "t_in", "t_out")
    msg = api.expect_error("not_found", api.infer, inputs, outputs, headers=bob)
    assert "'t_in'" in msg or "'t_out'" in msg, msg
    api.unregister(headers=bob)  # bob's "all" is not alice's
    api.unregister("t_in", headers=bob)
    assert {"t_in", "t_out"} <= set(api.status(headers=alice))

    result = api.infer(*shm_request(api, "t_in", "t_out"), headers=alice)
    np.testing.assert_array_equal(regions.read(h_out, 0, 1, 16), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


# ---------------------------------------------------------------- inference


def test_infer_inputs_and_output_in_shm(api, regions):
    a, b, _, h_out = add_sub_in_shm(api, regions)
    check_shm_infer(api, regions, h_out, a, b)


def test_infer_output_offsets_and_batch(api, regions):
    """Batch 2; OUTPUT1 at offset 0 and OUTPUT0 at offset 192 of one region, a gap between and
    room after that must stay untouched; an output byte_size larger than the result is fine."""
    a, b = rand_f32(2, 16), rand_f32(2, 16)
    two = 2 * ROW
    h_in = regions.create(2 * two, (0, a), (two, b))
    h_out = regions.create(448)  # [0,128) OUTPUT1, [128,192) gap, [192,320) OUTPUT0, [320,448) spare
    regions.register(api, "in", h_in, 2 * two)
    regions.register(api, "out", h_out, 448)
    inputs = [api.shm_input("INPUT0", [2, 16], "in", two, 0), api.shm_input("INPUT1", [2, 16], "in", two, two)]
    outputs = [api.shm_output("OUTPUT0", "out", 256, 192), api.shm_output("OUTPUT1", "out", two, 0)]
    result = api.infer(inputs, outputs)
    np.testing.assert_array_equal(regions.read(h_out, 0, 2, 16), a - b)
    np.testing.assert_array_equal(regions.read(h_out, 192, 2, 16), a + b)
    assert np.isnan(regions.read(h_out, 128, 16)).all(), "bytes between the outputs were written"
    assert np.isnan(regions.read(h_out, 320, 32)).all(), "bytes past OUTPUT0's result were written"
    api.assert_not_in_shm(result, "OUTPUT0")
    api.assert_not_in_shm(result, "OUTPUT1")


def test_infer_shm_input_with_inline_input(api, regions):
    """INPUT0 from shared memory at a registered offset into the object, INPUT1 inline."""
    a, b = rand_f32(1, 16), rand_f32(1, 16)
    h = regions.create(3 * ROW, (2 * ROW, a))
    regions.register(api, "in", h, 2 * ROW, offset=ROW)  # region = object bytes [64, 192)
    inputs = [api.shm_input("INPUT0", [1, 16], "in", ROW, ROW), api.data_input("INPUT1", b)]
    result = api.infer(inputs, [api.output("OUTPUT0"), api.output("OUTPUT1")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_region_reread_per_request(api, regions):
    a, b, h_in, h_out = add_sub_in_shm(api, regions)
    check_shm_infer(api, regions, h_out, a, b)
    c, d = rand_f32(1, 16), rand_f32(1, 16)
    regions.write(h_in, 0, c)
    regions.write(h_in, ROW, d)
    check_shm_infer(api, regions, h_out, c, d)


def test_unregister_one_keeps_others(api, regions):
    a, b, c, d = (rand_f32(1, 16) for _ in range(4))
    h_a = regions.create(2 * ROW, (0, a), (ROW, b))
    h_c = regions.create(2 * ROW, (0, c), (ROW, d))
    h_out = regions.create(ROW)
    regions.register(api, "in_a", h_a, 2 * ROW)
    regions.register(api, "in_c", h_c, 2 * ROW)
    regions.register(api, "out", h_out, ROW)
    check_shm_infer(api, regions, h_out, a, b, in_region="in_a")
    api.unregister("in_a")
    status = api.status()
    assert "in_a" not in status and {"in_c", "out"} <= set(status), status
    assert status["in_c"]["key"] == regions.key(h_c)
    check_shm_infer(api, regions, h_out, c, d, in_region="in_c")
    inputs, outputs = shm_request(api, "in_a")
    msg = api.expect_error("not_found", api.infer, inputs, outputs)
    assert "Unable to find shared memory region: 'in_a'" in msg, msg


def test_infer_after_unregister(api, regions):
    a, b, h_in, h_out = add_sub_in_shm(api, regions)
    check_shm_infer(api, regions, h_out, a, b)
    api.unregister("in")
    regions.write(h_out, 0, nan_f32(1, 16))
    msg = api.expect_error("not_found", api.infer, *shm_request(api))
    assert "Unable to find shared memory region: 'in'" in msg, msg
    assert np.isnan(regions.read(h_out, 0, 16)).all(), "a failed request wrote its output"
    # registering the name again brings it back
    regions.register(api, "in", h_in, 2 * ROW)
    check_shm_infer(api, regions, h_out, a, b)


# (tensor, region, byte_size, offset) replacing the good reference; expected code; message parts
BAD_REFERENCES = {
    "unknown_input_region": (("INPUT0", "nope", ROW, 0), "not_found", ["Unable to find shared memory region: 'nope'"]),
    "unknown_output_region": (("OUTPUT0", "nope", ROW, 0), "not_found", ["Unable to find shared memory region: 'nope'"]),
    "input_past_end": (("INPUT1", "in", ROW, 96), "invalid", ["Invalid offset + byte size for shared memory region: 'in'"]),
    "output_past_end": (("OUTPUT0", "out", ROW, 32), "invalid", ["Invalid offset + byte size for shared memory region: 'out'"]),
    "input_byte_size_small": (("INPUT0", "in", 32, 0), "invalid", ["byte size", "'INPUT0'", "64", "32"]),
    "input_byte_size_large": (("INPUT0", "in", 2 * ROW, 0), "invalid", ["byte size", "'INPUT0'", "64", "128"]),
    "output_region_too_small": (("OUTPUT0", "small", 32, 0), "invalid", ["'OUTPUT0'"]),
}


@pytest.mark.parametrize("case", list(BAD_REFERENCES))
def test_bad_reference(api, regions, case):
    (tensor, region, byte_size, offset), code, parts = BAD_REFERENCES[case]
    a, b, _, h_out = add_sub_in_shm(api, regions)
    h_small = regions.create(32)
    regions.register(api, "small", h_small, 32)
    inputs, outputs = shm_request(api)
    if tensor.startswith("INPUT"):
        inputs[int(tensor[-1])] = api.shm_input(tensor, [1, 16], region, byte_size, offset)
    else:
        outputs[0] = api.shm_output(tensor, region, byte_size, offset)
    msg = api.expect_error(code, api.infer, inputs, outputs)
    for part in parts:
        assert part.lower() in msg.lower(), f"{part!r} not in {msg!r}"
    assert np.isnan(regions.read(h_out, 0, 16)).all(), "a failed request wrote its output"
    assert np.isnan(regions.read(h_small, 0, 8)).all(), "a failed request wrote into 'small'"
    # the server and the regions still work
    check_shm_infer(api, regions, h_out, a, b)


def test_stream_infer_with_shm_tensors(server, regions):
    """ModelStreamInfer resolves regions like ModelInfer: each streamed request reads its inputs
    from the region as it is then and writes its output region; a bad region fails only its own
    answer (in-band) and the stream goes on."""
    import queue

    api = Api("grpc", server)
    h_in = regions.create(2 * ROW)
    h_out = regions.create(ROW)
    regions.register(api, "in", h_in, 2 * ROW)
    regions.register(api, "out", h_out, ROW)
    answers: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for _ in range(3):
            a, b = rand_f32(1, 16), rand_f32(1, 16)
            regions.write(h_in, 0, a)
            regions.write(h_in, ROW, b)
            regions.write(h_out, 0, nan_f32(1, 16))
            inputs, outputs = shm_request(api)
            client.async_stream_infer(MODEL, inputs, outputs=outputs)
            result, error = answers.get(timeout=30)
            assert error is None, error
            np.testing.assert_array_equal(regions.read(h_out, 0, 1, 16), a + b)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
        inputs, outputs = shm_request(api, in_region="nope")
        client.async_stream_infer(MODEL, inputs, outputs=outputs)
        result, error = answers.get(timeout=30)
        assert result is None and "Unable to find shared memory region: 'nope'" in str(error), error
        inputs, outputs = shm_request(api)
        client.async_stream_infer(MODEL, inputs, outputs=outputs)
        result, error = answers.get(timeout=30)
        assert error is None, error
    finally:
        client.stop_stream()
        client.close()


# Malformed shared_memory_* parameters, sent raw (tritonclient always sends well-typed ones):
# (the INPUT0 parameters, whether INPUT0 also carries data, the words the message must contain)
MALFORMED = {
    "region_not_a_string": ({"shared_memory_region": 7, "shared_memory_byte_size": ROW},
                            False, ["'INPUT0'", "'shared_memory_region' must be a string"]),
    "byte_size_negative": ({"shared_memory_region": "in", "shared_memory_byte_size": -1},
                           False, ["'INPUT0'", "'shared_memory_byte_size' must be a non-negative integer"]),
    "offset_not_a_number": ({"shared_memory_region": "in", "shared_memory_byte_size": ROW,
                             "shared_memory_offset": "zero"},
                            False, ["'INPUT0'", "'shared_memory_offset' must be a non-negative integer"]),
    "byte_size_missing": ({"shared_memory_region": "in"},
                          False, ["'INPUT0'", "'shared_memory_byte_size' is required"]),
    "region_missing": ({"shared_memory_byte_size": ROW},
                       False, ["'INPUT0'", "'shared_memory_region' is required"]),
    "region_and_data": ({"shared_memory_region": "in", "shared_memory_byte_size": ROW},
                        True, ["'INPUT0'", "shared memory region and also carries"]),
}


def _grpc_parameter(p, value):
    if isinstance(value, str):
        p.string_param = value
    else:
        p.int64_param = value


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("kind", ["grpc", "http"])
def test_malformed_shared_memory_parameters_are_invalid_argument(server, regions, kind, case):
    params, with_data, parts = MALFORMED[case]
    api = Api(kind, server)
    a, b, _, h_out = add_sub_in_shm(api, regions)
    data = rand_f32(1, 16)
    input1 = {"shared_memory_region": "in", "shared_memory_byte_size": ROW, "shared_memory_offset": ROW}
    if kind == "grpc":
        req = service_pb2.ModelInferRequest(model_name=MODEL)
        for name, p in (("INPUT0", params), ("INPUT1", input1)):
            t = req.inputs.add(name=name, datatype="FP32", shape=[1, 16])
            for key, value in p.items():
                _grpc_parameter(t.parameters[key], value)
        if with_data:
            req.inputs[0].contents.fp32_contents.extend(data.ravel().tolist())
        with grpc.insecure_channel(server.grpc_url) as channel:
            with pytest.raises(grpc.RpcError) as exc:
                service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.value
        msg = exc.value.details()
    else:
        inputs = [{"name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "parameters": params},
                  {"name": "INPUT1", "shape": [1, 16], "datatype": "FP32", "parameters": input1}]
        if with_data:
            inputs[0]["data"] = data.ravel().tolist()
        status, _, raw = http_request(server.http_url, "POST", f"/v2/models/{MODEL}/infer", {"inputs": inputs})
        assert status == 400, (status, raw[:300])
        msg = json.loads(raw)["error"]
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    # the server and the regions still work
    check_shm_infer(api, regions, h_out, a, b)
