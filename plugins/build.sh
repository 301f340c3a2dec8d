#!/usr/bin/env bash
# Builds kiln's Rust plugins (plugins/rust/*) for wasm32-wasip2 and copies
# each component to target/plugins/<name>.wasm. Idempotent: a re-run with
# nothing changed takes about a second and rewrites nothing.
#
#   plugins/build.sh            # all plugins
#   plugins/build.sh scale      # some of them
#
# Environment: CARGO_BUILD_JOBS (default 1: leave a core for the host build),
# KILN_PLUGINS_TARGET_DIR (default target/plugins-cargo).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
workspace="$root/plugins/rust"
cargo_target="${KILN_PLUGINS_TARGET_DIR:-$root/target/plugins-cargo}"
out="$root/target/plugins"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "installing the Rust target wasm32-wasip2" >&2
    rustup target add wasm32-wasip2
fi

# Every crate directory under plugins/rust is a plugin (a workspace member).
all=()
for manifest in "$workspace"/*/Cargo.toml; do
    all+=("$(basename "$(dirname "$manifest")")")
done
names=("${@:-${all[@]}}")

packages=()
for name in "${names[@]}"; do
    [[ -f "$workspace/$name/Cargo.toml" ]] || { echo "no plugin '$name' in plugins/rust (have: ${all[*]})" >&2; exit 2; }
    packages+=(-p "$name")
done

(cd "$workspace" && cargo build --release --target wasm32-wasip2 --target-dir "$cargo_target" \
    -j "${CARGO_BUILD_JOBS:-1}" "${packages[@]}")

mkdir -p "$out"
built=()
for name in "${names[@]}"; do
    src="$cargo_target/wasm32-wasip2/release/$name.wasm"
    dst="$out/$name.wasm"
    [[ -f "$src" ]] || { echo "cargo did not produce $src" >&2; exit 1; }
    # Copy only when changed, so the mtime (and any compiled-artifact cache
    # keyed on it) stays put on a no-op re-run.
    if ! cmp -s "$src" "$dst"; then
        cp "$src" "$dst.tmp" && mv "$dst.tmp" "$dst"
    fi
    built+=("$dst")
done

# Each file must be a component (version 0d 00 01 00), not a core module.
python3 "$root/plugins/component_info.py" --check-component --summary "${built[@]}"
