"""The `digits_pipeline` ensemble of model_repository/: a picture of a handwritten digit in
(PNG or JPEG bytes), its label out, through three models:

    digits_preprocess (Rust plugin: decode, 8x8 area resize, grayscale, [0, 1])
    -> digits (TorchScript CNN) -> digits_postprocess (C plugin: softmax, top 1, labels)

Served from a copy of model_repository/ with the committed plugin builds (model.wasm),
driven with tritonclient over gRPC and HTTP. The images are scikit-learn digits the
classifier did not train on, rendered 32x32 by scripts/make_digit_pngs.py. A separate
test checks that the committed model.wasm files are what plugins/build.sh builds now.
"""
from __future__ import annotations

import importlib.util
import subprocess

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from kilnutil import ROOT, copy_models

REPO = ROOT / "model_repository"
MODELS = ["digits", "digits_preprocess", "digits_postprocess", "digits_pipeline"]
LABELS = (REPO / "digits" / "labels.txt").read_text().split()
COUNT = 50


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_digit_pngs = _load_script("make_digit_pngs")


@pytest.fixture(scope="module")
def held_out():
    """COUNT digits from the test split of scripts/train_digits.py (same seed and
    stratification), as (8x8 images 0..16, true classes)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    _, test_idx = train_test_split(np.arange(len(digits.target)), test_size=0.25, random_state=0,
                                   stratify=digits.target)
    idx = test_idx[:COUNT]
    return digits.images[idx], digits.target[idx]


@pytest.fixture(scope="module")
def pipeline(module_kiln, tmp_path_factory):
    repo = copy_models(REPO, tmp_path_factory.mktemp("digits-repo"), MODELS)
    return module_kiln(repo, name="digits-pipeline")


def image_input(blobs, mod=grpcclient):
    arr = np.array([[b] for b in blobs], dtype=np.object_)
    inp = mod.InferInput("IMAGE", list(arr.shape), "BYTES")
    inp.set_data_from_numpy(arr)
    return inp


def labels_of(result) -> list[str]:
    out = result.as_numpy("LABEL")
    assert out is not None and out.shape[1:] == (1,), out
    return [row[0].decode() for row in out]


def parse(label: str) -> tuple[float, int, str]:
    score, index, name = label.split(":", 2)
    return float(score), int(index), name


def test_pipeline_metadata(pipeline):
    meta = pipeline.grpc.get_model_metadata("digits_pipeline", as_json=True)
    assert meta["platform"] == "ensemble"
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [("IMAGE", "BYTES", ["-1", "1"])]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [("LABEL", "BYTES", ["-1", "1"])]
    for model in MODELS:
        assert pipeline.grpc.is_model_ready(model), model


def test_fifty_pngs_over_grpc_and_http(pipeline, held_out):
    images, truth = held_out
    pngs = [make_digit_pngs.digit_file(im) for im in images]

    # gRPC: one request, a batch of 50.
    grpc_labels = labels_of(pipeline.grpc.infer("digits_pipeline", [image_input(pngs)]))
    # HTTP: 50 requests of one image each.
    http_labels = []
    for png in pngs:
        http_labels += labels_of(pipeline.http.infer("digits_pipeline", [image_input([png], httpclient)]))
    parsed = [parse(label) for label in grpc_labels]
    # Same classes; scores equal up to float noise (libtorch may sum a batch of 50 and a
    # batch of 1 in different orders).
    http_parsed = [parse(label) for label in http_labels]
    assert [p[1:] for p in parsed] == [p[1:] for p in http_parsed]
    np.testing.assert_allclose([p[0] for p in parsed], [p[0] for p in http_parsed], atol=1e-5)

    for score, index, name in parsed:
        assert 0.0 < score <= 1.0 and name == LABELS[index]
    predicted = np.array([index for _, index, _ in parsed])
    accuracy = float((predicted == truth).mean())
    print(f"digits_pipeline: {accuracy:.2%} of {COUNT} held-out PNGs correct")
    assert accuracy >= 0.9, list(zip(predicted, truth))

    # The pipeline sees what the classifier was trained on: its answers are the
    # `digits` model's own on the dataset's pixels (v / 16).
    pixels = (images / 16.0).astype(np.float32)[:, None]
    inp = grpcclient.InferInput("pixels", list(pixels.shape), "FP32")
    inp.set_data_from_numpy(pixels)
    direct = pipeline.grpc.infer("digits", [inp]).as_numpy("logits").argmax(axis=1)
    assert (direct == predicted).sum() >= COUNT - 1, list(zip(direct, predicted))


def test_jpeg_and_black_on_white(pipeline, held_out):
    images, truth = held_out
    jpegs = [make_digit_pngs.digit_file(im, jpeg=True) for im in images[:20]]
    assert all(j.startswith(b"\xff\xd8\xff") for j in jpegs)
    predicted = [parse(label)[1] for label in labels_of(pipeline.grpc.infer("digits_pipeline", [image_input(jpegs)]))]
    assert np.mean(np.array(predicted) == truth[:20]) >= 0.9, list(zip(predicted, truth[:20]))
    # A larger rendering (64x64) resizes to the same 8x8.
    big = [make_digit_pngs.digit_file(im, size=64) for im in images[:10]]
    small = [make_digit_pngs.digit_file(im) for im in images[:10]]
    assert (labels_of(pipeline.grpc.infer("digits_pipeline", [image_input(big)]))
            == labels_of(pipeline.grpc.infer("digits_pipeline", [image_input(small)])))


@pytest.mark.parametrize("blob, detail", [
    (b"definitely not an image", "not a PNG or JPEG image"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 30, "invalid PNG"),
    (b"", "not a PNG or JPEG image"),
])
def test_invalid_image_is_invalid_argument_naming_the_step(pipeline, blob, detail):
    with pytest.raises(InferenceServerException) as exc:
        pipeline.grpc.infer("digits_pipeline", [image_input([blob])])
    assert exc.value.status() == "StatusCode.INVALID_ARGUMENT", exc.value
    message = exc.value.message()
    assert "digits_preprocess" in message and "'IMAGE'" in message and detail in message, message

    with pytest.raises(InferenceServerException) as exc:
        pipeline.http.infer("digits_pipeline", [image_input([blob], httpclient)])
    assert exc.value.status() == "400", exc.value
    assert "digits_preprocess" in exc.value.message() and detail in exc.value.message()


def test_one_bad_image_fails_its_request_only(pipeline, held_out):
    images, truth = held_out
    good = make_digit_pngs.digit_file(images[0])
    with pytest.raises(InferenceServerException) as exc:
        pipeline.grpc.infer("digits_pipeline", [image_input([good, b"junk", good])])
    assert exc.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "element 1" in exc.value.message(), exc.value.message()
    # The models keep serving.
    (label,) = labels_of(pipeline.grpc.infer("digits_pipeline", [image_input([good])]))
    assert parse(label)[1] == truth[0]


@pytest.mark.timeout(1500)  # the first run installs the toolchains (plugins/c/build.sh)
def test_committed_plugin_models_are_up_to_date():
    """model_repository/*/1/model.wasm are committed builds: they must be exactly what
    the plugin sources build to (scripts/sync_plugin_models.sh rebuilds and copies)."""
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "sync_plugin_models.sh"), "--check"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-6000:]
