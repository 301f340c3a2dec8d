#!/usr/bin/env python3
"""Checks kiln's dynamically batched GPU path against PyTorch: many concurrent
single-image requests (which kiln gathers into one pinned staging buffer and
runs as one batch) must each get the answer PyTorch gives for that image.

    python3 check_batched.py MODEL.pt GRPC_URL MODEL [fp32|fp16]

fp32: relative L2 error at most 1e-3 per image and the same top-1 class.
Not bit-exact: PyTorch runs each image alone, kiln runs them as a batch, and
cuDNN picks its convolution algorithm per batch size, in TF32 by default
(10-bit mantissa), so results differ around 1e-4 relative. A request routed to
the wrong slot would differ by about 1. fp16 (`precision: fp16`): kiln converts inputs and
weights on the GPU and returns FP32; compared with the same TorchScript run
by PyTorch in half precision, the relative L2 error must stay below 1e-2 and
the top-1 class must agree on every image.
"""
import concurrent.futures
import sys

import numpy as np
import torch
import tritonclient.grpc as grpcclient


def main():
    pt, url, name = sys.argv[1:4]
    precision = sys.argv[4] if len(sys.argv) > 4 else "fp32"
    model = torch.jit.load(pt, map_location="cuda:0").eval()
    if precision == "fp16":
        model = model.half()
    rng = np.random.default_rng(7)
    images = [rng.standard_normal((1, 3, 224, 224), dtype=np.float32) for _ in range(48)]

    def infer(x):
        client = grpcclient.InferenceServerClient(url)
        inp = grpcclient.InferInput("INPUT__0", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        return client.infer(name, [inp]).as_numpy("OUTPUT__0")

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        got = list(pool.map(infer, images))
    worst_abs = worst_rel = 0.0
    top1_agree = 0
    with torch.inference_mode():
        for x, g in zip(images, got):
            t = torch.from_numpy(x).cuda()
            want = model(t.half() if precision == "fp16" else t).float().cpu().numpy()
            assert g.shape == want.shape == (1, 1000), (g.shape, want.shape)
            worst_abs = max(worst_abs, float(np.max(np.abs(g - want))))
            worst_rel = max(worst_rel, float(np.linalg.norm(g - want) / np.linalg.norm(want)))
            top1_agree += int(g.argmax() == want.argmax())
    print(f"{name} ({precision}): {len(images)} concurrent requests; max abs diff {worst_abs:.3e}, "
          f"worst relative L2 {worst_rel:.3e}, top-1 agreement {top1_agree}/{len(images)}")
    bound = 1e-3 if precision == "fp32" else 1e-2
    ok = worst_rel < bound and top1_agree == len(images)
    if not ok:
        print("FAIL: batched outputs differ from PyTorch", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
