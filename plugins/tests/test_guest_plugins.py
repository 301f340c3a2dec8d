"""Guest-side tests: runs the built plugins (target/plugins/*.wasm) in
wasmtime through its Python API, with a small Python host that implements
kiln:plugin/host the way kiln does (log, get-parameter, parameters,
monotonic-now) plus WASI p2 with nothing granted.

This checks the plugins and the Rust SDK against the WIT, independently of
kiln's own host (host/), which has its own tests. It needs the `wasmtime`
Python package (pip install wasmtime==50.0.1) and plugins/build.sh; it skips
otherwise.

Core modules of the core-module ABI (Zig, AssemblyScript; sdk/ABI.md) are
wrapped into components the way kiln wraps them at load: any embedded
`component-type*` section stripped, the marker's world embedded, then
`wasm-tools component embed` + `component new` (wasm-tools 1.258.0 from
~/.cache/kiln-tools/cargo, which plugins/c/build.sh installs; those tests
skip without it). WASI command modules (Go) run through CommandPlugin.

    python3 -m pytest plugins/tests -q
"""

import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

wasmtime = pytest.importorskip("wasmtime")
from wasmtime import component as wc  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk" / "tools"))
import command_protocol  # noqa: E402  (sdk/tools/command_protocol.py)
import component_info  # noqa: E402  (sdk/tools/component_info.py)

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "target" / "plugins"
PROCESSOR = "kiln:plugin/processor@1.0.0"
MIB = 1 << 20


def plugin_path(name):
    path = PLUGINS / f"{name}.wasm"
    if not path.exists():
        pytest.skip(f"{path} not built (run plugins/build.sh)")
    return path


@pytest.fixture(scope="module")
def engine():
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.wasm_component_model = True
    engine = wasmtime.Engine(config)
    stop = threading.Event()

    def tick():  # 2 ms epochs, like kiln
        while not stop.is_set():
            engine.increment_epoch()
            time.sleep(0.002)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    yield engine
    stop.set()
    ticker.join()


# The world of each core-module ABI version, as kiln embeds it
# (host/src/backend/wasm/core_module.rs).
MARKER_WORLDS = {
    "kiln_abi_version_1_0_0": ROOT / "sdk" / "wit" / "v1.0.0" / "plugin.wit",
    "kiln_abi_version_1_1_0": ROOT / "sdk" / "wit" / "v1.1.0" / "plugin.wit",
}
WASM_TOOLS_VERSION = "1.258.0"  # as plugins/c/build.sh


def wasm_tools():
    """wasm-tools as plugins/c/build.sh installs it (lib.sh's cargo_tool), or skip."""
    tools = Path(os.environ.get("KILN_TOOLS", Path.home() / ".cache" / "kiln-tools"))
    path = tools / "cargo" / "bin" / "wasm-tools"
    try:
        version = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        version = ""
    if not version.startswith(f"wasm-tools {WASM_TOOLS_VERSION}"):
        pytest.skip(f"core-module plugins need wasm-tools {WASM_TOOLS_VERSION} at {path} "
                    f"(plugins/c/build.sh installs it); found: {version.strip() or 'none'}")
    return str(path)


def strip_component_type(data):
    """The core module without its `component-type*` custom sections (type information
    from wit-bindgen or `component embed`): kiln drops them, the marker is authoritative."""
    kept = bytearray(data[:8])
    for section, r, start, end in component_info.sections(data):
        if not (section == 0 and r.name().startswith("component-type")):
            kept += data[start:end]
    return bytes(kept)


def componentize(name, data):
    """What kiln does with a core module of the core-module ABI (sdk/ABI.md): refuse it if
    kiln would, strip any embedded world, embed the marker's world and make a component."""
    problem = component_info.core_module_problem(data)
    if problem:
        pytest.fail(f"kiln would refuse {name}.wasm: {problem}")
    (marker,) = [n for n, _ in component_info.core_exports(data) if n.startswith("kiln_abi_version_")]
    tool = wasm_tools()
    with tempfile.TemporaryDirectory() as tmp:
        core, embedded, component = (Path(tmp) / f for f in ("core.wasm", "embedded.wasm", "component.wasm"))
        core.write_bytes(strip_component_type(data))
        for args in (["embed", str(MARKER_WORLDS[marker]), "--world", "plugin", str(core), "-o", str(embedded)],
                     ["new", str(embedded), "-o", str(component)]):
            run = subprocess.run([tool, "component", *args], capture_output=True, text=True)
            if run.returncode != 0:
                pytest.fail(f"{name}.wasm does not implement the world of {marker}: "
                            f"wasm-tools component {args[0]}: {run.stderr.strip()}")
        return component.read_bytes()


_components = {}


def load(engine, name):
    """The plugin as a component: a component as built, a marked core module wrapped the
    way kiln wraps it. Compiled code belongs to one engine."""
    if (engine, name) not in _components:
        data = plugin_path(name).read_bytes()
        if component_info.kind(data) == "core module":
            data = componentize(name, data)
        _components[engine, name] = wc.Component(engine, data)
    return _components[engine, name]


class Plugin:
    """One instance of a plugin, in its own store, with a kiln-like host."""

    def __init__(self, engine, name, parameters=None, memory_mb=256, timeout_ms=1000):
        self.parameters = dict(parameters or {})
        self.logs = []
        self.timeout_ticks = max(1, timeout_ms // 2)
        component = load(engine, name)
        linker = wc.Linker(engine)
        linker.add_wasip2()
        with linker.root() as root:
            with root.add_instance("kiln:plugin/host@1.0.0") as host:
                host.add_func("log", lambda _s, level, message, fields: self.logs.append((level, message, dict(fields))))
                host.add_func("get-parameter", lambda _s, key: self.parameters.get(key))
                host.add_func("parameters", lambda _s: sorted(self.parameters.items()))
                host.add_func("monotonic-now", lambda _s: time.monotonic_ns())
            with root.add_instance("kiln:plugin/types@1.0.0"):
                pass
        self.store = wasmtime.Store(engine)
        self.store.set_wasi(wasmtime.WasiConfig())  # nothing granted
        self.store.set_limits(memory_size=memory_mb * MIB)
        self.store.set_epoch_deadline(1_000_000)
        self.instance = linker.instantiate(self.store, component)
        iface = self.instance.get_export_index(self.store, PROCESSOR)
        assert iface is not None, f"{name} does not export {PROCESSOR}"
        self.funcs = {
            f: self.instance.get_func(self.store, self.instance.get_export_index(self.store, f, iface))
            for f in ("metadata", "process")
        }

    def _call(self, name, *args):
        self.store.set_epoch_deadline(self.timeout_ticks)
        func = self.funcs[name]
        result = func(self.store, *args)
        func.post_return(self.store)
        return result

    def metadata(self):
        return self._call("metadata")

    def process(self, *tensors, parameters=()):
        """Returns a list of output tensors, or an error record."""
        return self._call("process", list(tensors), list(parameters))


_modules = {}


class CommandPlugin:
    """A WASI command module served through Command protocol 1 (sdk/ABI.md), as kiln serves
    it: every call is a fresh instance with the call on stdin and the answer on stdout,
    WASI preview 1 with no arguments, environment or directories. Same interface as Plugin;
    `logs` collects stderr lines, `stdout` and `stderr` keep the last call's raw output."""

    def __init__(self, engine, name, parameters=None, memory_mb=256, timeout_ms=1000):
        self.engine = engine
        self.parameters = dict(parameters or {})
        self.logs = []
        self.memory_mb = memory_mb
        self.timeout_ticks = max(1, timeout_ms // 2)
        if (engine, name) not in _modules:  # compiled code belongs to one engine
            _modules[engine, name] = wasmtime.Module.from_file(engine, str(plugin_path(name)))
        self.module = _modules[engine, name]
        self.linker = wasmtime.Linker(engine)
        self.linker.define_wasi()

    def run(self, request):
        """Runs the command once on `request` (bytes); returns its exit status."""
        out, err = bytearray(), bytearray()
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(request)
        try:
            wasi = wasmtime.WasiConfig()
            wasi.stdin_file = f.name
            wasi.stdout_custom = out.extend
            wasi.stderr_custom = err.extend
            store = wasmtime.Store(self.engine)
            store.set_wasi(wasi)
            store.set_limits(memory_size=self.memory_mb * MIB)
            store.set_epoch_deadline(self.timeout_ticks)
            instance = self.linker.instantiate(store, self.module)
            try:
                instance.exports(store)["_start"](store)
                status = 0
            except wasmtime.ExitTrap as e:
                status = e.code
        finally:
            os.unlink(f.name)
        self.stdout, self.stderr = bytes(out), bytes(err)
        self.logs += [line for line in self.stderr.decode(errors="replace").splitlines() if line.strip()]
        return status

    def _call(self, call, inputs=(), parameters=()):
        request = command_protocol.encode_request(call, self.parameters, list(inputs), list(parameters))
        status = self.run(request)
        assert status == 0, f"exit status {status}: {self.stderr.decode(errors='replace')}"
        return command_protocol.decode_response(self.stdout, call)

    def metadata(self):
        return self._call(command_protocol.METADATA)

    def process(self, *tensors, parameters=()):
        """Returns a list of output tensors, or an error record. `parameters`: (key, value) pairs."""
        return self._call(command_protocol.PROCESS, tensors, parameters)


def open_plugin(engine, name, **kwargs):
    """A CommandPlugin for a WASI command module (a Go plugin), else a Plugin (a component,
    or a marked core module that load() wraps into one)."""
    data = plugin_path(name).read_bytes()
    cls = CommandPlugin if component_info.command_problem(data) is None else Plugin
    return cls(engine, name, **kwargs)


def tensor(name, datatype, shape, data=b"", elements=()):
    return SimpleNamespace(name=name, datatype=datatype, shape=list(shape), data=bytes(data), elements=list(elements))


def fp32(name, values, shape=None):
    return tensor(name, "fp32", shape or [len(values)], struct.pack(f"<{len(values)}f", *values))


def floats(t):
    assert t.datatype == "fp32", t.datatype
    return list(struct.unpack(f"<{len(t.data) // 4}f", t.data))


def is_error(result):
    return not isinstance(result, list)


def trap_message(excinfo):
    return str(excinfo.value)


# --- scale / empty ------------------------------------------------------


def test_scale_metadata_declares_fp32_input_and_output(engine):
    meta = Plugin(engine, "scale").metadata()
    assert meta.name == "scale"
    assert [(t.name, t.datatype, t.dims) for t in meta.inputs] == [("INPUT", "fp32", [-1])]
    assert [(t.name, t.datatype, t.dims) for t in meta.outputs] == [("OUTPUT", "fp32", [-1])]


def test_scale_default_factor_is_two_and_shape_is_kept(engine):
    p = Plugin(engine, "scale")
    out = p.process(fp32("INPUT", [1, -2, 3.5, 0, 10, 20], shape=[2, 3]))
    assert [(t.name, t.shape) for t in out] == [("OUTPUT", [2, 3])]
    assert floats(out[0]) == [2, -4, 7, 0, 20, 40]


def test_scale_reads_factor_from_config_and_logs_it(engine):
    p = Plugin(engine, "scale", parameters={"factor": "0.5"})
    p.metadata()
    assert ("info", "scale: factor 0.5", {}) in p.logs
    for _ in range(3):  # the instance is reusable
        assert floats(p.process(fp32("INPUT", [4, 8]))[0]) == [2, 4]


def test_scale_bad_factor_is_unavailable(engine):
    result = Plugin(engine, "scale", parameters={"factor": "lots"}).process(fp32("INPUT", [1]))
    assert is_error(result)
    assert result.kind == "unavailable"
    assert result.message == "config parameter 'factor': cannot parse 'lots' as f32: invalid float literal"


def test_scale_wrong_datatype_and_missing_input_are_invalid_argument(engine):
    p = Plugin(engine, "scale")
    wrong = p.process(tensor("INPUT", "int32", [1], struct.pack("<i", 3)))
    assert (wrong.kind, wrong.message) == ("invalid-argument", "tensor 'INPUT' is INT32, expected FP32")
    missing = p.process(fp32("OTHER", [1]))
    assert (missing.kind, missing.message) == ("invalid-argument", "missing input tensor 'INPUT' (the request has: OTHER)")
    short = p.process(tensor("INPUT", "fp32", [4], b"\0" * 8))
    assert short.kind == "invalid-argument" and "needs 16 bytes, data has 8" in short.message


def test_scale_large_tensor(engine):
    n = 64 * 1024
    out = Plugin(engine, "scale", parameters={"factor": "3"}).process(fp32("INPUT", [1.0] * n))
    assert floats(out[0]) == [3.0] * n


def test_empty_returns_input_unchanged(engine):
    p = Plugin(engine, "empty")
    data = [1.5, -2.0, 2.0**100]
    out = p.process(fp32("INPUT", data, shape=[1, 3]))
    assert (out[0].name, out[0].shape, floats(out[0])) == ("OUTPUT", [1, 3], data)


# --- hostile plugins: harmless with INPUT[0] <= 0 -----------------------

HOSTILE = ["hostile_loop", "hostile_memory", "hostile_recursion", "hostile_trap", "hostile_giant_output", "hostile_wrong_output", "hostile_fs"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_plugins_pass_through_when_not_triggered(engine, name):
    p = Plugin(engine, name)
    meta = p.metadata()
    assert [t.name for t in meta.inputs] == ["INPUT"] and [t.name for t in meta.outputs] == ["OUTPUT"]
    out = p.process(fp32("INPUT", [0, 5, 6]))
    assert [(t.name, floats(t)) for t in out] == [("OUTPUT", [0, 5, 6])]


def test_hostile_loop_is_stopped_by_the_deadline(engine):
    p = Plugin(engine, "hostile_loop", timeout_ms=100)
    start = time.monotonic()
    with pytest.raises(wasmtime.WasmtimeError) as e:
        p.process(fp32("INPUT", [1]))
    assert time.monotonic() - start < 5
    assert "interrupt" in trap_message(e).lower()


def test_hostile_memory_hits_the_cap(engine):
    p = Plugin(engine, "hostile_memory", memory_mb=32)
    with pytest.raises(wasmtime.WasmtimeError) as e:
        p.process(fp32("INPUT", [1]))
    assert "unreachable" in trap_message(e)
    (level, message, _), = [l for l in p.logs if l[0] == "warn"]
    held = int(message.split("holding ")[1].split(" MiB")[0])
    assert 20 <= held <= 32, message


@pytest.mark.parametrize("mode", [1.0, 2.0])
def test_hostile_recursion_traps(engine, mode):
    p = Plugin(engine, "hostile_recursion")
    with pytest.raises(wasmtime.WasmtimeError) as e:
        p.process(fp32("INPUT", [mode]))
    # 1: wasm call stack (wasmtime's max_wasm_stack); 2: Rust's shadow stack
    # in linear memory runs below address 0.
    expected = "call stack exhausted" if mode == 1.0 else "out of bounds memory access"
    assert expected in trap_message(e)


def test_hostile_trap_panic_is_logged_then_traps(engine):
    p = Plugin(engine, "hostile_trap")
    with pytest.raises(wasmtime.WasmtimeError) as e:
        p.process(fp32("INPUT", [1]))
    assert "unreachable" in trap_message(e)
    (level, message, fields), = p.logs
    assert level == "error" and message == "plugin panicked: hostile_trap: deliberate panic (INPUT[0] = 1)"
    assert fields["location"].startswith("hostile_trap/src/lib.rs:")


def test_hostile_trap_unreachable(engine):
    p = Plugin(engine, "hostile_trap")
    with pytest.raises(wasmtime.WasmtimeError) as e:
        p.process(fp32("INPUT", [2]))
    assert "unreachable" in trap_message(e)
    assert p.logs == []


def test_hostile_giant_output_returns_what_fits(engine):
    p = Plugin(engine, "hostile_giant_output", memory_mb=3)
    out = p.process(fp32("INPUT", [1]))
    (t,) = out
    assert t.name == "OUTPUT" and t.datatype == "fp32"
    assert len(t.data) >= MIB and t.shape == [len(t.data) // 4]


def test_hostile_wrong_output_modes(engine):
    p = Plugin(engine, "hostile_wrong_output")
    (a,) = p.process(fp32("INPUT", [1]))
    assert (a.name, a.datatype, a.shape, len(a.data)) == ("OUTPUT", "int32", [7, 3], 84)
    (b,) = p.process(fp32("INPUT", [2]))
    assert (b.name, b.datatype, b.shape, len(b.data)) == ("OUTPUT", "fp32", [1000], 4)
    (c,) = p.process(fp32("INPUT", [3]))
    assert (c.name, c.shape) == ("NOT_DECLARED", [1])
    assert p.process(fp32("INPUT", [4])) == []
    d1, d2 = p.process(fp32("INPUT", [5]))
    assert d1.name == d2.name == "OUTPUT"
    (e,) = p.process(fp32("INPUT", [6]))
    assert (e.name, e.datatype, len(e.data), e.elements) == ("OUTPUT", "bytes", 5, [])


def test_hostile_fs_cannot_read_without_preopens(engine):
    # This host links wasi:filesystem (kiln refuses the component at load);
    # with no preopened directory the read fails inside the plugin.
    result = Plugin(engine, "hostile_fs").process(fp32("INPUT", [1]))
    assert is_error(result) and result.kind == "unavailable"
    assert result.message.startswith("hostile_fs: cannot read /etc/passwd:")
