#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time on its committed
# corpus (host/fuzz/corpus/<target>/), keeping what libFuzzer finds new in a
# scratch corpus under target/ (commit interesting inputs by hand).
#
#   host/fuzz/run.sh                 # every target, 30 s each
#   host/fuzz/run.sh 600 kserve_json # one target, 10 minutes
#   host/fuzz/run.sh merge           # fold what runs found into the committed corpus,
#                                    # minimized (libFuzzer -merge=1: the smallest inputs
#                                    # that keep every feature), then review and commit
#
# Stable Rust: libFuzzer's coverage instrumentation is applied per package with
# cargo's `profile-rustflags`, which RUSTC_BOOTSTRAP=1 unlocks; the release
# profile matches the main workspace's so the dependencies built by
# `cargo build --release` are reused. A crash leaves its input under
# target/fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")"
mode=run
if [[ ${1:-} == merge ]]; then mode=merge; shift; secs=0; else secs=${1:-30}; shift || true; fi
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(config_pbtxt tenants_toml kserve_json binary_tensor grpc_infer_request bytes_elements plugin_wire)
fi
root=$(cd ../.. && pwd)
export CARGO_TARGET_DIR=$root/target
export RUSTC_BOOTSTRAP=1
cargo build --release --locked --bins
# The targets link libtorch through the kiln library (no RUNPATH of their own).
export LD_LIBRARY_PATH="$root/.venv/libtorch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [[ $mode == merge ]]; then
  for t in "${targets[@]}"; do
    merged=$root/target/fuzz/merged/$t
    rm -rf "$merged"; mkdir -p "$merged" "$root/target/fuzz/corpus/$t"
    "$root/target/release/$t" -merge=1 -max_len=65536 -rss_limit_mb=4096 "$merged" "corpus/$t" \
      "$root/target/fuzz/corpus/$t" >"$root/target/fuzz/$t.merge.log" 2>&1
    # Hash-named inputs are replaced; hand-named ones (crash reproducers) always stay.
    find "corpus/$t" -type f -regextype posix-extended -regex '.*/[0-9a-f]{16,40}' -delete
    cp -n "$merged"/* "corpus/$t/"
    echo "$t: $(ls "corpus/$t" | wc -l) inputs, $(du -sh --apparent-size "corpus/$t" | cut -f1)"
  done
  exit 0
fi
status=0
for t in "${targets[@]}"; do
  work=$root/target/fuzz/corpus/$t
  artifacts=$root/target/fuzz/artifacts/$t/
  mkdir -p "$work" "$artifacts"
  log=$root/target/fuzz/$t.log
  echo "== $t: $secs s"
  if ! "$root/target/release/$t" "$work" "corpus/$t" -max_total_time="$secs" -rss_limit_mb=4096 \
      -max_len=65536 -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1; then
    echo "$t: FAILED (input under $artifacts)"; tail -40 "$log"; status=1
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE" "$log" | sed "s/^/  /" || true
  echo "  corpus: $(ls "corpus/$t" | wc -l) committed, $(ls "$work" | wc -l) found this run"
done
exit $status
