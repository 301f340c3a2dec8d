#!/usr/bin/env bash
# Builds kiln's Go plugins (plugins/go/<name>/, each a Go main package with
# its own go.mod) into WASI command modules: target/plugins/<name>_go.wasm.
# See sdk/go/README.md.
#
#   plugins/go/build.sh            # every plugin under plugins/go
#   plugins/go/build.sh normalize  # some of them
#
# How: `GOOS=wasip1 GOARCH=wasm go build` makes a core module that exports
# only `_start` and `memory` (Go 1.23 has no //go:wasmexport), so a Go plugin
# is a command: kiln runs it once per call, request on stdin, answer on
# stdout (sdk/ABI.md, "Command protocol 1"; the SDK sdk/go implements it).
# Each plugin's go.mod points the SDK module at ../../../sdk/go with a
# `replace` directive, and the SDK uses only the standard library, so nothing
# is downloaded (GOPROXY=off).
#
# Installs (once, if no Go >= 1.23 is found): on Debian 12, golang-1.23-go
# from bookworm-backports (adds the backports source to
# /etc/apt/sources.list.d/backports.list if no source lists it; with
# golang-1.23-src about 46 MB download, 240 MB on disk; Debian 12 itself has
# Go 1.19 and Go 1.24 is not packaged for it). Elsewhere: install Go >= 1.23
# yourself (on PATH, or set GO).
# Go's build cache goes to target/go-cache, its module cache to
# target/go-mod: nothing is written into the source tree.
# Environment: GO (a go binary to use), KILN_TOOLS.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
here="$root/plugins/go"
GO_PACKAGE=golang-1.23-go
GO_PACKAGE_BIN=/usr/lib/go-1.23/bin/go
GO_MIN_MINOR=23

export GOTOOLCHAIN=local          # never download another toolchain
export GOPROXY=off GOFLAGS=-mod=readonly GOWORK=off
export GOCACHE="$root/target/go-cache" GOMODCACHE="$root/target/go-mod"
export CGO_ENABLED=0

# go_minor GO: the minor version of Go 1.x that GO runs (0 if it is not a
# working go command).
go_minor() {
    local v
    v=$("$1" env GOVERSION 2>/dev/null) || { echo 0; return; }
    v=${v#go1.}
    echo "${v%%[.a-z]*}"
}

find_go() {
    local g
    for g in ${GO:-} "$(command -v go || true)" "$GO_PACKAGE_BIN" /usr/lib/go-1.*/bin/go; do
        [[ -n "$g" && -x "$g" ]] || continue
        if (($(go_minor "$g") >= GO_MIN_MINOR)); then
            echo "$g"
            return 0
        fi
    done
    return 1
}

install_go() {
    local codename sudo=""
    codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
    if [[ "$codename" != bookworm ]]; then
        log "needs Go >= 1.$GO_MIN_MINOR (found: $(go version 2>/dev/null || echo none));" \
            "install it (e.g. your distribution's golang package, or https://go.dev/dl) and put it on PATH or set GO"
        exit 1
    fi
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        log "adding bookworm-backports to /etc/apt/sources.list.d/backports.list"
        echo 'deb http://deb.debian.org/debian bookworm-backports main' |
            $sudo tee -a /etc/apt/sources.list.d/backports.list >/dev/null
    fi
    log "installing $GO_PACKAGE from bookworm-backports"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -t bookworm-backports "$GO_PACKAGE" >/dev/null
}

go=$(find_go) || { install_go; go=$(find_go) || { log "no Go >= 1.$GO_MIN_MINOR after installing $GO_PACKAGE"; exit 1; }; }
go_version=$("$go" env GOVERSION)

select_plugins "go.mod" "$@" || exit 2

for name in "${names[@]}"; do
    src="$here/$name"
    stamp=$(stamp_of "$go_version" "$src" "$root/sdk/go" "$here/build.sh")
    up_to_date "${name}_go" "$stamp" && continue
    log "building ${name}_go.wasm ($go_version)"
    tmp="$out/.${name}_go.wasm.tmp"
    # -trimpath: no local paths in the binary (the same bytes from any
    # checkout). No -ldflags=-s: on wasm it drops the name section (48 KB),
    # which names Go functions in a trap's backtrace in kiln's log.
    (cd "$src" && GOOS=wasip1 GOARCH=wasm "$go" build -trimpath -o "$tmp" .)
    # A command module that kiln serves through the command protocol:
    # exports _start, no kiln_abi_version_* marker, imports only WASI preview 1.
    python3 "$root/sdk/tools/component_info.py" --check-command "$tmp" >/dev/null || {
        python3 "$root/sdk/tools/component_info.py" "$tmp" >&2
        log "$name: not a command module that kiln would load (see above)"
        exit 1
    }
    mv "$tmp" "$out/${name}_go.wasm"
    echo "$stamp" > "$out/.${name}_go.stamp"
    log "wrote target/plugins/${name}_go.wasm ($(stat -c %s "$out/${name}_go.wasm") bytes)"
done
