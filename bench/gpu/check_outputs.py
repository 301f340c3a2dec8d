#!/usr/bin/env python3
"""Checks kiln's ResNet-50 outputs against PyTorch on the same GPU and
measures the in-process reference throughput.

    python3 check_outputs.py REPO GRPC_URL

1. For batch sizes 1 and 8, random inputs go to kiln over gRPC
   (tritonclient) and through the same TorchScript file in PyTorch on
   cuda:0; prints the max abs difference and fails above 1e-3 (both run the
   same kernels in FP32, so differences come only from nondeterministic
   reductions).
2. Times the same TorchScript in process (no server), batch 1 and 8, as the
   reference the served figures are compared with.
"""
import pathlib
import sys
import time

import numpy as np
import torch
import tritonclient.grpc as grpcclient


def main():
    repo, url = pathlib.Path(sys.argv[1]), sys.argv[2]
    model = torch.jit.load(str(repo / "resnet50" / "1" / "model.pt"), map_location="cuda:0").eval()
    client = grpcclient.InferenceServerClient(url)
    rng = np.random.default_rng(1)
    worst = 0.0
    for batch in (1, 8):
        x = rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)
        inp = grpcclient.InferInput("INPUT__0", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        got = client.infer("resnet50", [inp]).as_numpy("OUTPUT__0")
        with torch.inference_mode():
            want = model(torch.from_numpy(x).cuda()).cpu().numpy()
        assert got.shape == want.shape == (batch, 1000), (got.shape, want.shape)
        diff = float(np.max(np.abs(got - want)))
        rel = float(np.linalg.norm(got - want) / np.linalg.norm(want))
        worst = max(worst, diff)
        print(f"batch {batch}: max abs diff kiln vs PyTorch = {diff:.3e} (relative L2 {rel:.3e}, |out| max {np.abs(want).max():.3f})")
    if worst > 1e-3:
        print("FAIL: outputs differ", file=sys.stderr)
        sys.exit(1)

    print("in-process PyTorch reference (same TorchScript, cuda:0, FP32, inference_mode):")
    for batch in (1, 8):
        x = torch.randn(batch, 3, 224, 224, device="cuda")
        with torch.inference_mode():
            for _ in range(20):
                model(x)
            torch.cuda.synchronize()
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 3.0:
                model(x)
                n += 1
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        print(f"  batch {batch}: {n * batch / dt:8.1f} images/s, {dt / n * 1e3:.2f} ms per batch")


if __name__ == "__main__":
    main()
