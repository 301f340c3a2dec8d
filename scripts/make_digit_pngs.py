#!/usr/bin/env python3
"""Render scikit-learn's 8x8 handwritten digits as image files (PNG, or JPEG).

    python scripts/make_digit_pngs.py OUT_DIR [--start 0 --count 50 --size 32 --invert --jpeg]

Each 8x8 image (values 0..16) becomes a SIZE x SIZE 8-bit grayscale image,
white ink on black like the dataset, every source pixel a block of
SIZE/8 x SIZE/8 pixels of value round(v * 255 / 16). scikit-learn made the
8x8 images by counting the ink in 4x4 blocks of 32x32 bitmaps, so this is
that process run backwards: an area-average resize back to 8x8 (what the
`digits_preprocess` model does) gives v/16 again, to within 1/510.

Files are named NNNN_LABEL.png (dataset index, true digit). --invert writes
black ink on white; --jpeg writes baseline JPEG (needs Pillow) instead of PNG.
PNG needs nothing beyond the standard library (and scikit-learn for the data).
"""
from __future__ import annotations

import argparse
import io
import pathlib
import struct
import sys
import zlib

import numpy as np


def png_bytes(gray: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of a 2-D uint8 array (no filtering, zlib level 9)."""
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {gray.shape}")
    h, w = gray.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + gray[y].tobytes() for y in range(h))  # filter type 0 per row
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def jpeg_bytes(gray: np.ndarray, quality: int = 95) -> bytes:
    from PIL import Image  # only JPEG needs Pillow

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8), mode="L").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def render(image8: np.ndarray, size: int = 32, invert: bool = False) -> np.ndarray:
    """An 8x8 dataset image (0..16) -> size x size uint8 (nearest-neighbour blocks)."""
    if size < 8:
        raise ValueError("size must be at least 8")
    levels = np.rint(np.asarray(image8, dtype=np.float64) * 255.0 / 16.0).astype(np.uint8)
    idx = (np.arange(size) * 8) // size  # source row/column of each output pixel
    out = levels[np.ix_(idx, idx)]
    return 255 - out if invert else out


def digit_file(image8: np.ndarray, size: int = 32, invert: bool = False, jpeg: bool = False) -> bytes:
    gray = render(image8, size, invert)
    return jpeg_bytes(gray) if jpeg else png_bytes(gray)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=pathlib.Path, help="directory to write into (created)")
    parser.add_argument("--start", type=int, default=0, help="first dataset index")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--size", type=int, default=32, help="output width and height (default 32)")
    parser.add_argument("--invert", action="store_true", help="black ink on white")
    parser.add_argument("--jpeg", action="store_true", help="write JPEG instead of PNG (needs Pillow)")
    args = parser.parse_args()

    from sklearn.datasets import load_digits

    digits = load_digits()
    args.out.mkdir(parents=True, exist_ok=True)
    end = min(args.start + args.count, len(digits.images))
    ext = "jpg" if args.jpeg else "png"
    for i in range(args.start, end):
        path = args.out / f"{i:04d}_{digits.target[i]}.{ext}"
        path.write_bytes(digit_file(digits.images[i], args.size, args.invert, args.jpeg))
    print(f"wrote {end - args.start} {ext.upper()} files ({args.size}x{args.size}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
