#!/usr/bin/env bash
# Issue 4 benchmark on the GPU machine: ResNet-50 (TorchScript from torchvision,
# random weights), one run, side by side:
#   a. in-process libtorch (PyTorch) peak, FP32 and FP16, batch 1..64: the limit;
#   b. kiln over gRPC with perf_analyzer, concurrency 1..256, dynamic batching off and on,
#      and batched at `precision: fp16` (FP32 on the wire, FP16 on the GPU);
#   c. the real Triton 2.51, Python backend running the same TorchScript through torch,
#      same perf_analyzer settings;
#   d. p50/p99 at concurrency 1 and server overhead (end to end minus compute), also
#      for a small-tensor GPU model (add_sub_gpu: two FP32 [16] inputs);
#   e. both servers again with perf_analyzer's `--shared-memory system`: tensors pass
#      through registered /dev/shm regions instead of the gRPC messages, so the
#      figures show the server without the socket and protobuf cost of 588 KiB inputs;
#   f. both servers over plain gRPC at high concurrency with bench/loadgen, which
#      shares one input between all requests: perf_analyzer 2.60 keeps every request's
#      inputs and is killed for memory there (LOADGEN_CONCURRENCY, default "64 256").
#
#   bash bench/gpu_proof.sh prepare && bash bench/gpu_vs_triton.sh prepare   # here
#   bash bench/gpu_vs_triton.sh device    # GPU machine (device tool, carry [".carry"])
set -euo pipefail
cd "$(dirname "$0")/.."

CONCURRENCY=${CONCURRENCY:-"1 4 16 64 256"}

case "${1:-}" in
prepare)
  [[ -f .carry/kiln-cuda && -f .carry/pa.tar.xz ]] || bash bench/gpu_proof.sh prepare
  cargo build --release --locked -p kiln-loadgen && strip -o .carry/loadgen target/release/loadgen
  [[ -f .carry/triton.tar.xz ]] || bash ../shared/tools/triton-reference/install.sh "$HOME/.cache/kiln-tools/triton-reference" --offline-bundle .carry/triton --tar
  rm -rf .carry/triton
  du -sh .carry
  ;;
device)
  # PARTS picks what runs (default: all), so that the whole can be split over
  # calls that each fit the device tool's 10-minute limit, e.g.
  # PARTS="reference kiln kiln-batched" then PARTS="kiln-batched-fp16 triton".
  PARTS=${PARTS:-"reference kiln kiln-batched kiln-batched-fp16 kiln-batched-shm kiln-batched-fp16-shm kiln-batched-loadgen kiln-small triton triton-shm triton-loadgen"}
  want() { [[ " $PARTS " == *" $1 "* ]]; }
  . bench/lib.sh
  bench_device_setup
  raw=/tmp/pa-raw; mkdir -p $raw   # perf_analyzer's full outputs stay on the machine
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
  echo "open-file limit: soft $(ulimit -Sn) hard $(ulimit -Hn); parts: $PARTS"

  # Models: one TorchScript file shared by every server and the reference.
  python3 bench/gpu/make_resnet.py /tmp/kiln --name resnet50 --max-batch 64
  pt=/tmp/kiln/resnet50/1/model.pt
  python3 bench/gpu/make_resnet.py /tmp/kiln --name resnet50_batched --max-batch 64 --count 2 \
    --batching "max_queue_delay_microseconds: 500" --model-pt $pt
  python3 bench/gpu/make_resnet.py /tmp/kiln --name resnet50_batched_fp16 --max-batch 64 --count 2 \
    --batching "max_queue_delay_microseconds: 500" --model-pt $pt --parameter precision=fp16
  python3 bench/gpu/make_resnet.py /tmp/kiln --name resnet50_batched_noprof --max-batch 64 --count 2 \
    --batching "max_queue_delay_microseconds: 500" --model-pt $pt --parameter ENABLE_JIT_PROFILING=false
  python3 bench/gpu/make_resnet.py /tmp/kiln --name resnet50_batched_fp16_noprof --max-batch 64 --count 2 \
    --batching "max_queue_delay_microseconds: 500" --model-pt $pt --parameter precision=fp16 \
    --parameter ENABLE_JIT_PROFILING=false
  python3 bench/gpu/make_small.py /tmp/kiln
  mkdir -p /tmp/tr && cp -r bench/gpu/triton_resnet50 /tmp/tr/

  if want reference; then
    echo "== a. in-process PyTorch (libtorch) reference"
    python3 bench/gpu/reference.py $pt | tee "$out/reference.md"
  fi

  sweep() { # label model grpc_port [concurrencies] [extra perf_analyzer args...]
    local label=$1 model=$2 port=$3 levels=${4:-$CONCURRENCY} c rc
    shift 4 2>/dev/null || shift $#
    # Unrecorded warm-up at high concurrency first: the first batch of each size
    # pays for cuDNN's algorithm choice and lazy kernel loading.
    "$pa" -m "$model" -i grpc -u "localhost:$port" -b 1 --concurrency-range 64:64 "$@" \
      --measurement-interval 2000 --max-trials 2 > "$raw/warmup-$label.txt" 2>&1 || true
    for c in $levels; do
      # Stabilised on average latency and throughput (perf_analyzer's default):
      # p99 of a batching server moves too much between windows to converge;
      # p50 and p99 are reported all the same.
      rc=0
      timeout -s KILL ${PA_TIMEOUT:-100} "$pa" -m "$model" -i grpc -u "localhost:$port" -b 1 --concurrency-range "$c:$c" "$@" \
        --measurement-interval 3000 -s 25 --max-trials ${MAX_TRIALS:-6} > "$raw/pa-$label-c$c.txt" 2>&1 || rc=$?
      # perf_analyzer 2.60 grows without bound at high rates with large inputs
      # (triton-inference-server/perf_analyzer#84) until the kernel kills it;
      # the timeout (SIGKILL too) keeps such a point from eating the call.
      (( rc == 137 )) && echo "perf_analyzer killed (out of memory or PA_TIMEOUT)" >> "$raw/pa-$label-c$c.txt"
      echo "| $label | $c | $(pa_row "$raw/pa-$label-c$c.txt") |" | tee -a "$out/table.md"
    done
  }
  loadgen_sweep() { # label model grpc_port: closed-loop gRPC load, one shared input
    local c
    for c in ${LOADGEN_CONCURRENCY:-64 256}; do
      timeout -s KILL ${PA_TIMEOUT:-100} ./.carry/loadgen --url "http://127.0.0.1:$3" --model "$2" \
        --input INPUT__0:FP32:1,3,224,224 --concurrency "$c" --warmup 5 --seconds 10 \
        > "$raw/lg-$1-c$c.txt" 2>&1 || true
      echo "| $1 | $c | $(pa_row "$raw/lg-$1-c$c.txt") |" | tee -a "$out/table.md"
    done
  }
  echo "| server | concurrency | infer/s | p50 µs | p99 µs | server-side average |" | tee -a "$out/table.md"
  echo "|---|---|---|---|---|---|" | tee -a "$out/table.md"

  if [[ " $PARTS " == *" kiln"* ]]; then
    echo "== b. kiln"
    # KILN_ARGS: extra serve flags, e.g. "--cuda-tf32 false" (FP32 convolutions without TF32:
    # the batched check's error should fall towards the unbatched 0.0 and compute should slow).
    start_kiln "$raw/kiln.log" serve --model-repository /tmp/kiln --host 127.0.0.1 ${KILN_ARGS:-}
    wait_ready 8000 $kiln "$raw/kiln.log"
    # Correctness of the GPU paths (pinned staging, batch gathering, FP16) first.
    python3 bench/gpu/check_batched.py $pt localhost:8001 resnet50 fp32 | tee -a "$out/check.txt"
    python3 bench/gpu/check_batched.py $pt localhost:8001 resnet50_batched fp32 | tee -a "$out/check.txt"
    python3 bench/gpu/check_batched.py $pt localhost:8001 resnet50_batched_fp16 fp16 | tee -a "$out/check.txt"
    if want kiln; then sweep kiln resnet50 8001; fi
    if want kiln-batched; then sweep kiln-batched resnet50_batched 8001; fi
    if want kiln-batched-fp16; then sweep kiln-batched-fp16 resnet50_batched_fp16 8001; fi
    if want kiln-batched-noprof; then sweep kiln-batched-noprof resnet50_batched_noprof 8001; fi
    if want kiln-batched-fp16-noprof; then sweep kiln-batched-fp16-noprof resnet50_batched_fp16_noprof 8001; fi
    if want kiln-batched-shm; then sweep kiln-batched-shm resnet50_batched 8001 "" --shared-memory system; fi
    if want kiln-batched-fp16-shm; then sweep kiln-batched-fp16-shm resnet50_batched_fp16 8001 "" --shared-memory system; fi
    if want kiln-batched-noprof-shm; then sweep kiln-batched-noprof-shm resnet50_batched_noprof 8001 "" --shared-memory system; fi
    if want kiln-batched-fp16-noprof-shm; then sweep kiln-batched-fp16-noprof-shm resnet50_batched_fp16_noprof 8001 "" --shared-memory system; fi
    if want kiln-batched-loadgen; then loadgen_sweep kiln-batched-loadgen resnet50_batched 8001; fi
    if want kiln-small; then sweep kiln-small-gpu add_sub_gpu 8001 "1"; fi
    kill -TERM $kiln; wait $kiln || true
    tail -20 "$raw/kiln.log" > "$out/kiln-log-tail.txt"
  fi

  if want triton || want triton-shm || want triton-loadgen; then
    echo "== c. Triton 2.51, Python backend"
    KILN_TRITON_GPUS=0 KILN_RESNET_PT=$pt KILN_TORCH_SITE=$site bash "$triton_run" /tmp/tr 18000 18001 18002 > "$raw/triton.log" 2>&1 &
    triton=$!
    wait_ready 18000 $triton "$raw/triton.log"
    if want triton; then sweep triton-python triton_resnet50 18001; fi
    if want triton-shm; then sweep triton-python-shm triton_resnet50 18001 "" --shared-memory system; fi
    if want triton-loadgen; then loadgen_sweep triton-python-loadgen triton_resnet50 18001; fi
    kill -TERM $triton; wait $triton || true
  fi
  echo; cat "$out/table.md"
  ;;
*)
  echo "usage: $0 prepare|device" >&2; exit 2 ;;
esac
