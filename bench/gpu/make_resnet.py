#!/usr/bin/env python3
"""Creates a Triton-layout repository with a TorchScript ResNet-50
(torchvision, random weights: no hub download) served on the GPU.

    python3 make_resnet.py REPO [--count N]
"""
import argparse
import pathlib

import torch
import torchvision

CONFIG = """name: "resnet50"
platform: "pytorch_libtorch"
max_batch_size: 8
input [
  {{
    name: "INPUT__0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 224, 224 ]
  }}
]
output [
  {{
    name: "OUTPUT__0"
    data_type: TYPE_FP32
    dims: [ 1000 ]
  }}
]
instance_group [ {{ {count}kind: KIND_GPU }} ]
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("repo", type=pathlib.Path)
    p.add_argument("--count", type=int, default=0, help="instances per GPU (0: leave count out, Triton's default of 1)")
    p.add_argument("--name", default="resnet50")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--batching", default="", help="dynamic_batching block body, e.g. 'max_queue_delay_microseconds: 500'")
    p.add_argument("--model-pt", type=pathlib.Path, help="reuse this TorchScript file instead of tracing a new one")
    p.add_argument("--graphs", action="store_true",
                   help="optimization { cuda { graphs: true } }: capture CUDA graphs at load")
    p.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE",
                   help="a config.pbtxt parameter, e.g. precision=fp16 (repeatable)")
    args = p.parse_args()
    d = args.repo / args.name
    (d / "1").mkdir(parents=True, exist_ok=True)
    if args.model_pt:
        (d / "1" / "model.pt").write_bytes(args.model_pt.read_bytes())
    else:
        torch.manual_seed(0)
        model = torchvision.models.resnet50(weights=None).eval()
        with torch.no_grad():
            traced = torch.jit.trace(model, torch.randn(1, 3, 224, 224))
        traced.save(str(d / "1" / "model.pt"))
    config = CONFIG.format(count=f"count: {args.count} " if args.count else "").replace('"resnet50"', f'"{args.name}"')
    config = config.replace("max_batch_size: 8", f"max_batch_size: {args.max_batch}")
    if args.batching:
        config += f"dynamic_batching {{ {args.batching} }}\n"
    if args.graphs:
        config += "optimization { cuda { graphs: true } }\n"
    for kv in args.parameter:
        key, value = kv.split("=", 1)
        config += f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'
    (d / "config.pbtxt").write_text(config)
    print(f"wrote {d}")


if __name__ == "__main__":
    main()
