"""CPU bitmask application, side by side: octogram's kernels vs xgrammar's CPU backends.

"octogram" is what `apply_token_bitmask_` runs on CPU by default: the native C kernel
(kernels/bitmask_cpu.c, built once per machine into the cache). "octogram torch" is the torch
reference it falls back to without a C compiler (or with OCTOGRAM_NATIVE=0). Peers: xgrammar's
"cpu" backend (its C++ loop, the default for CPU tensors) and "torch_compile" backend.

Batch 1, 8, 64 x vocabulary 128,256 (Llama 3) and 262,144 (Gemma 3), float32 and bfloat16,
random masks with ~50% and ~1% of ids allowed. All implementations are timed round-robin in
the same loop (one call each per round) so that a noisy machine slows them alike; medians are
reported. Writes section "kernels-cpu" of benchmarks/RESULTS.md.

    python benchmarks/bench_kernels_cpu.py [--repeats 25] [--threads 1] [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.append(str(Path(__file__).resolve().parent.parent))  # last: not over pip `kernels`
from benchmarks.results import command_line, git_revision, machine_summary, write_section  # noqa: E402
from octogram.common import native_build  # noqa: E402
from octogram.kernels import apply_token_bitmask_, bitmask_words, native  # noqa: E402
from octogram.kernels.bitmask import apply_torch  # noqa: E402

BATCHES = (1, 8, 64)
VOCABS = (128_256, 262_144)
DENSITIES = (0.5, 0.01)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def random_mask(batch: int, vocab: int, density: float, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    bits = rng.random((batch, bitmask_words(vocab) * 32)) < density
    bits[:, vocab:] = False
    return torch.from_numpy(np.packbits(bits, axis=1, bitorder="little").copy()).view(torch.int32)


def compiler_version() -> str:
    command = (os.environ.get("CC") or "cc").split()
    done = subprocess.run(command + ["--version"], capture_output=True, text=True)
    return done.stdout.splitlines()[0] if done.returncode == 0 and done.stdout else "unknown"


def native_build_seconds() -> tuple[float, float]:
    """(seconds to build the native kernel into an empty cache, seconds to load it from the
    cache): what the first call costs once per machine, and in every later process."""
    saved = os.environ.get("OCTOGRAM_CACHE_DIR")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["OCTOGRAM_CACHE_DIR"] = cache
        try:
            native_build.forget(native.source("bitmask_cpu"))
            start = time.perf_counter()
            if native.load("bitmask_cpu") is None:
                raise SystemExit("the native kernel does not build here: see the warning above")
            built = time.perf_counter() - start
            native_build.forget(native.source("bitmask_cpu"))
            start = time.perf_counter()
            native.load("bitmask_cpu")
            loaded = time.perf_counter() - start
        finally:
            if saved is None:
                os.environ.pop("OCTOGRAM_CACHE_DIR", None)
            else:
                os.environ["OCTOGRAM_CACHE_DIR"] = saved
    native_build.forget(native.source("bitmask_cpu"))  # the timed calls load from the usual cache
    return built, loaded


def peers() -> dict:
    """name -> apply(logits, bitmask, vocab) for each available implementation."""
    os.environ.pop("OCTOGRAM_NATIVE", None)  # "octogram" is the default, native path
    impls = {"octogram": lambda x, m, v: apply_token_bitmask_(x, m),
             "octogram torch": lambda x, m, v: apply_torch(x, m, None)}
    try:
        import xgrammar
    except ImportError:
        print("xgrammar not installed: no peers", file=sys.stderr)
        return impls
    for backend in ("cpu", "torch_compile"):
        impls[f"xgrammar {backend}"] = (
            lambda x, m, v, b=backend: xgrammar.apply_token_bitmask_inplace(x, m, vocab_size=v,
                                                                            backend=b))
    return impls


def measure(impls: dict, batch: int, vocab: int, dtype: torch.dtype, density: float,
            repeats: int) -> tuple[dict, dict, dict]:
    """(median thread-CPU seconds, median wall seconds, first-call wall seconds) per
    implementation. CPU time of the calling thread is the work done (every implementation here
    runs on that one thread); wall time also counts waiting while other processes run."""
    logits = torch.randn(batch, vocab, generator=torch.Generator().manual_seed(0)).to(dtype)
    bitmask = random_mask(batch, vocab, density, seed=batch + vocab)
    first, times, walls = {}, {name: [] for name in impls}, {name: [] for name in impls}
    for name, fn in impls.items():
        x = logits.clone()
        start = time.perf_counter()
        fn(x, bitmask, vocab)
        first[name] = time.perf_counter() - start
        fn(x, bitmask, vocab)
    work = {name: logits.clone() for name in impls}
    for _ in range(repeats):
        for name, fn in impls.items():  # the logits stay masked after the first call:
            fn(work[name], bitmask, vocab)  # every call still does the work. This untimed call
            wall, cpu = time.perf_counter(), time.thread_time()  # warms the caches, like an
            fn(work[name], bitmask, vocab)  # LM head that has just written the logits
            times[name].append(time.thread_time() - cpu)
            walls[name].append(time.perf_counter() - wall)
    reference = work["octogram"]
    for name, out in work.items():
        if not torch.equal(out, reference):
            raise AssertionError(f"{name} disagrees with octogram at batch {batch}, vocab {vocab}")
    median = lambda d: {name: statistics.median(ts) for name, ts in d.items()}  # noqa: E731
    return median(times), median(walls), first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (xgrammar's cpu backend uses one)")
    parser.add_argument("--quick", action="store_true", help="batch 1 and 8, fp32 only")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    built, loaded = native_build_seconds()
    print(f"native kernel: built in {built:.2f} s, loaded from the cache in {loaded * 1e3:.2f} ms")
    impls = peers()
    names = list(impls)
    batches = BATCHES[:2] if args.quick else BATCHES
    dtypes = {"fp32": torch.float32} if args.quick else DTYPES

    ours = [n for n in names if n.startswith("octogram")]
    default_peer = "xgrammar cpu" if "xgrammar cpu" in names else None
    header = ("| batch | vocab | dtype | allowed | " + " | ".join(f"{n} µs" for n in names)
              + (" | octogram / xgrammar cpu" if default_peer else "")
              + " | " + " | ".join(f"{n} / best xgrammar" for n in ours) + " |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    ratios, firsts = {n: [] for n in ours}, {n: [] for n in names}
    wall_ratios = {n: [] for n in ours}
    default_ratios = []
    for dtype_name, dtype in dtypes.items():
        for vocab in VOCABS:
            for batch in batches:
                for density in DENSITIES:
                    med, wall, first = measure(impls, batch, vocab, dtype, density, args.repeats)
                    for n in names:
                        firsts[n].append(first[n])
                    peer_best = min((med[n] for n in names if n not in ours), default=None)
                    row_ratios = []
                    if default_peer:
                        default_ratios.append(med["octogram"] / med[default_peer])
                        row_ratios.append(f"{default_ratios[-1]:.2f}")
                    for n in ours:
                        ratio = med[n] / peer_best if peer_best else float("nan")
                        ratios[n].append(ratio)
                        wall_best = min(wall[m] for m in names if m not in ours)
                        wall_ratios[n].append(wall[n] / wall_best)
                        row_ratios.append(f"{ratio:.2f}")
                    row = (f"| {batch} | {vocab:,} | {dtype_name} | {density:.0%} | "
                           + " | ".join(f"{med[n] * 1e6:,.0f}" for n in names)
                           + " | " + " | ".join(row_ratios) + " |")
                    lines.append(row)
                    print(row, flush=True)
    first_line = ", ".join(f"{n} {max(firsts[n]):.2f} s" for n in names)
    summary = "\n".join(([
        f"- octogram / xgrammar cpu (xgrammar's default for CPU tensors), CPU time: median "
        f"{statistics.median(default_ratios):.2f}, worst {max(default_ratios):.2f}, best "
        f"{min(default_ratios):.2f}."] if default_ratios else []) + [
        f"- {n} / best xgrammar backend, CPU time: median {statistics.median(r):.2f}, worst "
        f"{max(r):.2f}, best {min(r):.2f} over {len(r)} shapes (< 1 is faster); wall-clock "
        f"median {statistics.median(wall_ratios[n]):.2f}." for n, r in ratios.items()])
    print(summary)
    print("slowest first call:", first_line)
    body = "\n".join([
        "## kernels-cpu: applying a token bitmask on CPU",
        "",
        f"Machine: {machine_summary(('torch', 'xgrammar', 'triton'))}; torch threads: "
        f"{args.threads}; C compiler: {compiler_version()}. Revision {git_revision()}.",
        f"Command: `{command_line()}`",
        "",
        "Median CPU time of the calling thread per in-place call (µs) over "
        f"{args.repeats} rounds; every implementation is timed in the same rounds (round-robin), "
        "each timed call right after an untimed one on the same tensors (warm caches, as after "
        "the LM head writes the logits). All run on the calling thread, so time spent preempted "
        "by other processes on this shared machine is not counted (wall-clock ratios are given "
        "below the table). Masks are random "
        "with the given share of allowed "
        "ids. `octogram` is what `apply_token_bitmask_` runs on CPU: the native C kernel "
        "(`kernels/bitmask_cpu.c`); `octogram torch` is the torch reference it falls back to "
        "without a C compiler (`OCTOGRAM_NATIVE=0`). Compiled paths are timed after their "
        "compile; the slowest first call of each implementation is listed below the table. "
        "All outputs are checked equal.",
        "",
        *lines,
        "",
        summary,
        "",
        f"Slowest first call (compile included): {first_line}. The native kernel's one-time "
        f"build (once per machine, into the cache) took {built:.2f} s and its load from the "
        f"cache in a new process {loaded * 1e3:.2f} ms; torch.compile paths trace and compile "
        "again in every new process.",
    ])
    if not args.no_write:
        print("wrote", write_section("kernels-cpu", body))


if __name__ == "__main__":
    main()
