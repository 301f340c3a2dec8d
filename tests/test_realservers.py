"""Self-test of tests/realservers.py: each real server starts, and objects and spans make the
round trip through its helpers. Also pins down the request shapes a Rust `object_store`
client sends (SigV4 path-style S3, GCS XML API paths, Azurite path-style blob URLs)."""
from __future__ import annotations

import json
import os
import random

import pytest

from realservers import AZURITE_ACCOUNT, FakeGcs, RotelCollector, port_open

STORES = ["s3_server", "gcs_server", "azure_server"]


def make_tree(root):
    files = {
        "add_sub/config.pbtxt": b'name: "add_sub"\nbackend: "pytorch"\n',
        "add_sub/1/model.pt": bytes(range(256)) * 8,
        "add_sub/2/model.pt": b"v2",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


@pytest.mark.parametrize("store_fixture", STORES)
def test_object_roundtrip(store_fixture, request, tmp_path):
    store = request.getfixturevalue(store_fixture)
    files = make_tree(tmp_path / "tree")
    prefix = f"roundtrip-{random.getrandbits(32):08x}"
    keys = store.upload_tree(tmp_path / "tree", prefix)
    assert keys == sorted(f"{prefix}/{rel}" for rel in files)
    assert store.list(prefix + "/") == keys
    assert store.get(f"{prefix}/add_sub/1/model.pt") == files["add_sub/1/model.pt"]

    key = f"{prefix}/add_sub/config.pbtxt"
    before = store.stat(key)
    version = store.put(key, 'name: "add_sub"\nmax_batch_size: 8\n')
    after = store.stat(key)
    assert after["version"] == version != before["version"]
    assert after["size"] == len(b'name: "add_sub"\nmax_batch_size: 8\n')
    assert store.get(key).endswith(b"max_batch_size: 8\n")

    store.delete(f"{prefix}/add_sub/2/model.pt")
    assert store.stat(f"{prefix}/add_sub/2/model.pt") is None
    assert len(store.list(prefix + "/")) == 2
    assert sorted(store.delete_prefix(prefix + "/")) == sorted(set(keys) - {f"{prefix}/add_sub/2/model.pt"})
    assert store.list(prefix + "/") == []

    other = store.new_bucket()
    store.put("x/y.txt", b"y", bucket=other)
    assert store.list(bucket=other) == ["x/y.txt"]
    assert store.url("m/1", bucket=other) == f"{store.scheme}://{other}/m/1"


def test_s3_sigv4_path_style_and_credentials(s3_server, monkeypatch):
    from botocore.exceptions import ClientError

    sent = []
    client = s3_server.client()
    client.meta.events.register("before-send.s3.*", lambda request, **_: sent.append(request))
    client.put_object(Bucket="models", Key="auth/probe.txt", Body=b"p")
    req = sent[-1]
    assert req.url == f"{s3_server.endpoint}/models/auth/probe.txt"  # path style
    auth = req.headers["Authorization"].decode() if isinstance(req.headers["Authorization"], bytes) else req.headers["Authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={s3_server.access_key}/"), auth
    assert "/us-east-1/s3/aws4_request" in auth

    for access, secret, code in [(s3_server.access_key, "wrong-secret", "SignatureDoesNotMatch"),
                                 ("nobody", s3_server.secret_key, "InvalidAccessKeyId")]:
        with pytest.raises(ClientError) as err:
            s3_server.client(access, secret).get_object(Bucket="models", Key="auth/probe.txt")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert err.value.response["Error"]["Code"] == code

    from kilnutil import http_request
    status, _, _ = http_request(f"127.0.0.1:{s3_server.port}", "GET", "/models/auth/probe.txt")
    assert status == 403  # anonymous

    # The env() variables alone are enough for an SDK (boto3 reads AWS_ENDPOINT_URL).
    import boto3
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    assert boto3.session.Session().client("s3").get_object(Bucket="models", Key="auth/probe.txt")["Body"].read() == b"p"
    s3_server.delete("auth/probe.txt")


def test_gcs_object_store_request_shapes(gcs_server):
    """What object_store's GCS client sends with the credentials file: XML API on
    {gcs_base_url}/{bucket}/{object} (GET, HEAD, ranged GET) and ?list-type=2 listings."""
    sa = json.loads(gcs_server.credentials_file.read_text())
    assert sa["gcs_base_url"] == gcs_server.endpoint and sa["disable_oauth"] is True
    assert gcs_server.env()["GOOGLE_SERVICE_ACCOUNT"] == str(gcs_server.credentials_file)

    g1 = gcs_server.put("xml/m/1/model.pt", b"0123456789")
    g2 = gcs_server.put("xml/m/1/model.pt", b"abcdefghij")
    assert int(g2) > int(g1)  # a new generation
    gcs_server.put("xml/m/config.pbtxt", b"cfg")

    auth = {"Authorization": "Bearer "}
    status, headers, body = gcs_server.request("GET", "/models/xml/m/1/model.pt", headers=auth)
    assert (status, body) == (200, b"abcdefghij")
    assert headers["x-goog-generation"] == g2 and headers["etag"] and headers["last-modified"]
    status, headers, _ = gcs_server.request("HEAD", "/models/xml/m/1/model.pt", headers=auth)
    assert status == 200 and headers["content-length"] == "10"
    status, headers, body = gcs_server.request("GET", "/models/xml/m/1/model.pt", headers={**auth, "Range": "bytes=2-4"})
    assert (status, body) == (206, b"cde")
    status, _, body = gcs_server.request("GET", "/models?list-type=2&prefix=xml/m/&delimiter=/", headers=auth)
    assert status == 200
    assert b"<Key>xml/m/config.pbtxt</Key>" in body and b"<Prefix>xml/m/1/</Prefix>" in body
    status, _, _ = gcs_server.request("GET", "/models/xml/m/nope", headers=auth)
    assert status == 404
    gcs_server.delete_prefix("xml/")


def test_azure_paths_and_credentials(azure_server):
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobClient

    azure_server.put("auth/probe.txt", b"az")
    # object_store in emulator mode: {AZURITE_BLOB_STORAGE_URL}/{account}/{container}/{path}.
    url = f"{azure_server.env()['AZURITE_BLOB_STORAGE_URL']}/{AZURITE_ACCOUNT}/models/auth/probe.txt"
    blob = BlobClient.from_blob_url(url, credential={"account_name": AZURITE_ACCOUNT, "account_key": azure_server.key})
    assert blob.download_blob().readall() == b"az"

    from azure.storage.blob import BlobServiceClient
    conn = azure_server.env()["AZURE_STORAGE_CONNECTION_STRING"]
    assert BlobServiceClient.from_connection_string(conn).get_container_client("models").download_blob("auth/probe.txt").readall() == b"az"
    wrong = azure_server.key[:-6] + "AAAAA="
    for client in (azure_server.service_client(key=wrong),
                   BlobServiceClient.from_connection_string(azure_server.env(key=wrong)["AZURE_STORAGE_CONNECTION_STRING"])):
        with pytest.raises(HttpResponseError) as err:
            client.get_container_client("models").download_blob("auth/probe.txt")
        assert err.value.status_code == 403
    anon = BlobClient.from_blob_url(url)
    with pytest.raises(HttpResponseError) as err:
        anon.download_blob()
    assert err.value.status_code in (403, 404)
    azure_server.delete("auth/probe.txt")


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_otel_spans_roundtrip(otel_collector, protocol):
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, set_span_in_context

    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{otel_collector.grpc_port}", insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        exporter = OTLPSpanExporter(endpoint=otel_collector.traces_url)

    provider = TracerProvider(resource=Resource.create({"service.name": "kiln-selftest", "deployment": protocol}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("realservers-selftest")
    trace_id, parent_id = random.getrandbits(128) | 1, random.getrandbits(64) | 1
    remote = SpanContext(trace_id=trace_id, span_id=parent_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with tracer.start_as_current_span("infer add_sub", context=set_span_in_context(NonRecordingSpan(remote)),
                                      kind=SpanKind.SERVER, attributes={"model": "add_sub", "batch": 4, "ok": True,
                                                                        "dims": [1, 16]}) as span:
        span.add_event("queued", {"depth": 2})
        with tracer.start_as_current_span("execute"):
            pass
    provider.shutdown()

    spans = otel_collector.spans(trace_id=trace_id, min_count=2, timeout=15)
    by_name = {s["name"]: s for s in spans}
    assert set(by_name) == {"infer add_sub", "execute"}
    root, child = by_name["infer add_sub"], by_name["execute"]
    assert root["trace_id"] == f"{trace_id:032x}"
    assert root["parent_span_id"] == f"{parent_id:016x}"
    assert child["parent_span_id"] == root["span_id"]
    assert root["kind"] == "SPAN_KIND_SERVER"
    assert root["attributes"] == {"model": "add_sub", "batch": 4, "ok": True, "dims": [1, 16]}
    assert root["events"] == [{"name": "queued", "attributes": {"depth": 2}}]
    assert root["resource"]["service.name"] == "kiln-selftest"
    assert root["resource"]["deployment"] == protocol
    assert otel_collector.spans(name="no such span", min_count=0) == []


def test_start_stop_cleanup(tmp_path):
    """A server that stops leaves no process, no listener and no data dir; its log stays."""
    for server in (FakeGcs(tmp_path / "gcs"), RotelCollector(tmp_path / "rotel")):
        server.start()
        assert server.startup_s < 30
        port = server.port if isinstance(server, FakeGcs) else server.http_port
        assert port_open(port) and server.data_dir.is_dir()
        server.stop()
        assert server.proc.returncode is not None
        assert not port_open(port)
        assert not server.data_dir.exists()
        assert server.log_path.read_text()


def test_start_failure_shows_log(tmp_path, monkeypatch):
    fake = tmp_path / "fake-rotel"
    fake.write_text("#!/bin/sh\necho 'boom: cannot start'\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("KILN_ROTEL_BIN", str(fake))
    with pytest.raises(pytest.fail.Exception) as err:
        RotelCollector(tmp_path / "rotel").start()
    assert "exited during startup with code 3" in str(err.value)
    assert "boom: cannot start" in str(err.value)


def test_startup_times(s3_server, gcs_server, azure_server, otel_collector):
    for srv in (s3_server, gcs_server, azure_server, otel_collector):
        print(f"{srv.name}: ready in {srv.startup_s:.2f} s")
        assert srv.startup_s < 20, f"{srv.name} took {srv.startup_s:.1f} s to start"
