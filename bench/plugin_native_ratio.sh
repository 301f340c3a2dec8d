#!/usr/bin/env bash
# Issue 3 benchmark: the image_preprocess plugin (plugins/rust/image_preprocess)
# as Wasm, called through kiln's WasmInstance in process, against the same Rust
# code built natively for this machine. Prints one row per case of
# bench/plugin_native_ratio.cases: native µs, Wasm µs, Wasm / native (see
# BENCHMARKS.md for a run and how to read it).
#
#   bash bench/plugin_native_ratio.sh [--quick] [--rounds N] [--no-simd]
#
# Runs here (no GPU, no device machine). What it does:
#   1. images: target/plugin-ratio/images/ from scikit-learn's bundled sample
#      photo (china.jpg, re-encoded as 640x480 JPEG and PNG and 224x224 JPEG)
#      and digit 3 of its digits data set as a 32x32 PNG (scripts/make_digit_pngs.py).
#   2. builds target/plugins/{image_preprocess,empty}.wasm (plugins/build.sh,
#      the committed settings: no SIMD) and, unless --no-simd, the same plugin
#      with -C target-feature=+simd128 into target/plugin-ratio/ (not committed
#      anywhere; an extra column).
#   3. native side: plugins/rust/image_preprocess/benches/native.rs (criterion,
#      release profile of the plugins workspace: LTO, codegen-units 1, the
#      default x86-64 target, i.e. SSE2 but no AVX), twice: as shipped, where
#      jpeg-decoder picks its SSSE3 IDCT and colour conversion at run time,
#      and with its `platform_independent` feature, the scalar code that the
#      Wasm build runs ("native scalar").
#   4. Wasm side: host/crates/wasm/benches/plugins.rs (criterion, `cargo bench -p kiln-wasm`),
#      groups image_preprocess_wasm[_simd128] (kiln's WasmInstance::execute);
#      image_preprocess_wasmtime_* (the same component under a plain wasmtime
#      engine without fuel metering and/or epoch checks: kiln always compiles
#      epoch checks in, and fuel metering only for models that set wasm_fuel,
#      which this case does not); and the empty plugin with the same output size
#      (3x224x224 FP32) for the host's copy overhead.
#   5. compares the outputs bit for bit (the Wasm build must equal native
#      scalar) and prints the table (criterion medians).
#
# Output files: target/plugin-ratio/{images,out,criterion}.
#
# Measuring: the three bench executables are built first, then run in turn,
# ROUNDS times (native, native scalar, Wasm; each case 1 s warm-up, 3 s of
# samples). Each cell of the table is the median over the rounds of the
# criterion medians, each ratio the median of the ratios within a round (the
# two sides measured a minute apart), with the lowest and highest per-round
# ratio in brackets: on a shared 2-core machine the load changes from minute
# to minute, and the rounds show how much that moved the figures. Exits 1 if
# the Wasm output is not bit-identical to native scalar.
#
# --rounds N (default 3); --quick: 1 round, 2 s of samples.
# Environment: CARGO_BUILD_JOBS (default 1).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"

warmup=1 measure=3 rounds=3 simd=1
while (($#)); do
    case "$1" in
        --quick) measure=2 rounds=1 ;;
        --rounds) rounds=$2; shift ;;
        --no-simd) simd=0 ;;
        *) echo "usage: $0 [--quick] [--rounds N] [--no-simd]" >&2; exit 2 ;;
    esac
    shift
done

work="$root/target/plugin-ratio"
images="$work/images"
export CRITERION_HOME="$work/criterion"
mkdir -p "$images" "$work/out"
rm -f "$work"/out/*.f32 "$work/rounds.jsonl"

echo "== images ($images)" >&2
[[ -f "$images/digit_32x32.png" ]] || {
    tmp=$(mktemp -d)
    .venv/bin/python scripts/make_digit_pngs.py "$tmp" --start 3 --count 1 >/dev/null
    mv "$tmp"/0003_*.png "$images/digit_32x32.png"
    rm -rf "$tmp"
}
.venv/bin/python - "$images" <<'PY'
import pathlib, sys
from PIL import Image
from sklearn.datasets import load_sample_image

out = pathlib.Path(sys.argv[1])
photo = Image.fromarray(load_sample_image("china.jpg"))  # 640x427 RGB
big = photo.resize((640, 480), Image.LANCZOS)
small = photo.resize((224, 224), Image.LANCZOS)
for img, name, kw in [(big, "photo_640x480.jpg", dict(quality=90)),
                      (big, "photo_640x480.png", dict()),
                      (small, "photo_224x224.jpg", dict(quality=90))]:
    path = out / name
    if not path.exists():
        img.save(path, **kw)
for p in sorted(out.iterdir()):
    with Image.open(p) as im:
        print(f"  {p.name}: {im.width}x{im.height} {im.mode}, {p.stat().st_size} bytes", file=sys.stderr)
PY

echo "== plugins (Wasm)" >&2
bash plugins/build.sh image_preprocess empty >&2
simd_wasm=""
if ((simd)); then
    CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS="-C target-feature=+simd128" \
        cargo build --manifest-path plugins/rust/Cargo.toml --release --target wasm32-wasip2 \
        --target-dir "$work/cargo-simd128" -p image_preprocess >&2
    simd_wasm="$work/image_preprocess_simd128.wasm"
    cp "$work/cargo-simd128/wasm32-wasip2/release/image_preprocess.wasm" "$simd_wasm"
fi

# bench_exe CARGO-BENCH-ARGS...: builds a bench target, prints its executable.
bench_exe() {
    cargo bench --no-run --message-format=json-render-diagnostics "$@" | python3 -c '
import json, sys
exes = [m["executable"] for m in map(json.loads, sys.stdin)
        if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]]
print(exes[-1])'
}
echo "== bench executables" >&2
native=$(cd plugins/rust && bench_exe -p image_preprocess --bench native --target-dir "$work/cargo")
native_scalar=$(cd plugins/rust && bench_exe -p image_preprocess --bench native --target-dir "$work/cargo" \
    --features platform_independent)
wasm=$(bench_exe -p kiln-wasm --bench plugins)

# collect ROUND: appends every criterion median of this run to rounds.jsonl.
collect() {
    python3 - "$work" "$1" <<'PY'
import json, pathlib, sys
work, rnd = pathlib.Path(sys.argv[1]), int(sys.argv[2])
with open(work / "rounds.jsonl", "a") as out:
    for f in (work / "criterion").glob("*/*/new/estimates.json"):
        group, case = f.parts[-4], f.parts[-3]
        us = json.loads(f.read_text())["median"]["point_estimate"] / 1000
        out.write(json.dumps({"round": rnd, "group": group, "case": case, "us": us}) + "\n")
PY
}
bench_args=(--bench --warm-up-time "$warmup" --measurement-time "$measure")
for round in $(seq 1 "$rounds"); do
    echo "== round $round of $rounds: native, native scalar, Wasm (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    rm -rf "$work/criterion"
    "$native" "${bench_args[@]}" >&2
    "$native_scalar" "${bench_args[@]}" >&2
    KILN_BENCH_SIMD128_WASM="$simd_wasm" "$wasm" "${bench_args[@]}" \
        'image_preprocess_wasm|empty_plugin_call/(1|150528)_fp32' >&2
    collect "$round"
done

echo "== results" >&2
python3 - "$work" "$root/bench/plugin_native_ratio.cases" "$simd_wasm" <<'PY'
import json, pathlib, struct, sys

work, cases_file, simd = pathlib.Path(sys.argv[1]), sys.argv[2], bool(sys.argv[3])

runs = {}  # (group, case) -> {round: µs}
for line in open(work / "rounds.jsonl"):
    r = json.loads(line)
    runs.setdefault((r["group"], r["case"]), {})[r["round"]] = r["us"]

def med(values):
    v = sorted(values)
    return None if not v else (v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2)

def median_us(group, name):
    return med(runs.get((group, name), {}).values())

def ratio(top, bottom, name):
    """Median over rounds of top/bottom within a round, and the spread."""
    a, b = runs.get((top, name), {}), runs.get((bottom, name), {})
    r = [a[k] / b[k] for k in a if k in b]
    if not r:
        return "n/a"
    m = f"{med(r):.2f}x"
    return m if len(r) == 1 else f"{m} ({min(r):.2f}–{max(r):.2f})"

def same(name, a, b):
    fa, fb = work / "out" / f"{name}.{a}.f32", work / "out" / f"{name}.{b}.f32"
    if not (fa.exists() and fb.exists()):
        return "missing"
    x, y = fa.read_bytes(), fb.read_bytes()
    if x == y:
        return "identical"
    if len(x) != len(y):
        return f"sizes differ ({len(x)} vs {len(y)} bytes)"
    n = len(x) // 4
    fx, fy = struct.unpack(f"<{n}f", x), struct.unpack(f"<{n}f", y)
    return f"max abs diff {max(abs(p - q) for p, q in zip(fx, fy)):.3g}"

names = [l.split()[0] for l in open(cases_file) if l.strip() and not l.lstrip().startswith("#")]
fmt = lambda v: "n/a" if v is None else (f"{v:,.1f}" if v < 100 else f"{v:,.0f}")
head = ("| case | native µs | native, scalar JPEG µs | Wasm µs (kiln call) "
        "| Wasm / native | Wasm / native scalar |")
rule = "|---|---|---|---|---|---|"
if simd:
    head += " Wasm +simd128 µs | +simd128 / native |"
    rule += "---|---|"
print(head)
print(rule)
checks, mismatch = [], False
for name in names:
    n = median_us("image_preprocess_native", name)
    ns = median_us("image_preprocess_native_scalar", name)
    w = median_us("image_preprocess_wasm", name)
    wg, ng, sg = "image_preprocess_wasm", "image_preprocess_native", "image_preprocess_native_scalar"
    row = f"| {name} | {fmt(n)} | {fmt(ns)} | {fmt(w)} | {ratio(wg, ng, name)} | {ratio(wg, sg, name)} |"
    exact = same(name, "wasm", "native_scalar")
    mismatch = mismatch or exact != "identical"
    check = (f"{name}: Wasm vs native scalar {exact}; "
             f"Wasm vs native {same(name, 'wasm', 'native')}")
    if simd:
        s = median_us("image_preprocess_wasm_simd128", name)
        row += f" {fmt(s)} | {ratio('image_preprocess_wasm_simd128', ng, name)} |"
        check += f"; Wasm +simd128 vs native {same(name, 'wasm_simd128', 'native')}"
    print(row)
    checks.append(check)
print()
print("Where the Wasm time goes: the same component (committed build) under a plain wasmtime")
print("engine with kiln's pool, without kiln's host code, fuel metering and/or epoch checks:")
print()
print("| case | kiln call (epoch; fuel only with wasm_fuel) µs | wasmtime, epoch only µs | wasmtime, neither µs "
      "| neither / native scalar |")
print("|---|---|---|---|---|")
for name in names:
    k = median_us("image_preprocess_wasm", name)
    e = median_us("image_preprocess_wasmtime_epoch_only", name)
    b = median_us("image_preprocess_wasmtime_no_fuel_no_epoch", name)
    r = ratio("image_preprocess_wasmtime_no_fuel_no_epoch", "image_preprocess_native_scalar", name)
    print(f"| {name} | {fmt(k)} | {fmt(e)} | {fmt(b)} | {r} |")
print()
print("| host copy overhead (empty plugin, same input in and out) | median µs |")
print("|---|---|")
for floats, what in [(1, "1 FP32 (4 B)"), (150528, "150,528 FP32 (588 KiB), 3x224x224")]:
    print(f"| {what} | {fmt(median_us('empty_plugin_call', f'{floats}_fp32'))} |")
print()
print("outputs compared bit for bit:")
for c in checks:
    print("  " + c)
if mismatch:
    sys.exit("the Wasm build's output differs from the same code natively (native scalar)")
PY
