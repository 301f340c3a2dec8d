# Shared by the device-side benchmark scripts (source it from the repo root).

# bench_device_setup: the GPU machine's torch site-packages, $out, tritonclient
# on PYTHONPATH, and the carried perf_analyzer and Triton bundles unpacked.
# Sets: site, out, pa, triton_run.
bench_device_setup() {
  site=/opt/torch/.venv/lib/python3.12/site-packages
  out=${OUT:-/tmp/out}; mkdir -p "$out"
  export PYTHONUNBUFFERED=1
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .carry/whl/*.whl 2>/dev/null
  export PYTHONPATH=/tmp/site
  rm -rf /tmp/pa /tmp/triton && mkdir -p /tmp/pa /tmp/triton
  tar -xJf .carry/pa.tar.xz -C /tmp/pa
  tar -xJf .carry/triton.tar.xz -C /tmp/triton
  pa=$(find /tmp/pa -name perf_analyzer -type f -perm -u+x | head -1)
  triton_run=$(find /tmp/triton -name run.sh | head -1)
}

# start_kiln LOG ARGS...: the carried CUDA kiln, with the GPU machine's torch
# libraries, in the background; sets `kiln` to its PID.
start_kiln() {
  local log=$1; shift
  LD_LIBRARY_PATH="$site/torch/lib:$(printf '%s:' "$site"/nvidia/*/lib)" ./.carry/kiln-cuda "$@" > "$log" 2>&1 &
  kiln=$!
}

# wait_ready PORT PID LOG: until the server on PORT is ready; fails (with the
# log's tail) if the process dies or 3 minutes pass.
wait_ready() {
  for _ in $(seq 1 900); do
    curl -sf "localhost:$1/v2/health/ready" >/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { tail -30 "$3"; return 1; }
    sleep 0.2
  done
  tail -30 "$3"; return 1
}

# pa_row FILE: "infer/s | p50 µs | p99 µs | server-side average" from one
# perf_analyzer output ("fail" where it measured nothing).
pa_row() {
  local tp p50 p99 srv
  tp=$(sed -n 's/.*Throughput: \([0-9.]*\) infer\/sec.*/\1/p' "$1" | head -1)
  p50=$(sed -n 's/.*p50 latency: \([0-9]*\) usec.*/\1/p' "$1" | head -1)
  p99=$(sed -n 's/.*p99 latency: \([0-9]*\) usec.*/\1/p' "$1" | head -1)
  srv=$(sed -n 's/.*Avg request latency: \(.*\)$/\1/p' "$1" | head -1)
  echo "${tp:-fail} | ${p50:-} | ${p99:-} | ${srv:-}"
}
