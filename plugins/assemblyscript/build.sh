#!/usr/bin/env bash
# Builds kiln's AssemblyScript plugins (plugins/assemblyscript/<name>/<name>.ts)
# into components: target/plugins/<name>_assemblyscript.wasm.
# See sdk/assemblyscript/README.md.
#
#   plugins/assemblyscript/build.sh            # every plugin here
#   plugins/assemblyscript/build.sh normalize  # some of them
#
# How: AssemblyScript has no component tooling, so a plugin implements the
# canonical ABI of world `plugin` by hand (sdk/ABI.md, "Core-module ABI")
# and exports metadata / process / post_return / cabi_realloc; asc compiles
# it to a core module; rename_exports.py gives the exports their ABI names
# (asc exports only identifiers); `wasm-tools component embed` adds the
# world's types and `wasm-tools component new` makes the component.
#
# Needs Node.js >= 20 with npm. Installs (once): the npm packages
# of package-lock.json (assemblyscript and binaryen: about 25 MB download,
# 100 MB on disk) into plugins/assemblyscript/node_modules; wasm-tools (cargo
# install, about 3 minutes on one core; the same build plugins/c and
# plugins/zig use).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
here="$root/plugins/assemblyscript"
WASM_TOOLS_VERSION=1.258.0   # as plugins/c/build.sh
PROCESSOR="kiln:plugin/processor@1.0.0"
work="$root/target/plugins-assemblyscript"

need_node
lock_sha=$(npm_ci "$here")
wasm_tools=$(cargo_tool wasm-tools wasm-tools "=$WASM_TOOLS_VERSION" --no-default-features --features component)

all=()
for dir in "$here"/*/; do
    name=$(basename "$dir")
    [[ -f "$dir/$name.ts" ]] && all+=("$name")
done
names=("${@:-${all[@]}}")

mkdir -p "$work"
for name in "${names[@]}"; do
    src="$here/$name"
    [[ -f "$src/$name.ts" ]] || { log "no plugin '$name' (have: ${all[*]})"; exit 2; }
    stamp=$(stamp_of "$lock_sha wasm-tools $WASM_TOOLS_VERSION" "$src" "$root/sdk/wit/v1.0.0" "$here/build.sh" "$here/rename_exports.py")
    up_to_date "${name}_assemblyscript" "$stamp" && continue
    log "building ${name}_assemblyscript.wasm (asc)"
    # --runtime incremental: heap.alloc/heap.free (TLSF) back cabi_realloc,
    # and garbage from managed objects (strings) is collected.
    # --use abort=...: abort() logs through host.log instead of importing env.abort.
    (cd "$here" && node_modules/.bin/asc "$name/$name.ts" -O3 --runtime incremental \
        --use "abort=$name/$name/onAbort" -o "$work/$name.core.wasm" >&2)
    python3 "$here/rename_exports.py" "$work/$name.core.wasm" "$work/$name.renamed.wasm" \
        "metadata=$PROCESSOR#metadata" "process=$PROCESSOR#process" \
        "post_return=cabi_post_$PROCESSOR#metadata,cabi_post_$PROCESSOR#process"
    "$wasm_tools" component embed "$root/sdk/wit/v1.0.0" --world plugin "$work/$name.renamed.wasm" -o "$work/$name.embedded.wasm"
    tmp="$out/.${name}_assemblyscript.wasm.tmp"
    "$wasm_tools" component new "$work/$name.embedded.wasm" -o "$tmp"
    publish "${name}_assemblyscript" "$tmp" "$stamp"
done
