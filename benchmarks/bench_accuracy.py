"""The Octopus accuracy table: base and fine-tuned model, each with and without the mask.

Rows come from the held-out test split of `octogram dataset build` (no API of it was trained
on): per source, up to `--per-source` positives and as many negatives (1:1, as in the paper),
drawn with a fixed seed. Each row is answered greedily with exactly its offered candidates
(the gold function, three similar ones and no_relevant_function; the negatives lack the gold).
Columns (see `octopus_models/evaluate.py`): exact-call accuracy and right-function accuracy on
positives, no-call accuracy on negatives, valid-call rate, seconds per call (batch
`--batch-size`, so a batch's wall time shared by its rows); retrieval recall@4 for API
documents of more than five functions comes from the dataset's summary.json.

    python benchmarks/bench_accuracy.py --data runs/data --per-source 24 --base-per-source 8
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

from tqdm.auto import tqdm

sys.path.append(str(Path(__file__).resolve().parents[1]))  # last: not over pip `kernels`
from benchmarks.results import command_line, git_revision, machine_summary, write_section  # noqa: E402

from octogram.octopus_models import OctopusGenerator, load_model  # noqa: E402
from octogram.octopus_models.evaluate import score_rows, summarize  # noqa: E402

PLOT = Path(__file__).with_name("accuracy.png")


def sample_rows(path: Path, per_source: int, seed: int) -> list[dict]:
    """Up to `per_source` positives and as many negatives from each source, seeded."""
    by_source: dict[str, dict[str, list[dict]]] = defaultdict(lambda: {"pos": [], "neg": []})
    for line in open(path, encoding="utf-8"):
        row = json.loads(line)
        by_source[row["source"]]["neg" if not row["calls"] else "pos"].append(row)
    rng = random.Random(seed)
    rows = []
    for source in sorted(by_source):
        parts = by_source[source]
        n = min(per_source, len(parts["pos"]), len(parts["neg"]))
        rows += rng.sample(parts["pos"], n) + rng.sample(parts["neg"], n)
    return rows


def _pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.1f}"


def table(results: dict[str, list], sources: list[str]) -> str:
    head = ("| model | mask | source | positives / negatives | exact call % | right function % "
            "| no-call % | valid % | s / call |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for config, scored in results.items():
        model, mask = config.split("|")
        for source in sources + ["all"]:
            part = [s for s in scored if source == "all" or s.row["source"] == source]
            if not part:
                continue
            m = summarize(part)
            name = f"**{source}**" if source == "all" else source
            lines.append(f"| {model} | {mask} | {name} | {m['positives']} / {m['negatives']} | "
                         f"{_pct(m['exact'])} | {_pct(m['function'])} | {_pct(m['no_call'])} | "
                         f"{_pct(m['valid'])} | {m['seconds']:.2f} |")
    return "\n".join(lines)


def plot(results: dict[str, list], sources: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    width = 0.8 / max(1, len(results))
    for ax, key, title in ((axes[0], "exact", "exact-call accuracy (positives)"),
                           (axes[1], "no_call", "correct no_relevant_function (negatives)")):
        for i, (config, scored) in enumerate(results.items()):
            values = []
            for source in sources + ["all"]:
                part = [s for s in scored if source == "all" or s.row["source"] == source]
                v = summarize(part)[key] if part else float("nan")
                values.append(0 if v != v else 100 * v)
            xs = [x + i * width for x in range(len(sources) + 1)]
            ax.bar(xs, values, width, label=config.replace("|", ", "))
        ax.set_xticks([x + width * (len(results) - 1) / 2 for x in range(len(sources) + 1)])
        ax.set_xticklabels(sources + ["all"], rotation=30, ha="right")
        ax.set_title(title)
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("%")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a folder written by `octogram dataset build`")
    ap.add_argument("--adapter", default=None, help="adapter folder (default: the shipped one)")
    ap.add_argument("--per-source", type=int, default=24,
                    help="positives (and as many negatives) per source for the fine-tuned model")
    ap.add_argument("--base-per-source", type=int, default=8,
                    help="the same for the base model (it is the slower, known-weak row)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--configs", default="fine-tuned|mask,fine-tuned|no mask,base|mask,base|no mask")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's choice); the section records it")
    ap.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    args = ap.parse_args()
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)

    data = Path(args.data)
    summary = json.loads((data / "summary.json").read_text())
    configs = [c.strip() for c in args.configs.split(",")]
    results: dict[str, list] = {}
    started = time.time()
    loaded: dict[str, tuple] = {}
    for config in configs:
        model_name, mask = config.split("|")
        if model_name not in loaded:
            loaded.clear()  # one model in memory at a time
            adapter = None if model_name == "base" else (args.adapter or "default")
            loaded[model_name] = load_model(adapter=adapter, quiet=True)
        model, tok = loaded[model_name]
        per = args.per_source if model_name == "fine-tuned" else args.base_per_source
        rows = sample_rows(data / "test.jsonl", per, args.seed)
        gen = OctopusGenerator(model, tok, mask=mask == "mask")
        bar = tqdm(total=len(rows), desc=config, unit="call", file=sys.stderr)
        results[config] = score_rows(gen, rows, batch_size=args.batch_size,
                                     max_new_tokens=args.max_new_tokens, on_batch=bar.update)
        bar.close()
        m = summarize(results[config])
        print(f"{config}: exact {_pct(m['exact'])} function {_pct(m['function'])} "
              f"no-call {_pct(m['no_call'])} valid {_pct(m['valid'])}", file=sys.stderr)
    sources = sorted({s.row["source"] for scored in results.values() for s in scored})
    body = table(results, sources)
    recall = summary.get("retrieval", {})
    recall_lines = "\n".join(f"| {s} | {v['examples']} | {_pct(v['recall@4'])} |"
                             for s, v in sorted(recall.items()))
    card_path = Path(args.adapter or Path(__file__).resolve().parents[1] / "octopus_models"
                     / "adapters" / "gemma3-270m-octopus") / "octogram-adapter.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    section = f"""## Accuracy: base vs fine-tuned, with and without the mask (`bench_accuracy.py`)

Command: `{command_line()}` at revision {git_revision()}, {time.time() - started:.0f} s.
Machine: {machine_summary(("torch", "transformers", "peft"))}, {_threads()} torch thread(s).
Adapter: {card.get('steps', '?')} steps on {card.get('data', {}).get('trained_rows', '?')} rows, prompt format {card.get('prompt_format', '?')}, wall time {card.get('wall_seconds_total', card.get('wall_seconds_this_run', '?'))} s.
Held-out test APIs only (split by API: no API of these rows was trained on); greedy decoding; each row offers its own candidates (gold + three similar + `no_relevant_function`; negatives lack the gold); positives and negatives 1:1 per source.

{body}

Retrieval (BM25 top-4 of an API document with more than five functions; the gold function among them):

| source | single-call test positives | recall@4 % |
|---|---|---|
{recall_lines}

![accuracy](accuracy.png)
"""
    print(section)
    if not args.no_write:
        plot(results, sources)
        write_section("accuracy", section)


if __name__ == "__main__":
    main()
