"""Dynamic batching (config `dynamic_batching`, Triton's semantics) through tritonclient:
requests combined into one execution and split back to their callers, requests whose own
batch is above 1, queue limits (UNAVAILABLE), queue timeouts, priority levels."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from test_shutdown import calibrate, slow_inputs


def with_batching(repo, model: str, batching: str, instances: int = 1):
    """Rewrites a copied fixture's config with a dynamic_batching block."""
    cfg = repo / model / "config.pbtxt"
    text = cfg.read_text()
    text = text.replace("count: 1,", f"count: {instances},")
    cfg.write_text(text + f"\ndynamic_batching {{ {batching} }}\n")


def fp32(x):
    inp = grpcclient.InferInput("INPUT__0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return inp


def stats(srv, model):
    return srv.grpc.get_inference_statistics(model, as_json=True)["model_stats"][0]


def test_requests_are_combined_and_split_back(copy_repo, kiln):
    repo = copy_repo("identity_fp32")
    with_batching(repo, "identity_fp32", "max_queue_delay_microseconds: 300000")
    srv = kiln(repo, name="batching")
    rng = np.random.default_rng(7)
    # Own batch sizes 1..3, 4 values per item: 12 items over max_batch_size 8 -> 2+ executions.
    sizes = [1, 2, 1, 3, 1, 2, 1, 1]
    payloads = [rng.standard_normal((n, 4)).astype(np.float32) for n in sizes]

    def call(x):
        client = srv.new_grpc_client()
        try:
            return client.infer("identity_fp32", [fp32(x)]).as_numpy("OUTPUT__0")
        finally:
            client.close()

    with ThreadPoolExecutor(len(payloads)) as pool:
        results = list(pool.map(call, payloads))
    for x, out in zip(payloads, results):
        np.testing.assert_array_equal(out, x)  # every caller gets exactly its own rows
    s = stats(srv, "identity_fp32")
    executions = int(s["execution_count"])
    assert int(s["inference_count"]) == sum(sizes)
    assert int(s["inference_stats"]["success"]["count"]) == len(sizes)
    assert executions < len(sizes), f"no batching happened: {executions} executions for {len(sizes)} requests"
    batch_sizes = [int(b["batch_size"]) for b in s["batch_stats"]]
    assert max(batch_sizes) > 3 and max(batch_sizes) <= 8, batch_sizes


def test_incompatible_shapes_are_not_combined(copy_repo, kiln):
    repo = copy_repo("identity_fp32")
    with_batching(repo, "identity_fp32", "max_queue_delay_microseconds: 200000")
    srv = kiln(repo, name="batching-shapes")
    a = np.ones((1, 3), np.float32)
    b = np.full((1, 5), 2.0, np.float32)

    def call(x):
        client = srv.new_grpc_client()
        try:
            return client.infer("identity_fp32", [fp32(x)]).as_numpy("OUTPUT__0")
        finally:
            client.close()

    with ThreadPoolExecutor(2) as pool:
        ra, rb = pool.map(call, [a, b])
    np.testing.assert_array_equal(ra, a)
    np.testing.assert_array_equal(rb, b)
    assert int(stats(srv, "identity_fp32")["execution_count"]) == 2


def ordered_slow_calls(srv, rounds, plan):
    """Sends one slow_identity request per (key, priority, (pending, executing)) in `plan`,
    each from its own client, in order: after sending one, waits until the server holds
    that many requests (metrics), so the order of arrival is certain, not a matter of sleeps.
    Returns ({key: "ok" or the InferenceServerException}, [keys in order of completion])."""
    x = np.ones((1, 4), np.float32)
    outcome, finished = {}, []

    def call(key, priority):
        client = srv.new_grpc_client()
        try:
            client.infer("slow_identity", slow_inputs(grpcclient, x, rounds), priority=priority)
            outcome[key] = "ok"
            finished.append(key)
        except InferenceServerException as exc:
            outcome[key] = exc
        finally:
            client.close()

    threads = []
    for key, priority, held in plan:
        t = threading.Thread(target=call, args=(key, priority))
        t.start()
        threads.append(t)
        if held is not None:
            srv.wait_held("slow_identity", *held)
    for t in threads:
        t.join(timeout=120)
    return outcome, finished


def test_full_queue_answers_unavailable(copy_repo, kiln):
    repo = copy_repo("slow_identity")
    with_batching(repo, "slow_identity", "default_queue_policy { max_queue_size: 1 }")
    srv = kiln(repo, name="queue-full")
    rounds = calibrate(srv, target_s=1.0)
    results, _ = ordered_slow_calls(srv, rounds, [("running", 0, (0, 1)), ("queued", 0, (1, 1)), ("rejected", 0, None)])
    assert results["running"] == "ok" and results["queued"] == "ok", results
    rejected = results["rejected"]
    assert isinstance(rejected, InferenceServerException), results
    assert rejected.status() == "StatusCode.UNAVAILABLE"
    assert "maximum queue size" in str(rejected)


def test_queue_timeout_rejects_waiting_requests(copy_repo, kiln):
    repo = copy_repo("slow_identity")
    with_batching(repo, "slow_identity", "default_queue_policy { default_timeout_microseconds: 100000 }")
    srv = kiln(repo, name="queue-timeout")
    rounds = calibrate(srv, target_s=0.8)
    outcome, _ = ordered_slow_calls(srv, rounds, [("first", 0, (0, 1)), ("waits", 0, None)])
    assert outcome["first"] == "ok"
    assert isinstance(outcome["waits"], InferenceServerException), outcome
    assert "timeout" in str(outcome["waits"]).lower()


def test_higher_priority_requests_run_first(copy_repo, kiln):
    repo = copy_repo("slow_identity")
    with_batching(repo, "slow_identity", "priority_levels: 2 default_priority_level: 2")
    srv = kiln(repo, name="priority")
    rounds = calibrate(srv, target_s=2.0)
    x = np.ones((1, 4), np.float32)
    # "blocker" runs, "low" queues behind it, then "high" arrives: it must overtake "low".
    plan = (("blocker", 0, (0, 1)), ("low", 2, (1, 1)), ("high", 1, (2, 1)))
    outcome, finished = ordered_slow_calls(srv, rounds, plan)
    assert all(v == "ok" for v in outcome.values()), outcome
    assert finished == ["blocker", "high", "low"], finished
    with pytest.raises(InferenceServerException) as exc:
        srv.grpc.infer("slow_identity", slow_inputs(grpcclient, x, 1), priority=3)
    assert "priority" in str(exc.value)


def test_an_idle_model_answers_a_lone_request_without_waiting_for_company(copy_repo, kiln):
    """dispatch_when_idle (kiln's default): with an instance idle, a batch goes out with
    what is queued instead of waiting max_queue_delay_microseconds; "false" restores Triton's
    wait. The delay is 3 s so the two behaviours are seconds apart, far beyond any noise."""
    repo = copy_repo("identity_fp32")
    with_batching(repo, "identity_fp32", "max_queue_delay_microseconds: 3000000")
    waiting = copy_repo("identity_fp32", dst=repo.parent / "waiting")
    with_batching(waiting, "identity_fp32", "max_queue_delay_microseconds: 3000000")
    cfg = waiting / "identity_fp32" / "config.pbtxt"
    cfg.write_text(cfg.read_text() + 'parameters { key: "dispatch_when_idle" value { string_value: "false" } }\n')
    x = np.ones((1, 4), dtype=np.float32)
    for path, slow in ((repo, False), (waiting, True)):
        srv = kiln(path, name=f"idle-{slow}")
        start = time.monotonic()
        out = srv.grpc.infer("identity_fp32", [fp32(x)]).as_numpy("OUTPUT__0")
        took = time.monotonic() - start
        np.testing.assert_array_equal(out, x)
        if slow:
            assert took >= 2.9, f"waited only {took:.3f} s with dispatch_when_idle false"
        else:
            assert took < 1.5, f"a lone request took {took:.3f} s beside an idle instance"
        srv.stop()


def test_a_bad_dispatch_when_idle_fails_the_load_naming_the_parameter(copy_repo, kiln):
    repo = copy_repo("identity_fp32")
    cfg = repo / "identity_fp32" / "config.pbtxt"
    cfg.write_text(cfg.read_text() + 'parameters { key: "dispatch_when_idle" value { string_value: "maybe" } }\n')
    srv = kiln(repo, "--model-control-mode", "explicit", name="bad-idle")
    with pytest.raises(InferenceServerException) as exc:
        srv.grpc.load_model("identity_fp32")
    msg = exc.value.message()
    assert "parameter 'dispatch_when_idle'" in msg and '"maybe"' in msg, msg
