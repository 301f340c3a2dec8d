#!/usr/bin/env bash
# Issue 4 benchmark on the GPU machine: ResNet-50 (TorchScript from torchvision,
# random weights), side by side in one lease:
#   a. in-process libtorch (PyTorch) peak, FP32 and FP16, batch 1..64, eager and
#      replayed from a CUDA graph: the limit;
#   b. kiln over gRPC, concurrency 1..256: dynamic batching off (`kiln`) and on
#      (`kiln-batched`), and on with CUDA graphs (`kiln-batched-graphs`,
#      `optimization { cuda { graphs: true } }`);
#   c. the real Triton 2.51, Python backend running the same TorchScript through
#      torch, same client settings;
#   d. p50/p99 at concurrency 1 and server overhead (end to end minus compute), also
#      for a small-tensor GPU model (add_sub_gpu: two FP32 [16] inputs) and, part
#      `kiln-image-sized`, for ResNet-50's tensors with almost no compute
#      (image_sized_gpu: the cost of a lone request minus its forward pass).
# Clients: perf_analyzer up to PA_MAX_CONCURRENCY (16), bench/loadgen above it for
# plain gRPC. perf_analyzer 2.60 keeps every request's inputs and is killed for
# memory at higher rates with 588 KiB inputs (perf_analyzer#84); loadgen shares one
# input between all requests. Both servers get the same client at each point.
# The default PARTS are the main table and fit one 10-minute device call. More
# parts, for a second call (EXTRA_PARTS below; a part's `-xN` suffix, e.g.
# kiln-batched-graphs-x3, runs N instances instead of 2):
#   e. FP16 (`precision: fp16`), eager and with graphs;
#   f. both servers with perf_analyzer's `--shared-memory system` at every
#      concurrency: tensors pass through registered /dev/shm regions instead of
#      the gRPC messages (and perf_analyzer's memory stays flat).
#
#   bash bench/gpu_proof.sh prepare && bash bench/gpu_vs_triton.sh prepare   # here
#   bash bench/gpu_vs_triton.sh device    # GPU machine (device tool, carry [".carry"])
#   PARTS="$EXTRA_PARTS" bash bench/gpu_vs_triton.sh device
#   KILN_BEFORE=.carry/kiln-cuda-before bash bench/gpu_vs_triton.sh device   # an older build too
# With the reference part, bench/gpu/ratios.py then prints each kiln part's peak
# against the in-process eager and graph peaks, its p50 at concurrency 1 against one
# graph replay, and kiln against Triton at each concurrency.
set -euo pipefail
cd "$(dirname "$0")/.."

CONCURRENCY=${CONCURRENCY:-"1 4 16 64 256"}
PA_MAX_CONCURRENCY=${PA_MAX_CONCURRENCY:-16}
MAIN_PARTS="reference kiln kiln-batched kiln-batched-graphs kiln-small triton"
EXTRA_PARTS="kiln-batched-graphs-x3 kiln-batched-fp16 kiln-batched-fp16-graphs kiln-batched-fp16-graphs-x3 kiln-batched-graphs-shm triton-shm"

case "${1:-}" in
prepare)
  [[ -f .carry/kiln-cuda && -f .carry/pa.tar.xz ]] || bash bench/gpu_proof.sh prepare
  cargo build --release --locked -p kiln-loadgen && strip -o .carry/loadgen target/release/loadgen
  [[ -f .carry/triton.tar.xz ]] || bash ../shared/tools/triton-reference/install.sh "$HOME/.cache/kiln-tools/triton-reference" --offline-bundle .carry/triton --tar
  rm -rf .carry/triton
  du -sh .carry
  ;;
device)
  # PARTS picks what runs (default: the main table).
  PARTS=${PARTS:-$MAIN_PARTS}
  want() { [[ " $PARTS " == *" $1 "* ]]; }
  . bench/lib.sh
  bench_device_setup
  raw=/tmp/pa-raw; mkdir -p $raw   # the clients' full outputs stay on the machine
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
  echo "open-file limit: soft $(ulimit -Sn) hard $(ulimit -Hn); parts: $PARTS; KILN_ARGS: ${KILN_ARGS:-}"

  # Models: one TorchScript file shared by every server and the reference; kiln
  # gets only the models the chosen parts use. Batched ones: 2 instances, 500 µs.
  python3 bench/gpu/make_resnet.py /tmp/models --name resnet50 --max-batch 64 > /dev/null
  pt=/tmp/models/resnet50/1/model.pt
  rm -rf /tmp/kiln && mkdir -p /tmp/kiln
  kiln_model() { # part -> model name
    local m=${1#kiln-}; m=${m%-shm}
    case $m in
      kiln) echo resnet50 ;; small) echo add_sub_gpu ;; image-sized) echo image_sized_gpu ;;
      *) echo "resnet50_${m//-/_}" ;;
    esac
  }
  for part in $PARTS; do
    [[ $part == kiln* ]] || continue
    model=$(kiln_model "$part")
    [[ -d /tmp/kiln/$model ]] && continue
    case $model in
      resnet50) cp -r /tmp/models/resnet50 /tmp/kiln/ ;;
      add_sub_gpu) python3 bench/gpu/make_small.py /tmp/kiln > /dev/null ;;
      image_sized_gpu) python3 bench/gpu/make_small.py /tmp/kiln image_sized_gpu > /dev/null ;;
      *) count=2; [[ $model =~ _x([0-9]+)$ ]] && count=${BASH_REMATCH[1]}
         flags=(--max-batch 64 --count $count --batching "max_queue_delay_microseconds: 500" --model-pt $pt)
         [[ $model == *fp16* ]] && flags+=(--parameter precision=fp16)
         [[ $model == *graphs* ]] && flags+=(--graphs)
         python3 bench/gpu/make_resnet.py /tmp/kiln --name "$model" "${flags[@]}" > /dev/null ;;
    esac
  done
  mkdir -p /tmp/tr && cp -r bench/gpu/triton_resnet50 /tmp/tr/

  if want reference; then
    echo "== a. in-process PyTorch (libtorch) reference"
    python3 bench/gpu/reference.py $pt | tee "$out/reference.md"
    # One image at a time with its copies and a synchronize: a lone request's floor.
    echo | tee -a "$out/reference.md"
    python3 bench/gpu/lone_request.py $pt | tee -a "$out/reference.md"
  fi

  point() { # label model grpc_port concurrency [extra perf_analyzer args...]
    local label=$1 model=$2 port=$3 c=$4 rc=0 file
    shift 4
    if (( c > PA_MAX_CONCURRENCY )) && [[ " $* " != *" --shared-memory "* ]]; then
      file="$raw/lg-$label-c$c.txt"
      timeout -s KILL ${PA_TIMEOUT:-100} ./.carry/loadgen --url "http://127.0.0.1:$port" --model "$model" \
        --input INPUT__0:FP32:1,3,224,224 --concurrency "$c" --warmup 3 --seconds 8 > "$file" 2>&1 || rc=$?
      label="$label (loadgen)"
    else
      # Stabilised on average latency and throughput (perf_analyzer's default):
      # p99 of a batching server moves too much between windows to converge;
      # p50 and p99 are reported all the same.
      file="$raw/pa-$label-c$c.txt"
      timeout -s KILL ${PA_TIMEOUT:-100} "$pa" -m "$model" -i grpc -u "localhost:$port" -b 1 --concurrency-range "$c:$c" "$@" \
        --measurement-interval 2000 -s 25 --max-trials ${MAX_TRIALS:-6} > "$file" 2>&1 || rc=$?
    fi
    (( rc == 137 )) && echo "killed (out of memory or PA_TIMEOUT)" >> "$file"
    local row; row=$(pa_row "$file")
    echo "| $label | $c | $row |" | tee -a "$out/table.md"
    if [[ $row == fail* ]]; then # what the machine looked like (see BENCHMARKS.md, connect failures)
      { echo "== $label c$c: $(grep -m3 -iE 'error|reset|refused' "$file" | cut -c1-200)"
        echo "sockets: $(ss -s 2>/dev/null | head -2 | tr '\n' ' ')"
        echo "listen queues: $(ss -ltn 2>/dev/null | awk 'NR>1 {print $4 " recv-q " $2 " backlog " $3}' | tr '\n' ';')"
        echo "server fds: $(ls /proc/${server:-0}/fd 2>/dev/null | wc -l); somaxconn $(cat /proc/sys/net/core/somaxconn)"
        # The kernel's TCP counters (no ss on the GPU machine): listen-queue overflows, resets.
        awk '/^TcpExt:/ { if (!h) { split($0, k); h = 1 } else { for (i = 2; i <= NF; i++) if (k[i] ~ /Listen|Abort|ReqQFull|Backlog/ && $i > 0) printf "%s=%s ", k[i], $i } } END { print "" }' /proc/net/netstat
        tail -3 "$raw/kiln.log" 2>/dev/null | cut -c1-200; } >> "$out/diag.txt"
    fi
  }
  sweep() { # label model grpc_port [extra perf_analyzer args...]
    local label=$1 model=$2 port=$3 c
    shift 3
    # Unrecorded warm-up at high concurrency first: the first batch of each size
    # pays for cuDNN's algorithm choice and lazy kernel loading.
    [[ $model == *resnet50* ]] && ./.carry/loadgen --url "http://127.0.0.1:$port" --model "$model" --input INPUT__0:FP32:1,3,224,224 \
      --concurrency 64 --warmup 0 --seconds 3 > "$raw/warmup-$label.txt" 2>&1 || true
    for c in $CONCURRENCY; do point "$label" "$model" "$port" "$c" "$@"; done
  }
  echo "| server | concurrency | infer/s | p50 µs | p99 µs | server-side average |" | tee -a "$out/table.md"
  echo "|---|---|---|---|---|---|" | tee -a "$out/table.md"

  kiln_parts() { # SUFFIX: every kiln part with $kiln_bin, labelled part+SUFFIX
    local sfx=$1
    echo "== b. kiln $kiln_bin"
    # KILN_ARGS: extra serve flags, e.g. "--cuda-tf32 false" (FP32 convolutions without TF32:
    # the batched check's error should fall towards the unbatched one and compute should slow).
    start_kiln "$raw/kiln.log" serve --model-repository /tmp/kiln --host 127.0.0.1 ${KILN_ARGS:-}
    wait_ready 8000 $kiln "$raw/kiln.log"; server=$kiln
    grep -E "captured CUDA graphs|TF32|WARN|ERROR" "$raw/kiln.log" | cut -c1-300 | tee -a "$out/kiln-load.txt" || true
    # Correctness of the GPU paths (pinned staging, batch gathering, padded
    # graph replays, FP16) first; a failed check is reported, not fatal.
    for model in $(ls /tmp/kiln); do
      [[ $model == resnet50* ]] || continue
      precision=fp32; [[ $model == *fp16* ]] && precision=fp16
      python3 bench/gpu/check_batched.py $pt localhost:8001 "$model" $precision 2>&1 | tee -a "$out/check.txt" || true
    done
    for part in $PARTS; do
      [[ $part == kiln* ]] || continue
      model=$(kiln_model "$part")
      if [[ $part == kiln-small ]]; then
        CONCURRENCY=1 sweep kiln-small-gpu$sfx add_sub_gpu 8001
      elif [[ $part == kiln-image-sized ]]; then
        CONCURRENCY=1 sweep kiln-image-sized$sfx image_sized_gpu 8001
      elif [[ $part == *-shm ]]; then
        sweep "$part$sfx" "$model" 8001 --shared-memory system
      else
        sweep "$part$sfx" "$model" 8001
      fi
    done
    kill -TERM $kiln; wait $kiln || echo "kiln exit status $?"
    tail -20 "$raw/kiln.log" > "$out/kiln-log-tail$sfx.txt"
  }
  if [[ " $PARTS " == *" kiln"* ]]; then
    # KILN_BEFORE: another kiln binary (an older build, carried) measured first, in the
    # same lease, its rows labelled "@before".
    if [[ -n ${KILN_BEFORE:-} ]]; then
      after=$kiln_bin; kiln_bin=$KILN_BEFORE; kiln_parts @before; kiln_bin=$after
    fi
    kiln_parts ""
  fi

  if want triton || want triton-shm; then
    echo "== c. Triton 2.51, Python backend"
    KILN_TRITON_GPUS=0 KILN_RESNET_PT=$pt KILN_TORCH_SITE=$site bash "$triton_run" /tmp/tr 18000 18001 18002 > "$raw/triton.log" 2>&1 &
    triton=$!
    wait_ready 18000 $triton "$raw/triton.log"; server=$triton
    if want triton; then sweep triton-python triton_resnet50 18001; fi
    if want triton-shm; then sweep triton-python-shm triton_resnet50 18001 --shared-memory system; fi
    kill -TERM $triton; wait $triton || true
  fi
  echo; cat "$out/table.md"
  if [[ -s $out/reference.md ]]; then echo; python3 bench/gpu/ratios.py "$out" | tee "$out/ratios.md"; fi
  ;;
*)
  echo "usage: $0 prepare|device" >&2; exit 2 ;;
esac
