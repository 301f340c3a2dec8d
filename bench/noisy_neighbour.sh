#!/usr/bin/env bash
# Noisy neighbour: kiln's fair share of one busy model between two tenants (README "Tenants",
# "Fair share": each model's queue serves one flow per tenant by deficit round robin, by weight).
# One shared model with dynamic batching and one instance; tenants a and b (keys generated per
# run, the file holds their SHA-256 digests); bench/loadgen as the client, one process per tenant,
# each sending that tenant's key as gRPC metadata (`--header "authorization:Bearer KEY"`). A fresh
# server per phase (with that phase's tenants file), then a warm-up and one measured window:
#   a. alone:     b alone at concurrency C_B (4): b's throughput, p50, p99 with nobody else;
#   b. single:    a alone at C_A + C_B (64 + 4): what one tenant gets out of the model;
#   c. flood:     weights 1:1, a at C_A (64) and b at C_B (4) at once: b's p99 against (a)
#                 (target at most 1.5x) and both throughputs;
#   d. saturate:  weights 1:1 and 3:1, a and b both at C_SAT (64): the throughput split against
#                 the weights (target within 10 %) and the total against (b) (target within 3 %);
#   e. fifo:      (c) without a tenants file: both callers anonymous, one FIFO flow (Triton's
#                 queue), to show what fair share changes.
# Prints a markdown table and the derived ratios against the targets, also written to
# $out/table.md with the header in $out/header.md ($out: OUT, default target/bench/noisy-neighbour
# here, /tmp/out on the GPU machine); raw loadgen outputs and server logs in $out/raw.
#
# Modes:
#   bash bench/noisy_neighbour.sh cpu       # here (development machine: scripts/setup.sh,
#                                           # cargo build --release, cargo build --release -p kiln-loadgen)
#   bash bench/noisy_neighbour.sh prepare   # here, for the GPU machine: bench/gpu_vs_triton.sh prepare
#                                           # (.carry/kiln-cuda, .carry/loadgen, the bundles); a stale
#                                           # .carry/kiln-cuda (built before fair share) is reused, so
#                                           # delete it first
#   bash bench/noisy_neighbour.sh device    # GPU machine (device tool, carry [".carry"])
# cpu: a TorchScript MLP on [batch, 256] FP32 (4 x (256 -> 2048 -> tanh -> 256)), max_batch_size 8,
#   max_queue_delay_microseconds 300, one CPU instance (one intra-op thread: kiln's default): a
#   batch is ~1 ms of one core for 1 row and ~2.3 ms for 8 (streaming the 16 MiB of weights
#   dominates, so batching pays, as on a GPU), and compute dominates the per-request cost. The machine has
#   2 cores: the model's instance thread takes one, and kiln's gRPC threads and the two loadgen
#   processes share the other (and whatever else runs here; the script waits for an idle
#   machine before each phase). The client's cost is part of every figure: loadgen is lean (one
#   shared input, a connection per caller, no per-request allocation beyond the call), and the
#   table shows the CPU time kiln and the loadgens took in each phase. Flood phases run two
#   loadgens, so their client cost is higher than the alone phase's.
# device: bench/gpu/make_resnet.py's ResNet-50 (TorchScript, FP32, INPUT__0 [3, 224, 224]) on the
#   GPU, one instance, max_batch_size DEVICE_MAX_BATCH (16), max_queue_delay_microseconds 500,
#   as bench/gpu_vs_triton.sh's batched models but with one instance so the queue is the
#   bottleneck.
#
# Env: WARMUP_S (3; device 5) and MEASURE_S (10) per phase; C_A (64), C_B (4), C_SAT (64);
#      IDLE_WAIT_S (300, cpu: longest wait for an idle machine before a phase); OTHER_MAX_PCT
#      (10: a phase in which other work took more of the machine's CPU is measured again); OUT;
#      KILN_BIN (cpu: another kiln build); SERVER_ENV (VAR=VALUE words for kiln);
#      DEVICE_MAX_BATCH (16).
# The whole cpu run takes about 2 minutes after the builds when the machine is idle.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-}
MEASURE_S=${MEASURE_S:-10}
C_A=${C_A:-64} C_B=${C_B:-4} C_SAT=${C_SAT:-64}
IDLE_WAIT_S=${IDLE_WAIT_S:-300}
kiln_env=${SERVER_ENV:-}   # start_kiln (bench/lib.sh) passes these to kiln
. bench/lib.sh
die() { echo "FAILED: $*" >&2; exit 1; }

case $MODE in
cpu)
  WARMUP_S=${WARMUP_S:-3}
  OUT=${OUT:-$PWD/target/bench/noisy-neighbour}
  bench_local_setup
  loadgen=$PWD/target/release/loadgen
  [[ -x $loadgen ]] || die "no $loadgen: cargo build --release -p kiln-loadgen first"
  "$loadgen" --help | grep -q -- --header || die "$loadgen has no --header: cargo build --release -p kiln-loadgen"
  model=shared_mlp
  input=INPUT__0:FP32:1,256
  repo=$out/repo
  ;;
device)
  WARMUP_S=${WARMUP_S:-5}
  bench_device_setup
  py=python3
  loadgen=./.carry/loadgen
  "$loadgen" --help | grep -q -- --header || die "$loadgen has no --header: bash bench/noisy_neighbour.sh prepare"
  model=resnet50_shared
  input=INPUT__0:FP32:1,3,224,224
  repo=/tmp/nn-repo
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
  ;;
prepare)
  bash bench/gpu_vs_triton.sh prepare
  exit 0
  ;;
*)
  echo "usage: $0 cpu|prepare|device" >&2; exit 2 ;;
esac
raw=$out/raw
rm -rf "$raw" "$repo"; mkdir -p "$raw" "$repo"

kiln=""
cleanup() { [[ -n $kiln ]] && kill -TERM "$kiln" 2>/dev/null && wait "$kiln" 2>/dev/null || true; }
trap cleanup EXIT

# ---------------------------------------------------------------- the shared model
if [[ $MODE == cpu ]]; then
  wait_idle "$IDLE_WAIT_S" | sed -u "s/^/[model] /"
  batch_cost=$("$py" - "$repo/$model" <<'PY'
import pathlib, sys, time
import torch

class Mlp(torch.nn.Module):
    """4 x (256 -> 2048 -> tanh -> 256): ~4.2 M multiply-adds per row, 16 MiB of weights."""
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("up", torch.randn(4, 256, 2048, generator=g) / 16.0)
        self.register_buffer("down", torch.randn(4, 2048, 256, generator=g) / 45.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(4):
            x = torch.tanh(x @ self.up[i]) @ self.down[i]
        return x

d = pathlib.Path(sys.argv[1])
(d / "1").mkdir(parents=True, exist_ok=True)
# Traced, not scripted: torch.jit.script needs the source file, and this runs from stdin.
scripted = torch.jit.trace(Mlp().eval(), torch.randn(2, 256))
scripted.save(str(d / "1" / "model.pt"))
(d / "config.pbtxt").write_text("""name: "shared_mlp"
platform: "pytorch_libtorch"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 256 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 256 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: 300 }
""")
# What a batch costs on one thread (kiln's intra-op default), here and now.
torch.set_num_threads(1)
costs = []
with torch.no_grad():
    for b in (1, 4, 8):
        x = torch.randn(b, 256)
        for _ in range(5):
            scripted(x)
        t = time.perf_counter()
        for _ in range(40):
            scripted(x)
        costs.append(f"batch {b}: {(time.perf_counter() - t) / 40 * 1e3:.2f} ms")
print(", ".join(costs))
PY
)
  model_line="$model: TorchScript MLP on [batch, 256] FP32, max_batch_size 8, max_queue_delay_microseconds 300, 1 CPU instance; one thread, in torch here: $batch_cost"
else
  DEVICE_MAX_BATCH=${DEVICE_MAX_BATCH:-16}
  python3 bench/gpu/make_resnet.py "$repo" --name "$model" --max-batch "$DEVICE_MAX_BATCH" --count 1 \
    --batching "max_queue_delay_microseconds: 500" > /dev/null
  model_line="$model: ResNet-50 TorchScript FP32 on the GPU, max_batch_size $DEVICE_MAX_BATCH, max_queue_delay_microseconds 500, 1 instance"
fi

kiln_built=$(date -u -r "$kiln_bin" +%Y-%m-%dT%H:%M:%SZ)

# ---------------------------------------------------------------- tenants and keys
declare -A key
for t in a b; do key[$t]=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n'); done
write_tenants() { # FILE WEIGHT_A WEIGHT_B
  local t w
  : > "$1"
  for t in a b; do
    w=$2; [[ $t == b ]] && w=$3
    printf '[[tenant]]\nname = "%s"\napi_keys = ["sha256:%s"]\nscopes = ["infer", "metadata", "statistics"]\nshared_models = ["*"]\nweight = %s\n\n' \
      "$t" "$(printf %s "${key[$t]}" | sha256sum | cut -d' ' -f1)" "$w" >> "$1"
  done
}

{
  echo "# Noisy neighbour: fair share of one model between two tenants ($MODE, $(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  if [[ $MODE == cpu ]]; then
    echo "- machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1); load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
  else
    echo "- machine: $(cat "$out/gpu.txt"), $(nproc) CPUs"
  fi
  if [[ $MODE == cpu ]]; then
    echo "- kiln: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- host || echo ' + uncommitted host/ changes'),"\
         "$kiln_bin built $kiln_built${SERVER_ENV:+, env $SERVER_ENV}"
  else
    echo "- kiln: $kiln_bin (bench/gpu_proof.sh prepare) built $kiln_built${SERVER_ENV:+, env $SERVER_ENV}"
  fi
  echo "- model: $model_line"
  echo "- client: bench/loadgen, closed loop, $WARMUP_S s warm-up + $MEASURE_S s measured per phase; a fresh server per phase;"\
       "concurrent tenants run one loadgen each over the same window"
  if [[ $MODE == cpu ]]; then
    echo "- the model's instance takes one of the $(nproc) cores; kiln's gRPC threads and the loadgens share the rest"
  fi
} | tee "$out/header.md"

# ---------------------------------------------------------------- phases
# CPU time, in ticks: one process (all its threads), and the machine (busy, total).
proc_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
children_ticks() { # FILE: `times` output -> its second line (waited-for children, user + system) in ticks
  awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } print int(t * 100 + 0.5) }' "$1"
}

# phase ID WEIGHTS TENANT:CONCURRENCY...: a fresh server (WEIGHTS "A:B" for a tenants file with
# those weights, "none" for none: anonymous callers), one loadgen per TENANT:CONCURRENCY, all
# at once. A run in which other work took more than OTHER_MAX_PCT % of the machine's CPU time is
# measured again (twice at most) and marked if it never ran clean. Appends one line per tenant
# to $out/results.txt: id|weights|tenant|concurrency|weight|infer/s|p50|p99|server-side|
# kiln cores|loadgen cores|machine busy %|other %|note
OTHER_MAX_PCT=${OTHER_MAX_PCT:-10}
phase() {
  local id=$1 weights=$2 try cpu note=""
  shift 2
  for try in 1 2 3; do
    if [[ $MODE == cpu ]]; then wait_idle "$IDLE_WAIT_S" | sed -u "s/^/[$id] /"; fi
    phase_once "$id" "$weights" "$@"
    cpu=$cpu_use
    note=""
    (( ${cpu##*|} <= OTHER_MAX_PCT )) && break
    note="other work took ${cpu##*|} % of the CPU"
    echo "[$id] $note; measuring again"
  done
  local load t c w
  for load in "$@"; do
    t=${load%:*} c=${load#*:} w=-
    [[ $weights != none ]] && { w=${weights%:*}; [[ $t == b ]] && w=${weights#*:}; }
    echo "$id|$weights|$t|$c|$w|$(pa_row "$raw/lg-$id-$t.txt" | sed 's/ | /|/g')|$cpu|$note" | tee -a "$out/results.txt"
  done
}
# phase_once ID WEIGHTS LOADS...: one run; sets cpu_use to "kiln cores|loadgen cores|busy %|
# other %" (CPU time over the whole run, warm-up included; other: neither kiln nor the loadgens).
phase_once() {
  local id=$1 weights=$2 load t c hdr pids=() ports http grpc s0 s1 m0 m1 k0 k1
  shift 2
  ports=$raw/ports-$id.json
  rm -f "$ports"
  local args=(serve --model-repository "$repo" --host 127.0.0.1 --http-port 0 --grpc-port 0
              --metrics-port 0 --port-file "$ports")
  if [[ $weights != none ]]; then
    write_tenants "$raw/tenants-$id.toml" "${weights%:*}" "${weights#*:}"
    args+=(--tenants "$raw/tenants-$id.toml")
  fi
  start_kiln "$raw/kiln-$id.log" "${args[@]}"
  for _ in $(seq 1 300); do
    [[ -s $ports ]] && break
    kill -0 "$kiln" 2>/dev/null || { tail -20 "$raw/kiln-$id.log"; die "kiln exited at start ($id)"; }
    sleep 0.2
  done
  http=$(sed -n 's/.*"http": *\([0-9]*\).*/\1/p' "$ports")
  grpc=$(sed -n 's/.*"grpc": *\([0-9]*\).*/\1/p' "$ports")
  [[ -n $http && -n $grpc ]] || die "no ports in $ports"
  wait_ready "$http" "$kiln" "$raw/kiln-$id.log" || die "kiln did not become ready ($id, log: $raw/kiln-$id.log)"
  echo "== $id: weights $weights, $* (kiln gRPC port $grpc)"
  # `times` (this shell's waited-for children: the loadgens) runs here, not in a $(...)
  # subshell, whose children times start at 0.
  s0=$(proc_ticks "$kiln"); times > "$raw/times0"; m0=($(machine_ticks))
  for load in "$@"; do
    t=${load%:*} c=${load#*:} hdr=()
    [[ $weights != none ]] && hdr=(--header "authorization:Bearer ${key[$t]}")
    timeout -s KILL $(( ${WARMUP_S%.*} + ${MEASURE_S%.*} + 60 )) "$loadgen" --url "http://127.0.0.1:$grpc" \
      --model "$model" --input "$input" --concurrency "$c" --warmup "$WARMUP_S" --seconds "$MEASURE_S" \
      "${hdr[@]}" > "$raw/lg-$id-$t.txt" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  m1=($(machine_ticks)); times > "$raw/times1"; s1=$(proc_ticks "$kiln")
  k0=$(children_ticks "$raw/times0"); k1=$(children_ticks "$raw/times1")
  kill -TERM "$kiln"; wait "$kiln" || true; kiln=""
  cpu_use=$(awk -v s=$((s1 - s0)) -v k=$((k1 - k0)) -v b=$((m1[0] - m0[0])) -v t=$((m1[1] - m0[1])) -v n="$(nproc)" \
    'BEGIN { if (t <= 0) t = 1; o = 100 * (b - s - k) / t; if (o < 0) o = 0
             printf "%.2f|%.2f|%d|%d", s * n / t, k * n / t, 100 * b / t, o }')
}
: > "$out/results.txt"

phase alone 1:1 "b:$C_B"
phase single 1:1 "a:$((C_A + C_B))"
phase flood 1:1 "a:$C_A" "b:$C_B"
phase saturate-1:1 1:1 "a:$C_SAT" "b:$C_SAT"
phase saturate-3:1 3:1 "a:$C_SAT" "b:$C_SAT"
phase fifo none "a:$C_A" "b:$C_B"
# c again with kiln's per-request debug line (kiln::request: total from admission, queue,
# compute): where each tenant's time goes inside the server, against what its loadgen saw.
kiln_env="${SERVER_ENV:-} RUST_LOG=info,kiln::request=debug"
phase flood-traced 1:1 "a:$C_A" "b:$C_B"
kiln_env=${SERVER_ENV:-}

# ---------------------------------------------------------------- table
"$py" - "$out/results.txt" > "$out/table.md" <<'PY'
import re, sys
rows = [l.rstrip("\n").split("|") for l in open(sys.argv[1]) if l.strip()]
def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None
def fmt(x, d=0):
    v = num(x)
    return "fail" if v is None else f"{v:,.{d}f}"
by, phases = {}, {}
for pid, weights, tenant, c, w, tp, p50, p99, srv, kc, lc, busy, other, note in rows:
    by[(pid, tenant)] = dict(weights=weights, c=c, w=w, tp=num(tp), tp_text=tp, p50=num(p50), p99=num(p99))
    ph = phases.setdefault(pid, dict(kc=kc, lc=lc, busy=busy, other=other, note=note, tp=0.0, batch=None, compute=None))
    ph["tp"] += num(tp) or 0.0
    # The model's statistics (both tenants together): the same in every loadgen of a phase.
    m = re.search(r"compute input (\d+) usec \+ compute infer (\d+) usec \+ compute output (\d+) usec; average batch ([0-9.]+)", srv)
    if m and ph["batch"] is None:
        ph["compute"] = sum(int(m.group(i)) for i in (1, 2, 3))
        ph["batch"] = float(m.group(4))
for ph in phases.values():
    # The instance's share of the window spent computing: executions/s x compute per execution.
    ph["inst"] = ph["tp"] / ph["batch"] * ph["compute"] / 1e6 if ph["batch"] and ph["compute"] else None
label = {"flood-traced": "c'. as c, per-request log on", "alone": "a. b alone", "single": "b. one tenant", "flood": "c. flood, weights 1:1",
         "saturate-1:1": "d. both saturate, 1:1", "saturate-3:1": "d. both saturate, 3:1",
         "fifo": "e. flood, no tenants (FIFO)"}
print("| phase | tenant | concurrency | weight | infer/s | p50 µs | p99 µs | avg batch | compute µs/batch | instance busy | kiln cores | loadgen cores | other work |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
seen = set()
for pid, weights, tenant, *_ in rows:
    r, ph = by[(pid, tenant)], phases[pid]
    first = pid not in seen
    seen.add(pid)
    who = tenant if weights != "none" else f"{tenant} (anonymous)"
    if first:
        name = label.get(pid, pid) + (f" ({ph['note']})" if ph["note"] else "")
        model = (f"{ph['batch']:.1f}" if ph["batch"] else "", f"{ph['compute']:,}" if ph["compute"] else "",
                 f"{100 * ph['inst']:.0f} %" if ph["inst"] is not None else "")
        cpu = (ph["kc"], ph["lc"], f"{ph['other']} %")
    else:
        name, model, cpu = "", ("", "", ""), ("", "", "")
    tp = fmt(r["tp"], 1) if r["tp"] is not None else f"fail{r['tp_text'][4:]}"
    print(f"| {name} | {who} | {r['c']} | {r['w']} | {tp} | {fmt(r['p50'])} | {fmt(r['p99'])} "
          f"| {' | '.join(model)} | {' | '.join(cpu)} |")
print()
print("avg batch, compute µs/batch (input + infer + output): the model's, both tenants together, from "
      "ModelStatistics over the window; instance busy: executions/s × compute per execution (exact "
      "when every batch is full: the per-request average counts a batch once per request in it); "
      "cores: CPU time over the whole phase, warm-up included; other work: CPU time neither kiln "
      "nor the loadgens took, % of the machine's.")
print()
def get(pid, tenant, key):
    r = by.get((pid, tenant))
    return r[key] if r else None
def ratio(a, b):
    return a / b if a is not None and b else None
checks = []
def check(what, value, target="", ok=None, text=None):
    v = "n/a" if value is None else (text or f"{value:.2f}×")
    met = "" if ok is None else ("yes" if value is not None and ok(value) else "NO")
    checks.append(f"| {what} | {v} | {target} | {met} |")
alone99, alone50 = get("alone", "b", "p99"), get("alone", "b", "p50")
check("c. b's p99 under a's flood / b alone (weights 1:1)", ratio(get("flood", "b", "p99"), alone99), "≤ 1.5×", lambda v: v <= 1.5)
check("c. b's p50 under a's flood / b alone (weights 1:1)", ratio(get("flood", "b", "p50"), alone50))
check("c. b's throughput under a's flood / b alone", ratio(get("flood", "b", "tp"), get("alone", "b", "tp")))
def in_batches(pid, key):  # a latency in units of its phase's compute per batch
    v, ph = get(pid, "b", key), phases.get(pid)
    return v / ph["compute"] if v is not None and ph and ph["compute"] else None
for pid, what in (("flood", "c. b's p99 under a's flood / b alone (weights 1:1), each in its phase's batch times"),
                  ("fifo", "e. b's p99 under a's flood / b alone, no tenants (FIFO), each in its phase's batch times")):
    flood, alone = in_batches(pid, "p99"), in_batches("alone", "p99")
    r = ratio(flood, alone)
    check(what, r, "(compute drift taken out)" if pid == "flood" else "(contrast)", None,
          None if r is None else f"{r:.2f}× ({flood:.1f} / {alone:.1f} batch times)")
check("e. b's p99 under a's flood / b alone, no tenants (FIFO)", ratio(get("fifo", "b", "p99"), alone99), "(contrast)")
check("e. b's p50 under a's flood / b alone, no tenants (FIFO)", ratio(get("fifo", "b", "p50"), alone50), "(contrast)")
single = phases.get("single", {})
for pid, weight in (("saturate-1:1", 1.0), ("saturate-3:1", 3.0)):
    if pid not in phases:
        continue
    w = pid.split("-")[1]
    split = ratio(get(pid, "a", "tp"), get(pid, "b", "tp"))
    check(f"d. a/b throughput at weights {w}, against {weight:.0f}", None if split is None else split / weight,
          "within 10 %", lambda v: abs(v - 1) <= 0.10, None if split is None else f"{split:.2f} ({100 * (split / weight - 1):+.1f} %)")
    total = ratio(phases[pid]["tp"], single.get("tp"))
    check(f"d. total throughput at weights {w} / one tenant (phase b)", total, "within 3 %", lambda v: abs(v - 1) <= 0.03,
          None if total is None else f"{total:.3f} ({100 * (total - 1):+.1f} %)")
    busy = ratio(phases[pid]["inst"], single.get("inst"))
    check(f"d. instance busy at weights {w} / one tenant (phase b): the scheduler's share of any loss", busy, "",
          None, None if busy is None else f"{busy:.3f} ({100 * (busy - 1):+.1f} %)")
if "flood" in phases:
    check("c. total throughput under flood (1:1) / one tenant (phase b)", ratio(phases["flood"]["tp"], single.get("tp")))
print("| derived | value | target | met |")
print("|---|---|---|---|")
print("\n".join(checks))
print()
print("(compute µs/batch can move between phases with what else runs on the machine's cores and "
      "caches; where total throughput misses while instance busy holds, the model ran slower, "
      "not the queue)")
PY
# Per-request server-side times of phase c' (the loadgens' measured window only: the last
# MEASURE_S seconds of answers), by tenant.
"$py" - "$raw/kiln-flood-traced.log" "$MEASURE_S" "$raw/lg-flood-traced-a.txt" "$raw/lg-flood-traced-b.txt" > "$out/where.md" <<'PY'
import datetime, re, sys
log, window = sys.argv[1], float(sys.argv[2])
line_re = re.compile(r"^(\S+)\s.*kiln::request.*tenant=(\S*) total_us=(\d+) queue_us=(\d+) compute_us=(\d+)")
rows = []
for line in open(log, errors="replace"):
    m = line_re.search(re.sub(r"\x1b\[[0-9;]*m", "", line))
    if not m:
        continue
    t = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
    rows.append((t, m.group(2).strip('"'), *(int(m.group(i)) for i in (3, 4, 5))))
if not rows:
    print("(no kiln::request lines in the log: a kiln without the per-request debug line)")
    sys.exit(0)
end = max(r[0] for r in rows)
rows = [r for r in rows if r[0] >= end - window]
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))] if v else 0
client = {}
for f in sys.argv[3:]:
    text = open(f, errors="replace").read()
    m50, m99 = re.search(r"p50 latency: (\d+)", text), re.search(r"p99 latency: (\d+)", text)
    client[f.rsplit("-", 1)[1][0]] = (int(m50.group(1)) if m50 else 0, int(m99.group(1)) if m99 else 0)
print("| tenant | answered | server total p50 / p99 µs | queue p50 / p99 µs | compute p50 / p99 µs | total − queue − compute p50 / p99 µs | loadgen p50 / p99 µs |")
print("|---|---|---|---|---|---|---|")
for tenant in sorted({r[1] for r in rows}):
    mine = [r for r in rows if r[1] == tenant]
    cols = [[r[2] for r in mine], [r[3] for r in mine], [r[4] for r in mine], [r[2] - r[3] - r[4] for r in mine]]
    c = client.get(tenant, (0, 0))
    print(f"| {tenant} | {len(mine):,} | " + " | ".join(f"{pct(v, 50):,} / {pct(v, 99):,}" for v in cols) + f" | {c[0]:,} / {c[1]:,} |")
print()
print("server total: admission (request headers in) to the answer ready; queue: enqueued to its batch's start; "
      "compute: its batch's input + infer + output; loadgen: what the client measured (connection, transfer both ways)")
PY
if [[ $(date -u -r "$kiln_bin" +%Y-%m-%dT%H:%M:%SZ) != "$kiln_built" ]]; then
  echo "- WARNING: $kiln_bin was rebuilt during the run (now $(date -u -r "$kiln_bin" +%Y-%m-%dT%H:%M:%SZ)): phases may have run different builds" >> "$out/header.md"
fi
echo
cat "$out/header.md"
echo
cat "$out/table.md"
echo
echo "Where the time goes in phase c' (per-request log):"
cat "$out/where.md"
echo
echo "(loadgen outputs, server logs, tenants files and results.txt: $out)"
