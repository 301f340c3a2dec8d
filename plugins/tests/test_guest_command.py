"""Command protocol 1 (sdk/ABI.md) end to end through the Go SDK (sdk/go) and its example,
target/plugins/normalize_go.wasm, without kiln: the protocol's framing, BYTES inputs,
request parameters, errors and malformed requests. Each test runs twice: the .wasm in
wasmtime (pip install wasmtime==50.0.1; skipped without it), and the same Go program built
for this machine and fed the same bytes on stdin (skipped without Go >= 1.23; plugins/go/build.sh
installs it). Requests are framed by sdk/tools/command_protocol.py, written from the spec.

    python3 -m pytest plugins/tests/test_guest_command.py -q
"""

import math
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk" / "tools"))
from command_protocol import METADATA, PROCESS, decode_response, encode_request  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WASM = ROOT / "target" / "plugins" / "normalize_go.wasm"


def _go():
    for g in (os.environ.get("GO"), shutil.which("go"), "/usr/lib/go-1.23/bin/go"):
        if g and os.access(g, os.X_OK):
            v = subprocess.run([g, "env", "GOVERSION"], capture_output=True, text=True,
                               env={**os.environ, "GOTOOLCHAIN": "local"}).stdout.strip()
            m = re.match(r"go1\.(\d+)", v)
            if m and int(m.group(1)) >= 23:
                return g
    return None


@pytest.fixture(scope="module")
def wasm_runner():
    if not WASM.exists():
        pytest.skip(f"{WASM} not built (plugins/go/build.sh)")
    tgp = pytest.importorskip("test_guest_plugins")  # skips without wasmtime
    config = tgp.wasmtime.Config()
    config.epoch_interruption = True  # deadlines armed but never reached: no ticker
    plugin = tgp.CommandPlugin(tgp.wasmtime.Engine(config), "normalize_go")

    def run(request):
        status = plugin.run(request)
        return status, plugin.stdout, plugin.stderr

    return run


@pytest.fixture(scope="module")
def native_runner(tmp_path_factory):
    go = _go()
    if not go:
        pytest.skip("no Go >= 1.23 (plugins/go/build.sh installs it)")
    binary = tmp_path_factory.mktemp("go") / "normalize"
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOPROXY": "off", "GOWORK": "off", "GOFLAGS": "-mod=readonly",
           "GOCACHE": str(ROOT / "target" / "go-cache"), "GOMODCACHE": str(ROOT / "target" / "go-mod"),
           "CGO_ENABLED": "0"}
    subprocess.run([go, "build", "-trimpath", "-o", str(binary), "."], cwd=ROOT / "plugins" / "go" / "normalize",
                   env=env, check=True)

    def run(request):
        proc = subprocess.run([str(binary)], input=request, capture_output=True, env={}, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    return run


@pytest.fixture(params=["wasm", "native"])
def run(request):
    return request.getfixturevalue(f"{request.param}_runner")


def call(run, kind, config=None, inputs=(), parameters=()):
    status, out, err = run(encode_request(kind, config, inputs, parameters))
    assert status == 0, (status, err)
    return decode_response(out, kind)


def f32(x):
    """x rounded to binary32 (to +-inf past its range)."""
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def fp32(name, values, shape):
    return SimpleNamespace(name=name, datatype="fp32", shape=shape, data=struct.pack(f"<{len(values)}f", *values),
                           elements=[])


def test_metadata(run):
    meta = call(run, METADATA, {"mean": "1", "wasm_timeout_ms": "500"})
    assert (meta.name, meta.version) == ("normalize-go", "1.0.0")
    assert [(t.name, t.datatype, t.dims) for t in meta.inputs] == [("INPUT", "fp32", [-1])]
    assert [(t.name, t.datatype, t.dims) for t in meta.outputs] == [("OUTPUT", "fp32", [-1])]


@pytest.mark.parametrize("shape", [[1, 1], [3, 5], [2, 0], [2, 3, 4], [8, 1000]])
def test_values_are_binary32_exact(run, shape):
    n = 1
    for d in shape:
        n *= d
    values = [f32((i * 7919 % 2001 - 1000) / 37.0) for i in range(n)]
    values[:4] = [float("inf"), -0.0, 3.4e38, 1e-45][:n]
    (out,) = call(run, PROCESS, {"mean": "1.5", "std": "-0.3"}, [fp32("INPUT", values, shape)])
    assert (out.name, out.datatype, out.shape, out.elements) == ("OUTPUT", "fp32", shape, [])
    got = struct.unpack(f"<{n}f", out.data)
    m, s = f32(1.5), f32(-0.3)
    # Each binary32 operation is correctly rounded from binary64 (53 >= 2 * 24 + 2).
    assert list(got) == [f32(f32(x - m) / s) for x in values]


def test_nan_stays_nan(run):
    (out,) = call(run, PROCESS, {}, [fp32("INPUT", [float("nan"), 1], [2])])
    x, y = struct.unpack("<2f", out.data)
    assert x != x and y == 1


def test_bytes_inputs_and_request_parameters_decode(run):
    strings = SimpleNamespace(name="EXTRA", datatype="bytes", shape=[2, 2], data=b"",
                              elements=[b"", b"\xff\x00", "h\u00e9".encode(), b"x" * 300])
    params = [("flag", True), ("n", -(2**63)), ("d", 0.1), ("text", "h\u00e9llo"), ("empty", "")]
    (out,) = call(run, PROCESS, {"std": "2"}, [strings, fp32("INPUT", [4, 8], [1, 2])], params)
    assert struct.unpack("<2f", out.data) == (2, 4)


@pytest.mark.parametrize("config,inputs,kind,message", [
    ({"std": "0"}, [fp32("INPUT", [1], [1])], "invalid-argument", "config parameter 'std' must not be 0"),
    ({"mean": "x"}, [fp32("INPUT", [1], [1])], "invalid-argument",
     "config parameter 'mean' must be a finite number, got 'x'"),
    ({}, [fp32("OTHER", [1], [1])], "invalid-argument", "missing input tensor 'INPUT' (the request has: OTHER)"),
    ({}, [], "invalid-argument", "missing input tensor 'INPUT' (the request has: none)"),
    ({}, [SimpleNamespace(name="INPUT", datatype="int64", shape=[1], data=bytes(8), elements=[])],
     "invalid-argument", "tensor 'INPUT' is INT64, expected FP32"),
])
def test_errors(run, config, inputs, kind, message):
    err = call(run, PROCESS, config, inputs)
    assert (err.kind, err.message) == (kind, message)


@pytest.mark.parametrize("request_bytes,words", [
    (b"", "request truncated at byte 0"),
    (b"KLNR\x01\x00\x00\x00\x00", "not a kiln command request"),
    (b"KLNQ\x02\x00\x00\x00\x00", "unsupported command protocol version 2"),
    (b"KLNQ\x01\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "unknown call 7"),
    (encode_request(PROCESS)[:-1], "request truncated"),
    (encode_request(METADATA) + b"\n", "data after the end of the request (at byte 21)"),
])
def test_malformed_requests_exit_1_with_the_reason_on_stderr(run, request_bytes, words):
    status, out, err = run(request_bytes)
    assert status == 1 and out == b"", (status, out, err)
    assert err.decode().startswith("kiln plugin: ") and words in err.decode(), err


def test_wasm_and_native_answer_the_same_bytes(wasm_runner, native_runner):
    for request in [encode_request(METADATA),
                    encode_request(PROCESS, {"mean": "0.25"}, [fp32("INPUT", [1, 2, 3, 4.5], [2, 2])]),
                    encode_request(PROCESS, {"std": "0"}, [fp32("INPUT", [1], [1])])]:
        assert wasm_runner(request) == native_runner(request)
