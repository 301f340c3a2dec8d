#!/usr/bin/env python3
"""Send image files (PNG or JPEG) to the `digits_pipeline` ensemble of a running kiln (HTTP)
and print the label of each.

    python scripts/classify_images.py [--url localhost:8000] FILE...

All files go in one request (a batch; the pipeline takes up to 64). Each answer is a Triton
classification string "score:index:label". Files named like scripts/make_digit_pngs.py
writes them (NNNN_DIGIT.png) are also checked against their true digit.
"""
from __future__ import annotations

import argparse
import pathlib
import re
import sys

import numpy as np
import tritonclient.http as httpclient


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=pathlib.Path)
    parser.add_argument("--url", default="localhost:8000")
    parser.add_argument("--model", default="digits_pipeline")
    args = parser.parse_args()

    blobs = np.array([[f.read_bytes()] for f in args.files], dtype=np.object_)
    client = httpclient.InferenceServerClient(args.url)
    inp = httpclient.InferInput("IMAGE", list(blobs.shape), "BYTES")
    inp.set_data_from_numpy(blobs)
    result = client.infer(args.model, [inp], outputs=[httpclient.InferRequestedOutput("LABEL")])
    labels = [row[0].decode() for row in result.as_numpy("LABEL")]

    correct = known = 0
    for path, label in zip(args.files, labels):
        score, index, name = label.split(":", 2)
        line = f"{path.name}: {name} ({index}, score {float(score):.3f})"
        m = re.fullmatch(r"\d+_(\d)\.(png|jpe?g)", path.name)
        if m:
            known += 1
            correct += int(m.group(1)) == int(index)
            line += "" if int(m.group(1)) == int(index) else f"  <- wrong, it is a {m.group(1)}"
        print(line)
    if known:
        print(f"{correct}/{known} correct")
    return 0


if __name__ == "__main__":
    sys.exit(main())
