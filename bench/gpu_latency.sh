#!/usr/bin/env bash
# Where a lone request's time goes on the GPU machine (issue 15's concurrency-1
# target: p50 at most 1.5x one image's CUDA-graph replay in process). One call:
#   1. in process (bench/gpu/lone_request.py): one image replayed back to back, one
#      at a time with its copies and a synchronize, and the same after 1 ms idle;
#   2. kiln, perf_analyzer at concurrency 1 over plain gRPC (ResNet-50 also at 4 and
#      16, and at 1 with system shared memory): ResNet-50 FP32 with CUDA graphs as in
#      gpu_vs_triton.sh, `image_sized_gpu` (the same tensors, almost no compute:
#      everything but the forward) and `add_sub_gpu` (small tensors);
#   3. the same again with kiln's records on: a Triton-format trace of every
#      request (TIMESTAMPS) and RUST_LOG=kiln::gpu=debug, read by
#      bench/gpu/latency_phases.py into the median of each step.
# Step 2's figures are the clean ones; step 3 costs a few µs per request for
# its records.
#
#   bash bench/gpu_proof.sh prepare && bash bench/gpu_vs_triton.sh prepare   # here
#   bash bench/gpu_latency.sh device      # GPU machine (device tool, carry [".carry"])
#   KILN_BEFORE=.carry/kiln-cuda-before bash bench/gpu_latency.sh device   # an older build first
# KILN_BEFORE may name several builds (space-separated), each measured clean
# first, rows "@<file name>"; SHM=0 leaves out the shared-memory point.
set -euo pipefail
cd "$(dirname "$0")/.."

MODELS=${MODELS:-"resnet50_batched_graphs image_sized_gpu add_sub_gpu"}

case "${1:-}" in
device)
  . bench/lib.sh
  bench_device_setup
  raw=/tmp/lat-raw; rm -rf $raw /tmp/lat; mkdir -p $raw
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
  python3 bench/gpu/make_resnet.py /tmp/lat --name resnet50_batched_graphs --max-batch 64 --count 2 \
    --batching "max_queue_delay_microseconds: 500" --graphs > /dev/null
  python3 bench/gpu/make_small.py /tmp/lat image_sized_gpu > /dev/null
  python3 bench/gpu/make_small.py /tmp/lat > /dev/null
  python3 bench/gpu/lone_request.py /tmp/lat/resnet50_batched_graphs/1/model.pt | tee "$out/in_process.md"

  point() { # label model concurrency [perf_analyzer args...]: its row and perf_analyzer's gRPC split
    local label=$1 model=$2 c=$3 file="$raw/pa-$1-c$3.txt"; shift 3
    timeout -s KILL 100 "$pa" -m "$model" -i grpc -u localhost:8001 -b 1 --concurrency-range "$c:$c" "$@" \
      --measurement-interval 2000 -s 25 --max-trials 6 > "$file" 2>&1 || true
    echo "| $label | $c | $(pa_row "$file") | $(sed -n 's/.*Avg gRPC time: \(.*\)$/\1/p' "$file" | head -1) |" | tee -a "$out/table.md"
  }
  points() { # suffix models: ResNet-50 at 1, 4 and 16 and with shared memory at 1; the others at 1
    local sfx=$1 model; shift
    for model in "$@"; do
      # Warm-up, unrecorded: the first batch of each size pays for lazy loading.
      timeout 60 "$pa" -m "$model" -i grpc -u localhost:8001 --concurrency-range 16:16 --measurement-interval 1000 \
        -s 50 --max-trials 2 > /dev/null 2>&1 || true
      point "$model$sfx" "$model" 1
      if [[ $model == resnet50* && $sfx != *traced* ]]; then
        point "$model$sfx" "$model" 4
        point "$model$sfx" "$model" 16
        [[ ${SHM:-1} == 0 ]] || point "$model-shm$sfx" "$model" 1 --shared-memory system
      fi
    done
  }
  echo "| server, model | concurrency | infer/s | p50 µs | p99 µs | server-side average | perf_analyzer's gRPC time |" | tee -a "$out/table.md"
  echo "|---|---|---|---|---|---|---|" | tee -a "$out/table.md"

  serve() { # log: $kiln_bin on /tmp/lat
    start_kiln "$1" serve --model-repository /tmp/lat --host 127.0.0.1 "${@:2}"
    wait_ready 8000 $kiln "$1"
  }
  # KILN_BEFORE: other kiln binaries (carried) measured first, rows "@<file name>".
  after=$kiln_bin
  for kiln_bin in ${KILN_BEFORE:-}; do
    serve "$raw/kiln-$(basename "$kiln_bin").log"; points "@$(basename "$kiln_bin")" $MODELS
    kill -TERM $kiln; wait $kiln || true
  done
  kiln_bin=$after
  serve "$raw/kiln.log"; points "" $MODELS
  kill -TERM $kiln; wait $kiln || true

  # kiln_scheduler=debug: the batch's span, which names the model on the GPU lines.
  kiln_env="RUST_LOG=info,kiln_scheduler=debug,kiln::gpu=debug,kiln::request=debug" serve "$raw/kiln-debug.log" \
    --trace-config "triton,file=$raw/trace.json"
  curl -sf -XPOST localhost:8000/v2/trace/setting \
    -d '{"trace_level":["TIMESTAMPS"],"trace_rate":"1","trace_count":"-1","log_frequency":"0"}' > /dev/null
  points " (traced)" $MODELS
  # Off first: the buffered traces go to the file then, not at a kill.
  curl -sf -XPOST localhost:8000/v2/trace/setting -d '{"trace_level":["OFF"]}' > /dev/null; sleep 1
  kill -TERM $kiln; wait $kiln || true
  for model in $MODELS; do
    # The last 1,500 of each model: its concurrency-1 point, after the warm-up.
    python3 bench/gpu/latency_phases.py --last 1500 "$model" "$raw/kiln-debug.log" $raw/trace.json* | tee -a "$out/phases.md"
    echo | tee -a "$out/phases.md"
  done
  grep -E "WARN|ERROR" $raw/kiln*.log | cut -c1-300 | head -20 > "$out/warnings.txt" || true
  ;;
*)
  echo "usage: $0 device" >&2; exit 2 ;;
esac
