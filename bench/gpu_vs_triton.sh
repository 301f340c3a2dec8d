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
  site=/opt/torch/.venv/lib/python3.12/site-packages
  out=${OUT:-/tmp/out}; mkdir -p "$out"
  export PYTHONUNBUFFERED=1
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .carry/whl/*.whl
  export PYTHONPATH=/tmp/site
  rm -rf /tmp/pa /tmp/triton && mkdir -p /tmp/pa /tmp/triton
  tar -xJf .carry/pa.tar.xz -C /tmp/pa
  tar -xJf .carry/triton.tar.xz -C /tmp/triton
  pa=$(find /tmp/pa -name perf_analyzer -type f -perm -u+x | head -1)
  triton_run=$(find /tmp/triton -name run.sh | head -1)
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

  wait_ready() { # port pid log
    for _ in $(seq 1 900); do
      curl -sf "localhost:$1/v2/health/ready" >/dev/null && return 0
      kill -0 "$2" 2>/dev/null || { tail -30 "$3"; return 1; }
      sleep 0.2
    done
    tail -30 "$3"; return 1
  }
  sweep() { # label model grpc_port
    for c in $CONCURRENCY; do
      "$pa" -m "$2" -i grpc -u "localhost:$3" -b 1 --concurrency-range "$c:$c" \
        --measurement-interval 3000 -s 50 --max-trials 8 --percentile 99 > "$out/pa-$1-c$c.txt" 2>&1 || true
      tp=$(sed -n 's/.*Throughput: \([0-9.]*\) infer\/sec.*/\1/p' "$out/pa-$1-c$c.txt" | head -1)
      p50=$(sed -n 's/.*p50 latency: \([0-9]*\) usec.*/\1/p' "$out/pa-$1-c$c.txt" | head -1)
      p99=$(sed -n 's/.*p99 latency: \([0-9]*\) usec.*/\1/p' "$out/pa-$1-c$c.txt" | head -1)
      srv=$(sed -n 's/.*Avg request latency: \(.*\)$/\1/p' "$out/pa-$1-c$c.txt" | head -1)
      echo "| $1 | $c | ${tp:-fail} | ${p50:-} | ${p99:-} | ${srv:-} |" | tee -a "$out/table.md"
    done
  }
  echo "| server | concurrency | infer/s | p50 µs | p99 µs | server-side average |" | tee "$out/table.md"
  echo "|---|---|---|---|---|---|" | tee -a "$out/table.md"

  echo "== b. kiln"
  LD_LIBRARY_PATH="$site/torch/lib:$(printf '%s:' "$site"/nvidia/*/lib)" \
    ./.carry/kiln-cuda serve --model-repository /tmp/kiln --host 127.0.0.1 > "$out/kiln.log" 2>&1 &
  kiln=$!
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
