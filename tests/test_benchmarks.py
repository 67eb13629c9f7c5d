"""The benchmark suite runs, checks its kernels before timing them, and writes its JSON.

Timings are never asserted (they vary with the machine's load); what is tested is that
``make bench`` works end to end and that it refuses to time a wrong computation.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import run as bench_run  # noqa: E402


def test_quick_run_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--repeats", "1", "--warmup", "0",
         "--rounds", "1", "--threads", "1", "--json", str(out)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    results = json.loads(out.read_text())
    assert {"mha", "attention", "generation", "training"} <= set(results)
    attention = results["attention"]
    assert set(attention["seconds"]) == {"naive", "tiled", "sdpa"}
    # Peak memory is counted exactly for the plain-PyTorch paths: the naive path holds
    # the (n, n) score matrix, so its peak grows about 4x per doubling of n; the tiled
    # path's grows about linearly.
    naive, tiled = attention["peak_bytes"]["naive"], attention["peak_bytes"]["tiled"]
    assert naive[-1] / naive[-2] > 3.5 and tiled[-1] / tiled[-2] < 2.5, attention["peak_bytes"]
    gen = results["generation"]["cpu, 1 thread(s)"]
    assert len(gen["tokens_per_s"]["cache"]) == len(gen["new_tokens"]) == len(gen["tokens_per_s"]["no cache"])
    assert all(v > 0 for v in gen["tokens_per_s"]["cache"])


def test_check_refuses_a_wrong_kernel() -> None:
    bench_run.check("ok", 1e-7, 1e-5)
    with pytest.raises(SystemExit, match="not timing a wrong computation"):
        bench_run.check("attention tiled n=512", 3e-2, 1e-5)
    with pytest.raises(SystemExit, match="not timing"):
        bench_run.check("nan", float("nan"), 1e-5)


def test_parallel_jobs_one_per_core_unless_a_second_thread_adds_little(tmp_path: Path) -> None:
    import gflops

    assert gflops.parallel_jobs(80.0, 150.0, cores=2) == 2
    assert gflops.parallel_jobs(53.0, 58.0, cores=2) == 1     # the slow machine of issue 16
    assert gflops.parallel_jobs(80.0, 150.0, cores=1) == 1    # taskset -c 0
    assert gflops.parallel_jobs(80.0, 150.0, cores=8) == 8
    jobs, speed = tmp_path / "jobs", tmp_path / "speed.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gflops.py"), "--jobs-file", str(jobs), "--json", str(speed)],
                   check=True, capture_output=True, text=True)
    figures = json.loads(speed.read_text())
    assert int(jobs.read_text()) == figures["jobs"] >= 1
    assert figures["gflops_1_thread"] > 0 and figures["reference_gflops"] == 55.0
