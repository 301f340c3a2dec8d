"""kiln's .proto files must be wire-identical to Triton's.

Compiles kiln's .proto files (host/crates/kserve/proto, host/crates/model-config/proto) with grpcio-tools' protoc is not needed: we parse
them with `protoc --descriptor_set_out` (system protoc) and compare every
message, field number, type, label and enum value with the descriptors that
ship inside tritonclient (the ground truth used by real clients).
"""
import pathlib
import subprocess
import tempfile

import pytest
from google.protobuf import descriptor_pb2

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTO_DIRS = [ROOT / "host" / "crates" / "kserve" / "proto", ROOT / "host" / "crates" / "model-config" / "proto"]


def _kiln_files():
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "set.bin"
        subprocess.run(
            ["protoc", *(f"-I{d}" for d in PROTO_DIRS), "--include_imports", f"--descriptor_set_out={out}",
             "grpc_service.proto", "model_config.proto"],
            check=True,
        )
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return {f.name: f for f in fds.file}


def _triton_files():
    from tritonclient.grpc import model_config_pb2, service_pb2

    files = {}
    for mod in (model_config_pb2, service_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        mod.DESCRIPTOR.CopyToProto(proto)
        files[proto.name] = proto
    return files


def _messages(fdp):
    """Flatten every (nested) message and enum to {full_name: descriptor}."""
    msgs, enums = {}, {}

    def walk(prefix, msg):
        name = f"{prefix}.{msg.name}"
        msgs[name] = msg
        for nested in msg.nested_type:
            walk(name, nested)
        for enum in msg.enum_type:
            enums[f"{name}.{enum.name}"] = enum

    for msg in fdp.message_type:
        walk(fdp.package, msg)
    for enum in fdp.enum_type:
        enums[f"{fdp.package}.{enum.name}"] = enum
    return msgs, enums


def _pair(name):
    kiln = _kiln_files()
    triton = _triton_files()
    triton_name = {"grpc_service.proto": "grpc_service.proto", "model_config.proto": "model_config.proto"}[name]
    return kiln[name], triton[triton_name]


@pytest.mark.parametrize("name", ["grpc_service.proto", "model_config.proto"])
def test_messages_field_identical(name):
    kiln, triton = _pair(name)
    kiln_msgs, kiln_enums = _messages(kiln)
    triton_msgs, triton_enums = _messages(triton)
    assert set(kiln_msgs) == set(triton_msgs), (
        f"missing: {sorted(set(triton_msgs) - set(kiln_msgs))}, extra: {sorted(set(kiln_msgs) - set(triton_msgs))}"
    )
    for full_name, tmsg in triton_msgs.items():
        kmsg = kiln_msgs[full_name]
        tfields = {f.number: (f.name, f.type, f.label, f.type_name) for f in tmsg.field}
        kfields = {f.number: (f.name, f.type, f.label, f.type_name) for f in kmsg.field}
        assert kfields == tfields, f"{full_name} differs"
        assert [o.name for o in kmsg.oneof_decl] == [o.name for o in tmsg.oneof_decl], full_name
    assert set(kiln_enums) == set(triton_enums)
    for full_name, tenum in triton_enums.items():
        kvals = {v.name: v.number for v in kiln_enums[full_name].value}
        tvals = {v.name: v.number for v in tenum.value}
        assert kvals == tvals, f"{full_name} differs"


def test_service_rpcs_identical():
    kiln, triton = _pair("grpc_service.proto")
    (ksvc,), (tsvc,) = kiln.service, triton.service
    assert ksvc.name == tsvc.name == "GRPCInferenceService"
    kmethods = {m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming) for m in ksvc.method}
    tmethods = {m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming) for m in tsvc.method}
    assert kmethods == tmethods
    assert len(kmethods) == 20
