#!/usr/bin/env bash
# Issue 4 benchmark on the GPU machine: ResNet-50 (TorchScript from torchvision,
# random weights), one run, side by side:
#   a. in-process libtorch (PyTorch) peak, FP32 and FP16, batch 1..64: the limit;
#   b. kiln over gRPC with perf_analyzer, concurrency 1..256, dynamic batching off and on;
#   c. the real Triton 2.51, Python backend running the same TorchScript through torch,
#      same perf_analyzer settings;
#   d. p50/p99 at concurrency 1 and server overhead (end to end minus compute).
#
#   bash bench/gpu_proof.sh prepare && bash bench/gpu_vs_triton.sh prepare   # here
#   bash bench/gpu_vs_triton.sh device    # GPU machine (device tool, carry [".carry"])
set -euo pipefail
cd "$(dirname "$0")/.."

CONCURRENCY=${CONCURRENCY:-"1 4 16 64 256"}

case "${1:-}" in
prepare)
  [[ -f .carry/kiln-cuda && -f .carry/pa.tar.xz ]] || bash bench/gpu_proof.sh prepare
  [[ -f .carry/triton.tar.xz ]] || bash ../shared/tools/triton-reference/install.sh "$HOME/.cache/kiln-tools/triton-reference" --offline-bundle .carry/triton --tar
  rm -rf .carry/triton
  du -sh .carry
  ;;
device)
  . bench/lib.sh
  bench_device_setup
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
  echo "open-file limit: soft $(ulimit -Sn) hard $(ulimit -Hn)"

  # Models: one TorchScript file shared by every server and the reference.
  python3 bench/gpu/make_resnet.py /tmp/kiln --name resnet50 --max-batch 64
  pt=/tmp/kiln/resnet50/1/model.pt
  python3 bench/gpu/make_resnet.py /tmp/kiln --name resnet50_batched --max-batch 64 --count 2 \
    --batching "max_queue_delay_microseconds: 500" --model-pt $pt
  mkdir -p /tmp/tr && cp -r bench/gpu/triton_resnet50 /tmp/tr/

  echo "== a. in-process PyTorch (libtorch) reference"
  python3 bench/gpu/reference.py $pt | tee "$out/reference.md"

  sweep() { # label model grpc_port
    for c in $CONCURRENCY; do
      "$pa" -m "$2" -i grpc -u "localhost:$3" -b 1 --concurrency-range "$c:$c" \
        --measurement-interval 3000 -s 50 --max-trials 8 --percentile 99 > "$out/pa-$1-c$c.txt" 2>&1 || true
      echo "| $1 | $c | $(pa_row "$out/pa-$1-c$c.txt") |" | tee -a "$out/table.md"
    done
  }
  echo "| server | concurrency | infer/s | p50 µs | p99 µs | server-side average |" | tee "$out/table.md"
  echo "|---|---|---|---|---|---|" | tee -a "$out/table.md"

  echo "== b. kiln"
  start_kiln "$out/kiln.log" serve --model-repository /tmp/kiln --host 127.0.0.1
  wait_ready 8000 $kiln "$out/kiln.log"
  sweep kiln resnet50 8001
  sweep kiln-batched resnet50_batched 8001
  kill -TERM $kiln; wait $kiln || true

  echo "== c. Triton 2.51, Python backend"
  KILN_TRITON_GPUS=0 KILN_RESNET_PT=$pt KILN_TORCH_SITE=$site bash "$triton_run" /tmp/tr 18000 18001 18002 > "$out/triton.log" 2>&1 &
  triton=$!
  wait_ready 18000 $triton "$out/triton.log"
  sweep triton-python triton_resnet50 18001
  kill -TERM $triton; wait $triton || true
  echo; cat "$out/reference.md"; echo; cat "$out/table.md"
  ;;
*)
  echo "usage: $0 prepare|device" >&2; exit 2 ;;
esac
