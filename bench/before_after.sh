#!/usr/bin/env bash
# A change on the request path, measured: two kiln binaries (before and after) on the same
# repository, the same perf_analyzer points, run alternately (A, B, A, B, ...) so that drift
# on this shared 2-core machine hits both alike; the median of the repetitions is reported.
# Points: add_sub over gRPC and HTTP, the digits_pipeline ensemble over gRPC, concurrency 1
# and 4. Figures: BENCHMARKS.md.
#
#   bash bench/before_after.sh BEFORE_BIN AFTER_BIN    # e.g. a build of the previous commit
#
# Build both the same way, each clean in its own target folder (a git worktree and
# CARGO_TARGET_DIR): the development tree's incremental release build can differ from a clean
# one by a few percent on one path (BENCHMARKS.md, issue 14). A binary whose runpath points at
# a removed worktree finds libtorch through LD_LIBRARY_PATH=.venv/libtorch/lib.
#
# Env: CONCURRENCY ("1 4"), REPS (3), OUT (target/bench-before-after).
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:?usage: bench/before_after.sh BEFORE_BIN AFTER_BIN}
after=${2:?usage: bench/before_after.sh BEFORE_BIN AFTER_BIN}
CONCURRENCY=${CONCURRENCY:-"1 4"}
REPS=${REPS:-3}
OUT=${OUT:-$PWD/target/bench-before-after}
. bench/lib.sh
bench_local_setup
out=$OUT; mkdir -p "$out"
PA_ARGS=(-b 1 --measurement-interval 2000 -s 50 --max-trials 8)

repo=$out/repo
rm -rf "$repo"; mkdir -p "$repo"
cp -r target/test-models/add_sub model_repository/digits model_repository/digits_preprocess \
  model_repository/digits_postprocess model_repository/digits_pipeline "$repo/"
"$py" bench/digit_input.py "$out" >/dev/null

declare -A pid
ports() { [[ $1 == before ]] && echo "29000 29001 29002" || echo "29100 29101 29102"; }
for which in before after; do
  read -r h g m <<<"$(ports $which)"
  bin=$before; [[ $which == after ]] && bin=$after
  kiln_bin=$bin start_kiln "$out/$which.log" serve --model-repository "$repo" --host 127.0.0.1 \
    --http-port "$h" --grpc-port "$g" --metrics-port "$m"
  pid[$which]=$kiln
  wait_ready "$h" "$kiln" "$out/$which.log"
done
trap 'kill -TERM ${pid[before]} ${pid[after]} 2>/dev/null || true' EXIT

# point WHICH MODEL PROTOCOL C -> infer/s (one perf_analyzer run)
point() {
  local which=$1 model=$2 proto=$3 c=$4 h g m port extra=()
  read -r h g m <<<"$(ports "$which")"
  port=$g; [[ $proto == http ]] && port=$h
  if [[ $model == digits_pipeline ]]; then
    extra=(--input-data "$out/digit.json")
  fi
  "$pa" -m "$model" -i "$proto" -u "127.0.0.1:$port" "${PA_ARGS[@]}" "${extra[@]}" \
    --concurrency-range "$c:$c" > "$out/pa.txt" 2>&1 || true
  pa_row "$out/pa.txt"
}

{
  echo "# before/after on $(nproc) CPUs ($(date -u +%Y-%m-%dT%H:%MZ)); median of $REPS alternating runs"
  echo "- before: $before"
  echo "- after: $after"
  echo
  echo "| model | protocol | concurrency | before infer/s | after infer/s | after/before | before p50 µs | after p50 µs |"
  echo "|---|---|---|---|---|---|---|---|"
} | tee "$out/table.md"
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
for spec in "add_sub grpc" "add_sub http" "digits_pipeline grpc"; do
  read -r model proto <<<"$spec"
  for c in $CONCURRENCY; do
    wait_idle 600 30 >/dev/null
    declare -A tps=() p50s=()
    for r in $(seq 1 "$REPS"); do
      for which in before after; do
        row=$(point "$which" "$model" "$proto" "$c")
        tps[$which]+="$(echo "$row" | cut -d'|' -f1 | tr -d ' ') "
        p50s[$which]+="$(echo "$row" | cut -d'|' -f2 | tr -d ' ') "
      done
    done
    b=$(tr ' ' '\n' <<<"${tps[before]}" | grep -v '^$' | median)
    a=$(tr ' ' '\n' <<<"${tps[after]}" | grep -v '^$' | median)
    bp=$(tr ' ' '\n' <<<"${p50s[before]}" | grep -v '^$' | median)
    ap=$(tr ' ' '\n' <<<"${p50s[after]}" | grep -v '^$' | median)
    ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }')
    echo "| $model | $proto | $c | $b | $a | $ratio | $bp | $ap |" | tee -a "$out/table.md"
  done
done
