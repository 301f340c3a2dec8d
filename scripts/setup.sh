#!/usr/bin/env bash
# Installs what kiln needs on a Debian machine, idempotently:
#   - system packages: a C toolchain, lld (fast linker), protoc, python3-venv
#   - Rust (rustup) if cargo is missing
#   - .venv: torch 2.11.0 from PyPI (libtorch for the TorchScript backend and
#     Python for exporting models), numpy, scikit-learn, and the test clients
#   - with --tests: perf_analyzer (Triton's load generator) from ../shared/tools,
#     and Azurite (Azure Blob emulator, npm) for tests/realservers.py
# Re-running skips whatever is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0
[[ "${1:-}" == "--tests" ]] && want_tests=1

SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"

missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v ld.lld >/dev/null || missing+=(lld)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
((want_tests)) && ! command -v npm >/dev/null && missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing Rust with rustup"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

if command -v rustup >/dev/null; then
  for c in clippy rustfmt; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
  # Rust plugins compile straight to components (plugins/build.sh).
  rustup target list --installed 2>/dev/null | grep -q '^wasm32-wasip2$' || rustup target add wasm32-wasip2
fi

# torch 2.11.0 is what tch 0.24 links against (see host/Cargo.toml).
TORCH_VERSION=2.11.0
stamp=.venv/.kiln-setup
reqs="torch==$TORCH_VERSION $(sha256sum tests/requirements.txt | cut -c1-16)"
if [[ ! -f $stamp ]] || [[ "$(cat $stamp)" != "$reqs" ]]; then
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  echo "setup: installing Python packages into .venv (torch is ~2.7 GB the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "torch==$TORCH_VERSION" -r tests/requirements.txt
  echo "$reqs" > $stamp
fi
# .cargo/config.toml points LIBTORCH at this link, whatever the Python version.
torch_dir=$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')
ln -sfn "$torch_dir" .venv/libtorch

if ((want_tests)); then
  pa="${PERF_ANALYZER_HOME:-$HOME/.cache/kiln-tools/perf_analyzer}"
  if [[ ! -x "$pa/bin/perf_analyzer" ]]; then
    installer=../shared/tools/perf-analyzer/install.sh
    if [[ -f $installer ]]; then
      echo "setup: installing perf_analyzer into $pa"
      bash "$installer" "$pa" >/dev/null
    else
      echo "setup: $installer not found; the perf_analyzer test will be skipped"
    fi
  fi
  # Azurite's blob service for the Azure repository tests (tests/realservers.py). 3.35.0 is
  # the newest that runs on Node 20 (3.36+ need Node 21+).
  AZURITE_VERSION=3.35.0
  az="${AZURITE_HOME:-$HOME/.cache/kiln-tools/azurite}"
  if [[ ! -x "$az/node_modules/.bin/azurite-blob" ]] \
     || ! grep -q "\"version\": \"$AZURITE_VERSION\"" "$az/node_modules/azurite/package.json" 2>/dev/null; then
    echo "setup: installing azurite $AZURITE_VERSION into $az"
    npm install --prefix "$az" --no-audit --no-fund --no-save --loglevel=error "azurite@$AZURITE_VERSION" >/dev/null
  fi
fi
echo "setup: ok"
