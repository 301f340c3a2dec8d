#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target into host/fuzz/corpus/<target>/ (committed):
valid inputs of every shape the parsers accept, from which libFuzzer mutates. Re-run after a
format changes: `python3 host/fuzz/seeds.py` (needs the project's .venv for protobuf)."""
from __future__ import annotations

import hashlib
import json
import pathlib
import struct
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def write(target: str, data: bytes):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def configs():
    for p in sorted((ROOT / "model_repository").glob("*/config.pbtxt")):
        write("config_pbtxt", p.read_bytes())
    write("config_pbtxt", b'name: "m"\nplatform: "pytorch_libtorch"\nmax_batch_size: 8\n'
          b'input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ -1, 3 ] reshape: { shape: [ 3, -1 ] } } ]\n'
          b'output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1 ] label_filename: "labels.txt" } ]\n'
          b'instance_group [ { count: 2 kind: KIND_CPU } ]\ndynamic_batching { max_queue_delay_microseconds: 100 '
          b'preferred_batch_size: [ 4 ] priority_levels: 2 default_priority_level: 1 }\n'
          b'version_policy: { specific: { versions: [ 1, 3 ] } }\n'
          b'optimization { cuda { graphs: true graph_spec [ { batch_size: 4 input { key: "INPUT__0" value: { dim: [ 3 ] } } } ] } }\n'
          b'parameters { key: "INTRA_OP_THREAD_COUNT" value: { string_value: "2" } }\n')
    write("config_pbtxt", b'name: "e"\nplatform: "ensemble"\nmax_batch_size: 4\ninput [ { name: "A" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
          b'output [ { name: "B" data_type: TYPE_FP32 dims: [ 2 ] } ]\nensemble_scheduling { step [ { model_name: "x" '
          b'model_version: -1 input_map { key: "IN" value: "A" } output_map { key: "OUT" value: "B" } } ] }\n')


def kserve_json():
    reqs = [
        {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [[0.1, -2, 3e5, 4]]}]},
        {"id": "7", "parameters": {"priority": 1, "timeout": 100, "s": "x", "b": True, "d": 0.5},
         "inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "data": ["", "h\u00e9"]},
                    {"name": "b", "shape": [2], "datatype": "BOOL", "data": [True, False]},
                    {"name": "i", "shape": [2, 1], "datatype": "INT8", "data": [[-128], [127]]},
                    {"name": "u", "shape": [1], "datatype": "UINT64", "data": [18446744073709551615]},
                    {"name": "h", "shape": [1], "datatype": "FP16", "data": [65504]}],
         "outputs": [{"name": "o", "parameters": {"classification": 3, "binary_data": False}}]},
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32",
                     "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 4}}]},
    ]
    for r in reqs:
        write("kserve_json", json.dumps(r).encode())


def binary_tensor():
    head = json.dumps({"inputs": [{"name": "a", "shape": [2], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 8}}],
                       "parameters": {"binary_data_output": True}}).encode()
    body = head + struct.pack("<2f", 1.5, -2.0)
    # The first byte picks the header-length split (split * 7 % (len + 1)); 0 = no header.
    for split in range(256):
        if split and (split * 7) % (len(body) + 1) == len(head):
            write("binary_tensor", bytes([split]) + body)
            break
    write("binary_tensor", b"\x00" + json.dumps({"inputs": [{"name": "a", "shape": [1], "datatype": "INT32", "data": [1]}]}).encode())


def grpc_requests():
    sys.path.insert(0, str(ROOT / "tests"))
    from tritonclient.grpc import service_pb2
    r = service_pb2.ModelInferRequest(model_name="add_sub", id="1")
    r.parameters["priority"].int64_param = 1
    for name in ("INPUT0", "INPUT1"):
        t = r.inputs.add(name=name, datatype="FP32", shape=[1, 4])
        r.raw_input_contents.append(struct.pack("<4f", 1, 2, 3, 4))
    o = r.outputs.add(name="OUTPUT0")
    o.parameters["classification"].int64_param = 2
    write("grpc_infer_request", r.SerializeToString())
    typed = service_pb2.ModelInferRequest(model_name="m")
    for dt, field, values in [("INT64", "int64_contents", [1, -1]), ("BYTES", "bytes_contents", [b"", b"ab"]),
                              ("BOOL", "bool_contents", [True, False]), ("UINT8", "uint_contents", [0, 255]),
                              ("FP64", "fp64_contents", [0.5, 2.0]), ("INT16", "int_contents", [-3, 3])]:
        t = typed.inputs.add(name=dt.lower(), datatype=dt, shape=[2])
        getattr(t.contents, field).extend(values)
    write("grpc_infer_request", typed.SerializeToString())
    shm = service_pb2.ModelInferRequest(model_name="m")
    t = shm.inputs.add(name="x", datatype="FP32", shape=[1])
    t.parameters["shared_memory_region"].string_param = "r"
    t.parameters["shared_memory_byte_size"].int64_param = 4
    write("grpc_infer_request", shm.SerializeToString())


def bytes_elements():
    for elems in ([], [b""], [b"abc", b"", b"\x00\x01"], [b"x" * 300]):
        write("bytes_elements", b"".join(struct.pack("<I", len(e)) + e for e in elems))


def plugin_wire():
    def s(x: bytes) -> bytes:
        return struct.pack("<I", len(x)) + x

    def spec(name: bytes, code: int, dims) -> bytes:
        return s(name) + bytes([code]) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<q", d) for d in dims)

    head = b"KLNR" + struct.pack("<I", 1)
    meta = head + b"\x00" + s(b"normalize") + s(b"1.0") + struct.pack("<I", 1) + spec(b"INPUT", 10, [-1]) \
        + struct.pack("<I", 1) + spec(b"OUTPUT", 10, [-1])
    write("plugin_wire", meta)
    data = struct.pack("<2f", 0.5, 1.5)
    outputs = head + b"\x00" + struct.pack("<I", 1) + spec(b"OUTPUT", 10, [1, 2]) + struct.pack("<Q", len(data)) + data
    write("plugin_wire", outputs)
    write("plugin_wire", head + b"\x01\x00" + s(b"bad input"))


if __name__ == "__main__":
    configs()
    kserve_json()
    binary_tensor()
    grpc_requests()
    bytes_elements()
    plugin_wire()
    for d in sorted((HERE / "corpus").iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds")
