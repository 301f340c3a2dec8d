"""Helpers shared by the integration tests: running the kiln binary, raw HTTP, metrics.

Imported by conftest.py and by the test modules (pytest puts tests/ on sys.path).
"""
from __future__ import annotations

import http.client
import itertools
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import time
from typing import Callable, Iterable

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE_SCRIPT = ROOT / "tests" / "fixtures" / "make_models.py"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0

# Every server started by this module and not yet stopped (for failure reports and cleanup).
RUNNING: list["KilnServer"] = []


def kiln_bin() -> pathlib.Path:
    return pathlib.Path(os.environ.get("KILN_BIN", ROOT / "target" / "release" / "kiln"))


_SERVERS = itertools.count(1)


def http_request(
    hostport: str,
    method: str,
    path: str,
    body: bytes | str | dict | None = None,
    headers: dict | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict, bytes]:
    """One raw HTTP/1.1 request. A dict body is sent as JSON. Returns (status, headers, body)."""
    host, port = hostport.rsplit(":", 1)
    headers = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def http_json(hostport: str, method: str, path: str, body=None, headers=None) -> tuple[int, object]:
    status, _, data = http_request(hostport, method, path, body, headers)
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data
    return status, parsed


def add_sub_inputs(mod, a, b) -> list:
    """INPUT0 = a and INPUT1 = b as FP32 inputs of `mod` (tritonclient.grpc or tritonclient.http)."""
    inputs = []
    for name, arr in (("INPUT0", a), ("INPUT1", b)):
        inp = mod.InferInput(name, list(arr.shape), "FP32")
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
    return inputs


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll pred() until it returns a truthy value; return it. Raise AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - reported on timeout
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text exposition -> {(metric name, frozenset of (label, value)): value}."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"unparseable metrics line: {line!r}")
        name, _, labels, value = m.group(1), m.group(2), m.group(3), m.group(4)
        pairs = frozenset((k, v) for k, v in _LABEL.findall(labels or ""))
        out[(name, pairs)] = float(value)
    return out


def metric(samples: dict, name: str, **labels) -> float | None:
    """The value of the sample `name` whose labels include `labels` (None if absent)."""
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]
    if not found:
        return None
    assert len(found) == 1, f"{name}{labels} matches {len(found)} samples"
    return found[0]


class KilnServer:
    """One `kiln serve` process, logging to a file. kiln binds port 0 (the system picks free
    ports) and reports the ports it got in its `--port-file`: no port is picked before the
    server binds it, so parallel servers never race for one."""

    def __init__(self, repo: os.PathLike, extra_args: Iterable[str] = (), log_dir: os.PathLike | None = None,
                 wait: str = "ready", env: dict | None = None, name: str = "kiln"):
        # A str stays as given: an object-store URL (s3://...) is not a path.
        self.repo = repo if isinstance(repo, str) else pathlib.Path(repo)
        self.extra_args = list(extra_args)
        self.http_port = self.grpc_port = self.metrics_port = 0  # known once started
        log_dir = pathlib.Path(log_dir) if log_dir else pathlib.Path(self.repo).parent
        log_dir.mkdir(parents=True, exist_ok=True)
        serial = f"{os.getpid()}-{next(_SERVERS)}"
        self.log_path = log_dir / f"{name}-{serial}.log"
        self.port_file = log_dir / f"{name}-{serial}.ports"
        self.wait = wait
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("RUST_LOG", "info")
        self.proc: subprocess.Popen | None = None
        self._grpc = None
        self._http = None
        self.returncode: int | None = None

    # -- addresses ------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    @property
    def args(self) -> list[str]:
        return [
            str(kiln_bin()), "serve",
            "--model-repository", str(self.repo),
            "--host", "127.0.0.1",
            "--http-port", "0",
            "--grpc-port", "0",
            "--metrics-port", "0",
            "--port-file", str(self.port_file),
            *self.extra_args,
        ]

    # -- clients --------------------------------------------------------------------------
    @property
    def grpc(self):
        if self._grpc is None:
            import tritonclient.grpc as grpcclient
            self._grpc = grpcclient.InferenceServerClient(self.grpc_url)
        return self._grpc

    @property
    def http(self):
        if self._http is None:
            import tritonclient.http as httpclient
            self._http = httpclient.InferenceServerClient(self.http_url, network_timeout=120.0, connection_timeout=120.0)
        return self._http

    def new_grpc_client(self):
        import tritonclient.grpc as grpcclient
        return grpcclient.InferenceServerClient(self.grpc_url)

    def new_http_client(self, **kw):
        import tritonclient.http as httpclient
        return httpclient.InferenceServerClient(self.http_url, **kw)

    # -- what the server holds ------------------------------------------------------------
    def requests_held(self, model: str) -> tuple[int, int]:
        """(pending, executing) for `model`, from the metrics endpoint: Triton's
        `nv_inference_pending_request_count` (accepted, not yet on an instance) and kiln's
        `kiln_inference_executing_request_count`."""
        status, _, body = http_request(self.metrics_url, "GET", "/metrics")
        assert status == 200, status
        samples = parse_metrics(body.decode())
        pending = metric(samples, "nv_inference_pending_request_count", model=model) or 0
        executing = metric(samples, "kiln_inference_executing_request_count", model=model) or 0
        return int(pending), int(executing)

    def wait_held(self, model: str, pending: int | None = None, executing: int | None = None,
                  timeout: float = 60.0) -> None:
        """Waits until the server holds exactly `pending` queued and/or `executing` running
        requests of `model`: how tests order requests without sleeping."""
        def reached():
            p, e = self.requests_held(model)
            return (pending is None or p == pending) and (executing is None or e == executing)
        wait_until(reached, timeout, interval=0.02,
                   what=f"{model}: pending={pending} executing={executing} (now {self.requests_held(model)})")

    # -- lifecycle ------------------------------------------------------------------------
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "<no log>"

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def _fail(self, msg: str):
        import pytest
        pytest.fail(f"{msg}\ncommand: {' '.join(self.args)}\n--- server log ({self.log_path}) ---\n{self.log_tail(200)}", pytrace=False)

    def start(self) -> "KilnServer":
        binary = kiln_bin()
        if not binary.exists():
            import pytest
            pytest.fail(f"kiln binary not found at {binary} (build it with `cargo build --release` or set KILN_BIN)", pytrace=False)
        self._logf = open(self.log_path, "wb")
        self.port_file.unlink(missing_ok=True)
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.proc = subprocess.Popen(self.args, stdout=self._logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        RUNNING.append(self)
        path = "/v2/health/ready" if self.wait == "ready" else "/v2/health/live"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                self._forget()
                self._fail(f"kiln exited early with code {rc}")
            if not self.http_port:
                try:
                    ports = json.loads(self.port_file.read_text())
                    self.http_port, self.grpc_port, self.metrics_port = ports["http"], ports["grpc"], ports["metrics"]
                except FileNotFoundError:
                    pass
            if self.http_port:
                try:
                    status, _, _ = http_request(self.http_url, "GET", path, timeout=2.0)
                    if status == 200:
                        return self
                except OSError:
                    pass
            if time.monotonic() > deadline:
                self.kill()
                self._fail(f"kiln did not answer 200 on {path} within {READY_TIMEOUT_S} s")
            time.sleep(0.1)

    def send_signal(self, sig=signal.SIGTERM):
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Wait for the process to exit; fail (and kill it) if it doesn't within timeout."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self._fail(f"kiln did not exit within {timeout} s of SIGTERM")
        self.returncode = rc
        self._forget()
        return rc

    def stop(self, timeout: float = STOP_TIMEOUT_S, expect_rc: int | None = 0) -> int:
        """SIGTERM, then require exit (with code expect_rc unless None) within timeout."""
        if self.proc is None or self.returncode is not None:
            return self.returncode
        self.close_clients()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        if expect_rc is not None and rc != expect_rc:
            self._fail(f"kiln exited with code {rc} after SIGTERM, expected {expect_rc}")
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc is not None:
            self.returncode = self.proc.returncode
        self._forget()

    def close_clients(self):
        for c in (self._grpc, self._http):
            try:
                if c is not None:
                    c.close()
            except Exception:  # noqa: BLE001
                pass
        self._grpc = self._http = None

    def _forget(self):
        if self in RUNNING:
            RUNNING.remove(self)
        logf = getattr(self, "_logf", None)
        if logf is not None and not logf.closed:
            logf.close()


def listening_addresses(port: int) -> list[str]:
    """Local addresses with a TCP socket in LISTEN state on `port` (from /proc/net/tcp{,6})."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = pathlib.Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            addr, hexport = fields[1].split(":")
            if fields[3] != "0A" or int(hexport, 16) != port:
                continue
            raw = bytes.fromhex(addr)
            if len(raw) == 4:
                found.append(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                found.append(socket.inet_ntop(socket.AF_INET6, words))
    return found


def copy_models(src_repo: pathlib.Path, dst_repo: pathlib.Path, names: Iterable[str]) -> pathlib.Path:
    dst_repo.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copytree(src_repo / name, dst_repo / name, dirs_exist_ok=True)
    return dst_repo


def run_check(*args: os.PathLike | str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """`kiln check ARGS` (a repository dir and/or `--tenants FILE`), stdout and stderr together
    in .stdout."""
    return subprocess.run([str(kiln_bin()), "check", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout, env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn")))
