#!/usr/bin/env bash
# Custom ops from a Wasm op plugin against the same model written natively (issue 13).
# bench/gpu/make_gfpgan_block.py exports a StyleGAN2-style block (modulated conv,
# fused_leaky_relu, upfirdn2d up to 512x512 and back down, at 256x256) twice:
# gfpgan_block_ops calls torch.ops.kiln_gfpgan.* and gets them from plugins/rust/gfpgan_ops
# (an op plugin that composes host tensor operations: the data stays on the device);
# gfpgan_block_native is the pure-PyTorch rewrite. One kiln serves both, then:
#   1. correctness: both answer the same input; the max abs difference between them and
#      against the CPU reference (expected.npy from the export) is printed;
#   2. throughput: bench/loadgen at concurrency CONC against each, alternating
#      (ops, native, ops, native; on the GPU also the same pair with CUDA graphs, where
#      the composed ops are captured with the model); each row with the server's compute
#      infer per request
#      (ModelStatistics over the window), so the op's cost shows apart from the 8 MiB
#      of protocol a request carries.
# The ratio ops/native of throughput and of compute infer is the figure (issue target:
# throughput >= 0.9x with compose).
#
# Modes:
#   bash bench/custom_ops.sh cpu      # here: scripts/setup.sh, cargo build --release,
#                                     # cargo build --release -p kiln-loadgen, plugins/build.sh rust
#   bash bench/custom_ops.sh prepare  # here, for the GPU machine: .carry/kiln-cuda, .carry/loadgen
#                                     # (bench/gpu_vs_triton.sh prepare) and .carry/gfpgan_ops.wasm
#   bash bench/custom_ops.sh device   # GPU machine (device tool, carry [".carry"])
# Env: CHANNELS (cpu 8, device 32), CONC (4), WARMUP_S (3), MEASURE_S (10), OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-}
MEASURE_S=${MEASURE_S:-10} WARMUP_S=${WARMUP_S:-3} CONC=${CONC:-4}
. bench/lib.sh
die() { echo "FAILED: $*" >&2; exit 1; }

case $MODE in
cpu)
  OUT=${OUT:-$PWD/target/bench/custom-ops}
  bench_local_setup
  loadgen=$PWD/target/release/loadgen plugin=target/plugins/gfpgan_ops.wasm kind=KIND_CPU
  CHANNELS=${CHANNELS:-8}
  ;;
device)
  bench_device_setup
  py=python3 loadgen=./.carry/loadgen plugin=.carry/gfpgan_ops.wasm kind=KIND_GPU
  CHANNELS=${CHANNELS:-32}
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/gpu.txt"
  ;;
prepare)
  bash bench/gpu_vs_triton.sh prepare
  bash plugins/build.sh gfpgan_ops >/dev/null
  cp target/plugins/gfpgan_ops.wasm .carry/gfpgan_ops.wasm
  exit 0
  ;;
*)
  echo "usage: $0 cpu|prepare|device" >&2; exit 2 ;;
esac
[[ -x $loadgen ]] || die "no $loadgen"
[[ -f $plugin ]] || die "no $plugin"
repo=$out/repo raw=$out/raw
rm -rf "$repo" "$raw"; mkdir -p "$raw"

"$py" bench/gpu/make_gfpgan_block.py "$repo" --kind "$kind" --channels "$CHANNELS" --save-io "$out/io" > "$raw/export.txt"
models=(gfpgan_block_ops gfpgan_block_native)
if [[ $MODE == device ]]; then
  # The same pair with CUDA graphs: the composed ops are captured with the model's kernels.
  "$py" bench/gpu/make_gfpgan_block.py "$repo" --kind "$kind" --channels "$CHANNELS" --graphs \
    --names gfpgan_block_ops_graphs,gfpgan_block_native_graphs >> "$raw/export.txt"
  models+=(gfpgan_block_ops_graphs gfpgan_block_native_graphs)
fi
mkdir -p "$repo/gfpgan_ops/1"
cp "$plugin" "$repo/gfpgan_ops/1/model.wasm"
printf 'name: "gfpgan_ops"\nbackend: "wasm_ops"\n' > "$repo/gfpgan_ops/config.pbtxt"

kiln=""
trap '[[ -n $kiln ]] && kill -TERM "$kiln" 2>/dev/null && wait "$kiln" 2>/dev/null || true' EXIT
ports=$raw/ports.json
start_kiln "$raw/kiln.log" serve --model-repository "$repo" --host 127.0.0.1 --http-port 0 --grpc-port 0 \
  --metrics-port 0 --port-file "$ports"
for _ in $(seq 1 300); do [[ -s $ports ]] && break; sleep 0.2; done
http=$(sed -n 's/.*"http": *\([0-9]*\).*/\1/p' "$ports")
grpc=$(sed -n 's/.*"grpc": *\([0-9]*\).*/\1/p' "$ports")
wait_ready "$http" "$kiln" "$raw/kiln.log" || die "kiln did not become ready (log: $raw/kiln.log)"

{
  echo "# Custom ops from a Wasm op plugin against the native rewrite ($MODE, $(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  if [[ $MODE == device ]]; then echo "- machine: $(cat "$out/gpu.txt"), $(nproc) CPUs"; else
    echo "- machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1)"; fi
  echo "- kiln: $kiln_bin built $(date -u -r "$kiln_bin" +%Y-%m-%dT%H:%M:%SZ)"
  echo "- model: StyleGAN2-style block, $CHANNELS channels, [1, $CHANNELS, 256, 256] FP32 in and out, $kind, 1 instance, max_batch_size 0"
  echo "- client: bench/loadgen over gRPC, concurrency $CONC, $WARMUP_S s warm-up + $MEASURE_S s measured, models alternating"
  echo
  echo "Correctness (one request each, the export's input):"
  echo
  "$py" - "localhost:$grpc" "$out/io" <<'PY'
import sys, numpy as np, tritonclient.grpc as grpc
c = grpc.InferenceServerClient(sys.argv[1])
x, want = np.load(f"{sys.argv[2]}/input.npy"), np.load(f"{sys.argv[2]}/expected.npy")
out = {}
worst = 0.0
for suffix in ("", "_graphs"):
    pair = (f"gfpgan_block_ops{suffix}", f"gfpgan_block_native{suffix}")
    if not all(c.is_model_ready(m) for m in pair):
        continue
    for m in pair:
        i = grpc.InferInput("INPUT__0", list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        out[m] = c.infer(m, [i]).as_numpy("OUTPUT__0")
    d = float(np.abs(out[pair[0]] - out[pair[1]]).max())
    worst = max(worst, d)
    print(f"- max abs difference, {pair[0]} vs {pair[1]} (both served by kiln): {d:.3g}")
for m, y in out.items():
    print(f"- max abs difference, {m} vs the CPU reference: {float(np.abs(y - want).max()):.3g}")
if worst > 1e-5:
    sys.exit(f"ops and native differ by {worst} (> 1e-5)")
PY
} | tee "$out/header.md"

: > "$out/results.txt"
for round in 1 2; do
  for model in "${models[@]}"; do
    f=$raw/lg-$model-$round.txt
    timeout -s KILL $(( WARMUP_S + MEASURE_S + 120 )) "$loadgen" --url "http://127.0.0.1:$grpc" --model "$model" \
      --input "INPUT__0:FP32:1,$CHANNELS,256,256" --concurrency "$CONC" --warmup "$WARMUP_S" --seconds "$MEASURE_S" \
      > "$f" 2>&1 || true
    echo "$model|$round|$(pa_row "$f" | sed 's/ | /|/g')" | tee -a "$out/results.txt"
  done
done

"$py" - "$out/results.txt" > "$out/table.md" <<'PY'
import re, statistics, sys
rows = [l.rstrip("\n").split("|") for l in open(sys.argv[1]) if l.strip()]
by = {}
for model, rnd, tp, p50, p99, srv in rows:
    m = re.search(r"compute infer (\d+) usec", srv)
    by.setdefault(model, []).append((float(tp) if tp.replace(".", "", 1).isdigit() else None,
                                     int(p50 or 0), int(p99 or 0), int(m.group(1)) if m else None))
print("| model | round | infer/s | p50 µs | p99 µs | compute infer µs/request |")
print("|---|---|---|---|---|---|")
for model, runs in by.items():
    for i, (tp, p50, p99, infer) in enumerate(runs, 1):
        print(f"| {model} | {i} | {tp if tp is not None else 'fail'} | {p50:,} | {p99:,} | {infer if infer is not None else ''} |")
def median(model, k):
    v = [r[k] for r in by.get(model, []) if r[k] is not None]
    return statistics.median(v) if v else None
print()
for suffix, what in (("", "eager"), ("_graphs", "CUDA graphs")):
    ops, nat = f"gfpgan_block_ops{suffix}", f"gfpgan_block_native{suffix}"
    if ops not in by:
        continue
    tp_ops, tp_nat = median(ops, 0), median(nat, 0)
    in_ops, in_nat = median(ops, 3), median(nat, 3)
    if tp_ops and tp_nat:
        print(f"- {what}: throughput, ops / native (median of rounds): {tp_ops / tp_nat:.3f} (target >= 0.9)")
    if in_ops and in_nat:
        print(f"- {what}: compute infer per request, ops / native: {in_ops / in_nat:.3f} ({in_ops:.0f} / {in_nat:.0f} µs)")
PY
echo
cat "$out/table.md"
echo
echo "(loadgen outputs, the export's output and the server log: $raw)"
