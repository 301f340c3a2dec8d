# Helpers sourced by the per-language plugin builds (plugins/<lang>/build.sh).
#
#   KILN_TOOLS   where tools are installed (default ~/.cache/kiln-tools):
#                tool venvs, cargo-installed binaries (cargo/bin)
#   out          target/plugins, where every build writes its plugin
#
# A build is skipped when its output exists and its stamp (a hash of the
# sources, the WIT, the build script and the tool versions) is unchanged:
#   stamp=$(stamp_of "tool versions" file-or-dir...)
#   up_to_date normalize_js "$stamp" && exit 0
#   ... build into $tmp ...
#   publish normalize_js "$tmp" "$stamp"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/target/plugins"
KILN_TOOLS="${KILN_TOOLS:-$HOME/.cache/kiln-tools}"
mkdir -p "$out" "$KILN_TOOLS"

log() { echo "[$(basename "$(cd "$(dirname "$0")" && pwd)")] $*" >&2; }

# stamp_of WORDS FILE-OR-DIR...: a hash of WORDS and the contents of the
# files (directories recursively, in name order; node_modules, caches and
# generated files skipped).
stamp_of() {
    local words="$1"; shift
    {
        echo "$words"
        find "$@" \( -name node_modules -o -name __pycache__ -o -name zig-cache -o -name .zig-cache \) -prune \
            -o -type f -print | LC_ALL=C sort | while read -r f; do
            echo "$f"; sha256sum < "$f"
        done
    } | sha256sum | cut -c1-32
}

# up_to_date NAME STAMP: true (and says so) if target/plugins/NAME.wasm was
# built from the same inputs.
up_to_date() {
    local name="$1" stamp="$2"
    if [[ -f "$out/$name.wasm" && -f "$out/.$name.stamp" && "$(cat "$out/.$name.stamp")" == "$stamp" ]]; then
        log "$name.wasm is up to date"
        return 0
    fi
    return 1
}

# publish NAME FILE STAMP: checks FILE is a plugin kiln would load (a component
# whose imports kiln grants, a marked core module without WASI imports, or a
# command module), then moves it to target/plugins/NAME.wasm and records the stamp.
publish() {
    local name="$1" file="$2" stamp="$3"
    python3 "$root/sdk/tools/component_info.py" --check-component --check-kiln-imports "$file" >/dev/null || {
        python3 "$root/sdk/tools/component_info.py" "$file" >&2
        log "$name: not a plugin that kiln would load (see the imports and exports above)"
        exit 1
    }
    mv "$file" "$out/$name.wasm"
    echo "$stamp" > "$out/.$name.stamp"
    log "wrote target/plugins/$name.wasm ($(stat -c %s "$out/$name.wasm") bytes)"
}

# select_plugins FILE [NAME...]: sets `names` to the plugins under $here (a
# language's folder) that have FILE, where {} in FILE stands for the plugin's
# name (e.g. {}.zig, go.mod), or to the NAMEs given, each of which must have
# it; returns 2 after logging the ones there are otherwise.
select_plugins() {
    local file=$1 dir name all=()
    shift
    for dir in "$here"/*/; do
        name=$(basename "$dir")
        [[ -f "$dir/${file//\{\}/$name}" ]] && all+=("$name")
    done
    names=("$@")
    (($#)) || names=("${all[@]}")
    for name in "${names[@]}"; do
        [[ -f "$here/$name/${file//\{\}/$name}" ]] || { log "no plugin '$name' (have: ${all[*]})"; return 2; }
    done
}

# apt_install PACKAGE...: installs the Debian packages that are missing.
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    log "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# tool_venv NAME PIP-REQUIREMENT...: a venv at $KILN_TOOLS/NAME with exactly
# those requirements (reinstalled when the list changes); prints its path.
tool_venv() {
    local name="$1"; shift
    local venv="$KILN_TOOLS/$name" want="$*"
    if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.kiln-installed" 2>/dev/null)" != "$want" ]]; then
        log "installing $want into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv" >&2
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" >&2
        echo "$want" > "$venv/.kiln-installed"
    fi
    echo "$venv"
}

# cargo_tool BINARY CRATE VERSION [cargo install args...]: installs a Rust
# tool into $KILN_TOOLS/cargo unless that version is there; prints its path.
cargo_tool() {
    local bin="$1" crate="$2" version="$3"; shift 3
    local path="$KILN_TOOLS/cargo/bin/$bin"
    if [[ ! -x "$path" ]] || ! "$path" --version 2>/dev/null | grep -q " ${version#=}"; then
        log "installing $crate $version into $KILN_TOOLS/cargo (compiles from crates.io, a few minutes)"
        cargo install "$crate" --version "$version" --locked --force --root "$KILN_TOOLS/cargo" \
            -j "${CARGO_BUILD_JOBS:-1}" "$@" >&2
    fi
    echo "$path"
}

# need_node: Node.js >= 20 and npm (ComponentizeJS's parser and AssemblyScript
# require 20; Debian 12's own nodejs is 18, so it is not installed from there).
need_node() {
    local major
    major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    if ((major < 20)) || ! command -v npm >/dev/null; then
        log "needs Node.js >= 20 with npm (found: $(node --version 2>/dev/null || echo none));" \
            "Debian 12's nodejs is 18: install Node.js 20 (e.g. from Debian 13 or NodeSource)"
        exit 1
    fi
}

# npm_ci DIR: node_modules in DIR matches DIR/package-lock.json (npm ci once
# per lock file); prints a hash of the lock file.
npm_ci() {
    local dir="$1" sha
    sha=$(sha256sum "$dir/package-lock.json" | cut -c1-32)
    if [[ "$(cat "$dir/node_modules/.kiln-lock" 2>/dev/null)" != "$sha" ]]; then
        log "installing npm packages (npm ci) into ${dir#"$root"/}/node_modules"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
        echo "$sha" > "$dir/node_modules/.kiln-lock"
    fi
    echo "$sha"
}
