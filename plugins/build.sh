#!/usr/bin/env bash
# Builds kiln's plugins into target/plugins/*.wasm, checking that each is a
# component and printing its size and imports. Idempotent: a re-run with
# nothing changed takes a few seconds and rewrites nothing.
#
#   plugins/build.sh                 # everything: Rust, then every plugins/<lang>/build.sh
#   plugins/build.sh scale empty     # some Rust plugins (by package name)
#   plugins/build.sh rust js zig     # whole languages (rust, and the directories
#                                    # plugins/<lang> with a build.sh: assemblyscript, c, go,
#                                    # js, python, zig)
#
# Rust: the Cargo workspace plugins/rust (separate from the server's), built
# for wasm32-wasip2; each package <name> becomes target/plugins/<name>.wasm.
# Other languages: plugins/<lang>/build.sh writes target/plugins/<name>_<lang>.wasm
# (or, for C, <name>.wasm), installing its toolchain on first use (see each
# script; the JavaScript and Python toolchains are the large ones; Go comes
# from Debian's bookworm-backports). Go plugins are WASI command modules
# (sdk/ABI.md, "Command protocol 1"), not components.
#
# Environment: CARGO_BUILD_JOBS (default 1: leave a core for the host build),
# KILN_PLUGINS_TARGET_DIR (default target/plugins-cargo), KILN_TOOLS (where
# toolchains are installed, default ~/.cache/kiln-tools).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
workspace="$root/plugins/rust"
cargo_target="${KILN_PLUGINS_TARGET_DIR:-$root/target/plugins-cargo}"
out="$root/target/plugins"

# Rust packages: every cdylib crate under plugins/rust is a plugin (a
# workspace member); its package name names the output. Plain library crates
# (hostile_common) are shared code, not plugins.
all=()
for manifest in "$workspace"/*/Cargo.toml; do
    grep -q 'crate-type *= *\["cdylib"\]' "$manifest" || continue
    all+=("$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -1)")
done
langs=()
for script in "$root"/plugins/*/build.sh; do
    langs+=("$(basename "$(dirname "$script")")")
done

rust=()       # Rust packages to build
other=()      # other languages to build
if (($# == 0)); then
    rust=("${all[@]}")
    other=("${langs[@]}")
fi
for arg in "$@"; do
    if [[ "$arg" == rust ]]; then
        rust+=("${all[@]}")
    elif [[ " ${langs[*]} " == *" $arg "* ]]; then
        other+=("$arg")
    elif [[ " ${all[*]} " == *" $arg "* ]]; then
        rust+=("$arg")
    else
        echo "no plugin or language '$arg' (Rust plugins: ${all[*]}; languages: rust ${langs[*]})" >&2
        exit 2
    fi
done

if ((${#rust[@]})); then
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
        echo "installing the Rust target wasm32-wasip2" >&2
        rustup target add wasm32-wasip2
    fi
    packages=()
    for name in "${rust[@]}"; do
        packages+=(-p "$name")
    done
    (cd "$workspace" && cargo build --release --target wasm32-wasip2 --target-dir "$cargo_target" \
        -j "${CARGO_BUILD_JOBS:-1}" "${packages[@]}")

    mkdir -p "$out"
    built=()
    for name in "${rust[@]}"; do
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
    python3 "$root/sdk/tools/component_info.py" --check-component --summary "${built[@]}"
fi

for lang in "${other[@]}"; do
    bash "$root/plugins/$lang/build.sh"
done
