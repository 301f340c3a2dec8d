"""Tenants (`kiln serve --tenants FILE`): API keys sent as `Authorization: Bearer <key>`, stored
as SHA-256 digests, scopes per tenant, the file re-read while serving. Driven with unmodified
tritonclient (it passes headers as gRPC metadata and HTTP headers) and curl.

Statuses: no or unknown key -> HTTP 401 with `WWW-Authenticate: Bearer` / gRPC UNAUTHENTICATED;
a scope the tenant lacks -> 403 / PERMISSION_DENIED; server health stays open."""
from __future__ import annotations

import hashlib
import pathlib
import shutil
import subprocess
import threading
import time
import uuid

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from kilnutil import add_sub_inputs, http_request, kiln_bin, run_check, wait_until

KEYS = {"alpha": "alpha-key-0123456789", "beta": "beta-key-0123456789", "gamma": "gamma-key-0123456789"}


def digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def tenants_toml(*tenants: tuple) -> str:
    """[[tenant]] tables from (name, [keys in clear], [scopes][, shared_models[, repository]]);
    shared_models defaults to every model of the main repository."""
    out = []
    for name, keys, scopes, *rest in tenants:
        shared = rest[0] if rest else ["*"]
        table = (f'[[tenant]]\nname = "{name}"\napi_keys = {[digest(k) for k in keys]!r}\n'
                 f'scopes = {scopes!r}\nshared_models = {shared!r}\n').replace("'", '"')
        if len(rest) > 1:
            table += f'repository = "{rest[1]}"\n'
        out.append(table)
    return "\n".join(out)


ALL_SCOPES = ["infer", "metadata", "model-control", "statistics", "shared-memory"]


def write_tenants(path: pathlib.Path, text: str) -> None:
    """Replaces the file in one step (rename), as an operator's tooling or a ConfigMap would."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def bearer(key: str, wire: str) -> dict:
    # gRPC metadata keys are lower-case; HTTP takes either.
    return {"authorization" if wire == "grpc" else "Authorization": f"Bearer {key}"}


@pytest.fixture
def tenant_server(copy_repo, kiln, tmp_path):
    """kiln in explicit mode over add_sub, with alpha (every scope), beta (infer only)."""
    file = tmp_path / "tenants.toml"
    write_tenants(file, tenants_toml(("alpha", [KEYS["alpha"]], ALL_SCOPES), ("beta", [KEYS["beta"]], ["infer"])))
    srv = kiln(copy_repo("add_sub"), "--tenants", str(file), "--model-control-mode", "explicit",
               "--load-model", "add_sub", name="tenants")
    srv.tenants_file = file
    return srv


def client(srv, wire):
    return srv.new_grpc_client() if wire == "grpc" else srv.new_http_client()


def status_of(exc: InferenceServerException, wire: str) -> str:
    """The gRPC code name, or the HTTP status as a string."""
    s = exc.status()
    return s.removeprefix("StatusCode.") if wire == "grpc" else str(s)


EXPECT = {
    "unauthenticated": {"grpc": "UNAUTHENTICATED", "http": "401"},
    "forbidden": {"grpc": "PERMISSION_DENIED", "http": "403"},
}


def expect(kind: str, wire: str, fn, *args, **kwargs) -> str:
    with pytest.raises(InferenceServerException) as exc:
        fn(*args, **kwargs)
    assert status_of(exc.value, wire) == EXPECT[kind][wire], (wire, exc.value.status(), exc.value.message())
    return exc.value.message()


@pytest.mark.parametrize("wire", ["grpc", "http"])
def test_every_api_but_health_needs_a_known_key(tenant_server, wire):
    c = client(tenant_server, wire)
    a = np.ones((1, 16), np.float32)
    try:
        assert c.is_server_live() and c.is_server_ready()
        calls = [
            (c.infer, ("add_sub", add_sub_inputs(grpcclient if wire == "grpc" else httpclient, a, a))),
            (c.get_server_metadata, ()),
            (c.get_model_metadata, ("add_sub",)),
            (c.get_model_config, ("add_sub",)),
            (c.get_model_repository_index, ()),
            (c.get_inference_statistics, ("add_sub",)),
            (c.load_model, ("add_sub",)),
            (c.unload_model, ("add_sub",)),
            (c.get_system_shared_memory_status, ()),
        ]
        for fn, args in calls:
            message = expect("unauthenticated", wire, fn, *args)
            assert "Bearer" in message, message
            message = expect("unauthenticated", wire, fn, *args, headers=bearer("not-a-key", wire))
            assert "unknown credentials" in message and "not-a-key" not in message, message
        if wire == "grpc":
            expect("unauthenticated", wire, c.is_model_ready, "add_sub")
        else:  # tritonclient's HTTP readiness check answers False for any refusal
            assert not c.is_model_ready("add_sub")
            assert http_request(tenant_server.http_url, "GET", "/v2/models/add_sub/ready")[0] == 401
        assert c.is_server_live() and c.is_server_ready(), "refusals left the server unhealthy"
        # The unverified tenant header grants nothing once tenants are configured.
        expect("unauthenticated", wire, c.get_server_metadata, headers={"kiln-tenant": "alpha"})
        ok = c.infer("add_sub", add_sub_inputs(grpcclient if wire == "grpc" else httpclient, a, a),
                     headers=bearer(KEYS["alpha"], wire))
        np.testing.assert_array_equal(ok.as_numpy("OUTPUT0"), a + a)
    finally:
        c.close()


@pytest.mark.parametrize("wire", ["grpc", "http"])
def test_scopes_decide_what_a_tenant_may_do(tenant_server, wire):
    c = client(tenant_server, wire)
    beta, alpha = bearer(KEYS["beta"], wire), bearer(KEYS["alpha"], wire)
    mod = grpcclient if wire == "grpc" else httpclient
    a = np.full((1, 16), 2.0, np.float32)
    try:
        c.infer("add_sub", add_sub_inputs(mod, a, a), headers=beta)
        for fn, args in [(c.get_model_metadata, ("add_sub",)), (c.get_inference_statistics, ("add_sub",)),
                         (c.load_model, ("add_sub",)), (c.get_system_shared_memory_status, ()),
                         (c.get_model_repository_index, ())]:
            message = expect("forbidden", wire, fn, *args, headers=beta)
            assert "tenant 'beta' lacks the scope" in message, message
        assert c.is_model_ready("add_sub", headers=alpha)
        c.get_inference_statistics("add_sub", headers=alpha)
        # alpha has the scope (no 403); the shared model is not in its own repository.
        with pytest.raises(InferenceServerException) as exc:
            c.load_model("add_sub", headers=alpha)
        assert status_of(exc.value, wire) == {"grpc": "NOT_FOUND", "http": "404"}[wire], exc.value
    finally:
        c.close()


def test_curl_sees_the_bearer_challenge(tenant_server):
    url = f"http://{tenant_server.http_url}/v2/models/add_sub"
    out = subprocess.run(["curl", "-s", "-i", url], capture_output=True, text=True, timeout=30).stdout
    head = out.split("\n\n", 1)[0].lower()  # text mode: CRLF read as LF
    assert head.startswith("http/1.1 401"), out
    assert 'www-authenticate: bearer realm="kiln"' in head, out
    out = subprocess.run(["curl", "-s", "-f", "-H", f"Authorization: Bearer {KEYS['alpha']}", url],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and '"name":"add_sub"' in out.stdout, out
    health = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                             f"http://{tenant_server.http_url}/v2/health/ready"], capture_output=True, text=True)
    assert health.stdout == "200"


def test_a_rotated_key_works_at_once_and_the_old_one_until_it_is_removed(tenant_server):
    """Requests run with alpha's old key while the file gains a new key (both valid), then loses
    the old one: no request with the old key fails before the removal; after it, 401 only."""
    srv, file = tenant_server, tenant_server.tenants_file
    new_key = "alpha-key-rotated-" + uuid.uuid4().hex
    a = np.ones((1, 16), np.float32)
    removed_at = [None]
    outcomes = []  # (time sent, "ok" or the status)
    stop = threading.Event()

    def old_key_loop():
        c = srv.new_http_client()
        while not stop.is_set():
            sent = time.monotonic()
            try:
                c.infer("add_sub", add_sub_inputs(httpclient, a, a), headers=bearer(KEYS["alpha"], "http"))
                outcomes.append((sent, "ok"))
            except InferenceServerException as exc:
                outcomes.append((sent, str(exc.status())))
        c.close()

    t = threading.Thread(target=old_key_loop)
    t.start()
    try:
        wait_until(lambda: len(outcomes) >= 20, 30, interval=0.02, what="requests with the old key")
        write_tenants(file, tenants_toml(("alpha", [KEYS["alpha"], new_key], ALL_SCOPES), ("beta", [KEYS["beta"]], ["infer"])))
        c = srv.new_grpc_client()
        wait_until(lambda: c.is_model_ready("add_sub", headers=bearer(new_key, "grpc")), 15, interval=0.05,
                   what="the new key to be accepted")
        n = len(outcomes)
        wait_until(lambda: len(outcomes) >= n + 20, 30, interval=0.02, what="more requests with the old key")
        removed_at[0] = time.monotonic()
        write_tenants(file, tenants_toml(("alpha", [new_key], ALL_SCOPES), ("beta", [KEYS["beta"]], ["infer"])))
        wait_until(lambda: outcomes[-1][1] == "401", 15, interval=0.05, what="the old key to be refused")
        c.infer("add_sub", add_sub_inputs(grpcclient, a, a), headers=bearer(new_key, "grpc"))
        c.close()
    finally:
        stop.set()
        t.join(30)
    before = [o for sent, o in outcomes if sent < removed_at[0]]
    after = [o for sent, o in outcomes if sent >= removed_at[0]]
    assert before and all(o == "ok" for o in before), [o for o in before if o != "ok"][:5]
    assert after and set(after) <= {"ok", "401"}, set(after)
    assert after[-1] == "401"
    assert "tenants file reloaded" in srv.log()


def test_a_broken_file_keeps_the_previous_one_in_force(tenant_server):
    srv, file = tenant_server, tenant_server.tenants_file
    write_tenants(file, '[[tenant]]\nname = "alpha"\nscope = ["infer"]\n')
    wait_until(lambda: "tenants file refused" in srv.log(), 15, what="the refusal to be logged")
    assert "unknown field `scope`" in srv.log()
    assert srv.grpc.get_model_metadata("add_sub", headers=bearer(KEYS["alpha"], "grpc")).name == "add_sub"
    time.sleep(2.5)  # two more polls of the same broken content: logged once
    assert srv.log().count("tenants file refused") == 1


@pytest.mark.parametrize("wire", ["grpc", "http"])
def test_shared_memory_regions_belong_to_the_tenant_that_registered_them(copy_repo, kiln, tmp_path, wire):
    file = tmp_path / "tenants.toml"
    write_tenants(file, tenants_toml(("alpha", [KEYS["alpha"]], ALL_SCOPES), ("gamma", [KEYS["gamma"]], ALL_SCOPES)))
    srv = kiln(copy_repo("add_sub"), "--tenants", str(file), name="tenants-shm")
    c = client(srv, wire)
    mod = grpcclient if wire == "grpc" else httpclient
    alpha, gamma = bearer(KEYS["alpha"], wire), bearer(KEYS["gamma"], wire)
    key = f"/kiln-tenancy-{uuid.uuid4().hex[:12]}"
    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    handle = shm.create_shared_memory_region("t_in", key, 128)
    try:
        shm.set_shared_memory_region(handle, [a, a])
        c.register_system_shared_memory("t_in", key, 128, headers=alpha)
        status = c.get_system_shared_memory_status(headers=gamma)
        names = list(status.regions) if wire == "grpc" else [r["name"] for r in status]
        assert "t_in" not in names
        inputs = [mod.InferInput("INPUT0", [1, 16], "FP32"), mod.InferInput("INPUT1", [1, 16], "FP32")]
        inputs[0].set_shared_memory("t_in", 64, 0)
        inputs[1].set_shared_memory("t_in", 64, 64)
        with pytest.raises(InferenceServerException) as exc:
            c.infer("add_sub", inputs, headers=gamma)
        assert "t_in" in exc.value.message()
        c.unregister_system_shared_memory("t_in", headers=gamma)  # gamma's own (none)
        out = c.infer("add_sub", inputs, headers=alpha)
        np.testing.assert_array_equal(out.as_numpy("OUTPUT0"), a + a)
        c.unregister_system_shared_memory("t_in", headers=alpha)
    finally:
        shm.destroy_shared_memory_region(handle)
        c.close()


def test_kiln_check_validates_a_tenants_file(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(tenants_toml(("alpha", [KEYS["alpha"]], ["infer", "metadata"])))
    proc = run_check("--tenants", good)
    assert proc.returncode == 0, proc.stdout
    assert "OK, 1 tenant(s)" in proc.stdout and "alpha" in proc.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[[tenant]]\nname = "alpha"\napi_keys = ["{KEYS["alpha"]}"]\nscopes = ["infer"]\n')
    proc = run_check("--tenants", bad)
    assert proc.returncode == 1
    assert f"{bad}:3:13: tenant 'alpha': an API key is stored as its digest" in proc.stdout, proc.stdout
    assert KEYS["alpha"] not in proc.stdout, "a key in clear was echoed"


def test_kiln_check_warns_of_overlapping_patterns_and_hidden_models(model_repo, copy_repo, tmp_path):
    main = copy_repo("add_sub", "add_sub_nobatch")
    (tmp_path / "alpha").mkdir()
    renamed_copy(model_repo / "add_sub", tmp_path / "alpha", "add_sub")
    file = tmp_path / "tenants.toml"
    file.write_text(tenants_toml(("alpha", [KEYS["alpha"]], ["infer"], ["add_sub_nobatch", "add*"], "alpha")))
    proc = run_check(main, "--tenants", file)
    assert proc.returncode == 0, proc.stdout
    assert "shared_models pattern 'add*' also grants 'add_sub_nobatch'" in proc.stdout, proc.stdout
    assert "tenant 'alpha': its own model 'add_sub' hides the main repository's 'add_sub'" in proc.stdout, proc.stdout


def test_a_broken_tenants_file_stops_the_start(copy_repo, tmp_path):
    file = tmp_path / "tenants.toml"
    file.write_text('[[tenant]]\nname = "alpha"\n')
    proc = subprocess.run([str(kiln_bin()), "serve", "--model-repository", str(copy_repo("add_sub")),
                           "--tenants", str(file), "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
                           "--metrics-port", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert f"{file}:1:1: missing field `scopes`" in proc.stderr, proc.stderr


def renamed_copy(src: pathlib.Path, dst_repo: pathlib.Path, name: str) -> None:
    """A fixture model copied into `dst_repo` under another name."""
    dst = dst_repo / name
    shutil.copytree(src, dst)
    config = dst / "config.pbtxt"
    text = config.read_text()
    config.write_text(text.replace(f'name: "{src.name}"', f'name: "{name}"', 1))


@pytest.mark.parametrize("wire", ["grpc", "http"])
def test_each_tenant_sees_its_own_models_and_the_shared_ones_granted(model_repo, copy_repo, kiln, tmp_path, wire):
    """alpha and gamma each have a model called `calc` (a batched add_sub and an unbatched one)
    in their own repositories; alpha may use the main repository's add_* models, gamma none.
    What a tenant may not see answers exactly as an unknown model does."""
    for tenant, src in (("alpha", "add_sub"), ("gamma", "add_sub_nobatch")):
        (tmp_path / tenant).mkdir()
        renamed_copy(model_repo / src, tmp_path / tenant, "calc")
    file = tmp_path / "tenants.toml"
    write_tenants(file, tenants_toml(("alpha", [KEYS["alpha"]], ALL_SCOPES, ["add_*"], "alpha"),
                                     ("gamma", [KEYS["gamma"]], ALL_SCOPES, [], "gamma")))
    srv = kiln(copy_repo("add_sub", "identity_fp32"), "--tenants", str(file), name="namespaces")
    c = client(srv, wire)
    mod = grpcclient if wire == "grpc" else httpclient
    alpha, gamma = bearer(KEYS["alpha"], wire), bearer(KEYS["gamma"], wire)
    a = np.arange(16, dtype=np.float32)
    try:
        def shape(meta):
            inputs = meta.inputs if wire == "grpc" else meta["inputs"]
            return list(inputs[0].shape if wire == "grpc" else inputs[0]["shape"])
        assert shape(c.get_model_metadata("calc", headers=alpha)) == [-1, 16]
        assert shape(c.get_model_metadata("calc", headers=gamma)) == [1, 16]  # unbatched
        out = c.infer("calc", add_sub_inputs(mod, a.reshape(1, 16), a.reshape(1, 16)), headers=alpha)
        np.testing.assert_array_equal(out.as_numpy("OUTPUT0"), 2 * a.reshape(1, 16))
        out = c.infer("calc", add_sub_inputs(mod, a.reshape(1, 16), a.reshape(1, 16)), headers=gamma)
        np.testing.assert_array_equal(out.as_numpy("OUTPUT0"), 2 * a.reshape(1, 16))
        c.infer("add_sub", add_sub_inputs(mod, a.reshape(1, 16), a.reshape(1, 16)), headers=alpha)

        def not_found(fn, *args, **kwargs) -> str:
            with pytest.raises(InferenceServerException) as exc:
                fn(*args, **kwargs)
            assert status_of(exc.value, wire) == {"grpc": "NOT_FOUND", "http": "404"}[wire], exc.value
            return exc.value.message()
        hidden = not_found(c.infer, "add_sub", add_sub_inputs(mod, a.reshape(1, 16), a.reshape(1, 16)), headers=gamma)
        unknown = not_found(c.infer, "no_such", add_sub_inputs(mod, a.reshape(1, 16), a.reshape(1, 16)), headers=gamma)
        assert hidden == unknown.replace("no_such", "add_sub"), (hidden, unknown)
        hidden = not_found(c.get_model_metadata, "identity_fp32", headers=alpha)
        unknown = not_found(c.get_model_metadata, "no_such", headers=alpha)
        assert hidden == unknown.replace("no_such", "identity_fp32"), (hidden, unknown)

        def index(headers):
            rows = c.get_model_repository_index(headers=headers)
            rows = rows.models if wire == "grpc" else rows
            return sorted({(r.name if wire == "grpc" else r["name"]) for r in rows})
        assert index(alpha) == ["add_sub", "calc"]
        assert index(gamma) == ["calc"]

        def stats_names(headers):
            s = c.get_inference_statistics(headers=headers)
            s = s.model_stats if wire == "grpc" else s["model_stats"]
            return sorted({(m.name if wire == "grpc" else m["name"]) for m in s})
        assert stats_names(alpha) == ["add_sub", "calc"]
        assert stats_names(gamma) == ["calc"]
    finally:
        c.close()


def test_model_control_acts_on_the_tenants_own_repository_only(model_repo, copy_repo, kiln, tmp_path):
    (tmp_path / "alpha").mkdir()
    renamed_copy(model_repo / "add_sub", tmp_path / "alpha", "calc")
    file = tmp_path / "tenants.toml"
    write_tenants(file, tenants_toml(("alpha", [KEYS["alpha"]], ALL_SCOPES, ["*"], "alpha"),
                                     ("beta", [KEYS["beta"]], ALL_SCOPES, ["*"])))
    srv = kiln(copy_repo("add_sub"), "--tenants", str(file), "--model-control-mode", "explicit",
               "--load-model", "add_sub", name="namespaces-control")
    c = srv.new_grpc_client()
    alpha, beta = bearer(KEYS["alpha"], "grpc"), bearer(KEYS["beta"], "grpc")
    try:
        assert not c.is_model_ready("calc", headers=alpha), "explicit mode: nothing of alpha's loads by itself"
        c.load_model("calc", headers=alpha)
        assert c.is_model_ready("calc", headers=alpha)
        assert not c.is_model_ready("calc", headers=beta)
        # The shared model is the operator's: no tenant loads or unloads it.
        for fn in (c.load_model, c.unload_model):
            with pytest.raises(InferenceServerException) as exc:
                fn("add_sub", headers=alpha)
            assert exc.value.status() == "StatusCode.NOT_FOUND", exc.value
            with pytest.raises(InferenceServerException) as exc:
                fn("add_sub", headers=beta)
            assert exc.value.status() == "StatusCode.NOT_FOUND", exc.value
        assert c.is_model_ready("add_sub", headers=beta)
        c.unload_model("calc", headers=alpha)
        assert not c.is_model_ready("calc", headers=alpha)
        # Every model-control action is logged with the tenant that asked.
        log = srv.log()
        assert 'model control caller=Tenant("alpha") model=calc action=Load' in log, log[-3000:]
        assert 'model control caller=Tenant("alpha") model=calc action=Unload' in log
        # Refused ones at most once a second: alpha's first refusal is there, the three
        # that followed within the second are counted in the next line's `suppressed`.
        assert 'Load of \'add_sub\' by Tenant("alpha") failed' in log
    finally:
        c.close()


def quota_toml(name: str, key: str, quotas: str, extra: str = "") -> str:
    return (f'[[tenant]]\nname = "{name}"\napi_keys = ["{digest(key)}"]\nscopes = {ALL_SCOPES!r}\n'
            f'shared_models = ["*"]\n{extra}[tenant.quotas]\n{quotas}').replace("'", '"')


def test_over_the_rate_quota_is_429_with_retry_after_and_resource_exhausted(copy_repo, kiln, tmp_path):
    file = tmp_path / "tenants.toml"
    write_tenants(file, quota_toml("alpha", KEYS["alpha"], "requests_per_second = 1\nburst = 2\n")
                  + "\n" + tenants_toml(("beta", [KEYS["beta"]], ALL_SCOPES)))
    srv = kiln(copy_repo("add_sub"), "--tenants", str(file), name="quota-rate")
    a = np.ones((1, 16), np.float32)
    url = f"http://{srv.http_url}/v2/models/add_sub/config"
    auth = ["-H", f"Authorization: Bearer {KEYS['alpha']}"]
    codes = []
    for _ in range(2):
        codes.append(subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *auth, url],
                                    capture_output=True, text=True, timeout=30).stdout)
    out = subprocess.run(["curl", "-s", "-i", *auth, url], capture_output=True, text=True, timeout=30).stdout
    head, _, body = out.partition("\n\n")  # text mode: CRLF read as LF
    assert codes == ["200", "200"], codes
    assert head.lower().startswith("http/1.1 429"), out
    assert "retry-after: 1" in head.lower(), out
    assert "requests_per_second = 1 (burst 2)" in body, repr(out)
    with pytest.raises(InferenceServerException) as exc:
        srv.grpc.infer("add_sub", add_sub_inputs(grpcclient, a, a), headers=bearer(KEYS["alpha"], "grpc"))
    assert exc.value.status() == "StatusCode.RESOURCE_EXHAUSTED", exc.value
    assert "quota requests_per_second" in exc.value.message()
    # Another tenant is not slowed by alpha's quota.
    for _ in range(5):
        srv.grpc.infer("add_sub", add_sub_inputs(grpcclient, a, a), headers=bearer(KEYS["beta"], "grpc"))
    # Refused requests leave the server healthy (health needs no key and no token).
    assert srv.grpc.is_server_live() and srv.http.is_server_ready()
    # The bucket refills.
    wait_until(lambda: srv.grpc.get_model_metadata("add_sub", headers=bearer(KEYS["alpha"], "grpc")), 5,
               interval=0.25, what="a token for alpha")


def test_over_max_in_flight_is_refused_until_a_request_finishes(copy_repo, kiln, tmp_path):
    from test_shutdown import calibrate, slow_inputs
    file = tmp_path / "tenants.toml"
    write_tenants(file, quota_toml("alpha", KEYS["alpha"], "max_in_flight = 1\n"))
    srv = kiln(copy_repo("slow_identity"), "--tenants", str(file), name="quota-in-flight")
    alpha = bearer(KEYS["alpha"], "grpc")
    x = np.ones((1, 4), np.float32)
    rounds = calibrate(srv, target_s=1.0, headers=alpha)
    outcome = []
    t = threading.Thread(target=lambda: outcome.append(
        srv.new_grpc_client().infer("slow_identity", slow_inputs(grpcclient, x, rounds), headers=alpha)))
    t.start()
    srv.wait_held("slow_identity", executing=1)
    with pytest.raises(InferenceServerException) as exc:
        srv.new_grpc_client().get_model_metadata("slow_identity", headers=alpha)
    assert exc.value.status() == "StatusCode.RESOURCE_EXHAUSTED", exc.value
    assert "max_in_flight = 1" in exc.value.message()
    t.join(60)
    assert outcome, "the request in flight failed"
    srv.new_grpc_client().get_model_metadata("slow_identity", headers=alpha)


def test_max_loaded_models_caps_a_tenants_own_repository(model_repo, copy_repo, kiln, tmp_path):
    (tmp_path / "alpha").mkdir()
    for name in ("one", "two"):
        renamed_copy(model_repo / "add_sub", tmp_path / "alpha", name)
    file = tmp_path / "tenants.toml"
    write_tenants(file, quota_toml("alpha", KEYS["alpha"], "max_loaded_models = 1\n", 'repository = "alpha"\n'))
    srv = kiln(copy_repo("add_sub"), "--tenants", str(file), "--model-control-mode", "explicit", name="quota-models")
    c = srv.new_grpc_client()
    alpha = bearer(KEYS["alpha"], "grpc")
    try:
        c.load_model("one", headers=alpha)
        c.load_model("one", headers=alpha)  # a reload is not a second model
        with pytest.raises(InferenceServerException) as exc:
            c.load_model("two", headers=alpha)
        assert exc.value.status() == "StatusCode.RESOURCE_EXHAUSTED", exc.value
        assert "max_loaded_models is 1" in exc.value.message()
        c.unload_model("one", headers=alpha)
        c.load_model("two", headers=alpha)
        assert c.is_model_ready("two", headers=alpha) and not c.is_model_ready("one", headers=alpha)
    finally:
        c.close()


def test_over_max_queued_per_model_is_refused_and_other_tenants_still_queue(copy_repo, kiln, tmp_path):
    from test_shutdown import calibrate, slow_inputs
    file = tmp_path / "tenants.toml"
    write_tenants(file, quota_toml("alpha", KEYS["alpha"], "max_queued_per_model = 1\n")
                  + "\n" + tenants_toml(("beta", [KEYS["beta"]], ALL_SCOPES)))
    srv = kiln(copy_repo("slow_identity"), "--tenants", str(file), name="quota-queued")
    alpha, beta = bearer(KEYS["alpha"], "grpc"), bearer(KEYS["beta"], "grpc")
    x = np.ones((1, 4), np.float32)
    rounds = calibrate(srv, target_s=1.0, headers=alpha)
    done = []

    def send(headers):
        srv.new_grpc_client().infer("slow_identity", slow_inputs(grpcclient, x, rounds), headers=headers)
        done.append(headers)

    threads = [threading.Thread(target=send, args=(alpha,))]
    threads[0].start()
    srv.wait_held("slow_identity", executing=1)  # alpha's first runs on the one instance
    threads.append(threading.Thread(target=send, args=(alpha,)))
    threads[1].start()
    srv.wait_held("slow_identity", pending=1, executing=1)  # alpha's second waits: its quota is full
    with pytest.raises(InferenceServerException) as exc:
        srv.new_grpc_client().infer("slow_identity", slow_inputs(grpcclient, x, 1), headers=alpha)
    assert exc.value.status() == "StatusCode.RESOURCE_EXHAUSTED", exc.value
    assert "tenant 'alpha'" in exc.value.message() and "max_queued_per_model" in exc.value.message()
    threads.append(threading.Thread(target=send, args=(beta,)))
    threads[2].start()
    srv.wait_held("slow_identity", pending=2, executing=1)  # beta's own count is its own
    for t in threads:
        t.join(60)
    assert len(done) == 3, "a queued request failed"


def test_plugin_ceilings_hold_a_tenants_plugins_down(plugins, model_repo, copy_repo, kiln, tmp_path):
    """quotas.wasm_fuel / wasm_memory_mb: a plugin of the tenant's repository that sets no fuel
    gets the ceiling (a runaway loop ends out of fuel, not at its deadline); one that asks for
    more memory than the ceiling fails its load naming the ceiling; the same plugin in the main
    repository is not held down."""
    from test_plugins import fp32_input, plugin_model
    own = tmp_path / "alpha"
    plugin_model(own, "spin", "hostile_loop", {"wasm_timeout_ms": "20000"})
    plugin_model(own, "greedy", "scale", {"factor": "2", "wasm_memory_mb": "512"})
    main = copy_repo("add_sub")
    plugin_model(main, "greedy_main", "scale", {"factor": "2", "wasm_memory_mb": "512"})
    file = tmp_path / "tenants.toml"
    write_tenants(file, quota_toml("alpha", KEYS["alpha"], "wasm_fuel = 2000000\nwasm_memory_mb = 64\n"
                                   "wasm_timeout_ms = 30000\n", 'repository = "alpha"\n'))
    srv = kiln(main, "--tenants", str(file), name="quota-plugins")
    c = srv.new_grpc_client()
    alpha = bearer(KEYS["alpha"], "grpc")
    try:
        started = time.monotonic()
        with pytest.raises(InferenceServerException, match="out of fuel"):
            c.infer("spin", [fp32_input(np.ones((1, 4), np.float32))], headers=alpha, client_timeout=60)
        assert time.monotonic() - started < 10, "the fuel ceiling, not the 20 s deadline, should stop it"
        assert not c.is_model_ready("greedy", headers=alpha)
        index = {m.name: m for m in c.get_model_repository_index(headers=alpha).models}
        assert "ceiling of 64" in index["greedy"].reason and "tenant 'alpha'" in index["greedy"].reason, index
        a = np.arange(4, dtype=np.float32).reshape(1, 4)
        out = c.infer("greedy_main", [fp32_input(a)], headers=alpha).as_numpy("OUTPUT")
        np.testing.assert_array_equal(out, a * 2)
    finally:
        c.close()


def test_metrics_count_each_tenant_apart_and_every_refusal(model_repo, copy_repo, kiln, tmp_path):
    """nv_inference_* carry a `tenant` label: the tenant that asked on the per-request series,
    the tenant whose repository holds the model on the per-model ones, so alpha's and gamma's
    models called `calc` never share a series; kiln_tenant_compute_duration_us charges each
    tenant its requests' compute; kiln_tenant_refusals_total counts refusals by reason."""
    from kilnutil import metric, parse_metrics
    for tenant in ("alpha", "gamma"):
        (tmp_path / tenant).mkdir()
        renamed_copy(model_repo / "add_sub", tmp_path / tenant, "calc")
    file = tmp_path / "tenants.toml"
    write_tenants(file, tenants_toml(("alpha", [KEYS["alpha"]], ALL_SCOPES, ["*"], "alpha"),
                                     ("beta", [KEYS["beta"]], ["metadata"]),
                                     ("gamma", [KEYS["gamma"]], ALL_SCOPES, ["*"], "gamma")))
    srv = kiln(copy_repo("add_sub"), "--tenants", str(file), name="tenant-metrics")
    a = np.ones((1, 16), np.float32)
    calls = {("alpha", "add_sub"): 3, ("gamma", "add_sub"): 2, ("alpha", "calc"): 4, ("gamma", "calc"): 1}
    for (tenant, model), n in calls.items():
        for _ in range(n):
            srv.grpc.infer(model, add_sub_inputs(grpcclient, a, a), headers=bearer(KEYS[tenant], "grpc"))
    for headers in ({}, bearer("no-such-key", "grpc"), bearer(KEYS["beta"], "grpc")):
        with pytest.raises(InferenceServerException):
            srv.grpc.infer("add_sub", add_sub_inputs(grpcclient, a, a), headers=headers)
    _, _, body = http_request(srv.metrics_url, "GET", "/metrics")
    samples = parse_metrics(body.decode())
    for (tenant, model), n in calls.items():
        assert metric(samples, "nv_inference_request_success", model=model, tenant=tenant) == n, (tenant, model)
        assert metric(samples, "kiln_tenant_compute_duration_us", model=model, tenant=tenant) > 0
    # Per model: the repository that holds it ("" = the main one).
    assert metric(samples, "nv_inference_count", model="add_sub", tenant="") == 5
    assert metric(samples, "nv_inference_count", model="calc", tenant="alpha") == 4
    assert metric(samples, "nv_inference_count", model="calc", tenant="gamma") == 1
    assert metric(samples, "kiln_model_ready", model="calc", tenant="gamma") == 1
    assert metric(samples, "kiln_tenant_refusals_total", tenant="", reason="unauthenticated") == 2
    assert metric(samples, "kiln_tenant_refusals_total", tenant="beta", reason="permission_denied") == 1
    assert not any(dict(ls).get("tenant") not in ("", "alpha", "beta", "gamma") for _, ls in samples)


def jwks_and_signers(tmp_path):
    """An RSA and a P-256 key pair; the JWKS of their public halves (kids "rsa-1", "ec-1")."""
    import json

    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    keys = {"rsa-1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec-1": ec.generate_private_key(ec.SECP256R1())}
    entries = []
    for kid, key in keys.items():
        algo = pyjwt.algorithms.RSAAlgorithm if kid.startswith("rsa") else pyjwt.algorithms.ECAlgorithm
        entry = json.loads(algo.to_jwk(key.public_key()))
        entry["kid"] = kid
        entries.append(entry)
    return keys, json.dumps({"keys": entries})


def token(key, kid: str, tenant: str = "alpha", aud: str = "kiln", exp_in: float = 300, nbf_in: float | None = None,
          alg: str | None = None) -> str:
    import jwt as pyjwt
    now = time.time()
    claims = {"tenant": tenant, "aud": aud, "iss": "https://idp.test", "exp": int(now + exp_in)}
    if nbf_in is not None:
        claims["nbf"] = int(now + nbf_in)
    alg = alg or ("RS256" if kid.startswith("rsa") else "ES256")
    return pyjwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def test_jwts_name_their_tenant_and_bad_ones_get_401(copy_repo, kiln, tmp_path):
    """[jwt]: RS256 and ES256 tokens verified against a JWKS file, the tenant taken from the
    `tenant` claim; expired, not-yet-valid, wrong-audience, wrong-issuer, foreign-key, HMAC
    (algorithm confusion) and unknown-tenant tokens are refused with 401 / UNAUTHENTICATED;
    API keys keep working beside tokens; a rotated JWKS takes over within seconds."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    keys, jwks = jwks_and_signers(tmp_path)
    (tmp_path / "jwks.json").write_text(jwks)
    file = tmp_path / "tenants.toml"
    write_tenants(file, '[jwt]\njwks = "jwks.json"\naudience = "kiln"\nissuer = "https://idp.test"\n'
                  'leeway_seconds = 0\n\n'
                  + tenants_toml(("alpha", [KEYS["alpha"]], ALL_SCOPES))
                  + '\n[[tenant]]\nname = "beta"\nscopes = ["infer"]\nshared_models = ["*"]\n')
    srv = kiln(copy_repo("add_sub"), "--tenants", str(file), name="jwt")
    a = np.ones((1, 16), np.float32)

    def infer(credential, wire="grpc"):
        c = srv.grpc if wire == "grpc" else srv.http
        mod = grpcclient if wire == "grpc" else httpclient
        return c.infer("add_sub", add_sub_inputs(mod, a, a), headers=bearer(credential, wire))

    for wire in ("grpc", "http"):
        infer(token(keys["rsa-1"], "rsa-1"), wire)
        infer(token(keys["ec-1"], "ec-1", tenant="beta"), wire)
        infer(KEYS["alpha"], wire)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bad = {
        "expired": (token(keys["rsa-1"], "rsa-1", exp_in=-5), "expired"),
        "not yet valid": (token(keys["rsa-1"], "rsa-1", nbf_in=120), "not valid yet"),
        "audience": (token(keys["ec-1"], "ec-1", aud="someone-else"), "audience"),
        "foreign key": (token(other, "rsa-1"), "signature"),
        "unknown tenant": (token(keys["rsa-1"], "rsa-1", tenant="mallory"), "not in the tenants file"),
        "hmac": (token(b"a-shared-secret-of-32-bytes-long", "rsa-1", alg="HS256"), "not accepted"),
    }
    for case, (credential, why) in bad.items():
        expect("unauthenticated", "grpc", infer, credential)
        out = subprocess.run(["curl", "-s", "-i", "-H", f"Authorization: Bearer {credential}",
                              f"http://{srv.http_url}/v2/models/add_sub"], capture_output=True, text=True,
                             timeout=30).stdout
        head, _, body = out.partition("\n\n")
        assert head.lower().startswith("http/1.1 401"), (case, out)
        assert "www-authenticate: bearer" in head.lower(), (case, out)
        assert why in body, (case, body)
    # Rotation: the JWKS now holds a new RSA key only; old tokens stop working.
    import json

    import jwt as pyjwt
    new = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    entry = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(new.public_key()))
    entry["kid"] = "rsa-2"
    tmp = tmp_path / "jwks.tmp"
    tmp.write_text(json.dumps({"keys": [entry]}))
    tmp.replace(tmp_path / "jwks.json")
    old = token(keys["rsa-1"], "rsa-1")

    def rotated():
        try:
            infer(old)
            return False
        except InferenceServerException as e:
            return status_of(e, "grpc") == "UNAUTHENTICATED"
    wait_until(rotated, 10, interval=0.2, what="the old JWKS key refused")
    infer(token(new, "rsa-2"))


def test_kiln_check_validates_the_jwt_table(tmp_path):
    (tmp_path / "jwks.json").write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}')
    file = tmp_path / "tenants.toml"
    file.write_text('[jwt]\njwks = "jwks.json"\naudience = "kiln"\n')
    proc = run_check("--tenants", str(file))
    assert proc.returncode != 0
    assert f"{file}:2:8:" in proc.stdout and "key 'h' is neither an RSA nor a P-256 key" in proc.stdout
    file.write_text('[jwt]\njwks = "jwks.json"\naudience = "kiln"\nalgorithms = ["HS256"]\n')
    proc = run_check("--tenants", str(file))
    assert "'HS256' is not accepted" in proc.stdout
