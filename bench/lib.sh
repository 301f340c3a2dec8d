# Shared by the benchmark scripts (source it from the repo root): the GPU machine's
# scripts call bench_device_setup, the development machine's bench_local_setup.

# bench_device_setup: the GPU machine's torch site-packages, $out, tritonclient
# on PYTHONPATH, and the carried perf_analyzer and Triton bundles unpacked.
# Sets: site, out, pa, triton_run, kiln_bin, kiln_ld.
bench_device_setup() {
  site=/opt/torch/.venv/lib/python3.12/site-packages
  kiln_bin=./.carry/kiln-cuda
  kiln_ld="$site/torch/lib:$(printf '%s:' "$site"/nvidia/*/lib)"
  out=${OUT:-/tmp/out}; mkdir -p "$out"
  export PYTHONUNBUFFERED=1
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .carry/whl/*.whl 2>/dev/null
  export PYTHONPATH=/tmp/site
  rm -rf /tmp/pa /tmp/triton && mkdir -p /tmp/pa /tmp/triton
  tar -xJf .carry/pa.tar.xz -C /tmp/pa
  # Triton is only carried for the scripts that compare with it.
  if [[ -f .carry/triton.tar.xz ]]; then tar -xJf .carry/triton.tar.xz -C /tmp/triton; fi
  pa=$(find /tmp/pa -name perf_analyzer -type f -perm -u+x | head -1)
  triton_run=$(find /tmp/triton -name run.sh | head -1)
}

# bench_local_setup: the development machine (Debian 12, no GPU): the project's
# .venv (torch, tritonclient), perf_analyzer and the real Triton 2.51 from
# ../shared/tools (installed if missing; both installers skip finished steps),
# and the locally built target/release/kiln (its RUNPATH finds .venv's libtorch),
# or the binary named by KILN_BIN (an older build, for before/after runs).
# Sets: site, out, py, pa, triton_run, kiln_bin, kiln_ld.
bench_local_setup() {
  py=$PWD/.venv/bin/python
  [[ -x $py ]] || { echo "no .venv: run scripts/setup.sh first" >&2; return 1; }
  site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  out=${OUT:-$PWD/target/bench-cpu}; mkdir -p "$out"
  export PYTHONUNBUFFERED=1
  bash ../shared/tools/perf-analyzer/install.sh >&2
  bash ../shared/tools/triton-reference/install.sh >&2
  pa=$HOME/.cache/kiln-tools/perf_analyzer/bin/perf_analyzer
  triton_run=$(cd ../shared/tools/triton-reference && pwd)/run.sh
  kiln_bin=${KILN_BIN:-$PWD/target/release/kiln}
  kiln_ld=${LD_LIBRARY_PATH:-}
  [[ -x $kiln_bin ]] || { echo "no $kiln_bin: cargo build --release first" >&2; return 1; }
}

# start_kiln LOG ARGS...: $kiln_bin with LD_LIBRARY_PATH=$kiln_ld (set by the
# setup functions above) and the optional VAR=VALUE words in $kiln_env, in the
# background; sets `kiln` to its PID.
start_kiln() {
  local log=$1; shift
  LD_LIBRARY_PATH="$kiln_ld" env ${kiln_env:-} "$kiln_bin" "$@" > "$log" 2>&1 &
  kiln=$!
}

# cpu_busy [SECONDS]: how busy all CPUs were over the next SECONDS (default 2), in %.
cpu_busy() {
  local a b i total=0
  a=($(head -1 /proc/stat)); sleep "${1:-2}"; b=($(head -1 /proc/stat))
  for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
  echo $(( total > 0 ? 100 * (total - (b[4] + b[5] - a[4] - a[5])) / total : 0 ))
}

# wait_idle [MAX_S [MAX_BUSY]]: until no compiler or linker (rustc, cargo, cc1plus, cc1,
# ld, ld.lld) runs and the CPUs are at most MAX_BUSY % busy over 2 s (default 25: other
# benchmarks count too), polling for at most MAX_S seconds (default 1200); then prints
# the load average. For benchmarks on the shared 2-core development machine.
wait_idle() {
  local max=${1:-1200} max_busy=${2:-25} start=$SECONDS busy pct
  while :; do
    busy=$(pgrep -x -l 'rustc|cargo|cc1plus|cc1|ld|ld\.lld' 2>/dev/null | awk '{print $2}' | sort | uniq -c | awk '{print $2 " x" $1}' | paste -sd, - || true)
    pct=$(cpu_busy 2)
    [[ -z $busy ]] && (( pct <= max_busy )) && break
    if (( SECONDS - start >= max )); then
      echo "WARNING: not idle after ${max}s (${busy:-no compilers}; CPUs ${pct}% busy); measuring anyway"
      break
    fi
    echo "waiting for an idle machine: ${busy:-no compilers}, CPUs ${pct}% busy ($(( SECONDS - start ))s)"
    sleep 8
  done
  echo "after $(( SECONDS - start ))s: CPUs ${pct}% busy over 2 s, load average $(cut -d' ' -f1-3 /proc/loadavg)"
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
# perf_analyzer output ("fail (why)" where it measured nothing).
pa_row() {
  local tp p50 p99 srv why=""
  tp=$(sed -n 's/.*Throughput: \([0-9.]*\) infer\/sec.*/\1/p' "$1" | head -1)
  if [[ -z $tp ]]; then
    if grep -q "killed" "$1"; then why=" (perf_analyzer killed: out of memory or timeout)"
    elif grep -q "Failed to obtain stable" "$1"; then why=" (not stable within --max-trials)"
    else why=" ($(grep -m1 -i "error" "$1" | sed 's/^ *//' | cut -c1-80))"; fi
  fi
  p50=$(sed -n 's/.*p50 latency: \([0-9]*\) usec.*/\1/p' "$1" | head -1)
  p99=$(sed -n 's/.*p99 latency: \([0-9]*\) usec.*/\1/p' "$1" | head -1)
  srv=$(sed -n 's/.*Avg request latency: \(.*\)$/\1/p' "$1" | head -1)
  echo "${tp:-fail$why} | ${p50:-} | ${p99:-} | ${srv:-}"
}
