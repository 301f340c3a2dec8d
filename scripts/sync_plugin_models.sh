#!/usr/bin/env bash
# The plugin components committed into model_repository/ (so that serving it,
# e.g. scripts/demo.sh, needs no WebAssembly toolchain) are build outputs of
# plugins/build.sh. This rebuilds them and copies them in, or checks that the
# committed files are exactly what the sources build to.
#
#   scripts/sync_plugin_models.sh           # rebuild and copy (then commit them)
#   scripts/sync_plugin_models.sh --check   # exit 1 if a committed model.wasm is stale
#
# Reproducibility: a Rust build depends on where the sources are. rustc embeds
# source paths (panic locations), and cargo hashes the absolute path of the
# SDK, a path dependency outside plugins/rust, into every symbol name of the
# name section. So the build runs plugins/build.sh in a copy of the plugin
# sources at a fixed path ($BUILD_DIR), with CARGO_HOME remapped, and its own
# target dir (target/plugins-models, so the everyday builds do not recompile).
# The bytes still depend on the toolchains: rustc (wasm32-wasip2), and
# clang-16/wasi-libc/wasm-tools for C (pinned by plugins/c/build.sh). A
# --check failure after a toolchain or SDK change means: run this script and
# commit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# model_repository/<model>/1/model.wasm <- target/plugins/<plugin>.wasm
MODELS=(
    "digits_preprocess:image_preprocess"
    "digits_postprocess:classify_postprocess"
)

BUILD_DIR=/tmp/kiln-plugin-models
exec 9>"$BUILD_DIR.lock"
flock 9   # one build at a time in the fixed directory
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR/plugins" "$BUILD_DIR/sdk"
# What plugins/build.sh needs for these plugins (no build outputs, no node_modules).
tar -C "$root" --exclude=target --exclude=node_modules -cf - \
    plugins/build.sh plugins/rust plugins/c sdk/rust sdk/wit sdk/c sdk/tools/component_info.py \
    $(cd "$root" && ls plugins/lib.sh 2>/dev/null) | tar -C "$BUILD_DIR" -xf -
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
RUSTFLAGS="--remap-path-prefix=$cargo_home=/cargo" \
    KILN_PLUGINS_TARGET_DIR="$root/target/plugins-models" \
    bash "$BUILD_DIR/plugins/build.sh" image_preprocess c >&2

stale=0
for entry in "${MODELS[@]}"; do
    model="${entry%%:*}"
    plugin="${entry#*:}"
    built="$BUILD_DIR/target/plugins/$plugin.wasm"
    committed="model_repository/$model/1/model.wasm"
    if cmp -s "$built" "$committed"; then
        echo "$committed: up to date ($plugin)"
    elif [[ "${1:-}" == "--check" ]]; then
        echo "$committed differs from a fresh build of $plugin ($built; $(rustc --version))." >&2
        echo "  Run scripts/sync_plugin_models.sh and commit the result." >&2
        stale=1
    else
        mkdir -p "$(dirname "$committed")"
        cp "$built" "$committed"
        echo "$committed: updated from $built ($(stat -c %s "$committed") bytes)"
    fi
done
exit $stale
