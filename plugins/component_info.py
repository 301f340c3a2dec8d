#!/usr/bin/env python3
"""Tells whether .wasm files are components or core modules, and lists the
top-level imports of each (what a host must provide to instantiate it).

    python3 plugins/component_info.py target/plugins/*.wasm
    python3 plugins/component_info.py --check-component --summary target/plugins/*.wasm

--check-component exits 1 if any file is not a component; --check-kiln-imports
exits 1 if a component imports what kiln refuses at load (wasi:filesystem,
wasi:sockets, wasi:http; see sdk/ABI.md, "Grants"); --summary prints one line
per file (size, kind, imports grouped by package). No dependencies
(wasm-tools is not needed): it reads the binary format directly.
"""

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
    r = Reader(data, 8)
    imports = []
    while r.pos < len(data):
        section = r.u8()
        size = r.leb()
        end = r.pos + size
        if section == 10:  # component import section
            for _ in range(r.leb()):
                tag = r.u8()
                if tag not in (0x00, 0x01):
                    raise ValueError(f"unsupported import name encoding 0x{tag:02x}")
                name = r.name()
                imports.append((name, skip_component_type_ref(r)))
        r.pos = end
    return imports


def core_imports(data):
    """Imports of a core module: [(module.name, kind)]."""
    r = Reader(data, 8)
    imports = []
    while r.pos < len(data):
        section = r.u8()
        size = r.leb()
        end = r.pos + size
        if section == 2:
            for _ in range(r.leb()):
                module, field = r.name(), r.name()
                k = r.u8()
                imports.append((f"{module}.{field}", ["func", "table", "memory", "global", "tag"][k]))
                # Skip the import's type; enough for listing, then stop.
                break
            r.pos = end
            break
        r.pos = end
    return imports


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
    paths = [a for a in argv if not a.startswith("--")]
    ok = True
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        k = kind(data)
        if k != "component":
            ok = False
        elif check_imports:
            refused = [n for n, _ in component_imports(data) if n.startswith(REFUSED)]
            if refused:
                print(f"error: {path} imports {', '.join(refused)}, which kiln refuses", file=sys.stderr)
                ok = False
        if summary:
            imports = grouped(n for n, _ in component_imports(data)) if k == "component" else ""
            print(f"{path.rsplit('/', 1)[-1]:<28} {len(data):>9} bytes  {k}  imports: {imports}")
            continue
        print(f"{path}: {k}, {len(data)} bytes")
        if k == "component":
            for name, sort in component_imports(data):
                print(f"  import {sort} {name}")
        elif k == "core module":
            for name, sort in core_imports(data):
                print(f"  import {sort} {name} (first only)")
    if (check or check_imports) and not ok:
        print("error: not every file is a component that kiln can load", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
