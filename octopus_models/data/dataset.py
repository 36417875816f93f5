"""`octogram dataset build`: every source imported, split by API, rendered, written as JSONL.

Writes `<out>/{train,val,test}.jsonl` (one `Row` per line: prompt, target, query, candidates as
tool JSON, gold calls, source, api, origin, kind, curriculum stage, prompt format) and
`<out>/summary.json` (kept and dropped per source, by cause; rows per split, source and kind).
Test APIs are held out per source (`split_by_api`); `val` is a further by-API slice of the
training APIs, for validation loss and checkpoint choice.
"""

from __future__ import annotations

import json
import os
import random
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .build import Row, build_rows, split_by_api
from .record import Example, Imported

__all__ = ["NATURAL_SOURCES", "default_data_dir", "import_natural", "import_synthetic",
           "import_user_apis", "build_dataset", "write_rows", "summary_table", "retrieval_recall"]


def _sources() -> dict[str, tuple[str, Callable[[Path], Imported]]]:
    from .sources import api_bank, callnavi, glaive, hammerbench, seal_tools, toolalpaca

    return {"seal-tools": ("seal-tools", seal_tools.read),
            "api-bank": ("api-bank", api_bank.read),
            "callnavi": ("callnavi", callnavi.read),
            "hammerbench": ("hammerbench", hammerbench.read),
            "glaive": ("llamafactory-glaive-demo", glaive.read),
            "toolalpaca": ("toolalpaca", toolalpaca.read)}


#: source name -> folder under the data directory (upstream repositories: see the README).
NATURAL_SOURCES = ("seal-tools", "api-bank", "callnavi", "hammerbench", "glaive", "toolalpaca")


def default_data_dir() -> Path:
    """`$OCTOGRAM_DATA_DIR`, else `../shared/data/function-calling` beside the project."""
    env = os.environ.get("OCTOGRAM_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "function-calling"


def import_natural(data_dir: Path, names: Sequence[str] = NATURAL_SOURCES,
                   log: Callable[[str], None] | None = None) -> dict[str, Imported]:
    """Each named source read from its folder under `data_dir` (a missing folder is an error)."""
    table = _sources()
    out: dict[str, Imported] = {}
    for name in names:
        if name not in table:
            raise ValueError(f"unknown source {name!r} (known: {', '.join(table)})")
        folder = Path(data_dir) / table[name][0]
        if not folder.is_dir():
            raise FileNotFoundError(f"source {name}: folder {folder} does not exist "
                                    f"(set --data-dir or OCTOGRAM_DATA_DIR)")
        if log:
            log(f"importing {name} from {folder}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[name] = table[name][1](folder)
    return out


def import_synthetic(corpus_dir: Path, documents: int, seed: int = 0,
                     per_function: int = 1, max_per_document: int = 8) -> Imported:
    """Synthesized examples from `documents` random documents of the OpenAPI corpus; at most
    `max_per_document` examples per document, so no single large API dominates."""
    from .synthesis import openapi_documents, synthesize

    rng = random.Random(seed)
    total = Imported()
    docs = openapi_documents(corpus_dir, limit=documents, rng=rng, dropped=total.dropped)
    from tqdm.auto import tqdm

    for api, functions in tqdm(docs, total=documents, desc="octogram: synthesizing",
                               unit="doc", file=sys.stderr):
        part = synthesize(functions, api, rng, per_function=per_function)
        rng.shuffle(part.examples)
        total.dropped.update(part.dropped)
        if len(part.examples) > max_per_document:
            total.dropped["over the per-document cap"] += len(part.examples) - max_per_document
        total.examples += part.examples[:max_per_document]
    return total


def import_user_apis(paths: Sequence[str | Path], seed: int = 0,
                     per_function: int = 4) -> Imported:
    """Synthesized examples for a user's own API documents (OpenAPI, tool JSON, .py)."""
    from octogram.grammars import load

    from .synthesis import synthesize

    rng = random.Random(seed)
    total = Imported()
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"API file {path} does not exist")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            functions = load(path)
        if not functions:
            raise ValueError(f"{path}: no functions found")
        total.extend(synthesize(functions, f"user/{Path(path).stem}", rng,
                                per_function=per_function, source="user-api"))
    return total


def _cap(examples: list[Example], limit: int | None, rng: random.Random) -> list[Example]:
    if limit is None or len(examples) <= limit:
        return examples
    return rng.sample(examples, limit)


def build_dataset(imported: dict[str, Imported], out: Path, *, seed: int = 0,
                  test_fraction: float = 0.25, val_fraction: float = 0.1,
                  max_calls: int = 1, max_train_positives: dict[str, int] | None = None,
                  end_token: str = "<eos>", negative_ratio: float = 1.0) -> dict[str, Any]:
    """Split, render and write; returns the summary (also written to `summary.json`).

    `max_calls` drops examples needing more calls than that (1: single calls only);
    `max_train_positives` caps a source's training positives (test splits are never capped);
    `negative_ratio` is the share of training positives that get a negative twin (validation and
    test keep the paper's 1:1)."""
    rng = random.Random(seed)
    summary: dict[str, Any] = {"seed": seed, "sources": {}, "splits": {}}
    splits: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for name, part in imported.items():
        examples = [e for e in part.examples if len(e.calls) <= max_calls]
        dropped = Counter(part.dropped)
        if len(examples) < len(part.examples):
            dropped[f"more than {max_calls} call(s)"] += len(part.examples) - len(examples)
        by_split = split_by_api(examples, test_fraction, seed)
        inner = split_by_api(by_split["train"], val_fraction, seed + 1) \
            if len({e.api for e in by_split["train"]}) > 2 else {"train": by_split["train"], "test": []}
        train = inner["train"]
        cap = (max_train_positives or {}).get(name)
        positives = [e for e in train if not e.is_negative]
        negatives = [e for e in train if e.is_negative]
        kept = _cap(positives, cap, rng)
        if cap is not None and len(kept) < len(positives):
            dropped["over the training cap"] += len(positives) - len(kept)
            negatives = _cap(negatives, cap, rng)
        splits["train"] += kept + negatives
        splits["val"] += inner["test"]
        splits["test"] += by_split["test"]
        summary["sources"][name] = {"kept": len(part.examples), "dropped": dict(dropped)}
    summary["retrieval"] = retrieval_recall(splits["test"])
    out.mkdir(parents=True, exist_ok=True)
    for split, examples in splits.items():
        stats: Counter = Counter()
        rows = build_rows(examples, seed=seed, end_token=end_token, stats=stats,
                          curriculum=split == "train",
                          negative_ratio=negative_ratio if split == "train" else 1.0)
        write_rows(rows, out / f"{split}.jsonl")
        summary["splits"][split] = {
            "rows": len(rows),
            "by_source_kind": dict(Counter(f"{r.source}/{r.kind}" for r in rows)),
            "apis": len({r.api for r in rows}), "skipped": dict(stats)}
    train_apis = {json.loads(l)["api"] for l in open(out / "train.jsonl")}
    test_apis = {json.loads(l)["api"] for l in open(out / "test.jsonl")}
    assert not train_apis & test_apis, "an API is in both train and test"
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def retrieval_recall(examples: Sequence[Example], k: int = 4) -> dict[str, dict[str, float]]:
    """Per source, over single-call positives whose API offers more than five functions: how
    often the gold function is among the `k` that `select_candidates` (BM25) offers."""
    from ..retrieval import select_candidates

    hits: Counter = Counter()
    totals: Counter = Counter()
    for e in examples:
        if len(e.calls) != 1 or len(e.functions) <= 5:
            continue
        totals[e.source] += 1
        offered = {f.name for f in select_candidates(e.query, e.functions, k)}
        hits[e.source] += e.calls[0].name in offered
    return {s: {"examples": totals[s], f"recall@{k}": hits[s] / totals[s]} for s in totals}


def write_rows(rows: Sequence[Row], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
    tmp.replace(path)


def summary_table(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table (sources kept/dropped; rows per split)."""
    lines = [f"{'source':<14} {'kept':>6}  dropped (by cause)"]
    for name, info in summary["sources"].items():
        causes = ", ".join(f"{k} {v}" for k, v in sorted(info["dropped"].items(), key=lambda kv: -kv[1]))
        lines.append(f"{name:<14} {info['kept']:>6}  {causes or '-'}")
    lines.append("")
    lines.append(f"{'split':<6} {'rows':>6} {'apis':>5}  rows by source/kind")
    for split, info in summary["splits"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(info["by_source_kind"].items()))
        lines.append(f"{split:<6} {info['rows']:>6} {info['apis']:>5}  {kinds}")
    return "\n".join(lines)
