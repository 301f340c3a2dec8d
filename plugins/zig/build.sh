#!/usr/bin/env bash
# Builds kiln's Zig plugins (plugins/zig/<name>/<name>.zig) into core modules
# of kiln's core-module ABI: target/plugins/<name>_zig.wasm. See sdk/zig/README.md.
#
#   plugins/zig/build.sh            # every plugin under plugins/zig
#   plugins/zig/build.sh normalize  # some of them
#
# How: the plugin is compiled together with the C SDK's wit-bindgen bindings
# (sdk/c/bindings: plugin.c does the canonical-ABI lifting and lowering,
# plugin_component_type.o carries the world's type information) by Zig for
# wasm32-wasi as a reactor, into a core module that exports the ABI-version
# marker `kiln_abi_version_1_0_0`; kiln wraps it into a component when it
# loads it (sdk/ABI.md, "Core-module ABI"). The Zig code overrides the panic
# handler, so the core module imports no WASI at all.
#
# Installs (once): python3-venv from Debian if missing; ziglang $ZIG_VERSION
# (PyPI, a 50 MB wheel, 400 MB on disk) into the tool venv
# $KILN_TOOLS/ziglang-$ZIG_VERSION. Environment: KILN_TOOLS.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
here="$root/plugins/zig"
ZIG_VERSION=0.15.2
work="$root/target/plugins-zig"

python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
venv=$(tool_venv "ziglang-$ZIG_VERSION" "ziglang==$ZIG_VERSION")
zig=("$venv/bin/python" -m ziglang)

select_plugins "{}.zig" "$@" || exit 2

mkdir -p "$work"
for name in "${names[@]}"; do
    src="$here/$name"
    stamp=$(stamp_of "zig $ZIG_VERSION core-module" "$src" "$root/sdk/c/bindings" "$here/build.sh")
    up_to_date "${name}_zig" "$stamp" && continue
    log "building ${name}_zig.wasm (zig $ZIG_VERSION)"
    tmp="$out/.${name}_zig.wasm.tmp"
    # -mexec-model=reactor -fno-entry: a library module with _initialize;
    # the bindings export the kiln:plugin functions (export_name); the marker
    # is exported by name, so no -rdynamic is needed.
    (cd "$work" && "${zig[@]}" build-exe "$src/$name.zig" \
        "$root/sdk/c/bindings/plugin.c" "$root/sdk/c/bindings/plugin_component_type.o" \
        -I "$root/sdk/c/bindings" -lc -target wasm32-wasi -mexec-model=reactor -fno-entry \
        --export=kiln_abi_version_1_0_0 \
        -O ReleaseSmall --name "$name" -femit-bin="$tmp" >&2)
    if grep -q wasi_snapshot_preview1 "$tmp"; then
        log "$name: the core module imports WASI preview 1 (std.debug.print, std.fs, ...): kiln plugins must not"
        exit 1
    fi
    publish "${name}_zig" "$tmp" "$stamp"
done
