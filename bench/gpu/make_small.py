#!/usr/bin/env python3
"""Creates `add_sub_gpu`: TorchScript add/sub of two FP32 [16] tensors on the GPU,
the small-tensor model for the server-overhead figure (issue 4, target: p50
overhead at concurrency 1 at most 100 µs). The model's own work is two tiny
kernels, so end-to-end latency minus compute is the server's (and the wire's)
cost.

    python3 make_small.py REPO
"""
import pathlib
import sys

import torch


class AddSub(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor):
        return a + b, a - b


CONFIG = """name: "add_sub_gpu"
platform: "pytorch_libtorch"
max_batch_size: 8
input [
  { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 16 ] },
  { name: "INPUT__1" data_type: TYPE_FP32 dims: [ 16 ] }
]
output [
  { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 16 ] },
  { name: "OUTPUT__1" data_type: TYPE_FP32 dims: [ 16 ] }
]
instance_group [ { count: 1 kind: KIND_GPU } ]
"""


def main():
    d = pathlib.Path(sys.argv[1]) / "add_sub_gpu"
    (d / "1").mkdir(parents=True, exist_ok=True)
    torch.jit.script(AddSub()).save(str(d / "1" / "model.pt"))
    (d / "config.pbtxt").write_text(CONFIG)
    print(f"wrote {d}")


if __name__ == "__main__":
    main()
