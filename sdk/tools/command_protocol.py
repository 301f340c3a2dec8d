"""kiln's side of Command protocol 1 (sdk/ABI.md, "Command protocol 1"), in plain Python:
frames a call for a command module's stdin and decodes the answer on its stdout. Written
from the spec, independently of the Go SDK (sdk/go) and of kiln (host/src/backend/wasm/wire.rs).

Tensors are SimpleNamespace(name, datatype, shape, data, elements), datatype a WIT case
name ("fp32", "bytes", ...), as in plugins/tests/test_guest_plugins.py; BYTES elements are
framed and unframed here (KServe's 4-byte lengths), so callers see `elements`, as with
components.

    python3 sdk/tools/command_protocol.py COMMAND...   # runs COMMAND natively on a sample

Standard library only: it can be copied out of kiln's repository on its own
(sdk/tools/README.md). plugins/tests imports it for the guest tests.
"""

import struct
import sys
from types import SimpleNamespace

DATATYPES = ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
             "fp16", "fp32", "fp64", "bf16", "bytes"]
ERROR_KINDS = ["invalid-argument", "unavailable", "internal"]
METADATA, PROCESS = 0, 1


def _string(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack("<I", len(b)) + b


def _tensor(t):
    data = bytes(t.data)
    if t.datatype == "bytes":
        data = b"".join(struct.pack("<I", len(e)) + bytes(e) for e in t.elements)
    return (_string(t.name) + bytes([DATATYPES.index(t.datatype)]) + struct.pack("<I", len(t.shape))
            + b"".join(struct.pack("<q", d) for d in t.shape) + struct.pack("<Q", len(data)) + data)


def _param(key, value):
    if isinstance(value, bool):
        body = bytes([0, int(value)])
    elif isinstance(value, int):
        body = bytes([1]) + struct.pack("<q", value)
    elif isinstance(value, float):
        body = bytes([2]) + struct.pack("<d", value)
    else:
        body = bytes([3]) + _string(value)
    return _string(key) + body


def encode_request(call, config=None, inputs=(), parameters=()):
    """A request: config {key: value} (config.pbtxt parameters), inputs (tensors),
    parameters [(key, bool | int | float | str)] (the request's KServe parameters)."""
    config = dict(config or {})
    out = [b"KLNQ", struct.pack("<IB", 1, call), struct.pack("<I", len(config))]
    out += [_string(k) + _string(v) for k, v in sorted(config.items())]
    out.append(struct.pack("<I", len(inputs)))
    out += [_tensor(t) for t in inputs]
    out.append(struct.pack("<I", len(parameters)))
    out += [_param(k, v) for k, v in parameters]
    return b"".join(out)


class _Reader:
    def __init__(self, data):
        self.data, self.pos = bytes(data), 0

    def take(self, n):
        if n > len(self.data) - self.pos:
            raise ValueError(f"answer ends at byte {len(self.data)}, needs {n} more after {self.pos}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        return self.take(self.unpack("<I")).decode("utf-8")

    def datatype(self):
        return DATATYPES[self.unpack("<B")]

    def dims(self):
        return [self.unpack("<q") for _ in range(self.unpack("<I"))]

    def specs(self):
        return [SimpleNamespace(name=self.string(), datatype=self.datatype(), dims=self.dims())
                for _ in range(self.unpack("<I"))]

    def tensor(self):
        t = SimpleNamespace(name=self.string(), datatype=self.datatype(), elements=[], data=b"")
        t.shape = self.dims()
        data = self.take(self.unpack("<Q"))
        if t.datatype != "bytes":
            t.data = data
            return t
        r = _Reader(data)
        while r.pos < len(data):
            t.elements.append(r.take(r.unpack("<I")))
        return t


def decode_response(data, call):
    """The answer: a metadata record (name, version, inputs, outputs), a list of output
    tensors, or an error record (kind, message) -- as test_guest_plugins.Plugin returns them.
    Raises ValueError unless `data` is exactly one well-formed answer."""
    r = _Reader(data)
    if r.take(4) != b"KLNR":
        raise ValueError(f"not an answer: starts with {bytes(data[:4])!r}")
    if (version := r.unpack("<I")) != 1:
        raise ValueError(f"answer version {version}")
    status = r.unpack("<B")
    if status == 1:
        result = SimpleNamespace(kind=ERROR_KINDS[r.unpack("<B")], message=r.string())
    elif status != 0:
        raise ValueError(f"status {status}")
    elif call == METADATA:
        result = SimpleNamespace(name=r.string(), version=r.string())
        result.inputs, result.outputs = r.specs(), r.specs()
    else:
        result = [r.tensor() for _ in range(r.unpack("<I"))]
    if r.pos != len(r.data):
        raise ValueError(f"{len(r.data) - r.pos} bytes after the answer")
    return result


def main(argv):
    """Runs a command natively (e.g. a Go plugin built for the host) on a metadata call and
    a process call with an FP32 INPUT, printing the decoded answers."""
    import subprocess

    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    inp = SimpleNamespace(name="INPUT", datatype="fp32", shape=[1, 3], data=struct.pack("<3f", 1, 2, 3), elements=[])
    for call, req in [(METADATA, encode_request(METADATA, {"mean": "1", "std": "2"})),
                      (PROCESS, encode_request(PROCESS, {"mean": "1", "std": "2"}, [inp]))]:
        proc = subprocess.run(argv, input=req, capture_output=True, check=False)
        print(f"exit {proc.returncode}, stderr {proc.stderr.decode(errors='replace')!r}")
        answer = decode_response(proc.stdout, call)
        if isinstance(answer, list):
            answer = [(t.name, t.datatype, t.shape, struct.unpack(f"<{len(t.data) // 4}f", t.data)
                       if t.datatype == "fp32" else t.data) for t in answer]
        print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
