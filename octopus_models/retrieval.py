"""Choosing the candidate functions a query is offered when a document holds many.

The paper offers five candidates per query (the right one, three similar ones and
`no_relevant_function`). When an API document holds more than `k` functions, we rank them
against the query with Okapi BM25 (k1 = 1.2, b = 0.75, the non-negative idf
`ln(1 + (N - n + 0.5) / (n + 0.5))`) and keep the top `k` (default 4):

- a function's text is its Python stub (`FunctionSpec.to_python_stub()`: name, parameter names
  and types, docstring with the description and parameter descriptions), with the words of its
  name counted twice more, since names are the most telling part of an API;
- words are lower-cased runs of letters and digits, split at snake_case and camelCase
  boundaries (`getWeatherByCity` -> get, weather, by, city), with a plural `s` removed
  (`cities` -> city, `forecasts` -> forecast); the words of `STOP_WORDS` (English function
  words such as "the", "is", "what") are dropped: in a handful of short documents idf cannot
  tell them from content words;
- ties keep the document's order, so the result is deterministic.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["STOP_WORDS", "words", "bm25_scores", "select_candidates"]

K1, B = 1.2, 0.75
STOP_WORDS = frozenset("""
a an and are as at be by can could do does for from how i in into is it me my of on or our
please should that the their there this to was what when where which who will with would you
your
""".split())
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def _normalize(word: str) -> str:
    word = word.lower()
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """The retrieval words of `text` (see the module docstring)."""
    found = (_normalize(w) for w in _WORD.findall(text))
    return [w for w in found if w not in STOP_WORDS]


def _document(spec: Any) -> list[str]:
    return words(spec.to_python_stub()) + 2 * words(spec.name)


def bm25_scores(query: str, documents: Sequence[Sequence[str]]) -> list[float]:
    """Okapi BM25 score of `query` against each tokenized document."""
    n_docs = len(documents)
    if n_docs == 0:
        return []
    avg_len = sum(len(d) for d in documents) / n_docs or 1.0
    doc_freq = Counter(w for d in documents for w in set(d))
    counts = [Counter(d) for d in documents]
    scores = []
    for doc, tf in zip(documents, counts):
        norm = K1 * (1 - B + B * len(doc) / avg_len)
        score = 0.0
        for w in set(words(query)):
            if tf[w]:
                idf = math.log(1 + (n_docs - doc_freq[w] + 0.5) / (doc_freq[w] + 0.5))
                score += idf * tf[w] * (K1 + 1) / (tf[w] + norm)
        scores.append(score)
    return scores


def select_candidates(query: str, functions: Sequence[Any], k: int = 4) -> list[Any]:
    """The `k` functions most similar to `query`, best first; all of them if there are <= k."""
    if k < 1:
        raise ValueError(f"select_candidates: k must be at least 1, got {k}")
    if len(functions) <= k:
        return list(functions)
    scores = bm25_scores(query, [_document(f) for f in functions])
    order = sorted(range(len(functions)), key=lambda i: (-scores[i], i))
    return [functions[i] for i in order[:k]]
