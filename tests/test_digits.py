"""The example model in model_repository/ (scripts/train_digits.py) served end to end."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from kilnutil import ROOT

REPO = ROOT / "model_repository"
LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def digits_server(module_kiln):
    if not (REPO / "digits" / "1" / "model.pt").exists():
        pytest.fail("model_repository/digits/1/model.pt missing: run scripts/train_digits.py", pytrace=False)
    return module_kiln(REPO, name="digits")


def sklearn_digits(start, count):
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images[start:start + count] / 16.0).astype(np.float32)[:, None], d.target[start:start + count]


def test_sample_request_script(digits_server):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "sample_request.py"), digits_server.http_url],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert "image 0: predicted zero (0), true zero (0)" in proc.stdout, proc.stdout
    assert "5/5 correct" in proc.stdout, proc.stdout


def test_digits_metadata(digits_server):
    md = digits_server.grpc.get_model_metadata("digits")
    assert [(t.name, t.datatype, list(t.shape)) for t in md.inputs] == [("pixels", "FP32", [-1, 1, 8, 8])]
    assert [(t.name, t.datatype, list(t.shape)) for t in md.outputs] == [("logits", "FP32", [-1, 10])]


def test_digits_accuracy_full_batch(digits_server):
    pixels, truth = sklearn_digits(1000, 64)
    inp = grpcclient.InferInput("pixels", list(pixels.shape), "FP32")
    inp.set_data_from_numpy(pixels)
    logits = digits_server.grpc.infer("digits", [inp]).as_numpy("logits")
    assert logits.shape == (64, 10)
    assert (logits.argmax(axis=1) == truth).mean() >= 0.9


def test_digits_classification_labels(digits_server):
    """class_count with label_filename: "score:index:label", top score first."""
    pixels, truth = sklearn_digits(0, 3)
    inp = httpclient.InferInput("pixels", list(pixels.shape), "FP32")
    inp.set_data_from_numpy(pixels)
    plain = digits_server.http.infer("digits", [inp]).as_numpy("logits")
    result = digits_server.http.infer("digits", [inp], outputs=[httpclient.InferRequestedOutput("logits", class_count=2)])
    top = result.as_numpy("logits")
    assert top.shape == (3, 2)
    for row, logits, true in zip(top, plain, truth):
        score, index, label = row[0].decode().split(":")
        assert int(index) == int(np.argmax(logits)) == true
        assert label == LABELS[true]
        assert abs(float(score) - float(logits[true])) < 1e-5
