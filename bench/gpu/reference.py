#!/usr/bin/env python3
"""In-process libtorch reference for bench/gpu_vs_triton.sh: the same
TorchScript ResNet-50 run directly in PyTorch (libtorch underneath), FP32 and
FP16, at several batch sizes; the peak is the limit a server can approach.

Each precision is measured twice: eagerly (one launch per operator, what a
plain TorchScript forward does) and replayed from a CUDA graph captured at
that batch size (one launch per forward, what kiln does with
`optimization { cuda { graphs: true } }`), so the table shows how much of a
batch's time is the CPU's launch cost rather than the GPU's work.

    python3 reference.py MODEL.pt
"""
import sys
import time

import torch

SECONDS = 2.0


def timed(step, batch):
    """images/s and ms per batch of `step` run back to back for SECONDS."""
    for _ in range(10):
        step()
    torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < SECONDS:
        step()
        n += 1
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return n * batch / dt, dt / n * 1e3


def capture(model, x):
    """`model(x)` captured as a CUDA graph, and its output tensor (replays
    refill it). Warmed up on a side stream first, as torch.cuda.graphs asks;
    call under torch.inference_mode()."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(5):
            model(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = model(x)
    return graph, out


def main():
    print("| precision | execution | batch | images/s | ms per batch |")
    print("|---|---|---|---|---|")
    for precision, dtype in (("FP32", torch.float32), ("FP16", torch.float16)):
        model = torch.jit.load(sys.argv[1], map_location="cuda:0").eval()
        m = model.half() if dtype == torch.float16 else model
        for batch in (1, 8, 32, 64):
            x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=dtype)
            with torch.inference_mode():
                rate, ms = timed(lambda: m(x), batch)
                print(f"| {precision} | eager | {batch} | {rate:.0f} | {ms:.2f} |", flush=True)
                graph, _ = capture(m, x)
                rate, ms = timed(graph.replay, batch)
                print(f"| {precision} | CUDA graph | {batch} | {rate:.0f} | {ms:.2f} |", flush=True)
                del graph


if __name__ == "__main__":
    main()
