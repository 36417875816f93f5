"""The kernel benchmarks still run: every code path of the GPU benchmark on CPU (its --dry-run, so
that a first run on a lent GPU does not fail on a Python error), and the CPU benchmark on its
smallest shapes, which also checks that every implementation's output is equal. Nothing is
written to RESULTS.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_gpu_benchmark_dry_run():
    out = run("benchmarks/bench_kernels_gpu.py", "--dry-run")
    assert "dry run done" in out
    assert "device-resident DeviceFSM.step" in out


def test_cpu_benchmark_quick_run():
    out = run("benchmarks/bench_kernels_cpu.py", "--quick", "--no-write", "--repeats", "1")
    assert "| 8 | 262,144 | fp32 | 1% |" in out  # the last shape of the quick run was measured
