#!/usr/bin/env python3
"""The ratios issue 15 sets targets for, from one bench/gpu_vs_triton.sh run:
each kiln ResNet-50 part's peak throughput against the in-process peak of the
same precision, eager and replayed from a CUDA graph (reference.md); its p50
at concurrency 1 against the graph replay of one image (back to back, and
one at a time with its copies after an idle gap: lone_request.py's rows in
reference.md); and kiln against Triton's Python backend at each concurrency
both were measured at.

    python3 ratios.py OUT_DIR      # reads OUT_DIR/reference.md and table.md
"""
import re
import sys
from collections import defaultdict
from pathlib import Path


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def number(text):
    m = re.match(r"[\d.,]+", text or "")
    return float(m.group(0).replace(",", "")) if m else None


def main():
    out = Path(sys.argv[1])
    # precision -> execution -> {batch: (images/s, ms per batch)}
    ref = defaultdict(lambda: defaultdict(dict))
    lone_us = None  # FP32, one image at a time after an idle gap
    for line in (out / "reference.md").read_text().splitlines():
        c = cells(line)
        if len(c) == 5 and c[0] in ("FP32", "FP16") and number(c[3]):
            ref[c[0]][c[1]][int(c[2])] = (number(c[3]), number(c[4]))
        elif len(c) == 2 and c[0].startswith("the same after") and number(c[1]):
            lone_us = number(c[1])
    # label -> concurrency -> (infer/s, p50 µs)
    runs = defaultdict(dict)
    for line in (out / "table.md").read_text().splitlines():
        c = cells(line)
        if len(c) == 6 and c[1].isdigit() and number(c[2]):
            label = c[0].replace(" (loadgen)", "")
            runs[label][int(c[1])] = (number(c[2]), number(c[3]))

    def peak(precision, execution):
        rows = ref[precision][execution]
        return max((r[0] for r in rows.values()), default=None)

    print("| kiln part | peak infer/s | / eager peak | / graph peak | p50 c1 µs | / graph replay of 1 | / lone replay in process |")
    print("|---|---|---|---|---|---|---|")
    for label, points in sorted(runs.items()):
        if not label.startswith("kiln") or "small" in label or "image-sized" in label:
            continue
        precision = "FP16" if "fp16" in label else "FP32"
        top = max(p[0] for p in points.values())
        eager, graph = peak(precision, "eager"), peak(precision, "CUDA graph")
        one = ref[precision]["CUDA graph"].get(1)
        p50 = points.get(1, (None, None))[1]
        ratio = lambda a, b: f"{a / b:.3f}" if a and b else "–"
        print(
            f"| {label} | {top:,.0f} | {ratio(top, eager)} | {ratio(top, graph)} | "
            f"{p50 or '–'} | {ratio(p50, one[1] * 1000 if one else None)} | "
            f"{ratio(p50, lone_us) if precision == 'FP32' else '–'} |"
        )
    triton = runs.get("triton-python", {})
    if triton:
        print()
        print("| kiln part | concurrency | kiln infer/s | Triton Python infer/s | kiln / Triton |")
        print("|---|---|---|---|---|")
        for label, points in sorted(runs.items()):
            if not label.startswith("kiln") or "small" in label or "image-sized" in label or label.endswith("-shm"):
                continue
            for c, (rate, _) in sorted(points.items()):
                if c in triton:
                    print(f"| {label} | {c} | {rate:,.0f} | {triton[c][0]:,.0f} | {rate / triton[c][0]:.2f} |")


if __name__ == "__main__":
    main()
