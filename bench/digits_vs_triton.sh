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
nproc | sed 's/^/cpus: /'

# One digit as a PNG, serialized as a BYTES element (4-byte length + bytes) for perf_analyzer.
python3 - <<'PY'
import base64, io, json, struct
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
d = load_digits()
img = Image.fromarray((d.images[3] * 255 / 16).astype(np.uint8)).resize((32, 32), Image.NEAREST)
buf = io.BytesIO(); img.save(buf, format="PNG"); png = buf.getvalue()
open("/tmp/digit.png", "wb").write(png)
json.dump({"data": [{"IMAGE": {"b64": base64.b64encode(struct.pack("<I", len(png)) + png).decode()}}]}, open("/tmp/digit.json", "w"))
PY

wait_ready() { # port pid log
  for _ in $(seq 1 900); do
    curl -sf "localhost:$1/v2/health/ready" >/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { tail -30 "$3"; return 1; }
    sleep 0.2
  done
  tail -30 "$3"; return 1
}
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
    tp=$(sed -n 's/.*Throughput: \([0-9.]*\) infer\/sec.*/\1/p' "$out/pa-$1-c$c.txt" | head -1)
    p50=$(sed -n 's/.*p50 latency: \([0-9]*\) usec.*/\1/p' "$out/pa-$1-c$c.txt" | head -1)
    p99=$(sed -n 's/.*p99 latency: \([0-9]*\) usec.*/\1/p' "$out/pa-$1-c$c.txt" | head -1)
    echo "| $1 | $c | ${tp:-fail} | ${p50:-} | ${p99:-} |" | tee -a "$out/digits.md"
  done
}
echo "| server | concurrency | infer/s | p50 µs | p99 µs |" | tee "$out/digits.md"
echo "|---|---|---|---|---|" | tee -a "$out/digits.md"

LD_LIBRARY_PATH="$site/torch/lib:$(printf '%s:' "$site"/nvidia/*/lib)" \
  ./.carry/kiln-cuda serve --model-repository model_repository --host 127.0.0.1 > "$out/kiln.log" 2>&1 &
kiln=$!
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
