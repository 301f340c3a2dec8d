#!/usr/bin/env bash
# Installs what is missing, builds kiln, and runs every test: the Rust unit
# tests, then the pytest integration suite that drives the real `kiln`
# binary with tritonclient and perf_analyzer. This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests
export PATH="$HOME/.cargo/bin:$PATH"

echo "== format and lints"
cargo fmt --all --check
cargo clippy --release --locked --all-targets -- -D warnings
# The CUDA edge (kiln-torch's csrc/cuda.cpp and every cfg(feature = "cuda")
# block) is compiled and linted too; the CUDA runtime headers come with the
# torch wheel, so no GPU is needed.
cargo clippy --release --locked --all-targets --features cuda -- -D warnings
# The crate graph is a DAG by construction (cargo refuses cycles); inside each
# crate the modules must be one too (host/ARCHITECTURE.md).
.venv/bin/python scripts/module_cycles.py
echo "== build"
cargo build --release --locked
echo "== unit tests"
cargo test --release --locked --workspace
echo "== plugins (the integration tests' wasm fixtures; toolchains installed on first use)"
# Built here, not only by the tests' session fixture: on a fresh machine the
# first build installs toolchains for minutes, longer than pytest's per-test timeout.
bash plugins/build.sh
echo "== integration tests"
KILN_BIN="$PWD/target/release/kiln" .venv/bin/python -m pytest "$@"
echo "== fuzz targets (bounded slice: host/fuzz/run.sh SECONDS for longer runs)"
bash host/fuzz/run.sh "${KILN_FUZZ_SECONDS:-20}"
echo "== reliability (quick slice: bench/reliability.py for the full attacks, soak and reloads)"
.venv/bin/python bench/reliability.py --quick
