#!/usr/bin/env bash
# Builds kiln's C plugins (plugins/c/<name>/*.c, written against the C SDK in
# sdk/c) into components at target/plugins/<name>.wasm. Called by
# plugins/build.sh; idempotent: a re-run with nothing changed rewrites nothing.
#
#   plugins/c/build.sh                        # all C plugins
#   plugins/c/build.sh classify_postprocess   # some of them
#
# Installs what is missing, once (each step is skipped when already there):
#   - Debian packages clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32
#     (the compiler, wasm-ld, the WASI libc sysroot, compiler-rt builtins)
#   - wasm-tools $WASM_TOOLS_VERSION ("component" feature only), the
#     componentizer, with `cargo install` into $KILN_TOOLS/cargo
#     (default ~/.cache/kiln-tools; a few minutes on one core, once)
#   - only if a plugin's core module imports WASI preview 1 (printf to stdout
#     and the like): the preview-1 -> 0.2 reactor adapter, taken from the
#     crates.io crate wasi-preview1-component-adapter-provider with `cargo fetch`
# The WIT bindings are not generated here: sdk/c/bindings is committed
# (sdk/c/generate.sh regenerates it).
#
# Environment: CARGO_BUILD_JOBS (default 1), KILN_TOOLS.
set -euo pipefail

WASM_TOOLS_VERSION=1.258.0   # wit-component 0.258, as wit-bindgen 0.61 uses
ADAPTER_VERSION=48.0.8       # wasi-preview1-component-adapter-provider, as kiln's wasmtime (host/Cargo.toml)
CLANG=clang-16

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="${KILN_TOOLS:-$HOME/.cache/kiln-tools}"
out="$root/target/plugins"
work="$root/target/plugins-c"
sdk="sdk/c"   # relative paths keep the build independent of the checkout's location

# --- toolchain ---------------------------------------------------------------
need_apt=()
command -v "$CLANG" >/dev/null || need_apt+=(clang-16)
command -v wasm-ld-16 >/dev/null || need_apt+=(lld-16)
[[ -f /usr/lib/wasm32-wasi/libc.a ]] || need_apt+=(wasi-libc)
compgen -G "/usr/lib/llvm-16/lib/clang/16*/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null \
    || need_apt+=(libclang-rt-16-dev-wasm32)
if ((${#need_apt[@]})); then
    echo "installing ${need_apt[*]} (apt)" >&2
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

wasm_tools="$tools/cargo/bin/wasm-tools"
if [[ ! -x "$wasm_tools" ]] || [[ "$("$wasm_tools" --version 2>/dev/null)" != "wasm-tools $WASM_TOOLS_VERSION"* ]]; then
    echo "installing wasm-tools $WASM_TOOLS_VERSION into $tools/cargo (cargo install, once)" >&2
    cargo install wasm-tools --version "=$WASM_TOOLS_VERSION" --locked --no-default-features \
        --features component --root "$tools/cargo" -j "${CARGO_BUILD_JOBS:-1}" --force >&2
fi

# The reactor adapter, fetched on first need (see above).
adapter() {
    local dir="$tools/wasi-adapter-$ADAPTER_VERSION"
    local file="$dir/wasi_snapshot_preview1.reactor.wasm"
    if [[ ! -f "$file" ]]; then
        echo "fetching wasi-preview1-component-adapter-provider $ADAPTER_VERSION (cargo fetch)" >&2
        local proj
        proj="$(mktemp -d)"
        mkdir -p "$proj/src"
        : >"$proj/src/lib.rs"
        printf '[package]\nname = "fetch-adapter"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nwasi-preview1-component-adapter-provider = "=%s"\n[workspace]\n' \
            "$ADAPTER_VERSION" >"$proj/Cargo.toml"
        (cd "$proj" && cargo fetch -q >&2)
        local src
        src="$(cargo metadata -q --format-version 1 --manifest-path "$proj/Cargo.toml" |
            python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="wasi-preview1-component-adapter-provider"))')"
        mkdir -p "$dir"
        cp "$(dirname "$src")/artefacts/wasi_snapshot_preview1.reactor.wasm" "$file"
        rm -rf "$proj"
    fi
    echo "$file"
}

# --- plugins -------------------------------------------------------------------
cd "$root"
all=()
for d in plugins/c/*/; do
    compgen -G "$d*.c" >/dev/null && all+=("$(basename "$d")")
done
names=("${@:-${all[@]}}")

mkdir -p "$out" "$work"
built=()
for name in "${names[@]}"; do
    dir="plugins/c/$name"
    compgen -G "$dir/*.c" >/dev/null || { echo "no C plugin '$name' in plugins/c (have: ${all[*]})" >&2; exit 2; }
    core="$work/$name.core.wasm"
    comp="$work/$name.wasm"
    # -mexec-model=reactor: a library module (exports, no main), with
    # _initialize (wasi-libc's constructors) that the component runs first.
    # -lc-printscan-long-double: wasi-libc's default printf family refers to
    # stderr (to complain about long double), which drags WASI fd imports
    # into every module that calls snprintf; this variant does not.
    "$CLANG" --target=wasm32-wasi -mexec-model=reactor -std=c11 -O2 -Wall -Wextra \
        -I "$sdk" "$dir"/*.c "$sdk/kiln_plugin.c" "$sdk/bindings/plugin.c" "$sdk/bindings/plugin_component_type.o" \
        -lc-printscan-long-double -Wl,--strip-debug -o "$core"
    if grep -q "kiln_abi_version_" "$dir"/*.c; then
        # A core module of the core-module ABI (it exports the version
        # marker): kiln wraps it at load, so it is published as it is.
        python3 sdk/tools/component_info.py --check-kiln-imports "$core" >/dev/null || {
            python3 sdk/tools/component_info.py "$core" >&2
            echo "$name: not a core module that kiln would load (see above)" >&2
            exit 1
        }
        dst="$out/$name.wasm"
        cmp -s "$core" "$dst" || { cp "$core" "$dst.tmp" && mv "$dst.tmp" "$dst"; }
        continue
    fi
    adapt=()
    # Does the core module import WASI preview 1? (its length-prefixed name)
    if python3 -c 'import sys; sys.exit(b"\x16wasi_snapshot_preview1" not in open(sys.argv[1], "rb").read())' "$core"; then
        adapt=(--adapt "wasi_snapshot_preview1=$(adapter)")
    fi
    "$wasm_tools" component new "$core" "${adapt[@]}" -o "$comp"
    # A component, importing nothing kiln refuses (stdio streams through the
    # adapter would import wasi:filesystem: log with kiln_log, not printf).
    python3 sdk/tools/component_info.py --check-component --check-kiln-imports "$comp" >/dev/null || {
        python3 sdk/tools/component_info.py "$comp" >&2
        echo "$name: not a component that kiln would load (see its imports above)" >&2
        exit 1
    }
    dst="$out/$name.wasm"
    if ! cmp -s "$comp" "$dst"; then
        cp "$comp" "$dst.tmp" && mv "$dst.tmp" "$dst"
    fi
    built+=("$dst")
done

python3 "$root/sdk/tools/component_info.py" --check-component --summary "${built[@]}"
