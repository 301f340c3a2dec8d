#!/usr/bin/env python3
"""Tells whether .wasm files are components or core modules, and lists the
top-level imports of each (what a host must provide to instantiate it).

    python3 sdk/tools/component_info.py target/plugins/*.wasm
    python3 sdk/tools/component_info.py --check-component --summary target/plugins/*.wasm

--check-component exits 1 if any file is not a component; --check-kiln-imports
exits 1 if a file is something kiln would refuse at load: a component that
imports wasi:filesystem, wasi:sockets or wasi:http (sdk/ABI.md, "Grants"),
or a core module that is neither a marked core module without WASI imports
whose kiln:plugin names carry the marker's version (sdk/ABI.md,
"Core-module ABI") nor a command module; --check-command exits 1
unless every file is a WASI command module that kiln serves through the
command protocol (a core module exporting `_start`, no `kiln_abi_version_*`
marker, importing only `wasi_snapshot_preview1`; sdk/ABI.md, "Command
protocol 1"); --summary prints one line per file (size, kind, imports
grouped by package). No dependencies
(wasm-tools is not needed): it reads the binary format directly, so it can
be copied out of kiln's repository on its own (sdk/tools/README.md).
"""

import re
import sys

MAGIC = b"\0asm"
COMPONENT_VERSION = b"\x0d\x00\x01\x00"
CORE_VERSION = b"\x01\x00\x00\x00"


class Reader:
    def __init__(self, data, pos=0):
        self.data, self.pos = data, pos

    def u8(self):
        b = self.data[self.pos]
        self.pos += 1
        return b

    def leb(self):
        result = shift = 0
        while True:
            b = self.u8()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    def name(self):
        n = self.leb()
        s = self.data[self.pos : self.pos + n].decode("utf-8")
        self.pos += n
        return s


def kind(data):
    if data[:4] != MAGIC:
        return "not wasm"
    if data[4:8] == COMPONENT_VERSION:
        return "component"
    if data[4:8] == CORE_VERSION:
        return "core module"
    return "unknown wasm version " + data[4:8].hex()


def skip_component_type_ref(r):
    """Skips an externdesc (component model binary format)."""
    sort = r.u8()
    if sort == 0x00:  # core module: 0x00 0x11 typeidx
        r.u8()
        r.leb()
    elif sort in (0x01, 0x04, 0x05):  # func, component, instance: typeidx
        r.leb()
    elif sort == 0x02:  # value bound: 0x00 valueidx | 0x01 valtype
        r.u8()
        r.leb()
    elif sort == 0x03:  # type bound: 0x00 typeidx (eq) | 0x01 (sub resource)
        if r.u8() == 0x00:
            r.leb()
    else:
        raise ValueError(f"unknown extern sort 0x{sort:02x}")
    return {0x00: "module", 0x01: "func", 0x02: "value", 0x03: "type", 0x04: "component", 0x05: "instance"}[sort]


def component_imports(data):
    """Top-level imports of a component: [(name, sort)]."""
    imports = []
    for section, r, _, _ in sections(data):
        if section != 10:  # component import section
            continue
        for _ in range(r.leb()):
            tag = r.u8()
            if tag not in (0x00, 0x01):
                raise ValueError(f"unsupported import name encoding 0x{tag:02x}")
            name = r.name()
            imports.append((name, skip_component_type_ref(r)))
    return imports


def sections(data):
    """(section id, Reader at its contents, header offset, end offset) for each section of a
    core module or a component (both frame sections as id, LEB128 size, contents)."""
    r = Reader(data, 8)
    while r.pos < len(data):
        start = r.pos
        section = r.u8()
        size = r.leb()
        end = r.pos + size
        yield section, Reader(data, r.pos), start, end
        r.pos = end


def skip_limits(r):
    flags = r.u8()
    r.leb()  # minimum
    if flags & 0x01:
        r.leb()  # maximum
    if flags & 0x08:
        r.leb()  # custom page size (log2)


def core_imports_all(data):
    """Every import of a core module: [("module.name", kind)]."""
    imports = []
    for section, r, _, _ in sections(data):
        if section != 2:
            continue
        for _ in range(r.leb()):
            module, field = r.name(), r.name()
            k = r.u8()
            if k == 0x00:  # func: type index
                r.leb()
            elif k == 0x01:  # table: reftype, limits
                r.u8()
                skip_limits(r)
            elif k == 0x02:  # memory: limits
                skip_limits(r)
            elif k == 0x03:  # global: valtype, mutability
                r.u8()
                r.u8()
            elif k == 0x04:  # tag: attribute, type index
                r.u8()
                r.leb()
            else:
                raise ValueError(f"unknown import kind 0x{k:02x}")
            imports.append((f"{module}.{field}", ["func", "table", "memory", "global", "tag"][k]))
    return imports


def core_exports(data):
    """Exports of a core module: [(name, kind)]."""
    exports = []
    for section, r, _, _ in sections(data):
        if section != 7:
            continue
        for _ in range(r.leb()):
            name = r.name()
            k = r.u8()
            r.leb()
            exports.append((name, ["func", "table", "memory", "global", "tag"][k]))
    return exports


def command_problem(data):
    """Why kiln would not serve this file as a command module, or None."""
    if kind(data) != "core module":
        return f"a {kind(data)}, not a core module"
    exports = dict(core_exports(data))
    if exports.get("_start") != "func":
        return "no _start export"
    markers = [n for n in exports if n.startswith("kiln_abi_version_")]
    if markers:
        return f"exports {markers[0]}: kiln would serve it through the core-module ABI"
    other = sorted({n.rsplit(".", 1)[0] for n, _ in core_imports_all(data)} - {"wasi_snapshot_preview1"})
    if other:
        return f"imports from {', '.join(other)} (a command module may import only wasi_snapshot_preview1)"
    return None


# Core-module ABI versions kiln serves (host/src/backend/wasm/binary.rs).
MARKERS = ("kiln_abi_version_1_0_0", "kiln_abi_version_1_1_0")


def core_module_problem(data):
    """Why kiln would not serve this core module through the core-module ABI, or None."""
    markers = [n for n, sort in core_exports(data) if n.startswith("kiln_abi_version_") and sort == "func"]
    if len(markers) != 1:
        return f"{len(markers)} kiln_abi_version_* marker exports (need exactly one of {', '.join(MARKERS)})"
    if markers[0] not in MARKERS:
        return f"marker {markers[0]} is not a supported ABI version ({', '.join(MARKERS)})"
    wasi = [n for n, _ in core_imports_all(data) if n.startswith("wasi_snapshot_preview1.")]
    if wasi:
        return f"imports {wasi[0]} (core-module plugins may not import WASI)"
    # Every kiln:plugin/... import and export name carries the marker's version.
    version = markers[0][len("kiln_abi_version_"):].replace("_", ".")
    names = [f"import {n}" for n, _ in core_imports_all(data)] + [f"export {n}" for n, _ in core_exports(data)]
    for name in names:
        m = re.search(r"kiln:plugin/[a-z0-9-]+@([0-9][0-9.]*[0-9])", name)
        if m and m.group(1) != version:
            return f"{name} is of ABI {m.group(1)}, but the marker {markers[0]} says {version}"
    return None


# Import prefixes kiln refuses at load (host/src/backend/wasm/policy.rs).
REFUSED = ("wasi:filesystem/", "wasi:sockets/", "wasi:http/")


def grouped(names):
    """['wasi:io/poll@0.2.6', 'wasi:io/error@0.2.6'] -> 'wasi:io/{poll,error}@0.2.6'."""
    groups = {}
    for name in names:
        base, _, version = name.partition("@")
        package, _, iface = base.partition("/")
        groups.setdefault((package, version), []).append(iface)
    parts = []
    for (package, version), ifaces in groups.items():
        inner = ifaces[0] if len(ifaces) == 1 else "{" + ",".join(ifaces) + "}"
        parts.append(f"{package}/{inner}" + (f"@{version}" if version else ""))
    return " ".join(parts)


def main(argv):
    check = "--check-component" in argv
    summary = "--summary" in argv
    check_imports = "--check-kiln-imports" in argv
    check_command = "--check-command" in argv
    paths = [a for a in argv if not a.startswith("--")]
    ok = True
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        k = kind(data)
        if check_command:
            problem = command_problem(data)
            if problem:
                print(f"error: {path}: {problem}", file=sys.stderr)
                ok = False
        elif check_imports and k == "core module":
            problem = core_module_problem(data) if any(
                n.startswith("kiln_abi_version_") for n, _ in core_exports(data)) else command_problem(data)
            if problem:
                print(f"error: {path}: {problem}", file=sys.stderr)
                ok = False
        elif k != "component":
            ok = False
        elif check_imports:
            refused = [n for n, _ in component_imports(data) if n.startswith(REFUSED)]
            if refused:
                print(f"error: {path} imports {', '.join(refused)}, which kiln refuses", file=sys.stderr)
                ok = False
        if summary:
            if k == "component":
                imports = grouped(n for n, _ in component_imports(data))
            elif k == "core module":
                imports = " ".join(sorted({n.rsplit(".", 1)[0] for n, _ in core_imports_all(data)}))
            else:
                imports = ""
            print(f"{path.rsplit('/', 1)[-1]:<28} {len(data):>9} bytes  {k}  imports: {imports}")
            continue
        print(f"{path}: {k}, {len(data)} bytes")
        if k == "component":
            for name, sort in component_imports(data):
                print(f"  import {sort} {name}")
        elif k == "core module":
            for name, sort in core_imports_all(data):
                print(f"  import {sort} {name}")
            for name, sort in core_exports(data):
                print(f"  export {sort} {name}")
    if check_command and not ok:
        print("error: not every file is a command module that kiln can load", file=sys.stderr)
        return 1
    if (check or check_imports) and not ok:
        print("error: not every file is a component that kiln can load", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
