#!/usr/bin/env bash
# Builds kiln's Python plugins (plugins/python/<name>/app.py) into components
# with componentize-py (CPython compiled to wasm, plus the plugin's modules,
# pre-initialised): target/plugins/<name>_python.wasm. See sdk/python/README.md.
#
#   plugins/python/build.sh            # every plugin under plugins/python
#   plugins/python/build.sh normalize  # some of them
#
# Installs (once): python3-venv from Debian if missing; componentize-py into
# the tool venv $KILN_TOOLS/componentize-py-0.25.1 (a 17 MB wheel, 72 MB on
# disk). A plugin is rebuilt only when its source, the WIT or the tool
# change (a build takes about 15 s).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
here="$root/plugins/python"
version=0.25.1

python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
venv=$(tool_venv "componentize-py-$version" "componentize-py==$version")

select_plugins "app.py" "$@" || exit 2

for name in "${names[@]}"; do
    src="$here/$name"
    # Plugins build against 1.0.0 (they load on every kiln since); a
    # directory named *_ops is an op plugin, world op-plugin of the current
    # ABI (1.2.0, where op plugins began).
    wit="$root/sdk/wit/v1.0.0" world=plugin
    if [[ $name == *_ops ]]; then wit="$root/sdk/wit" world=op-plugin; fi
    stamp=$(stamp_of "componentize-py $version" "$src" "$wit" "$here/build.sh")
    up_to_date "${name}_python" "$stamp" && continue
    log "building ${name}_python.wasm (componentize-py, about 15 s)"
    tmp="$out/.${name}_python.wasm.tmp"
    # --stub-wasi replaces every WASI import with a trapping stub: without it
    # the component imports all of WASI 0.2, wasi:filesystem and
    # wasi:sockets included, which kiln refuses. (So print(), open(),
    # time.time() and os.urandom() trap: log with host.log.)
    # VIRTUAL_ENV unset: componentize-py would add that venv's site-packages.
    (cd "$src" && env -u VIRTUAL_ENV "$venv/bin/componentize-py" -d "$wit" -w "$world" \
        componentize --stub-wasi -p . app -o "$tmp" >&2)
    publish "${name}_python" "$tmp" "$stamp"
done
