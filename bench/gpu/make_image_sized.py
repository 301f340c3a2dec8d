#!/usr/bin/env python3
"""Creates `image_sized_gpu`: a GPU TorchScript model with ResNet-50's input
(FP32 [3, 224, 224], 588 KiB) and output (FP32 [1000]) that does almost no
work (a strided slice times two), served exactly as the benchmark's ResNet-50
is (dynamic batching with a 500 µs delay, 2 instances, CUDA graphs). Its
latency at concurrency 1 is everything a lone ResNet-50 request pays except
the forward pass: the client, the wire, the server and the copies.

    python3 make_image_sized.py REPO
"""
import pathlib
import sys

import torch


class ImageSized(torch.nn.Module):
    def forward(self, x: torch.Tensor):
        return x.flatten(1)[:, :1000] * 2.0


CONFIG = """name: "image_sized_gpu"
platform: "pytorch_libtorch"
max_batch_size: 64
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 1000 ] } ]
instance_group [ { count: 2 kind: KIND_GPU } ]
dynamic_batching { max_queue_delay_microseconds: 500 }
optimization { cuda { graphs: true } }
"""


def main():
    d = pathlib.Path(sys.argv[1]) / "image_sized_gpu"
    (d / "1").mkdir(parents=True, exist_ok=True)
    torch.jit.script(ImageSized()).save(str(d / "1" / "model.pt"))
    (d / "config.pbtxt").write_text(CONFIG)
    print(f"wrote {d}")


if __name__ == "__main__":
    main()
