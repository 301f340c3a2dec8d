"""The digits benchmarks' input: one handwritten digit (a three, sklearn's digit #3)
as a 32x32 PNG, and the same PNG as a perf_analyzer --input-data JSON file (a BYTES
element: 4-byte little-endian length + bytes, base64).

    python3 bench/digit_input.py [DIR]    # writes DIR/digit.png and DIR/digit.json (DIR: /tmp)

Used by bench/digits_vs_triton.sh and bench/cpu_vs_triton.sh.
"""
import base64
import io
import json
import pathlib
import struct
import sys

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp")
out.mkdir(parents=True, exist_ok=True)
d = load_digits()
img = Image.fromarray((d.images[3] * 255 / 16).astype(np.uint8)).resize((32, 32), Image.NEAREST)
buf = io.BytesIO()
img.save(buf, format="PNG")
png = buf.getvalue()
(out / "digit.png").write_bytes(png)
(out / "digit.json").write_text(json.dumps(
    {"data": [{"IMAGE": {"b64": base64.b64encode(struct.pack("<I", len(png)) + png).decode()}}]}))
