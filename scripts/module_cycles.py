#!/usr/bin/env python3
"""Fails when the modules of a kiln crate import each other in a cycle.

A module is a file under a crate's src/ (`lib.rs`/`main.rs` is the root; crates keep their
modules one level deep, a file or a folder with mod.rs). Module A depends on B
when A's code names B: `crate::b`, `super::b`, `b::` (a child's path from the root), or an item
the root defines (`crate::Item`, `use crate::{Item}`). The root's `mod b;` and `use`/`pub use`
lines are declarations, not dependencies; the root depends on a child where its own code uses
what it took from it. So a root that only declares and re-exports is a leaf to its children. Test modules (`tests.rs`, `#[cfg(test)]` blocks) are left out: they may see
everything.

    scripts/module_cycles.py            # every crate under host/ (and the binary)
"""
from __future__ import annotations

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def strip(text: str) -> str:
    """Code without comments, string literals and #[cfg(test)] modules."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while depth and j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def crate_graph(src: pathlib.Path) -> dict[str, set[str]]:
    root_file = "lib.rs" if (src / "lib.rs").exists() else "main.rs"
    files = {p.stem if p.name != root_file else "<root>": p for p in src.glob("*.rs") if p.name != "tests.rs"}
    for p in src.glob("*/mod.rs"):
        files[p.parent.name] = p
    root_code = strip(files["<root>"].read_text())
    root_items = set(re.findall(r"^\s*pub(?:\([^)]*\))?\s+(?:async\s+)?(?:fn|struct|enum|trait|type|const|static)\s+(\w+)",
                                root_code, re.M))
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        code = strip(path.read_text())
        if module == "<root>":
            # Names the root takes from a child (`use child::{A, B}`, `pub use child::A`):
            # using them in its own code depends on that child.
            imported: dict[str, str] = {}
            for child, names in re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+(?:self::|crate::)?(\w+)::([^;]*);",
                                            code, re.M):
                for name in re.findall(r"\w+", names):
                    imported[name] = child
            code = "\n".join(l for l in code.splitlines()
                             if not re.match(r"\s*(pub(\([^)]*\))?\s+)?(mod\s+\w+\s*;|use\s)", l))
            for name, child in imported.items():
                if child in files and re.search(rf"\b{name}\b", code):
                    graph[module].add(child)
        for other in files:
            if other in (module, "<root>"):
                continue
            if re.search(rf"\b(crate|super)::{other}\b", code) or (
                module == "<root>" and re.search(rf"(?<![:\w]){other}::", code)):
                graph[module].add(other)
        if module != "<root>":
            names = set(re.findall(r"\bcrate::(\w+)", code))
            for group in re.findall(r"\bcrate::\{([^}]*)\}", code):
                names |= set(re.findall(r"\w+", group))
            if names & root_items:
                graph[module].add("<root>")
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def main() -> int:
    crates = sorted(p for p in (ROOT / "host" / "crates").glob("*/src")) + [ROOT / "host" / "src"]
    failed = False
    for src in crates:
        found = cycle(crate_graph(src))
        name = src.parent.name if src.parent.name != "host" else "kiln"
        if found:
            failed = True
            print(f"{name}: module cycle {' -> '.join(found)}")
    if not failed:
        print(f"no module cycles in {len(crates)} crates")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
