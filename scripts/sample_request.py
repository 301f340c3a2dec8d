#!/usr/bin/env python3
"""Send real digit images from scikit-learn's dataset to a running kiln (HTTP).

    python scripts/sample_request.py [URL] [--index 0 --count 5]

URL defaults to localhost:8000. Prints the predicted and the true label of each image.
Requires the `digits` model from scripts/train_digits.py to be served.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
import tritonclient.http as httpclient
from sklearn.datasets import load_digits

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", default="localhost:8000")
    parser.add_argument("--model", default="digits")
    parser.add_argument("--index", type=int, default=0, help="first dataset image to send")
    parser.add_argument("--count", type=int, default=5, help="number of images (one request)")
    args = parser.parse_args()

    labels_file = ROOT / "model_repository" / args.model / "labels.txt"
    labels = labels_file.read_text().split() if labels_file.exists() else DEFAULT_LABELS

    digits = load_digits()
    sl = slice(args.index, args.index + args.count)
    pixels = (digits.images[sl] / 16.0).astype(np.float32)[:, None, :, :]  # [N,1,8,8]
    truth = digits.target[sl]

    client = httpclient.InferenceServerClient(args.url)
    inp = httpclient.InferInput("pixels", list(pixels.shape), "FP32")
    inp.set_data_from_numpy(pixels, binary_data=True)
    out = httpclient.InferRequestedOutput("logits", binary_data=True)
    result = client.infer(args.model, [inp], outputs=[out])
    logits = result.as_numpy("logits")
    if logits is None or logits.shape != (len(truth), 10):
        print(f"unexpected response: {result.get_response()}", file=sys.stderr)
        return 1

    correct = 0
    for i, (row, true) in enumerate(zip(logits, truth)):
        pred = int(np.argmax(row))
        correct += pred == true
        print(f"image {args.index + i}: predicted {labels[pred]} ({pred}), true {labels[true]} ({true})")
    print(f"{correct}/{len(truth)} correct")
    return 0


if __name__ == "__main__":
    sys.exit(main())
