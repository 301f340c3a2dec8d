#!/usr/bin/env python3
"""The in-process floor of one lone request on the GPU, for the concurrency-1
latency (bench/gpu_latency.sh): one image replayed from a CUDA graph, timed
three ways, p50 of each:

- back to back: replays queued one after another and timed in bulk, as
  reference.py's "CUDA graph" row (the GPU's time per image);
- one at a time: copy a pinned image to the graph's input, replay, copy the
  result to pinned memory, synchronize; the next starts at once;
- one at a time after an idle gap: the same after IDLE_MS of sleep, as a
  concurrency-1 client leaves the GPU idle between requests.

    python3 lone_request.py MODEL.pt
"""
import statistics
import sys
import time

import torch

from reference import capture

IDLE_MS = 1.0
RUNS = 400


def main():
    model = torch.jit.load(sys.argv[1], map_location="cuda:0").eval()
    host_in = torch.randn(1, 3, 224, 224).pin_memory()
    host_out = torch.empty(1, 1000).pin_memory()
    static_in = torch.empty(1, 3, 224, 224, device="cuda")
    with torch.inference_mode():
        graph, static_out = capture(model, static_in)

    def lone():
        t0 = time.perf_counter()
        static_in.copy_(host_in, non_blocking=True)
        graph.replay()
        host_out.copy_(static_out, non_blocking=True)
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1e6

    for _ in range(50):
        lone()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(RUNS):
        graph.replay()
    torch.cuda.synchronize()
    bulk = (time.perf_counter() - t0) / RUNS * 1e6
    at_once = [lone() for _ in range(RUNS)]
    idle = []
    for _ in range(RUNS):
        time.sleep(IDLE_MS / 1e3)
        idle.append(lone())
    print("| in process, one image | µs |")
    print("|---|---|")
    print(f"| graph replays back to back, per image | {bulk:.0f} |")
    print(f"| one at a time: copy in, replay, copy out, synchronize (p50) | {statistics.median(at_once):.0f} |")
    print(f"| the same after {IDLE_MS:g} ms idle (p50) | {statistics.median(idle):.0f} |")


if __name__ == "__main__":
    main()
