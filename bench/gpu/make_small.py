#!/usr/bin/env python3
"""Creates the GPU models whose own work is negligible, so their latency is
the server's, the wire's and the client's:

- `add_sub_gpu` (default): TorchScript add/sub of two FP32 [16] tensors, the
  small-tensor model for the server-overhead figure (issue 4, target: p50
  overhead at concurrency 1 at most 100 µs);
- `image_sized_gpu`: ResNet-50's input (FP32 [3, 224, 224], 588 KiB) and
  output (FP32 [1000]) and a strided slice times two, served exactly as the
  benchmark's ResNet-50 is (dynamic batching with a 500 µs delay, 2
  instances, CUDA graphs): everything a lone ResNet-50 request pays except
  the forward pass (issue 15).

    python3 make_small.py REPO [add_sub_gpu|image_sized_gpu]
"""
import pathlib
import sys

import torch


class AddSub(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor):
        return a + b, a - b


class ImageSized(torch.nn.Module):
    def forward(self, x: torch.Tensor):
        return x.flatten(1)[:, :1000] * 2.0


MODELS = {
    "add_sub_gpu": (AddSub, """name: "add_sub_gpu"
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
"""),
    "image_sized_gpu": (ImageSized, """name: "image_sized_gpu"
platform: "pytorch_libtorch"
max_batch_size: 64
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 1000 ] } ]
instance_group [ { count: 2 kind: KIND_GPU } ]
dynamic_batching { max_queue_delay_microseconds: 500 }
optimization { cuda { graphs: true } }
"""),
}


def main():
    name = sys.argv[2] if len(sys.argv) > 2 else "add_sub_gpu"
    module, config = MODELS[name]
    d = pathlib.Path(sys.argv[1]) / name
    (d / "1").mkdir(parents=True, exist_ok=True)
    torch.jit.script(module()).save(str(d / "1" / "model.pt"))
    (d / "config.pbtxt").write_text(config)
    print(f"wrote {d}")


if __name__ == "__main__":
    main()
