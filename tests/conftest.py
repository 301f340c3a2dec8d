"""Shared fixtures: the generated model repository and kiln servers.

- `model_repo` (session): tests/fixtures/make_models.py output in target/test-models,
  regenerated when the script (or torch) changes.
- `server` (session): one `kiln serve` over `model_repo`, default settings. Tests that only
  read (health, metadata, infer) share it; statistics tests compare before/after values.
- `kiln` (function) / `module_kiln` (module): factories `kiln(repo, *extra_args, wait=...)`
  that start extra servers and stop them (SIGTERM, exit code 0 required) at teardown.
- `copy_repo(*names)`: copies fixture models into a fresh tmp dir (for tests that mutate).
- `plugins` (session): runs plugins/build.sh (every plugin, every language; idempotent) and
  returns target/plugins, where the .wasm components are.
- `s3_server`, `gcs_server`, `azure_server`, `otel_collector` (session): real SeaweedFS,
  fake-gcs-server, Azurite and rotel on loopback, from tests/realservers.py.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import realservers
from kilnutil import FIXTURE_SCRIPT, ROOT, RUNNING, KilnServer, copy_models
from realservers import azure_server, gcs_server, otel_collector, s3_server  # noqa: F401 - fixtures

MODELS_DIR = pathlib.Path(os.environ.get("KILN_TEST_MODELS", ROOT / "target" / "test-models"))


def _fixture_stamp() -> str:
    h = hashlib.sha256(FIXTURE_SCRIPT.read_bytes())
    try:
        import importlib.metadata as md
        h.update(md.version("torch").encode())
    except Exception:  # noqa: BLE001
        pass
    return h.hexdigest()


@pytest.fixture(scope="session")
def model_repo() -> pathlib.Path:
    """Run make_models.py into MODELS_DIR unless it is there from the same script and torch."""
    out = MODELS_DIR
    stamp_file = out.parent / (out.name + ".stamp")
    stamp = _fixture_stamp()
    if not (out.is_dir() and stamp_file.exists() and stamp_file.read_text() == stamp):
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.run([sys.executable, str(FIXTURE_SCRIPT), str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        if proc.returncode != 0:
            pytest.fail(f"make_models.py failed:\n{proc.stdout}", pytrace=False)
        stamp_file.write_text(stamp)
    return out


class _Factory:
    def __init__(self, log_dir: pathlib.Path):
        self.log_dir = log_dir
        self.servers: list[KilnServer] = []

    def __call__(self, repo, *extra_args, wait: str = "ready", env=None, name: str = "kiln") -> KilnServer:
        srv = KilnServer(repo, extra_args, log_dir=self.log_dir, wait=wait, env=env, name=name)
        self.servers.append(srv)
        return srv.start()

    def stop_all(self):
        errors = []
        for srv in self.servers:
            if srv.proc is None or srv.returncode is not None:
                continue
            try:
                srv.stop()
            except BaseException as exc:  # noqa: BLE001 - keep stopping the others
                srv.kill()
                errors.append(str(exc))
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture(scope="session")
def server(model_repo, tmp_path_factory) -> KilnServer:
    factory = _Factory(tmp_path_factory.mktemp("kiln-logs"))
    srv = factory(model_repo, name="default")
    yield srv
    factory.stop_all()


@pytest.fixture
def kiln(tmp_path):
    factory = _Factory(tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def module_kiln(tmp_path_factory):
    factory = _Factory(tmp_path_factory.mktemp("kiln-module"))
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def plugins() -> pathlib.Path:
    """Builds the wasm plugins once per session (plugins/build.sh skips what is up to date;
    the first run installs the JavaScript, Python and Zig toolchains)."""
    proc = subprocess.run(["bash", str(ROOT / "plugins" / "build.sh")], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"plugins/build.sh failed:\n{proc.stdout[-6000:]}", pytrace=False)
    return ROOT / "target" / "plugins"


@pytest.fixture
def copy_repo(model_repo, tmp_path):
    """copy_repo(*model names, dst=None) -> a new repository dir holding copies of those fixtures."""
    counter = [0]

    def make(*names, dst: pathlib.Path | None = None) -> pathlib.Path:
        if dst is None:
            counter[0] += 1
            dst = tmp_path / f"repo{counter[0]}"
        return copy_models(model_repo, dst, names)

    return make


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the log tail of every running kiln server to a failing test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for srv in list(RUNNING):
            report.sections.append((f"kiln log {srv.log_path}", srv.log_tail(60)))
        report.sections.extend(realservers.failure_sections(item))


def pytest_sessionfinish(session, exitstatus):
    for srv in list(RUNNING):  # never leave a server behind
        srv.kill()
    realservers.kill_all()
