#!/usr/bin/env bash
# GPU proof for kiln (issue 2): ResNet-50 TorchScript served with
# instance_group [{ kind: KIND_GPU }], outputs checked against PyTorch, and
# perf_analyzer over gRPC, on the lent H100.
#
#   bash bench/gpu_proof.sh prepare   # here: builds the CUDA kiln, bundles perf_analyzer and wheels into .carry/
#   bash bench/gpu_proof.sh device    # on the GPU machine (device tool: run with carry [".carry"])
#
# Figures and the exact command are in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
  export PATH="$HOME/.cargo/bin:$PATH"
  mkdir -p .carry
  # The `cuda` feature force-links libtorch_cuda (host/build.rs); only the
  # kiln crate itself recompiles. The plain build is restored afterwards.
  cargo build --release --locked --features cuda
  strip -o .carry/kiln-cuda target/release/kiln
  cargo build --release --locked
  if [[ ! -f .carry/pa.tar.xz ]]; then
    bash ../shared/tools/perf-analyzer/install.sh "$HOME/.cache/kiln-tools/pa-bundle" --offline-bundle .carry/pa --tar
  fi
  # tritonclient (pure Python) and what the GPU machine's torch venv lacks.
  py=.venv/bin/python
  $py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .carry/whl "tritonclient==$($py -c 'import importlib.metadata as m; print(m.version("tritonclient"))')" \
    python-rapidjson "protobuf==$($py -c 'import importlib.metadata as m; print(m.version("protobuf"))')"
  du -sh .carry
  ;;
device)
  site=/opt/torch/.venv/lib/python3.12/site-packages
  LD_LIBRARY_PATH="$site/torch/lib:$(printf '%s:' "$site"/nvidia/*/lib)${LD_LIBRARY_PATH:-}"
  export LD_LIBRARY_PATH
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/whl/*.whl
  export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
  rm -rf /tmp/pa && mkdir -p /tmp/pa && tar -xJf .carry/pa.tar.xz -C /tmp/pa
  pa=$(find /tmp/pa -name perf_analyzer -type f -perm -u+x | head -1)
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 bench/gpu/make_resnet.py /tmp/repo
  out=${OUT:-/tmp/out}; mkdir -p "$out"
  start_kiln() {
    ./.carry/kiln-cuda serve --model-repository /tmp/repo > "$out/kiln$1.log" 2>&1 &
    kiln=$!
    for _ in $(seq 1 600); do
      curl -sf localhost:8000/v2/health/ready >/dev/null && break
      kill -0 $kiln || { cat "$out/kiln$1.log"; exit 1; }
      sleep 0.2
    done
    grep -E "ready model=resnet50" "$out/kiln$1.log" || { cat "$out/kiln$1.log"; exit 1; }
  }
  stop_kiln() { kill -TERM $kiln; wait $kiln; echo "kiln exit status $?"; }
  perf() { # label, perf_analyzer args...
    local label=$1; shift
    echo "== perf_analyzer -m resnet50 -i grpc $*"
    "$pa" -m resnet50 -i grpc -u localhost:8001 --measurement-interval 3000 -s 30 --percentile 99 "$@" > "$out/pa-$label.txt" 2>&1 || true
    grep -E "Request concurrency|Throughput|p50 latency|p99 latency|Avg request latency|Failed" "$out/pa-$label.txt" || tail -5 "$out/pa-$label.txt"
  }
  start_kiln ""
  python3 bench/gpu/check_outputs.py /tmp/repo localhost:8001 | tee "$out/check.txt"
  perf b1 -b 1 --concurrency-range 1:4
  perf b8 -b 8 --concurrency-range 1:2
  stop_kiln
  # Diagnostic: the same server with libtorch's CPU thread pool at one thread.
  OMP_NUM_THREADS=1 start_kiln "-omp1"
  perf b1-omp1 -b 1 --concurrency-range 1:1
  stop_kiln
  ;;
*)
  echo "usage: $0 prepare|device" >&2
  exit 2
  ;;
esac
