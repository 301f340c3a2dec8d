#!/usr/bin/env bash
# Installs what is missing, builds kiln, serves model_repository/ and shows a
# request answered (real handwritten digits through the `digits` model, over
# HTTP with tritonclient and over plain curl, then as PNG files through the
# `digits_pipeline` ensemble, whose plugins are committed builds in
# model_repository/: no wasm toolchain needed). kiln keeps serving afterwards
# on the Triton ports (HTTP 8000, gRPC 8001, metrics 8002) until Ctrl-C;
# pass --once to stop after the sample request.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked

HTTP=${KILN_HTTP_PORT:-8000}
GRPC=${KILN_GRPC_PORT:-8001}
METRICS=${KILN_METRICS_PORT:-8002}
./target/release/kiln serve --model-repository model_repository \
  --http-port "$HTTP" --grpc-port "$GRPC" --metrics-port "$METRICS" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 1 300); do
  curl -sf "localhost:$HTTP/v2/health/ready" >/dev/null && break
  kill -0 $pid 2>/dev/null || { echo "kiln exited during start-up" >&2; exit 1; }
  sleep 0.2
done

echo
echo "== model metadata (curl localhost:$HTTP/v2/models/digits)"
curl -s "localhost:$HTTP/v2/models/digits"; echo
echo
echo "== five handwritten digits from scikit-learn's dataset (tritonclient, HTTP)"
.venv/bin/python scripts/sample_request.py "localhost:$HTTP"
echo
echo "== the same model over plain curl (JSON tensors, classification extension)"
zero='[0,0,0.3125,0.8125,0.5625,0.0625,0,0,0,0,0.8125,0.9375,0.625,0.9375,0.3125,0,0,0.1875,0.9375,0.125,0,0.6875,0.5,0,0,0.25,0.75,0,0,0.5,0.5,0,0,0.3125,0.5,0,0,0.5625,0.5,0,0,0.25,0.6875,0,0.0625,0.75,0.4375,0,0,0.125,0.875,0.3125,0.625,0.75,0,0,0,0,0.375,0.8125,0.625,0,0,0]'
curl -s -X POST "localhost:$HTTP/v2/models/digits/infer" \
  -d "{\"inputs\":[{\"name\":\"pixels\",\"shape\":[1,1,8,8],\"datatype\":\"FP32\",\"data\":$zero}],
       \"outputs\":[{\"name\":\"logits\",\"parameters\":{\"classification\":3}}]}"
echo
echo
echo "== PNG files in, labels out: the digits_pipeline ensemble (Rust plugin -> TorchScript -> C plugin)"
pngs=$(mktemp -d)
.venv/bin/python scripts/make_digit_pngs.py "$pngs" --start 1700 --count 8
.venv/bin/python scripts/classify_images.py --url "localhost:$HTTP" "$pngs"/*.png
rm -rf "$pngs"
echo
if [[ "${1:-}" == "--once" ]]; then
  exit 0
fi
echo
echo "kiln is serving model_repository/ (HTTP $HTTP, gRPC $GRPC, metrics $METRICS). Ctrl-C to stop."
wait $pid
