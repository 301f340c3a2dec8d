"""Model repositories in object storage, with Triton's URLs and credential variables, against
real servers on loopback (tests/realservers.py): SeaweedFS for S3, fake-gcs-server for GCS,
Azurite for Azure Blob. Load and infer, change an object and see exactly that model reload,
several repositories (local and remote) as one, and clear load errors naming the URL for bad
credentials and missing buckets."""
from __future__ import annotations

import itertools
import pathlib
import shutil

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import MODELS_DIR
from kilnutil import add_sub_inputs, copy_models, wait_until

_PREFIXES = itertools.count()


class Store:
    """One object store as kiln sees it: a Triton URL for a prefix, the variables Triton reads."""

    def __init__(self, kind, server):
        self.kind, self.server = kind, server

    def url(self, prefix: str, bucket: str | None = None) -> str:
        s = self.server
        if self.kind == "s3":
            # Triton's s3://host:port/bucket/path form.
            host = s.endpoint.removeprefix("http://")
            return f"s3://{host}/{bucket or s.bucket}/{prefix}"
        if self.kind == "gcs":
            return f"gs://{bucket or s.bucket}/{prefix}"
        return s.triton_url(prefix, container=bucket)

    def env(self, wrong_key: bool = False) -> dict:
        s = self.server
        if self.kind == "s3":
            return {"AWS_ACCESS_KEY_ID": s.access_key,
                    "AWS_SECRET_ACCESS_KEY": "wrong-secret" if wrong_key else s.secret_key,
                    "AWS_REGION": s.region}
        if self.kind == "gcs":
            return {"GOOGLE_APPLICATION_CREDENTIALS": str(s.credentials_file)}
        key = s.key[:-8] + "AAAAAAA=" if wrong_key else s.key
        # Triton's AZURE_STORAGE_ACCOUNT / AZURE_STORAGE_KEY; the emulator's address as
        # object_store takes it.
        return {"AZURE_STORAGE_ACCOUNT": s.account, "AZURE_STORAGE_KEY": key,
                "AZURE_STORAGE_USE_EMULATOR": "true", "AZURITE_BLOB_STORAGE_URL": s.endpoint}


@pytest.fixture(params=["s3", "gcs", "azure"])
def store(request):
    return Store(request.param, request.getfixturevalue(
        {"s3": "s3_server", "gcs": "gcs_server", "azure": "azure_server"}[request.param]))


def fresh_prefix(store: Store) -> str:
    return f"repo-{store.kind}-{next(_PREFIXES)}"


def upload_models(store: Store, prefix: str, names, tmp_path: pathlib.Path) -> pathlib.Path:
    local = copy_models(MODELS_DIR, tmp_path / f"upload-{prefix}", names)
    store.server.upload_tree(local, prefix)
    return local


def infer_add_sub(srv):
    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    b = np.ones((1, 16), dtype=np.float32)
    r = srv.grpc.infer("add_sub", add_sub_inputs(grpcclient, a, b))
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)


def test_load_infer_and_reload_exactly_the_changed_model(kiln, store, tmp_path):
    prefix = fresh_prefix(store)
    local = upload_models(store, prefix, ["add_sub", "identity_fp32"], tmp_path)
    cache = tmp_path / "cache"
    srv = kiln(store.url(prefix), "--repository-cache-dir", str(cache), "--model-control-mode", "poll",
               "--repository-poll-secs", "1", env=store.env(), name=f"objects-{store.kind}")
    infer_add_sub(srv)
    assert srv.grpc.is_model_ready("identity_fp32")
    downloads = sorted(p.name for p in cache.glob("*/*"))
    assert [d.split("@")[0] for d in downloads] == ["add_sub", "identity_fp32"], downloads
    assert not list(cache.glob("*/.partial-*"))
    assert f"repository={store.url(prefix)}" in srv.log()

    # A new version of add_sub: only add_sub reloads.
    store.server.put(f"{prefix}/add_sub/2/model.pt", local / "add_sub" / "1" / "model.pt")
    wait_until(lambda: srv.grpc.is_model_ready("add_sub", "2"), 30, what="add_sub version 2")
    infer_add_sub(srv)
    reloads = [ln for ln in srv.log().splitlines() if "repository change detected" in ln]
    assert reloads and all("add_sub" in ln for ln in reloads), reloads
    assert len(list(cache.glob("*/add_sub@*"))) == 1, "the older download is removed"
    # Objects removed: the model is unloaded.
    store.server.delete_prefix(f"{prefix}/identity_fp32/")
    wait_until(lambda: not srv.grpc.is_model_ready("identity_fp32"), 30, what="identity_fp32 unloaded")
    assert srv.grpc.is_model_ready("add_sub")


def test_bad_credentials_and_missing_buckets_fail_the_load_naming_the_url(kiln, store, tmp_path):
    prefix = fresh_prefix(store)
    upload_models(store, prefix, ["add_sub"], tmp_path)
    # fake-gcs-server answers a missing bucket with 500 and says so.
    missing = "no bucket named" if store.kind == "gcs" else "404"
    cases = [("missing bucket", store.url(prefix, bucket="no-such-bucket"), store.env(), missing)]
    if store.kind != "gcs":  # fake-gcs-server checks no credentials
        cases.append(("wrong key", store.url(prefix), store.env(wrong_key=True), "403"))
    for what, url, env, status in cases:
        srv = kiln(url, "--model-control-mode", "explicit", env=env, name=f"bad-{store.kind}")
        with pytest.raises(InferenceServerException) as e:
            srv.grpc.load_model("add_sub")
        msg = e.value.message()
        assert url in msg and "add_sub" in msg, (what, msg)
        assert status in msg and len(msg) < 1000, (what, msg)
        assert not srv.grpc.is_model_ready("add_sub")
        srv.stop()


def test_local_and_remote_repositories_serve_as_one(kiln, s3_server, tmp_path):
    store = Store("s3", s3_server)
    prefix = fresh_prefix(store)
    upload_models(store, prefix, ["add_sub"], tmp_path)
    local = copy_models(MODELS_DIR, tmp_path / "local", ["identity_fp32"])
    # The s3://http://host:port form, beside a folder.
    url = s3_server.triton_url(prefix)
    srv = kiln(local, "--model-repository", url, "--model-control-mode", "explicit",
               "--load-model", "*", env=store.env(), name="mixed")
    infer_add_sub(srv)
    assert srv.grpc.is_model_ready("identity_fp32")
    # The same name in both: its load fails naming both repositories; the others serve on.
    shutil.copytree(MODELS_DIR / "add_sub", local / "add_sub")
    with pytest.raises(InferenceServerException) as e:
        srv.grpc.load_model("add_sub")
    msg = e.value.message()
    assert "more than one repository" in msg and url in msg and str(local) in msg, msg
    assert srv.grpc.is_model_ready("identity_fp32")
