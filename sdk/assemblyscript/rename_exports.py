#!/usr/bin/env python3
"""Renames (and duplicates) exports of a core WebAssembly module.

AssemblyScript can export only identifiers, but the canonical ABI names its
exports `kiln:plugin/processor@1.0.0#process` and the like (sdk/ABI.md,
"Core-module ABI"; the version is the one the module's kiln_abi_version_*
marker names). This rewrites the export section: each OLD=NEW[,NEW2...]
replaces export OLD by one export per NEW name (same function); other
exports are kept. Standard library only; part of the AssemblyScript SDK
(sdk/assemblyscript/README.md), which plugins/assemblyscript/build.sh uses.

    python3 rename_exports.py in.wasm out.wasm metadata=kiln:plugin/processor@1.0.0#metadata ...
"""
import sys


def leb(data, pos):
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def enc(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def name_bytes(s):
    b = s.encode()
    return enc(len(b)) + b


def rename(data, renames):
    if data[:8] != b"\0asm\x01\0\0\0":
        raise SystemExit("not a core module")
    out, pos, done = bytearray(data[:8]), 8, set()
    while pos < len(data):
        section = data[pos]
        size, body = leb(data, pos + 1)
        end = body + size
        if section == 7:  # export section
            count, p = leb(data, body)
            entries = []
            for _ in range(count):
                n, p = leb(data, p)
                name = data[p:p + n].decode()
                p += n
                kind = data[p]
                index, p = leb(data, p + 1)
                for new in renames.get(name, [name]):
                    entries.append(name_bytes(new) + bytes([kind]) + enc(index))
                done.add(name)
            payload = enc(len(entries)) + b"".join(entries)
            out += bytes([7]) + enc(len(payload)) + payload
        else:
            out += data[pos:end]
        pos = end
    missing = set(renames) - done
    if missing:
        raise SystemExit(f"no export named {', '.join(sorted(missing))}")
    return bytes(out)


def main(argv):
    src, dst, *pairs = argv
    renames = {}
    for pair in pairs:
        old, new = pair.split("=", 1)
        renames[old] = new.split(",")
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(rename(data, renames))


if __name__ == "__main__":
    main(sys.argv[1:])
