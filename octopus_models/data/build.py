"""From imported examples to the training set: splits by API, candidates, negatives, curriculum.

- **Splits** are by `Example.api`: within each source the APIs are ordered by a seeded hash and
  the first `ceil(test_fraction * n)` go to test (at least one per source), so no API is in both.
- **Candidates** (the paper offers five: the gold function, three similar ones and
  `no_relevant_function`): the gold functions, then distractors. *Similar* distractors are the
  functions of the same API document (or source tool set) ranked by BM25 against the query,
  which is what `OctopusGenerator` does at inference for a document with more than four
  functions, topped up from the split's pool of all functions (also BM25). *Random* distractors
  come from the pool uniformly. Candidates are shuffled. A function whose schema has no grammar
  (`to_lark` refuses it) is never a distractor: every row's candidates must compile together.
- **Negatives 1:1**: every single-call positive gets a twin with the same query whose candidates
  lack the gold function (and any function of the same name), answered
  `no_relevant_function(query=...)`. Source negatives are kept as they are.
- **Curriculum**: the first `random_fraction` of the (shuffled) training rows get random
  distractors, the rest similar ones; rows are written in that order, stage 0 then stage 1.
"""

from __future__ import annotations

import hashlib
import math
import random
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from octogram.grammars import FunctionSpec, GrammarError, to_lark

from ..prompt import PROMPT_FORMAT_VERSION, render_prompt, render_target
from ..retrieval import K1, B, _document, words
from .record import Example, answer_text

__all__ = ["FunctionIndex", "Row", "split_by_api", "offer", "negative_of", "build_rows"]


class FunctionIndex:
    """BM25 (the retrieval module's scoring) over many functions, with an inverted index so
    that ranking a query against thousands of functions stays fast."""

    def __init__(self, functions: Sequence[FunctionSpec]) -> None:
        self.functions = list(functions)
        docs = [_document(f) for f in self.functions]
        self._lengths = [len(d) for d in docs]
        self._avg = sum(self._lengths) / max(1, len(docs)) or 1.0
        self._postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for i, doc in enumerate(docs):
            for w, tf in Counter(doc).items():
                self._postings[w].append((i, tf))

    def rank(self, query: str, limit: int) -> list[FunctionSpec]:
        n = len(self.functions)
        scores: dict[int, float] = defaultdict(float)
        for w in set(words(query)):
            posting = self._postings.get(w, ())
            if not posting:
                continue
            idf = math.log(1 + (n - len(posting) + 0.5) / (len(posting) + 0.5))
            for i, tf in posting:
                norm = K1 * (1 - B + B * self._lengths[i] / self._avg)
                scores[i] += idf * tf * (K1 + 1) / (tf + norm)
        order = sorted(scores, key=lambda i: (-scores[i], i))[:limit]
        return [self.functions[i] for i in order]


def _hash(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def split_by_api(examples: Iterable[Example], test_fraction: float = 0.25,
                 seed: int = 0) -> dict[str, list[Example]]:
    """`{"train": [...], "test": [...]}` with every `api` in exactly one split (see above)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"split_by_api: test_fraction must be in (0, 1), got {test_fraction}")
    examples = list(examples)
    apis: dict[str, set[str]] = defaultdict(set)
    for e in examples:
        apis[e.source].add(e.api)
    test_apis: set[str] = set()
    for source, keys in apis.items():
        ordered = sorted(keys, key=lambda k: _hash(seed, k))
        test_apis.update(ordered[:max(1, math.ceil(test_fraction * len(ordered)))] if len(ordered) > 1 else [])
    return {"train": [e for e in examples if e.api not in test_apis],
            "test": [e for e in examples if e.api in test_apis]}


def has_grammar(function: FunctionSpec, memo: dict[int, bool] | None = None) -> bool:
    """Whether `to_lark` lowers `function` (warnings aside): a distractor without a grammar
    would make the whole row's candidates fail to compile at inference."""
    key = id(function)
    if memo is not None and key in memo:
        return memo[key]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            to_lark([function])
        ok = True
    except (GrammarError, RecursionError):
        ok = False
    if memo is not None:
        memo[key] = ok
    return ok


def _offerable(examples: Sequence[Example], stats: Counter) -> list[Example]:
    """`examples` without the functions that have no grammar, unless called (a gold function
    with no grammar fails `validate` already, so none is)."""
    memo: dict[int, bool] = {}
    out = []
    for e in examples:
        gold = {c.name for c in e.calls}
        kept = tuple(f for f in e.functions if f.name in gold or has_grammar(f, memo))
        if len(kept) < len(e.functions):
            stats["functions without a grammar (never offered)"] += len(e.functions) - len(kept)
            e = replace(e, functions=kept)
        out.append(e)
    return out


def _unique(functions: Iterable[FunctionSpec], taken: set[str]) -> list[FunctionSpec]:
    out = []
    for f in functions:
        if f.name not in taken:
            taken.add(f.name)
            out.append(f)
    return out


def offer(example: Example, pool: FunctionIndex, rng: random.Random, *, similar: bool,
          k: int = 4, exclude: Sequence[str] = ()) -> list[FunctionSpec]:
    """The candidates for `example` (gold functions first, then distractors up to `k` in all),
    shuffled. `exclude` names functions that must not be offered (a negative's gold)."""
    taken = set(exclude)
    gold_names = [c.name for c in example.calls]
    gold = _unique((f for f in example.functions if f.name in gold_names), taken)
    need = max(0, k - len(gold))
    distractors: list[FunctionSpec] = []
    if need:
        if similar:
            own = [f for f in example.functions if f.name not in taken]
            ranked = FunctionIndex(own).rank(example.query, need) if len(own) > need else own
            distractors = _unique(ranked, taken)[:need]
            if len(distractors) < need:
                distractors += _unique(pool.rank(example.query, need + 20), taken)[:need - len(distractors)]
        if len(distractors) < need:
            picks = rng.sample(pool.functions, min(len(pool.functions), 4 * need + 8))
            distractors += _unique(picks, taken)[:need - len(distractors)]
    candidates = gold + distractors
    rng.shuffle(candidates)
    return candidates


def negative_of(example: Example) -> Example:
    """The same query with no call: its functions lose the gold ones (by name)."""
    gold = {c.name for c in example.calls}
    return Example(example.query, tuple(f for f in example.functions if f.name not in gold), (),
                   example.source, example.api, example.origin, {**example.meta, "kind": "negative"})


@dataclass
class Row:
    """One rendered example: what the model reads and must answer, and where it came from."""

    prompt: str
    target: str
    query: str
    candidates: list[dict]          # the offered functions as tool JSON (FunctionSpec.to_tool)
    calls: list[dict]               # gold: [{"name", "arguments"}], [] = no_relevant_function
    source: str
    api: str
    origin: str
    kind: str                       # "positive" | "negative"
    stage: int                      # curriculum stage: 0 random distractors, 1 similar
    prompt_format: int = PROMPT_FORMAT_VERSION
    meta: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _row(example: Example, candidates: list[FunctionSpec], kind: str, stage: int,
         end_token: str) -> Row:
    return Row(prompt=render_prompt(example.query, candidates),
               target=render_target(answer_text(example.calls, example.query), end_token),
               query=example.query, candidates=[f.to_tool() for f in candidates],
               calls=[{"name": c.name, "arguments": dict(c.arguments)} for c in example.calls],
               source=example.source, api=example.api, origin=example.origin, kind=kind,
               stage=stage, meta=dict(example.meta))


def build_rows(examples: Sequence[Example], *, seed: int = 0, negatives: bool = True,
               random_fraction: float = 0.3, k: int = 4, end_token: str = "<eos>",
               curriculum: bool = True, stats: Counter | None = None,
               negative_ratio: float = 1.0) -> list[Row]:
    """Rows for one split: positives with candidates, a negative twin for each single-call
    positive (for a `negative_ratio` share of them, drawn with the seed; 1.0 = the paper's 1:1),
    in curriculum order (see the module docstring). `stats` counts what was skipped."""
    if not 0.0 <= negative_ratio <= 1.0:
        raise ValueError(f"negative_ratio must be in [0, 1], got {negative_ratio}")
    rng = random.Random(seed)
    stats = Counter() if stats is None else stats
    examples = _offerable(examples, stats)
    pool = FunctionIndex(_unique((f for e in examples for f in e.functions), set()))
    order = list(examples)
    rng.shuffle(order)
    cut = round(random_fraction * len(order)) if curriculum else 0
    rows: list[Row] = []
    for i, example in enumerate(order):
        stage = 0 if i < cut else 1
        similar = stage == 1 or not curriculum
        if example.is_negative:
            rows.append(_row(example, offer(example, pool, rng, similar=similar, k=k), "negative",
                             stage, end_token))
            continue
        rows.append(_row(example, offer(example, pool, rng, similar=similar, k=k), "positive",
                         stage, end_token))
        if negatives and len(example.calls) == 1 and rng.random() < negative_ratio:
            twin = negative_of(example)
            gold = [c.name for c in example.calls]
            candidates = offer(twin, pool, rng, similar=similar, k=k, exclude=gold)
            if not candidates:
                stats["negative without distractors"] += 1
                continue
            rows.append(_row(twin, candidates, "negative", stage, end_token))
    rows.sort(key=lambda r: r.stage)  # stable: shuffled order within each stage
    return rows
