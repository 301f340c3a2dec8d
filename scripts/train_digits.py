#!/usr/bin/env python3
"""Train a small CNN on scikit-learn's bundled 8x8 digits and export it for kiln.

    python scripts/train_digits.py [--repo model_repository]

CPU only, fixed seed, well under 30 s. Writes:
  <repo>/digits/1/model.pt     TorchScript, [N,1,8,8] float32 in [0,1] -> [N,10] logits
  <repo>/digits/labels.txt     zero .. nine, one per line (class index order)
  <repo>/digits/config.pbtxt   Triton config (platform pytorch_libtorch)
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

ROOT = pathlib.Path(__file__).resolve().parents[1]
LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SEED = 0

CONFIG = """\
name: "digits"
platform: "pytorch_libtorch"
max_batch_size: 64
input [
  {
    name: "pixels"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 1, 8, 8 ]
  }
]
output [
  {
    name: "logits"
    data_type: TYPE_FP32
    dims: [ 10 ]
    label_filename: "labels.txt"
  }
]
instance_group [
  {
    count: 1
    kind: KIND_CPU
  }
]
"""


class DigitsNet(torch.nn.Module):
    """Two small conv layers and a linear head: about 12k parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, kernel_size=3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, kernel_size=3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),  # 32 x 4 x 4
        )
        self.head = torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(32 * 4 * 4, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def load_data():
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # [N,1,8,8] in [0,1]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)


def train(x_train, y_train, epochs: int = 30) -> DigitsNet:
    torch.manual_seed(SEED)
    model = DigitsNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    model.eval()
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=pathlib.Path, default=ROOT / "model_repository")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    torch.set_num_threads(min(2, torch.get_num_threads()))
    started = time.time()
    x_train, x_test, y_train, y_test = load_data()
    model = train(x_train, y_train, args.epochs)

    with torch.no_grad():
        pred = model(torch.from_numpy(x_test)).argmax(dim=1).numpy()
    accuracy = float((pred == y_test).mean())
    print(f"test accuracy: {accuracy:.4f} ({len(y_test)} test images, {time.time() - started:.1f} s)")

    model_dir = args.repo / "digits"
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.from_numpy(x_test[:4]))
    # A traced batch of 4 must generalise to other batch sizes.
    with torch.no_grad():
        for n in (1, 7, 64):
            sample = torch.from_numpy(x_test[:n])
            assert torch.allclose(traced(sample), model(sample), atol=1e-5), n
    traced.save(str(model_dir / "1" / "model.pt"))
    (model_dir / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (model_dir / "config.pbtxt").write_text(CONFIG)
    size = (model_dir / "1" / "model.pt").stat().st_size
    print(f"wrote {model_dir}/1/model.pt ({size} bytes), labels.txt, config.pbtxt")
    if accuracy < 0.95:
        print("accuracy below 0.95: something is wrong", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
