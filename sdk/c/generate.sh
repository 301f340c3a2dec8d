#!/usr/bin/env bash
# Regenerates the C SDK's wit-bindgen bindings (sdk/c/bindings/) from
# sdk/wit/v1.0.0/plugin.wit (the oldest ABI kiln serves, so C plugins load on
# every kiln since 1.0.0). The generated files are committed, so building a C
# plugin needs no Rust toolchain; run this after changing the WIT.
#
#   sdk/c/generate.sh           # regenerate
#   sdk/c/generate.sh --check   # exit 1 if the committed bindings are stale
#
# Installs what is missing, idempotently: wit-bindgen-cli $WIT_BINDGEN_VERSION
# (C generator only) with `cargo install` into $KILN_TOOLS/cargo
# (default ~/.cache/kiln-tools/cargo; about 2 minutes on one core, once).
set -euo pipefail

WIT_BINDGEN_VERSION=0.61.1   # matches sdk/rust (wit-bindgen 0.61)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="${KILN_TOOLS:-$HOME/.cache/kiln-tools}"
bin="$tools/cargo/bin/wit-bindgen"

if [[ ! -x "$bin" ]] || [[ "$("$bin" --version 2>/dev/null)" != *" $WIT_BINDGEN_VERSION"* ]]; then
    echo "installing wit-bindgen-cli $WIT_BINDGEN_VERSION into $tools/cargo" >&2
    cargo install wit-bindgen-cli --version "=$WIT_BINDGEN_VERSION" --locked --no-default-features \
        --features c --root "$tools/cargo" -j "${CARGO_BUILD_JOBS:-1}" --force >&2
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$bin" c "$root/sdk/wit/v1.0.0/plugin.wit" --world plugin --out-dir "$tmp" >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; exit 1; }

out="$root/sdk/c/bindings"
if [[ "${1:-}" == "--check" ]]; then
    for f in plugin.c plugin.h plugin_component_type.o; do
        if ! cmp -s "$tmp/$f" "$out/$f"; then
            echo "sdk/c/bindings/$f is stale: run sdk/c/generate.sh" >&2
            exit 1
        fi
    done
    echo "sdk/c/bindings: up to date (wit-bindgen $WIT_BINDGEN_VERSION)"
    exit 0
fi
mkdir -p "$out"
cp "$tmp"/plugin.c "$tmp"/plugin.h "$tmp"/plugin_component_type.o "$out/"
echo "wrote sdk/c/bindings/{plugin.c,plugin.h,plugin_component_type.o} (wit-bindgen $WIT_BINDGEN_VERSION)"
