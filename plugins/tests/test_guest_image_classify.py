"""Guest tests of the pre/post-processing plugins behind the `digits_pipeline`
ensemble: image_preprocess (Rust) and classify_postprocess (C), run in
wasmtime through the harness of test_guest_plugins.py, checked against
independent numpy / Pillow references.

Needs `wasmtime` (pip install wasmtime==50.0.1), numpy and Pillow; the
plugins from plugins/build.sh (target/plugins/*.wasm).

    python3 -m pytest plugins/tests -q
"""

import io
import os
import struct
import zlib

import pytest

np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

from test_guest_plugins import Plugin, engine, floats, is_error, tensor  # noqa: E402,F401 (engine: fixture)

DIGITS_8X8 = {"height": "8", "width": "8", "channels": "1"}


def image_bytes(array, fmt="PNG", mode=None, **save):
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format=fmt, **save)
    return buf.getvalue()


def images(*blobs, shape=None):
    return tensor("IMAGE", "bytes", shape or [len(blobs), 1], elements=list(blobs))


def pixels(result):
    assert not is_error(result), result
    (t,) = result
    assert t.name == "PIXELS" and t.datatype == "fp32"
    return np.array(floats(t), dtype=np.float32).reshape(t.shape)


def area_reference(img, oh, ow):
    """Area-average resize by exact integration: repeat every source pixel
    (oh x ow) times, then average (H x W) blocks. img: [H, W] or [H, W, C]."""
    img = np.asarray(img, dtype=np.float64)
    h, w = img.shape[:2]
    big = np.repeat(np.repeat(img, oh, axis=0), ow, axis=1)
    return big.reshape(oh, h, ow, w, *img.shape[2:]).mean(axis=(1, 3))


@pytest.fixture(scope="module")
def digits():
    sklearn = pytest.importorskip("sklearn.datasets")
    return sklearn.load_digits()


# --- image_preprocess -----------------------------------------------------


def test_image_preprocess_metadata(engine):
    meta = Plugin(engine, "image_preprocess", parameters=DIGITS_8X8).metadata()
    assert [(t.name, t.datatype, t.dims) for t in meta.inputs] == [("IMAGE", "bytes", [1])]
    assert [(t.name, t.datatype, t.dims) for t in meta.outputs] == [("PIXELS", "fp32", [-1, -1, -1])]


def test_digit_pngs_come_back_as_the_dataset_pixels(engine, digits):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "make_digit_pngs", Path(__file__).resolve().parents[2] / "scripts" / "make_digit_pngs.py")
    mdp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mdp)
    p = Plugin(engine, "image_preprocess", parameters=DIGITS_8X8)
    blobs = [mdp.digit_file(digits.images[i]) for i in range(50)]
    out = pixels(p.process(images(*blobs)))
    assert out.shape == (50, 1, 8, 8)
    np.testing.assert_allclose(out[:, 0], digits.images[:50] / 16.0, atol=1 / 510 + 1e-6)
    # Unbatched ([1] -> [C, H, W]), black-on-white with invert, and 28x28
    # (not a multiple of 8: fractional area weights).
    one = pixels(p.process(images(blobs[3], shape=[1])))
    assert one.shape == (1, 8, 8)
    inv = Plugin(engine, "image_preprocess", parameters={**DIGITS_8X8, "invert": "true"})
    black_on_white = pixels(inv.process(images(mdp.digit_file(digits.images[3], invert=True))))
    np.testing.assert_allclose(black_on_white[0], one, atol=1e-6)
    g28 = mdp.render(digits.images[7], size=28)
    out28 = pixels(p.process(images(mdp.png_bytes(g28))))
    np.testing.assert_allclose(out28[0, 0], area_reference(g28 / 255.0, 8, 8), atol=1e-5)


def test_rgb_area_resize_and_normalisation_match_numpy(engine):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(37, 23, 3), dtype=np.uint8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    p = Plugin(engine, "image_preprocess", parameters={
        "height": "10", "width": "7", "mean": ",".join(map(str, mean)), "std": " 0.229, 0.224 ,0.225"})
    out = pixels(p.process(images(image_bytes(img))))
    assert out.shape == (1, 3, 10, 7)
    ref = (area_reference(img / 255.0, 10, 7) - mean) / std
    np.testing.assert_allclose(out[0], ref.transpose(2, 0, 1), atol=2e-5)
    # channels 1: BT.601 luma of the same image.
    gray = Plugin(engine, "image_preprocess", parameters={"height": "10", "width": "7", "channels": "1"})
    luma = (img / 255.0) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(pixels(gray.process(images(image_bytes(img))))[0, 0],
                               area_reference(luma, 10, 7), atol=2e-5)


def test_bilinear_upscale_matches_pillow(engine):
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, size=(5, 7), dtype=np.uint8)
    p = Plugin(engine, "image_preprocess", parameters={
        "height": "16", "width": "16", "channels": "1", "resize": "bilinear"})
    out = pixels(p.process(images(image_bytes(img))))
    ref = np.asarray(Image.fromarray(img.astype(np.float32) / 255.0).resize((16, 16), Image.BILINEAR))
    np.testing.assert_allclose(out[0, 0], ref, atol=1e-5)


def test_png_variants_decode(engine):
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, size=(12, 12), dtype=np.uint8)
    p = Plugin(engine, "image_preprocess", parameters={"height": "12", "width": "12", "channels": "1"})
    expected = gray / 255.0
    # 16-bit grayscale
    g16 = (gray.astype(np.uint16) * 257)
    np.testing.assert_allclose(pixels(p.process(images(image_bytes(g16))))[0, 0], expected, atol=1e-5)
    # palette
    pal = Image.fromarray(gray, mode="L").convert("P")
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    np.testing.assert_allclose(pixels(p.process(images(buf.getvalue())))[0, 0], expected, atol=1e-5)
    # 1-bit
    bits = (gray > 127)
    buf = io.BytesIO()
    Image.fromarray(bits).save(buf, format="PNG")
    np.testing.assert_allclose(pixels(p.process(images(buf.getvalue())))[0, 0], bits.astype(np.float32))


def test_alpha_is_composited_over_the_background(engine):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = 200          # colour everywhere,
    rgba[:2, :, 3] = 255         # but only the top half opaque
    rgba[2:, :, 3] = 0
    blob = image_bytes(rgba)
    params = {"height": "4", "width": "4", "channels": "1"}
    plain = pixels(Plugin(engine, "image_preprocess", parameters=params).process(images(blob)))[0, 0]
    np.testing.assert_allclose(plain[:2], 200 / 255, atol=1e-6)
    np.testing.assert_allclose(plain[2:], 0.0)  # transparent = empty = black
    inv = pixels(Plugin(engine, "image_preprocess", parameters={**params, "invert": "true"}).process(images(blob)))[0, 0]
    np.testing.assert_allclose(inv[:2], 1 - 200 / 255, atol=1e-6)
    np.testing.assert_allclose(inv[2:], 0.0)  # composited over white, then inverted
    grey = pixels(Plugin(engine, "image_preprocess", parameters={**params, "background": "0.5"}).process(images(blob)))[0, 0]
    np.testing.assert_allclose(grey[2:], 0.5)


def test_jpeg_decodes_like_pillow(engine, digits):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8)
    rgb = np.asarray(Image.fromarray(rgb).resize((40, 24), Image.BILINEAR))  # smoother, JPEG-friendly
    for mode, arr, channels in (("RGB", rgb, 3), ("L", rgb[..., 0], 1)):
        blob = image_bytes(arr, fmt="JPEG", quality=95)
        decoded = np.asarray(Image.open(io.BytesIO(blob)).convert(mode), dtype=np.float64) / 255.0
        p = Plugin(engine, "image_preprocess", parameters={"height": "24", "width": "40", "channels": str(channels)})
        out = pixels(p.process(images(blob)))[0]
        ref = decoded.transpose(2, 0, 1) if channels == 3 else decoded[None]
        # Decoders may differ by an IDCT rounding step or in chroma upsampling.
        assert np.abs(out - ref).mean() < 2 / 255, np.abs(out - ref).mean()


def test_bad_images_are_invalid_argument_naming_the_input(engine):
    p = Plugin(engine, "image_preprocess", parameters=DIGITS_8X8)
    good = image_bytes(np.zeros((8, 8), dtype=np.uint8))
    cases = {
        b"hello, world": "input 'IMAGE': not a PNG or JPEG image (12 bytes, starting 68656c6c6f2c2077)",
        b"": "input 'IMAGE': not a PNG or JPEG image (0 bytes, starting <empty>)",
        good[:40]: "input 'IMAGE': invalid PNG",
        b"\xff\xd8\xff\xe0" + b"\0" * 20: "input 'IMAGE': invalid JPEG",
    }
    for blob, message in cases.items():
        result = p.process(images(blob, shape=[1]))
        assert is_error(result), blob
        assert result.kind == "invalid-argument" and result.message.startswith(message), result.message
    # In a batch the element is named; the instance keeps working.
    result = p.process(images(good, b"nope"))
    assert result.kind == "invalid-argument" and result.message.startswith("input 'IMAGE' element 1: not a PNG")
    assert pixels(p.process(images(good))).shape == (1, 1, 8, 8)
    wrong = p.process(images(good, good, shape=[1, 2]))
    assert wrong.kind == "invalid-argument" and "last dimension 1" in wrong.message


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width, height):
    """A valid 1-bit grayscale PNG of zeros: a few KB per 10^8 pixels, and a
    byte per pixel once the decoder has expanded it."""
    row = b"\0" * (1 + (width + 7) // 8)  # filter type 0, then the packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_declaring(width, height):
    """A small JPEG whose frame header (SOF0) is patched to declare width x height."""
    blob = bytearray(image_bytes(np.zeros((8, 8), dtype=np.uint8), fmt="JPEG"))
    sof = blob.index(b"\xff\xc0")  # length (2), precision (1), height (2), width (2)
    blob[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(blob)


@pytest.fixture(scope="module")
def png_20000():
    blob = png_bomb(20000, 20000)
    assert len(blob) < 100_000
    return blob


def test_oversized_images_are_refused_before_decoding(engine, png_20000):
    # The default budget, 4096 x 4096: decoding the PNG would take 400 MB (the
    # plugin has 256 MiB), the JPEG is all header.
    p = Plugin(engine, "image_preprocess", parameters=DIGITS_8X8)
    budget = "more than max_pixels (16777216)"
    for blob, declared in [
        (png_20000, "20000x20000 = 400000000"),
        (jpeg_declaring(20000, 20000), "20000x20000 = 400000000"),
        (jpeg_declaring(65535, 65535), "65535x65535 = 4294836225"),
        (jpeg_declaring(4097, 4096), "4097x4096 = 16781312"),
    ]:
        result = p.process(images(blob, shape=[1]))
        assert is_error(result) and result.kind == "invalid-argument", result
        assert result.message == f"input 'IMAGE': image declares {declared} pixels, {budget}"
    # Header only (no image data, IEND right after IHDR), RGBA 16-bit: the
    # size is checked first, before the decoder's own checks and chunks.
    ihdr = struct.pack(">IIBBBBB", 100000, 30000, 16, 6, 0, 0, 0)
    header_only = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")
    result = p.process(images(header_only, shape=[1]))
    assert result.message == f"input 'IMAGE': image declares 100000x30000 = 3000000000 pixels, {budget}"
    # A batch of 64 bombs (JPEG headers after the PNG: the harness copies
    # inputs in slowly) fails at the first, named; the instance keeps working.
    good = image_bytes(np.full((16, 16), 255, dtype=np.uint8))
    result = p.process(images(good, png_20000, *[jpeg_declaring(30000, 30000)] * 62))
    assert result.kind == "invalid-argument"
    assert result.message == f"input 'IMAGE' element 1: image declares 20000x20000 = 400000000 pixels, {budget}"
    np.testing.assert_array_equal(pixels(p.process(images(good, good))), np.ones((2, 1, 8, 8), np.float32))


def test_max_pixels_sets_the_budget(engine):
    png16 = image_bytes(np.full((16, 16), 255, dtype=np.uint8))
    jpeg16 = image_bytes(np.full((16, 16), 255, dtype=np.uint8), fmt="JPEG")
    for budget, accepted in [(100, False), (255, False), (256, True), (1000, True)]:
        p = Plugin(engine, "image_preprocess", parameters={**DIGITS_8X8, "max_pixels": f" {budget} "})
        for blob in (png16, jpeg16):
            result = p.process(images(blob, shape=[1]))
            if accepted:
                np.testing.assert_allclose(pixels(result), np.ones((1, 8, 8)), atol=2 / 255)
            else:
                assert (result.kind, result.message) == (
                    "invalid-argument",
                    f"input 'IMAGE': image declares 16x16 = 256 pixels, more than max_pixels ({budget})")
    # Raised above the default: a 4097 x 4097 PNG is refused by default, decoded with the override.
    big = png_bomb(4097, 4097)
    assert "16785409 pixels" in Plugin(engine, "image_preprocess", parameters=DIGITS_8X8).process(
        images(big, shape=[1])).message
    raised = Plugin(engine, "image_preprocess", parameters={**DIGITS_8X8, "max_pixels": "16785409"}, timeout_ms=10000)
    np.testing.assert_array_equal(pixels(raised.process(images(big, shape=[1]))), np.zeros((1, 8, 8), np.float32))


def test_tall_images_within_budget_need_only_the_outputs_memory(engine):
    """1 x 1048576 pixels (within the default budget) to 3 x 16 x 8, in 32 MiB:
    the resize keeps one input row and the output, not every input row
    resized horizontally (that would be 1048576 x 8 x 3 floats, 96 MiB)."""
    h = 1 << 20
    column = (np.arange(h) * 256 // h).astype(np.uint8)[:, None]  # 256 bands of 4096 rows: 0 ... 255
    blob = image_bytes(column)
    p = Plugin(engine, "image_preprocess", parameters={"height": "16", "width": "8"}, memory_mb=32, timeout_ms=10000)
    out = pixels(p.process(images(blob, shape=[1])))
    # Output row i averages bands 16 i .. 16 i + 15 (65536 FP32 taps: not to 1e-5).
    expected = (16 * np.arange(16) + 7.5) / 255
    np.testing.assert_allclose(out, np.broadcast_to(expected[None, :, None], (3, 16, 8)), atol=1e-3)


@pytest.mark.parametrize("params, message", [
    ({"width": "8"}, "config parameter 'height' is required"),
    ({**DIGITS_8X8, "channels": "2"}, "config parameter 'channels': 2 is not supported (1 or 3)"),
    ({**DIGITS_8X8, "std": "0"}, "config parameter 'std': 0 is not a usable divisor"),
    ({**DIGITS_8X8, "channels": "3", "mean": "1,2"}, "config parameter 'mean': 2 values for 3 channel(s) (give 1 or 3)"),
    ({**DIGITS_8X8, "resize": "cubic"}, "config parameter 'resize': 'cubic' is not supported (area or bilinear)"),
    ({**DIGITS_8X8, "invert": "yes"}, "config parameter 'invert'"),
    ({**DIGITS_8X8, "max_pixels": "0"}, "config parameter 'max_pixels': 0 is not a positive integer"),
    ({**DIGITS_8X8, "max_pixels": "lots"}, "config parameter 'max_pixels': cannot parse 'lots' as usize"),
    ({**DIGITS_8X8, "max_pixels": "1.5e6"}, "config parameter 'max_pixels': cannot parse '1.5e6' as usize"),
    ({**DIGITS_8X8, "max_pixels": "-1"}, "config parameter 'max_pixels': cannot parse '-1' as usize"),
    ({**DIGITS_8X8, "max_pixels": ""}, "config parameter 'max_pixels': cannot parse '' as usize"),
])
def test_bad_config_is_unavailable(engine, params, message):
    p = Plugin(engine, "image_preprocess", parameters=params)
    for _ in range(2):  # every request fails, not just the first
        result = p.process(images(b"x"))
        assert is_error(result) and result.kind == "unavailable"
        assert result.message.startswith(message), result.message


# --- classify_postprocess ---------------------------------------------------

LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def logits(values, shape=None):
    values = np.asarray(values, dtype=np.float32)
    return tensor("LOGITS", "fp32", list(shape or values.shape), values.tobytes())


def classes(result):
    assert not is_error(result), result
    (t,) = result
    assert t.name == "CLASSES" and t.datatype == "bytes" and t.data == b""
    return t.shape, [e.decode() for e in t.elements]


def softmax(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_classify_metadata(engine):
    meta = Plugin(engine, "classify_postprocess").metadata()
    assert meta.name == "classify_postprocess"
    assert [(t.name, t.datatype, t.dims) for t in meta.inputs] == [("LOGITS", "fp32", [-1])]
    assert [(t.name, t.datatype, t.dims) for t in meta.outputs] == [("CLASSES", "bytes", [-1])]


def test_classify_top1_batch_matches_softmax(engine):
    x = np.random.default_rng(5).standard_normal((6, 10)).astype(np.float32) * 4
    p = Plugin(engine, "classify_postprocess", parameters={"labels": ",".join(LABELS)})
    shape, got = classes(p.process(logits(x)))
    probs = softmax(x)
    want = [f"{probs[r].max():.6f}:{probs[r].argmax()}:{LABELS[probs[r].argmax()]}" for r in range(6)]
    assert shape == [6, 1] and got == want


def test_classify_top_k_unbatched_and_label_edge_cases(engine):
    x = [0.5, 3.0, 1.0, 3.0, -2.0]
    p = Plugin(engine, "classify_postprocess", parameters={"top_k": "3", "labels": " a , b,,d "})
    shape, got = classes(p.process(logits(x)))
    probs = softmax(x)
    # Ties go to the lower index; an empty label and a missing one print no label.
    assert shape == [3]
    assert got == [f"{probs[1]:.6f}:1:b", f"{probs[3]:.6f}:3:d", f"{probs[2]:.6f}:2"]
    many = Plugin(engine, "classify_postprocess", parameters={"top_k": "50"})
    shape, got = classes(many.process(logits(x, shape=[1, 5])))
    assert shape == [1, 5] and [s.split(":")[1] for s in got] == ["1", "3", "2", "0", "4"]


def test_classify_without_softmax_and_label_format(engine):
    raw = Plugin(engine, "classify_postprocess", parameters={"softmax": "false", "top_k": "2"})
    assert classes(raw.process(logits([0.25, 0.75])))[1] == ["0.750000:1", "0.250000:0"]
    label = Plugin(engine, "classify_postprocess", parameters={"format": "label", "labels": "cat,dog", "top_k": "3"})
    assert classes(label.process(logits([[1, 2, 3], [3, 2, 1]])))[1] == ["2", "dog", "cat", "cat", "dog", "2"]


def test_classify_extreme_logits(engine):
    p = Plugin(engine, "classify_postprocess", parameters={"top_k": "2"})
    assert classes(p.process(logits([100, -100, 0])))[1] == ["1.000000:0", "0.000000:2"]
    assert classes(p.process(logits([-np.inf, np.inf, 5])))[1] == ["1.000000:1", "0.000000:0"]
    assert classes(p.process(logits([-np.inf, -np.inf])))[1] == ["0.500000:0", "0.500000:1"]
    assert classes(p.process(logits(np.zeros((0, 4)))))== ([0, 2], [])


def test_classify_bad_inputs_are_invalid_argument(engine):
    p = Plugin(engine, "classify_postprocess")
    nan = p.process(logits([1, float("nan"), 2], shape=[1, 3]))
    assert (nan.kind, nan.message) == ("invalid-argument", "input 'LOGITS' has a NaN at row 0, class 1")
    wrong = p.process(tensor("LOGITS", "int32", [2], struct.pack("<2i", 1, 2)))
    assert (wrong.kind, wrong.message) == ("invalid-argument", "tensor 'LOGITS' is INT32, expected FP32")
    missing = p.process(logits([1.0]).__class__(name="OTHER", datatype="fp32", shape=[1], data=b"\0" * 4, elements=[]))
    assert (missing.kind, missing.message) == ("invalid-argument", "missing input tensor 'LOGITS' (the request has: OTHER)")
    short = p.process(tensor("LOGITS", "fp32", [4], b"\0" * 8))
    assert short.message == "tensor 'LOGITS': shape [4] of FP32 needs 16 bytes, data has 8"
    scalar = p.process(tensor("LOGITS", "fp32", [], b"\0" * 4))
    assert scalar.kind == "invalid-argument" and scalar.message.startswith("input 'LOGITS' has shape []")
    # The instance still works.
    assert classes(p.process(logits([0.0, 1.0])))[1][0].endswith(":1")


@pytest.mark.parametrize("params, message", [
    ({"top_k": "x"}, "config parameter 'top_k': cannot parse 'x' as an integer"),
    ({"top_k": "0"}, "config parameter 'top_k': 0 is not a positive integer"),
    ({"softmax": "yes"}, "config parameter 'softmax': cannot parse 'yes' as bool (true or false)"),
    ({"format": "json"}, "config parameter 'format': 'json' is not supported (classification or label)"),
])
def test_classify_bad_config_is_unavailable(engine, params, message):
    p = Plugin(engine, "classify_postprocess", parameters=params)
    p.metadata()  # logs the config error, does not fail
    assert [l[0] for l in p.logs] == ["error"]
    for _ in range(2):  # reported on every call
        result = p.process(logits([1.0, 2.0]))
        assert (result.kind, result.message) == ("unavailable", message)


def test_plugins_do_not_leak_across_calls(engine, digits):
    """Many calls in small instances (2 and 4 MiB): inputs, outputs and errors are freed."""
    x = np.random.default_rng(6).standard_normal((64, 10)).astype(np.float32)
    p = Plugin(engine, "classify_postprocess", parameters={"labels": ",".join(LABELS), "top_k": "3"}, memory_mb=2)
    for i in range(1500):
        if i % 3 == 2:
            assert is_error(p.process(logits(np.full((64, 10), np.nan))))
        else:
            assert classes(p.process(logits(x)))[0] == [64, 3]
    img = Plugin(engine, "image_preprocess", parameters=DIGITS_8X8, memory_mb=4)
    blob = image_bytes(np.zeros((32, 32), dtype=np.uint8))
    for _ in range(400):
        assert pixels(img.process(images(blob, blob))).shape == (2, 1, 8, 8)
        assert is_error(img.process(images(b"junk")))


def test_c_sdk_bindings_are_generated_from_the_wit():
    """sdk/c/bindings is committed output of `wit-bindgen c` (sdk/c/generate.sh)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    tool = Path(os.environ.get("KILN_TOOLS", Path.home() / ".cache" / "kiln-tools")) / "cargo" / "bin" / "wit-bindgen"
    if not tool.exists():
        pytest.skip(f"{tool} not installed (sdk/c/generate.sh installs it)")
    proc = subprocess.run(["bash", str(root / "sdk" / "c" / "generate.sh"), "--check"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout
