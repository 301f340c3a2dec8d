#!/usr/bin/env python3
"""Where a request's time went, from kiln's own records (bench/gpu_latency.sh):

- a Triton-format trace file (--trace-config triton,file=..., trace_level
  TIMESTAMPS): the median of each step between consecutive timestamps of
  MODEL's requests (RECV_START = the request's headers in);
- kiln's log with RUST_LOG=kiln::gpu=debug: the median of each number the
  GPU instance logs per batch (`gathered`, `launched`, `finished` lines).

    python3 latency_phases.py [--last N] MODEL KILN_LOG TRACE_FILE...

--last N: only MODEL's last N traced requests and log lines (a run that
ended with the point to read, after warm-ups).
"""
import collections
import json
import re
import statistics
import sys

ORDER = ["RECV_START", "ADMITTED", "REQUEST_START", "QUEUE_START", "COMPUTE_START",
         "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END"]


def trace_steps(model, paths):
    models, stamps = {}, collections.defaultdict(dict)
    records = [r for path in paths for r in json.load(open(path))]
    for record in records:
        if "model_name" in record:
            models[record["id"]] = record["model_name"]
        for t in record.get("timestamps", []):
            stamps[record["id"]][t["name"]] = t["ns"]
    rows = [s for i, s in sorted(stamps.items()) if models.get(i) == model and "REQUEST_END" in s]
    rows = rows[-LAST:]
    print(f"| {model}: step ({len(rows)} traced requests) | p50 µs |")
    print("|---|---|")
    for a, b in zip(ORDER, ORDER[1:]):
        d = [(r[b] - r[a]) / 1e3 for r in rows if a in r and b in r]
        if d:
            print(f"| {a} → {b} | {statistics.median(d):.1f} |")
    d = [(r["REQUEST_END"] - r["RECV_START"]) / 1e3 for r in rows if "RECV_START" in r]
    if d:
        print(f"| RECV_START → REQUEST_END | {statistics.median(d):.1f} |")


def log_numbers(model, path):
    values = collections.defaultdict(list)
    for line in open(path, errors="replace"):
        m = re.search(r"kiln::gpu: (\w+)", line) or re.search(r"(answered)", line)
        # The batch's span names the model with its version (`name:1`).
        if not m or not re.search(rf"model={re.escape(model)}[:\s}}]", line):
            continue
        for key, value in re.findall(r"(\w+_us)=(\d+)", line):
            values[f"{m.group(1)}.{key}"].append(int(value))
    values = {k: v[-LAST:] for k, v in values.items()}
    print("| kiln's log: per batch (GPU) or request (answered) | count | p50 µs |")
    print("|---|---|---|")
    for key, v in values.items():
        print(f"| {key} | {len(v)} | {statistics.median(v):.0f} |")


if __name__ == "__main__":
    args = sys.argv[1:]
    LAST = 0
    if args[0] == "--last":
        LAST, args = int(args[1]), args[2:]
    trace_steps(args[0], args[2:])
    print()
    log_numbers(args[0], args[1])
