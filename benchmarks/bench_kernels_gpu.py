"""GPU kernels: bitmask bandwidth vs HBM peak, batch-1 latency, the fused sampler, and host
syncs per token of a device-resident decode loop. Writes section "kernels-gpu" of RESULTS.md.

1. apply: octogram's Triton kernel vs xgrammar's "triton" and "cuda" backends, batch 1-256 x
   vocabulary 128,256 / 262,144, fp32 and bf16, ~50% of ids allowed. Bandwidth counts the bytes
   the operation has to move, the same for every implementation: the mask read plus one write
   of the logits row (B * 4W + B * V * element size); xgrammar also reads the logits.
2. sampling: octogram's fused sampler (no masked copy, no host sync) vs apply + torch.softmax +
   torch.multinomial, and with top-k 50 / top-p 0.9 vs apply + sort-based truncation + softmax +
   multinomial.
3. decode loop: DeviceFSM.step on a 262,144-token synthetic FSM, plain and captured in a CUDA
   graph, vs a host-driven loop (masks looked up on the host from the sampled tokens); host
   syncs per token are counted with torch.cuda.set_sync_debug_mode.

Without CUDA it writes the section as "not yet measured" (never guessed numbers);
`--dry-run` runs every code path on CPU with tiny shapes and writes nothing.

    python benchmarks/bench_kernels_gpu.py [--peak-gbs 3350] [--quick] [--dry-run]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.append(str(Path(__file__).resolve().parent.parent))  # last: not over pip `kernels`
from benchmarks.results import command_line, git_revision, machine_summary, write_section  # noqa: E402
from octogram.common.layouts import fsm_tables  # noqa: E402
from octogram.kernels import DeviceFSM, apply_token_bitmask_, bitmask_words  # noqa: E402
from octogram.kernels.sampling import sample_triton, sample_torch, sampling_params, seed_tensor  # noqa: E402

SECTION = "kernels-gpu"
# HBM peak by device name (vendor datasheets), GB/s; --peak-gbs overrides.
PEAKS = {"H200": 4800, "H100 SXM": 3350, "H100 80GB HBM3": 3350, "H100 PCIe": 2000,
         "H100 NVL": 3900, "H100": 3350, "A100-SXM4-80GB": 2039, "A100 80GB PCIe": 1935,
         "A100": 1555, "L40S": 864, "L4": 300, "A10": 600}


class Timer:
    """Median time of a callable: CUDA events with an L2 flush between runs on a GPU,
    perf_counter on CPU (dry runs only)."""

    def __init__(self, device: torch.device, repeats: int) -> None:
        self.device, self.repeats = device, repeats
        self.flush = torch.empty(64 * 2 ** 20, dtype=torch.int8, device=device) \
            if device.type == "cuda" else None

    def __call__(self, fn) -> float:
        fn()  # warm-up (compiles)
        if self.device.type != "cuda":
            times = []
            for _ in range(self.repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            return statistics.median(times)
        torch.cuda.synchronize()
        times = []
        for _ in range(self.repeats):
            self.flush.zero_()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return statistics.median(times)


def random_mask(batch: int, vocab: int, density: float, device: torch.device, seed: int = 0):
    rng = np.random.default_rng(seed)
    bits = rng.random((batch, bitmask_words(vocab) * 32)) < density
    bits[:, vocab:] = False
    packed = np.packbits(bits, axis=1, bitorder="little").copy()
    return torch.from_numpy(packed).view(torch.int32).to(device)


# ----------------------------------------------------------------------------- 1. apply

def bench_apply(device, timer, batches, vocabs, dtypes, peak_gbs) -> list[str]:
    impls = {"octogram": lambda x, m: apply_token_bitmask_(x, m)}
    notes = []
    try:
        import xgrammar

        for backend in ("triton", "cuda"):
            impls[f"xgrammar {backend}"] = (
                lambda x, m, b=backend: xgrammar.apply_token_bitmask_inplace(x, m, backend=b))
    except ImportError:
        notes.append("xgrammar is not installed: no peers in this table.")
    if device.type != "cuda":  # dry run: xgrammar's GPU backends need CUDA
        impls = {"octogram": impls["octogram"]}
    names = list(impls)
    header = ("| batch | vocab | dtype | " + " | ".join(f"{n} µs" for n in names)
              + " | " + " | ".join(f"{n} % of peak" for n in names) + " |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for dtype_name, dtype in dtypes.items():
        for vocab in vocabs:
            for batch in batches:
                logits = torch.randn(batch, vocab, device=device).to(dtype)
                bitmask = random_mask(batch, vocab, 0.5, device)
                moved = batch * bitmask.shape[1] * 4 + batch * vocab * logits.element_size()
                times, shares = [], []
                for name, fn in impls.items():
                    try:
                        t = timer(lambda: fn(logits, bitmask))
                        times.append(f"{t * 1e6:,.1f}")
                        shares.append(f"{moved / t / 1e9 / peak_gbs:.0%}" if peak_gbs else "n/a")
                    except Exception as error:  # e.g. xgrammar's cuda backend without nvcc
                        times.append("failed")
                        shares.append("-")
                        note = f"{name}: {type(error).__name__}: {str(error).splitlines()[0][:160]}"
                        if note not in notes:
                            notes.append(note)
                row = f"| {batch} | {vocab:,} | {dtype_name} | " + " | ".join(times + shares) + " |"
                lines.append(row)
                print(row, flush=True)
    return lines + [""] + notes


# ----------------------------------------------------------------------------- 2. sampling

def baseline_sample(logits, bitmask, top_k: int, top_p: float) -> torch.Tensor:
    """What a decode loop does without a fused kernel: mask a copy, truncate, softmax, draw."""
    x = logits.float().clone()
    apply_token_bitmask_(x, bitmask)
    if top_k:
        kth = torch.topk(x, top_k, dim=-1).values[:, -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p < 1:
        sorted_x, order = torch.sort(x, descending=True, dim=-1)
        cum = torch.softmax(sorted_x, -1).cumsum(-1)
        drop = cum - torch.softmax(sorted_x, -1) > top_p
        x = x.scatter(-1, order, sorted_x.masked_fill(drop, float("-inf")))
    return torch.multinomial(torch.softmax(x, -1), 1).squeeze(1)


def bench_sampling(device, timer, batches, vocabs) -> list[str]:
    sampler = sample_triton if device.type == "cuda" else sample_torch
    header = ("| batch | vocab | truncation | fused µs | mask+softmax+multinomial µs | speed-up |")
    lines = [header, "|---|---|---|---|---|---|"]
    for vocab in vocabs:
        for batch in batches:
            logits = torch.randn(batch, vocab, device=device, dtype=torch.bfloat16) * 4
            bitmask = random_mask(batch, vocab, 0.5, device)
            seed = seed_tensor("bench", device, None, 0)
            for top_k, top_p, label in ((0, 1.0, "none"), (50, 0.9, "top-k 50, top-p 0.9")):
                params = sampling_params("bench", batch, device, 1.0, top_k, top_p)
                kwargs = {"truncate": top_k > 0 or top_p < 1} if device.type == "cuda" else {}
                fused = timer(lambda: sampler(logits, bitmask, *params, seed, **kwargs))
                base = timer(lambda: baseline_sample(logits, bitmask, top_k, top_p))
                row = (f"| {batch} | {vocab:,} | {label} | {fused * 1e6:,.1f} | {base * 1e6:,.1f} "
                       f"| {base / fused:.2f}x |")
                lines.append(row)
                print(row, flush=True)
    return lines


# ----------------------------------------------------------------------------- 3. decode loop

def synthetic_tables(vocab: int, n_states: int = 64, seed: int = 0) -> dict:
    """A string-body-like FSM: most states allow ~all ids and send them to one state, a few
    allow a handful with explicit transitions; EOS allowed in accepting states."""
    rng = np.random.default_rng(seed)
    words = bitmask_words(vocab)
    eos = vocab - 1
    rows, state_row, default, offsets, tokens, nxt = [], [], [], [0], [], []
    accepting = rng.random(n_states) < 0.2
    for s in range(n_states):
        bits = np.zeros(words * 32, bool)
        if s % 4:
            bits[: vocab - 1] = rng.random(vocab - 1) < 0.97
            default.append(int(rng.integers(n_states)))
            explicit = sorted(rng.choice(np.flatnonzero(bits), 40, replace=False).tolist())
        else:
            explicit = sorted(rng.choice(vocab - 1, 20, replace=False).tolist())
            bits[explicit] = True
            default.append(-1)
        targets = rng.integers(n_states, size=len(explicit)).tolist()
        if accepting[s]:
            bits[eos] = True
            explicit.append(eos)
            targets.append(s)
        rows.append(np.packbits(bits, bitorder="little").view(np.int32))
        state_row.append(s)
        tokens += explicit
        nxt += targets
        offsets.append(len(tokens))
    return fsm_tables(mask_rows=np.stack(rows), state_row=state_row, default_next=default,
                      trans_offsets=offsets, trans_tokens=tokens, trans_next=nxt,
                      accepting=accepting, start_state=0, vocab_size=vocab, eos_token_id=eos)


def count_syncs(fn) -> int:
    """Synchronising CUDA calls made by fn (torch's sync debug mode warns on each)."""
    if not torch.cuda.is_available():
        return -1
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def bench_decode(device, batch: int, vocab: int, steps: int) -> list[str]:
    tables = synthetic_tables(vocab)
    fsm = DeviceFSM.from_tables(tables, device)
    logits = torch.randn(batch, vocab, device=device, dtype=torch.bfloat16) * 3
    start = torch.zeros(batch, dtype=torch.int64, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    generator = torch.Generator(device=device).manual_seed(0)

    def device_loop(n: int) -> None:
        states, done = start.clone(), finished.clone()
        for _ in range(n):
            tokens, states = fsm.step(logits, states, top_k=50, top_p=0.9, generator=generator,
                                      finished=done)
            done |= tokens == tables["eos_token_id"]

    # host-driven baseline: the FSM lives on the host, tokens come back every step
    host_rows = tables["mask_rows"]
    host_fsm = DeviceFSM.from_tables(tables, "cpu")

    def host_loop(n: int) -> None:
        states = torch.zeros(batch, dtype=torch.int64)
        for _ in range(n):
            bitmask = host_rows[tables["state_row"][states].long()].to(device)
            tokens = baseline_sample(logits, bitmask, 50, 0.9)
            states = host_fsm.next_states(states, tokens.cpu())  # the per-token round trip
            states = torch.where(states < 0, 0, states)

    def per_token(fn) -> float:
        fn(2)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(steps)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / steps

    rows = [("device-resident DeviceFSM.step", per_token(device_loop),
             count_syncs(lambda: device_loop(steps))),
            ("host-driven (mask on host, sample on device)", per_token(host_loop),
             count_syncs(lambda: host_loop(steps)))]
    if device.type == "cuda":  # the same step captured once, replayed per token
        states, done = start.clone(), finished.clone()
        fsm.step(logits, states, top_k=50, top_p=0.9, finished=done)  # compile outside capture
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                fsm.step(logits, states, top_k=50, top_p=0.9, finished=done)
        torch.cuda.current_stream().wait_stream(stream)
        with torch.cuda.graph(graph):
            tokens, new_states = fsm.step(logits, states, top_k=50, top_p=0.9, finished=done)
            states.copy_(new_states)
            done |= tokens == tables["eos_token_id"]

        def graph_loop(n: int) -> None:
            for _ in range(n):
                graph.replay()

        rows.append(("DeviceFSM.step in a CUDA graph", per_token(graph_loop),
                     count_syncs(lambda: graph_loop(steps))))
    lines = [f"Batch {batch}, vocabulary {vocab:,}, {steps} steps, top-k 50, top-p 0.9, bf16 logits.",
             "", "| loop | µs per token (whole batch) | host syncs per token |", "|---|---|---|"]
    for name, t, syncs in rows:
        per = "n/a (CPU)" if syncs < 0 else f"{syncs / steps:.2f}"
        lines.append(f"| {name} | {t * 1e6:,.1f} | {per} |")
        print(lines[-1], flush=True)
    return lines


# ----------------------------------------------------------------------------- main

def peak_for(name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, value in PEAKS.items():
        if key.lower() in name.lower():
            return value
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peak-gbs", type=float, default=None, help="HBM peak of the card, GB/s")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="fewer shapes")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny shapes on CPU through every code path; writes nothing")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    if args.dry_run:
        device = torch.device("cpu")
        timer = Timer(device, 3)
        bench_apply(device, timer, (1, 3), (1000,), {"bf16": torch.bfloat16}, None)
        bench_sampling(device, timer, (1, 3), (1000,))
        bench_decode(device, 3, 1000, 4)
        print("dry run done")
        return
    if not torch.cuda.is_available():
        body = "\n".join([
            "## kernels-gpu: Triton kernels on a GPU",
            "",
            "**Not yet measured: no GPU was lent to this run.** The script runs as-is on a CUDA "
            "machine (`python benchmarks/bench_kernels_gpu.py`) and then writes: bitmask "
            "bandwidth as a share of the card's HBM peak and batch-1 latency next to xgrammar's "
            "triton and cuda kernels, the fused sampler against mask + softmax + multinomial, "
            "and host syncs per token of a device-resident decode loop (plain and in a CUDA "
            "graph) against a host-driven one.",
            "",
            f"Last attempt: {machine_summary(('torch', 'triton', 'xgrammar'))}, revision "
            f"{git_revision()}, `{command_line()}`.",
        ])
        print("no CUDA device: the section says so; nothing was measured")
        if not args.no_write:
            write_section(SECTION, body)
        return

    device = torch.device("cuda")
    name = torch.cuda.get_device_name()
    peak = peak_for(name, args.peak_gbs)
    timer = Timer(device, args.repeats)
    batches = (1, 8, 64) if args.quick else (1, 8, 64, 256)
    vocabs = (262_144,) if args.quick else (128_256, 262_144)
    dtypes = {"bf16": torch.bfloat16} if args.quick else {"fp32": torch.float32,
                                                          "bf16": torch.bfloat16}
    apply_lines = bench_apply(device, timer, batches, vocabs, dtypes, peak)
    sample_lines = bench_sampling(device, timer, batches[:3], vocabs)
    decode_lines = bench_decode(device, 8, 262_144, 64)
    body = "\n".join([
        "## kernels-gpu: Triton kernels on a GPU",
        "",
        f"Device: {name} (HBM peak used: {peak or 'unknown'} GB/s). Host: "
        f"{machine_summary(('torch', 'triton', 'xgrammar'))}. Revision {git_revision()}.",
        f"Command: `{command_line()}`",
        "",
        "### Applying a bitmask (~50% allowed; median over "
        f"{args.repeats} runs, L2 flushed between runs)",
        "",
        "Bytes counted: mask read + one write of the logits (B·4W + B·V·element size), the same "
        "for every implementation; octogram writes only the masked ids and never reads the logits.",
        "",
        *apply_lines,
        "",
        "### Fused sampler vs mask + softmax + multinomial (bf16 logits, T = 1)",
        "",
        *sample_lines,
        "",
        "### Decode loop",
        "",
        *decode_lines,
    ])
    if not args.no_write:
        print("wrote", write_section(SECTION, body))


if __name__ == "__main__":
    main()
