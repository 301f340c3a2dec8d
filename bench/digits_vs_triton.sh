#!/usr/bin/env bash
# Issue 3 benchmark: the `digits_pipeline` ensemble (PNG in -> Wasm preprocess
# -> TorchScript -> Wasm postprocess -> label out) in kiln, against the same
# pipeline in the real Triton 2.51 Python backend (bench/digits_triton: PIL,
# torch and numpy in three Python models plus an ensemble), with
# perf_analyzer over gRPC, same machine, same run.
#
#   bash bench/gpu_vs_triton.sh prepare     # here: kiln, perf_analyzer and Triton bundles into .carry/
#   bash bench/digits_vs_triton.sh device   # on the 16-core GPU machine (device tool, carry [".carry"]);
#                                           # everything in this benchmark runs on its CPUs
set -euo pipefail
cd "$(dirname "$0")/.."

CONCURRENCY=${CONCURRENCY:-"1 4 16"}
. bench/lib.sh
bench_device_setup
nproc | sed 's/^/cpus: /'

# One digit as a PNG (/tmp/digit.png) and as perf_analyzer input data (/tmp/digit.json).
python3 bench/digit_input.py /tmp

check() { # model grpc_port
  python3 - "$1" "$2" <<'PY'
import sys
import numpy as np
import tritonclient.grpc as g
c = g.InferenceServerClient(f"localhost:{sys.argv[2]}")
i = g.InferInput("IMAGE", [1, 1], "BYTES")
i.set_data_from_numpy(np.array([[open("/tmp/digit.png", "rb").read()]], dtype=object))
print(f"{sys.argv[1]}: {c.infer(sys.argv[1], [i]).as_numpy('LABEL')[0][0].decode()} (true label: three)")
PY
}
sweep() { # label model grpc_port
  for c in $CONCURRENCY; do
    "$pa" -m "$2" -i grpc -u "localhost:$3" --input-data /tmp/digit.json -b 1 --concurrency-range "$c:$c" \
      --measurement-interval 2000 -s 50 --max-trials 8 > "$out/pa-$1-c$c.txt" 2>&1 || true
    echo "| $1 | $c | $(pa_row "$out/pa-$1-c$c.txt") |" | tee -a "$out/digits.md"
  done
}
echo "| server | concurrency | infer/s | p50 µs | p99 µs | server-side average |" | tee "$out/digits.md"
echo "|---|---|---|---|---|---|" | tee -a "$out/digits.md"

start_kiln "$out/kiln.log" serve --model-repository model_repository --host 127.0.0.1
wait_ready 8000 $kiln "$out/kiln.log"
check digits_pipeline 8001
sweep kiln digits_pipeline 8001
kill -TERM $kiln; wait $kiln || true

rm -rf /tmp/tr && cp -r bench/digits_triton /tmp/tr
KILN_DIGITS_PT=$PWD/model_repository/digits/1/model.pt KILN_TORCH_SITE=$site \
  bash "$triton_run" /tmp/tr 18000 18001 18002 > "$out/triton.log" 2>&1 &
triton=$!
wait_ready 18000 $triton "$out/triton.log"
check digits_pipeline_py 18001
sweep triton-python digits_pipeline_py 18001
kill -TERM $triton; wait $triton || true
echo; cat "$out/digits.md"
