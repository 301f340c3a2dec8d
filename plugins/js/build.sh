#!/usr/bin/env bash
# Builds kiln's JavaScript plugins (plugins/js/<name>/<name>.js) into
# components with ComponentizeJS (SpiderMonkey/StarlingMonkey compiled to
# wasm, plus the plugin's source, pre-initialised with wizer):
# target/plugins/<name>_js.wasm. See sdk/js/README.md.
#
#   plugins/js/build.sh            # every plugin under plugins/js
#   plugins/js/build.sh normalize  # some of them
#
# Needs Node.js >= 20 with npm. Installs (once): the npm packages
# of package-lock.json into plugins/js/node_modules (about 140 MB download,
# 385 MB on disk). A plugin is rebuilt only when its source, the WIT or the
# tools change (a ComponentizeJS build takes 15-30 s).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
here="$root/plugins/js"

need_node
lock_sha=$(npm_ci "$here")

select_plugins "{}.js" "$@" || exit 2

for name in "${names[@]}"; do
    src="$here/$name"
    stamp=$(stamp_of "$lock_sha" "$src" "$root/sdk/wit/v1.0.0" "$here/build.sh")
    up_to_date "${name}_js" "$stamp" && continue
    log "building ${name}_js.wasm (ComponentizeJS, about 20 s)"
    tmp="$out/.${name}_js.wasm.tmp"
    # --disable all WASI features: a "pure" component that imports only the
    # kiln:plugin world. The default stdio feature imports wasi:filesystem,
    # which kiln refuses. (Without stdio, console.log is unavailable and an
    # uncaught exception traps: catch errors and return them.)
    (cd "$here" && node_modules/.bin/componentize-js "$name/$name.js" \
        --wit ../../sdk/wit/v1.0.0 --world-name plugin \
        --disable stdio random clocks http fetch-event -o "$tmp" >&2)
    publish "${name}_js" "$tmp" "$stamp"
done
