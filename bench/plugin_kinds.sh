#!/usr/bin/env bash
# What each kind of plugin binary costs per call (sdk/ABI.md): the same
# `normalize` plugin as a component (Rust), as a core module wrapped by kiln at
# load (Zig, core-module ABI) and as a WASI command module run once per call
# (Go 1.23, command protocol 1), served by one kiln, perf_analyzer over gRPC at
# concurrency 1 with a [1, 1024] FP32 input. Figures: BENCHMARKS.md.
#
#   bash bench/plugin_kinds.sh     # here; needs scripts/setup.sh, cargo build --release, plugins/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_local_setup
OUT_DIR=${OUT:-$PWD/target/bench-plugin-kinds}; mkdir -p "$OUT_DIR"
repo=$(mktemp -d); trap 'kill -TERM ${kiln:-} 2>/dev/null; rm -rf "$repo"' EXIT
for lang in rust zig go; do
  d=$repo/normalize_$lang; mkdir -p "$d/1"
  cp "target/plugins/normalize_$lang.wasm" "$d/1/model.wasm"
  cat > "$d/config.pbtxt" <<CFG
backend: "wasm"
max_batch_size: 8
input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ 1024 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ 1024 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
parameters { key: "mean" value: { string_value: "1" } }
CFG
done
start_kiln "$OUT_DIR/kiln.log" serve --model-repository "$repo" --http-port 29000 --grpc-port 29001 --metrics-port 29002
wait_ready 29000 "$kiln" "$OUT_DIR/kiln.log"
wait_idle 600
echo "| plugin | binary | infer/s | p50 µs | p99 µs | server-side average |"
echo "|---|---|---|---|---|---|"
for lang in rust zig go; do
  case $lang in rust) kind=component ;; zig) kind="core module" ;; go) kind="command module" ;; esac
  "$pa" -m "normalize_$lang" -i grpc -u localhost:29001 -b 1 --concurrency-range 1:1 \
    --measurement-interval 2000 -s 20 --max-trials 8 > "$OUT_DIR/pa-$lang.txt" 2>&1 || true
  echo "| normalize_$lang | $kind | $(pa_row "$OUT_DIR/pa-$lang.txt") |"
done
