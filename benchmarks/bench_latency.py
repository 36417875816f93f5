"""On-device latency of one call: Octogram on transformers and on llama.cpp, against llama.cpp's
own grammar engine (GBNF) and unconstrained llama.cpp, on the same model, prompts and grammars.

    python benchmarks/bench_latency.py --data <dataset build> [--corpus-prompts 48]

Model: the embedded Gemma 3 270M with the shipped adapter. llama.cpp runs the GGUF as it ships
(Q4_K_M) with the adapter as a LoRA GGUF; transformers runs the dequantized weights with the
adapter merged, in bf16 (this CPU has AMX) and fp32, with and without the head skip.
Prompts: the README's queries against the bundled example APIs (every function offered, so the
queries of one API share their prompt up to the query), and `--corpus-prompts` rows of a dataset
build's test split (held-out APIs; natural and synthetic queries). Greedy, batch 1 and 8.

Measured per configuration: first-token latency (prefill and the first masked sample) and total
latency per call, cold (prefix cache cleared before each call) and with the prefix reused (the
second and later queries against one API), decode tokens/s (tokens after the first, per second)
and model steps/s (jump-forward feeds several tokens per step, so tokens/s can exceed steps/s;
GBNF and unconstrained decoding take one token per step), and whether the answers are identical
to Octogram on llama.cpp. Timings on a shared 2-core machine are noisy: compare ratios within
one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # appended: the repo's top-level folders must not shadow packages

import torch  # noqa: E402

from benchmarks.results import command_line, git_revision, machine_summary, write_section  # noqa: E402

EXAMPLES = ROOT / "octopus_models" / "examples"
README_QUERIES = [
    ("weather.json", "What is the weather in Paris?"),
    ("weather.json", "What's the air quality in Tokyo?"),
    ("weather.json", "Any storm alerts for Florida?"),
    ("smart_home.py", "Lock the front door"),
    ("smart_home.py", "Set the thermostat to 21 degrees"),
    ("phone_tools.json", "Set an alarm for 6:30 called gym"),
    ("phone_tools.json", "Turn the volume down to 20"),
]


def _workload(data: Path | None, corpus_prompts: int, seed: int) -> list[dict[str, Any]]:
    """[{api, query, functions}] — README queries first, then held-out corpus rows."""
    import random

    from octogram.grammars import load

    rows = []
    for name, query in README_QUERIES:
        rows.append({"api": name, "query": query, "functions": load(EXAMPLES / name),
                     "readme": True})
    if data is not None and corpus_prompts > 0:
        lines = (data / "test.jsonl").read_text().splitlines()
        random.Random(seed).shuffle(lines)
        for line in lines[:corpus_prompts]:
            row = json.loads(line)
            rows.append({"api": row["api"], "query": row["query"], "readme": False,
                         "functions": load(row["candidates"])})
    return rows


class _Clock:
    """Times one decode call: the first token (first on_step) and the end."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None
        self.steps = 0

    def __call__(self, produced: int) -> None:
        self.steps += 1
        if self.first is None:
            self.first = time.perf_counter()


def _run(config: dict[str, Any], rows: list[dict[str, Any]], batch: int, cold: bool
         ) -> dict[str, Any]:
    from octogram.octopus_models import decode
    from octogram.octopus_models.prompt import render_prompt

    runner, tok, gen = config["runner"], config["tokenizer"], config["generator"]
    firsts, totals, tokens, decode_s, steps, reused = [], [], 0, 0.0, 0, []
    texts = []
    if hasattr(runner, "clear_prefix_cache"):
        runner.clear_prefix_cache()
    for start in range(0, len(rows), batch):
        part = rows[start:start + batch]
        prompts = [render_prompt(r["query"], r["functions"]) for r in part]
        texts_part: list[list[int]]
        if cold and hasattr(runner, "clear_prefix_cache"):
            runner.clear_prefix_cache()
        clock = _Clock()
        if config["mode"] == "gbnf":
            from benchmarks.llamacpp_gbnf import gbnf_decode
            from octogram.octopus_models.contrib.gbnf import lark_to_gbnf

            gbnf = []
            for r in part:
                text = gen.grammar_text(r["functions"])
                if text not in config["gbnf"]:
                    config["gbnf"][text] = lark_to_gbnf(text)
                gbnf.append(config["gbnf"][text])
            ids = [tok(p).input_ids for p in prompts]
            texts_part = gbnf_decode(runner, tok, ids, gbnf, config["max_new_tokens"],
                                     on_step=clock)
        else:
            grammars = ([gen.fsm(r["functions"]) for r in part] if config["mode"] == "masked"
                        else None)
            out = decode(runner, tok, prompts, grammars, max_new_tokens=config["max_new_tokens"],
                         on_step=clock)
            texts_part = [o.token_ids for o in out]
        end = time.perf_counter()
        first = (clock.first or end) - clock.start
        firsts += [first] * len(part)
        totals += [end - clock.start] * len(part)
        n = sum(len(t) for t in texts_part)
        tokens += max(n - len(part), 0)
        decode_s += end - (clock.first or end)
        steps += max(clock.steps - 1, 0)
        reused += [getattr(runner, "reused_tokens", 0)] * len(part)
        texts += texts_part
    return {"first": firsts, "total": totals, "tokens_per_s": tokens / decode_s if decode_s else 0,
            "steps_per_s": steps / decode_s if decode_s else 0, "ids": texts, "reused": reused}


def _configs(args: argparse.Namespace) -> list[dict[str, Any]]:
    from octogram.octopus_models import OctopusGenerator, TransformersRunner, load_runner
    from octogram.octopus_models.base import load_model

    out = []
    llama, tok = load_runner("llama.cpp", threads=args.threads, quiet=True)
    gen = OctopusGenerator(llama, tok, num_candidates=8)
    base = {"runner": llama, "tokenizer": tok, "generator": gen,
            "max_new_tokens": args.max_new_tokens}
    out.append(dict(base, name="Octogram on llama.cpp", mode="masked"))
    if "gbnf" not in args.skip:  # gbnf: Lark text -> its GBNF translation, filled as used
        out.append(dict(base, name="llama.cpp GBNF grammar", mode="gbnf", gbnf={}))
    out.append(dict(base, name="llama.cpp unconstrained", mode="free"))
    if "transformers" not in args.skip:
        for dtype, skip in ((torch.bfloat16, True), (torch.bfloat16, False),
                            (torch.float32, True), (torch.float32, False)):
            model, htok = load_model(dtype=dtype, quiet=True)
            runner = TransformersRunner(model, htok, head_skip_limit=None if skip else 0)
            name = (f"Octogram on transformers {str(dtype).split('.')[-1]}"
                    f"{', head skip' if skip else ', full head'}")
            out.append({"name": name, "mode": "masked", "runner": runner, "tokenizer": htok,
                        "generator": OctopusGenerator(runner, htok, num_candidates=8),
                        "max_new_tokens": args.max_new_tokens})
    return out


def _median_ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):.0f}" if values else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="a dataset build (octogram dataset build); its test.jsonl gives "
                        "the corpus prompts")
    parser.add_argument("--corpus-prompts", type=int, default=48)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], choices=["gbnf", "transformers"])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = _workload(args.data, args.corpus_prompts, args.seed)
    readme = [r for r in rows if r["readme"]]
    configs = _configs(args)
    # Warm-up, not measured: every grammar compiled and the states greedy decoding visits
    # crossed with the vocabulary (grammars compile lazily; the compile is a one-time cost per
    # API, reported apart), and every configuration's code paths touched once.
    began = time.perf_counter()
    _run(configs[0], rows, max(args.batch_sizes), cold=True)
    compile_s = time.perf_counter() - began
    for c in configs:
        _run(c, readme[:2], 1, cold=True)

    results: dict[tuple[str, int, str], dict[str, Any]] = {}
    for c in configs:
        for b in args.batch_sizes:
            results[c["name"], b, "cold"] = _run(c, rows, b, cold=True)
            print(f"{c['name']} batch {b} cold: done", file=sys.stderr, flush=True)
        results[c["name"], 1, "warm"] = _run(c, readme, 1, cold=False)

    ref = "Octogram on llama.cpp"
    lines = ["| engine | batch | first token, median ms | call, median ms | README call cold / "
             "prefix reused, median ms | decode tok/s | model steps/s | answers = Octogram on "
             "llama.cpp |", "|---|---|---|---|---|---|---|---|"]
    for c in configs:
        for b in args.batch_sizes:
            r = results[c["name"], b, "cold"]
            same = sum(a == x for a, x in zip(r["ids"], results[ref, b, "cold"]["ids"]))
            readme_part = "-"
            if b == 1:
                warm = results[c["name"], 1, "warm"]
                n = len(readme)
                cold_calls = r["total"][:n]
                reused_calls = [t for t, k in zip(warm["total"], warm["reused"]) if k > 0]
                readme_part = f"{_median_ms(cold_calls)} / {_median_ms(reused_calls)}"
            lines.append(f"| {c['name']} | {b} | {_median_ms(r['first'])} | "
                         f"{_median_ms(r['total'])} | {readme_part} | {r['tokens_per_s']:.1f} | "
                         f"{r['steps_per_s']:.1f} | {same}/{len(r['ids'])} |")

    def ratio(a: str, b: str, key: str, batch: int) -> str:
        x, y = results[a, batch, "cold"][key], results[b, batch, "cold"][key]
        return f"{x / y:.2f}x" if y else "-"

    notes = []
    for b in args.batch_sizes:
        notes.append(f"- batch {b}: Octogram on llama.cpp / unconstrained llama.cpp, model steps/s "
                     f"{ratio(ref, 'llama.cpp unconstrained', 'steps_per_s', b)}, tokens/s "
                     f"{ratio(ref, 'llama.cpp unconstrained', 'tokens_per_s', b)}"
                     + (f"; / llama.cpp GBNF, tokens/s "
                        f"{ratio(ref, 'llama.cpp GBNF grammar', 'tokens_per_s', b)}"
                        if "gbnf" not in args.skip else ""))
    names = [c["name"] for c in configs]
    for dtype in ("bfloat16", "float32"):
        a, b_ = f"Octogram on transformers {dtype}, head skip", \
            f"Octogram on transformers {dtype}, full head"
        if a in names:
            notes.append(f"- transformers {dtype}: head skip / full head, tokens/s "
                         f"{ratio(a, b_, 'tokens_per_s', 1)} at batch 1, "
                         f"{ratio(a, b_, 'tokens_per_s', args.batch_sizes[-1])} at batch "
                         f"{args.batch_sizes[-1]}")
    if "Octogram on transformers bfloat16, head skip" in names:
        notes.append("- transformers bf16 / fp32 (head skip), tokens/s "
                     f"{ratio('Octogram on transformers bfloat16, head skip', 'Octogram on transformers float32, head skip', 'tokens_per_s', 1)}"
                     " at batch 1")
    body = "\n".join([
        "## On-device latency: Octogram on llama.cpp and transformers vs llama.cpp's GBNF",
        "",
        f"`{command_line()}` at revision {git_revision()}; {machine_summary(('torch', 'transformers', 'llama-cpp-python'))}; "
        f"llama.cpp and torch threads: {args.threads or torch.get_num_threads()}.",
        f"{len(rows)} prompts: {len(readme)} README queries against the bundled APIs (every "
        f"function offered) and {len(rows) - len(readme)} held-out corpus rows; greedy, at most "
        f"{args.max_new_tokens} new tokens. Model: embedded Gemma 3 270M + the shipped adapter "
        "(llama.cpp: Q4_K_M GGUF + LoRA GGUF; transformers: dequantized weights, adapter merged).",
        "",
        *lines,
        "",
        *notes,
        f"- grammar compile (lazy, once per API) and the warm-up pass over every prompt: "
        f"{compile_s:.1f} s for {len(rows)} prompts, not in the table",
        "",
        "First token = prefill + first masked sample. README cold: prefix cache cleared before "
        "each call; reused: the second and later queries against one API (the instruction and "
        "candidate block come from the cache). Batch 8 latencies are per batch. Model steps/s "
        "counts forward passes; Octogram's jump-forward feeds several grammar-forced tokens in "
        "one step, so its tokens/s can exceed steps/s.",
    ])
    print(body)
    if not args.no_write:
        write_section("bench_latency", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
