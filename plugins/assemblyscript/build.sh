#!/usr/bin/env bash
# Builds kiln's AssemblyScript plugins (plugins/assemblyscript/<name>/<name>.ts)
# into core modules of kiln's core-module ABI:
# target/plugins/<name>_assemblyscript.wasm.
# See sdk/assemblyscript/README.md.
#
#   plugins/assemblyscript/build.sh            # every plugin here
#   plugins/assemblyscript/build.sh normalize  # some of them
#
# How: AssemblyScript has no component tooling, so a plugin implements the
# canonical ABI of world `plugin` by hand (sdk/ABI.md, "Core-module ABI")
# and exports metadata / process / post_return / cabi_realloc; asc compiles
# it to a core module; sdk/assemblyscript/rename_exports.py (part of the
# AssemblyScript SDK) gives the exports their ABI names (asc exports only
# identifiers). The module exports the ABI-version marker
# `kiln_abi_version_1_0_0`, and kiln wraps it into a component when it loads
# it (sdk/ABI.md, "Core-module ABI"): no component tooling is needed.
#
# Needs Node.js >= 20 with npm. Installs (once): the npm packages
# of package-lock.json (assemblyscript and binaryen: about 25 MB download,
# 100 MB on disk) into plugins/assemblyscript/node_modules.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
here="$root/plugins/assemblyscript"
rename_exports="$root/sdk/assemblyscript/rename_exports.py"
PROCESSOR="kiln:plugin/processor@1.0.0"
work="$root/target/plugins-assemblyscript"

need_node
lock_sha=$(npm_ci "$here")

select_plugins "{}.ts" "$@" || exit 2

mkdir -p "$work"
for name in "${names[@]}"; do
    src="$here/$name"
    stamp=$(stamp_of "$lock_sha core-module" "$src" "$here/build.sh" "$rename_exports")
    up_to_date "${name}_assemblyscript" "$stamp" && continue
    log "building ${name}_assemblyscript.wasm (asc)"
    # --runtime incremental: heap.alloc/heap.free (TLSF) back cabi_realloc,
    # and garbage from managed objects (strings) is collected.
    # --use abort=...: abort() logs through host.log instead of importing env.abort.
    (cd "$here" && node_modules/.bin/asc "$name/$name.ts" -O3 --runtime incremental \
        --use "abort=$name/$name/onAbort" -o "$work/$name.core.wasm" >&2)
    tmp="$out/.${name}_assemblyscript.wasm.tmp"
    python3 "$rename_exports" "$work/$name.core.wasm" "$tmp" \
        "metadata=$PROCESSOR#metadata" "process=$PROCESSOR#process" \
        "post_return=cabi_post_$PROCESSOR#metadata,cabi_post_$PROCESSOR#process"
    publish "${name}_assemblyscript" "$tmp" "$stamp"
done
