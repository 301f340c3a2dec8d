"""NVIDIA's perf_analyzer (the real binary) against kiln, over gRPC and HTTP.

perf_analyzer calls ServerMetadata, ModelMetadata, ModelConfig and (when the server lists the
`statistics` extension) ModelStatistics around every window, so this is also a protocol test.
Install it with shared/tools/perf-analyzer/install.sh; PERF_ANALYZER overrides the path.
"""
from __future__ import annotations

import os
import pathlib
import re
import subprocess

import pytest

PERF_ANALYZER = pathlib.Path(os.environ.get(
    "PERF_ANALYZER", pathlib.Path.home() / ".cache" / "kiln-tools" / "perf_analyzer" / "bin" / "perf_analyzer"))
THROUGHPUT = re.compile(r"Throughput:\s*([0-9.]+)\s*infer/sec")


@pytest.fixture(scope="module")
def perf_analyzer():
    if not PERF_ANALYZER.exists():
        pytest.skip(f"perf_analyzer not installed at {PERF_ANALYZER} (run shared/tools/perf-analyzer/install.sh "
                    "or set PERF_ANALYZER)")
    return PERF_ANALYZER


def run_pa(pa, *args, timeout=240):
    # This checks protocol compatibility, not speed: --stability-percentage 100 (default 10)
    # and 20 trials, because on a loaded 2-core machine that also runs the server and
    # perf_analyzer, windows vary a lot and perf_analyzer otherwise gives up ("Failed to
    # obtain stable measurement", exit 2 at concurrency 1, or no number for concurrency 2).
    cmd = [str(pa), "-m", "add_sub", *args, "--concurrency-range", "1:2", "--measurement-interval", "1000", "-b", "1",
           "--stability-percentage", "100", "--max-trials", "20"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-4000:]}"
    rates = [float(v) for v in THROUGHPUT.findall(proc.stdout)]
    assert len(rates) >= 2, f"expected a throughput line per concurrency level:\n{proc.stdout[-4000:]}"
    assert "Failed to obtain stable measurement" not in proc.stdout, proc.stdout[-4000:]
    assert all(r > 0 for r in rates), proc.stdout[-4000:]
    return proc.stdout


def check_summary(out):
    """Both concurrency levels measured, and the server-side statistics section was filled."""
    for level in (1, 2):
        m = re.search(rf"Concurrency: {level}, throughput: ([0-9.]+) infer/sec", out)
        assert m and float(m.group(1)) > 0, f"no throughput for concurrency {level}:\n{out[-4000:]}"
    m = re.search(r"Successful request count: (\d+)", out)
    assert m and int(m.group(1)) > 0, f"no server-side statistics:\n{out[-4000:]}"


def test_perf_analyzer_grpc(server, perf_analyzer):
    check_summary(run_pa(perf_analyzer, "-i", "grpc", "-u", server.grpc_url))


def test_perf_analyzer_http(server, perf_analyzer):
    check_summary(run_pa(perf_analyzer, "-i", "http", "-u", server.http_url))


def add_sub_failures(server) -> int:
    [stats] = [s for s in server.grpc.get_inference_statistics("add_sub", "1").model_stats if s.version == "1"]
    return stats.inference_stats.fail.count


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_system_shared_memory(server, perf_analyzer, protocol):
    """--shared-memory system: perf_analyzer registers /dev/shm regions for every input and
    output, names them in each request, and unregisters them when it exits."""
    url = server.grpc_url if protocol == "grpc" else server.http_url
    regions_before = dict(server.grpc.get_system_shared_memory_status().regions)
    log_before = server.log().count("registered system shared memory")
    failures_before = add_sub_failures(server)
    check_summary(run_pa(perf_analyzer, "-i", protocol, "-u", url, "--shared-memory", "system"))
    assert server.log().count("registered system shared memory") > log_before, \
        "perf_analyzer registered no shared memory region"
    assert add_sub_failures(server) == failures_before, "some perf_analyzer requests failed on the server"
    assert dict(server.grpc.get_system_shared_memory_status().regions) == regions_before, \
        "perf_analyzer left regions registered"


LOADGEN = pathlib.Path(os.environ.get("KILN_LOADGEN", pathlib.Path(__file__).resolve().parents[1]
                                      / "target" / "release" / "loadgen"))


def test_loadgen_measures_and_reports_failures(server):
    """bench/loadgen, the closed-loop gRPC client the GPU benchmark uses where perf_analyzer runs
    out of memory (large inputs, high rates): it measures add_sub in perf_analyzer's words, and
    a failing model makes it say so and exit non-zero instead of printing a throughput."""
    if not LOADGEN.exists():
        pytest.fail(f"{LOADGEN} missing: `cargo build --release` builds it (workspace member bench/loadgen)")
    base = [str(LOADGEN), "--url", f"http://{server.grpc_url}", "--concurrency", "2", "--warmup", "0.5",
            "--seconds", "1"]
    ok = subprocess.run(base + ["--model", "add_sub", "--input", "INPUT0:FP32:1,16", "--input", "INPUT1:FP32:1,16"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert float(THROUGHPUT.search(ok.stdout).group(1)) > 0, ok.stdout
    assert re.search(r"p99 latency: [1-9][0-9]* usec", ok.stdout), ok.stdout
    assert re.search(r"Requests: [1-9][0-9]* ok, 0 failed", ok.stdout), ok.stdout
    # The server's averages over the same window, from ModelStatistics, as perf_analyzer prints them.
    server_side = re.search(r"Avg request latency: ([0-9]+) usec \(overhead [0-9]+ usec \+ queue [0-9]+ usec "
                            r"\+ compute input [0-9]+ usec \+ compute infer ([0-9]+) usec \+ compute output [0-9]+ usec; "
                            r"average batch ([0-9.]+)\)", ok.stdout)
    assert server_side, ok.stdout
    assert int(server_side.group(1)) >= int(server_side.group(2)), ok.stdout
    assert float(server_side.group(3)) >= 1.0, ok.stdout
    bad = subprocess.run(base + ["--model", "add_sub", "--input", "INPUT0:FP32:1,16"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0, bad.stdout
    assert "INPUT1" in bad.stdout, bad.stdout  # the server's error, naming the missing input
