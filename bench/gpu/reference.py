#!/usr/bin/env python3
"""In-process libtorch reference for bench/gpu_vs_triton.sh: the same
TorchScript ResNet-50 run directly in PyTorch (libtorch underneath), FP32 and
FP16, at several batch sizes; the peak is the limit a server can approach.

    python3 reference.py MODEL.pt
"""
import sys
import time

import torch


def main():
    model = torch.jit.load(sys.argv[1], map_location="cuda:0").eval()
    print("| precision | batch | images/s | ms per batch |")
    print("|---|---|---|---|")
    for precision, dtype in (("FP32", torch.float32), ("FP16", torch.float16)):
        m = model.half() if dtype == torch.float16 else model
        for batch in (1, 8, 32, 64):
            x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=dtype)
            with torch.inference_mode():
                for _ in range(10):
                    m(x)
                torch.cuda.synchronize()
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < 2.0:
                    m(x)
                    n += 1
                torch.cuda.synchronize()
                dt = time.perf_counter() - t0
            print(f"| {precision} | {batch} | {n * batch / dt:.0f} | {dt / n * 1e3:.2f} |", flush=True)
        model = torch.jit.load(sys.argv[1], map_location="cuda:0").eval()


if __name__ == "__main__":
    main()
