"""Scoring a generator on held-out rows: the metrics of the accuracy table, in one place.

A row is what `octogram dataset build` writes (query, offered candidates as tool JSON, gold
calls; `[]` means the right answer is `no_relevant_function`). Per row:

- **exact**: a positive whose calls equal the gold ones, function and every argument, compared
  as parsed Python values (so `5` equals `5.0` and key order does not matter);
- **function**: a positive whose called function names equal the gold ones;
- **no call**: a negative answered with `no_relevant_function`;
- **valid**: the output parses as a call to the offered functions (always true with the mask,
  except a call closed at the token limit that still fails to parse).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Scored", "score_rows", "summarize"]

NO_CALL = "no_relevant_function"


@dataclass
class Scored:
    row: dict
    text: str
    valid: bool
    exact: bool
    function: bool
    no_call: bool
    seconds: float          # this row's share of its batch's wall time

    @property
    def negative(self) -> bool:
        return not self.row["calls"]


def _score(row: dict, result: Any, seconds: float) -> Scored:
    valid = result.error is None
    # gold calls are in the grammar's identifiers, as parse_call reads them
    got = [(c.name, dict(c.arguments)) for c in result.grammar_calls] if valid else []
    gold = [(c["name"], dict(c["arguments"])) for c in row["calls"]]
    names = [name for name, _ in got]
    if gold:
        return Scored(row, result.text, valid, got == gold, names == [n for n, _ in gold], False,
                      seconds)
    return Scored(row, result.text, valid, False, False, names == [NO_CALL], seconds)


def score_rows(generator: Any, rows: Sequence[dict], *, batch_size: int = 4,
               max_new_tokens: int = 96,
               on_batch: Callable[[int], None] | None = None) -> list[Scored]:
    """Answer each row's query with exactly its offered candidates (greedy) and score it."""
    from octogram.grammars import load

    requests = [(row["query"], load(row["candidates"])) for row in rows]
    scored: list[Scored] = []
    for start in range(0, len(rows), batch_size):
        part = requests[start:start + batch_size]
        began = time.perf_counter()
        results = generator.call_batch(part, batch_size=batch_size, max_new_tokens=max_new_tokens)
        share = (time.perf_counter() - began) / len(part)
        scored += [_score(row, res, share) for row, res in zip(rows[start:start + batch_size], results)]
        if on_batch:
            on_batch(len(part))
    return scored


def summarize(scored: Sequence[Scored]) -> dict[str, float | int]:
    """Rates over `scored`: exact and function over positives, no_call over negatives, valid
    and mean seconds per call over all."""
    pos = [s for s in scored if not s.negative]
    neg = [s for s in scored if s.negative]

    def rate(items: Sequence[Scored], key: str) -> float:
        return sum(getattr(s, key) for s in items) / len(items) if items else float("nan")

    return {"positives": len(pos), "negatives": len(neg), "exact": rate(pos, "exact"),
            "function": rate(pos, "function"), "no_call": rate(neg, "no_call"),
            "valid": rate(scored, "valid"),
            "seconds": sum(s.seconds for s in scored) / len(scored) if scored else float("nan")}
