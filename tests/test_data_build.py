"""The training-set builder on hand-made functions: API splits, candidates, negatives,
curriculum order, and that every row's target parses under (and its prompt is re-rendered
from) the candidates it stores."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octogram.grammars import FunctionCall, FunctionSpec, Parameter, load, parse_call
from octogram.octopus_models.data.build import build_rows, negative_of, split_by_api
from octogram.octopus_models.data.record import Example, answer_text, validate
from octogram.octopus_models.prompt import PROMPT_FORMAT_VERSION, render_prompt, render_target

K = 4
END = "<eos>"

# ------------------------------------------------------------------------------ fixtures

# Per API: a topic word that every one of its functions' descriptions (and every query about
# it) uses, so that BM25 scores all of the API's own functions above zero for its queries.
TOPICS = {
    ("weather-tools", "weatherapi"): "meteorology",
    ("weather-tools", "climateapi"): "paleoclimate",
    ("weather-tools", "marineapi"): "oceanography",
    ("shop-tools", "storeapi"): "merchandise",
    ("shop-tools", "payapi"): "remittance",
    ("solo-tools", "onlyapi"): "philately",
}
VERBS = ["search", "get_item", "list_items", "create_item", "delete_item", "update_item"]


def _spec(api: str, verb: str, topic: str, variant: int) -> FunctionSpec:
    """A function with a mix of parameter kinds (the prompt shows required ones' descriptions,
    optional ones with defaults, enums, integers, arrays, a nested object)."""
    params = [Parameter("item_id", {"type": "integer", "minimum": 0}, required=True,
                        description=f"The {topic} record id. Must be positive.")]
    if variant % 2 == 0:
        params.append(Parameter("mode", {"type": "string", "enum": ["fast", "full"]},
                                required=False, default="fast", description="How hard to look."))
    if variant % 3 == 0:
        params.append(Parameter("tags", {"type": "array", "items": {"type": "string"}},
                                required=False, description="Labels to filter by."))
    if variant % 3 == 1:
        params.append(Parameter("limit", {"type": "integer", "maximum": 50}, required=False,
                                default=10))
    if variant % 4 == 3:
        params.append(Parameter("where", {"type": "object", "properties": {
            "lat": {"type": "number"}, "lon": {"type": "number"}}, "required": ["lat", "lon"]},
            required=True, description="Coordinates as lat and lon."))
    name = verb if verb == "search" else f"{api}_{verb}"  # `search` exists in every API
    return FunctionSpec(name, f"The {topic} service: {verb.replace('_', ' ')} records. "
                              f"Second sentence, not shown in prompts.", tuple(params))


def _functions() -> dict[tuple[str, str], list[FunctionSpec]]:
    return {key: [_spec(key[1], verb, topic, v) for v, verb in enumerate(VERBS)]
            for key, topic in TOPICS.items()}


def _arguments(spec: FunctionSpec, n: int) -> dict:
    args: dict = {"item_id": n}
    if any(p.name == "where" for p in spec.parameters):
        args["where"] = {"lat": 1.5, "lon": -2.25}
    if any(p.name == "mode" for p in spec.parameters) and n % 2:
        args["mode"] = "full"
    return args


def _examples() -> list[Example]:
    examples = []
    n = 0
    for (source, api), functions in _functions().items():
        topic = TOPICS[(source, api)]
        for spec in functions:
            n += 1
            examples.append(validate(Example(
                f"Please {spec.name.replace('_', ' ')} {topic} record {n}", tuple(functions),
                (FunctionCall(spec.name, _arguments(spec, n)),), source, api, f"hand:{n}")))
        # a two-call example and a source negative per API
        a, b = functions[1], functions[2]
        examples.append(validate(Example(
            f"Do both {a.name} and {b.name} on {topic} record 7", tuple(functions),
            (FunctionCall(a.name, _arguments(a, 7)), FunctionCall(b.name, _arguments(b, 8))),
            source, api, "hand:multi")))
        examples.append(validate(Example(
            f"Tell me a joke about {topic} and cats", tuple(functions), (), source, api,
            "hand:negative", {"kind": "negative"})))
    return examples


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return _examples()


@pytest.fixture(scope="module")
def rows(examples):
    return build_rows(examples, seed=3, k=K, end_token=END, random_fraction=0.4)


# ------------------------------------------------------------------------------ split_by_api

def _dummy(source: str, api: str, i: int) -> Example:
    return Example(f"q{i}", (FunctionSpec("f"),), (), source, api, f"o{i}")


labels = st.lists(st.tuples(st.sampled_from(["s1", "s2", "s3"]),
                            st.sampled_from([f"api{i}" for i in range(8)])),
                  min_size=1, max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labels=labels, fraction=st.floats(0.01, 0.99), seed=st.integers(0, 5))
def test_split_by_api_keeps_apis_apart_and_tests_every_multi_api_source(labels, fraction, seed):
    examples = [_dummy(s, a, i) for i, (s, a) in enumerate(labels)]
    split = split_by_api(examples, test_fraction=fraction, seed=seed)
    train, test = split["train"], split["test"]
    # a partition of the input, each split in input order
    assert sorted(e.origin for e in train + test) == sorted(e.origin for e in examples)
    assert [e for e in examples if e in train] == train and [e for e in examples if e in test] == test
    train_apis, test_apis = {e.api for e in train}, {e.api for e in test}
    assert not train_apis & test_apis
    per_source: dict[str, set[str]] = {}
    for s, a in labels:
        per_source.setdefault(s, set()).add(a)
    for source, apis in per_source.items():
        if len(apis) > 1:
            assert len(apis & test_apis) >= max(1, math.ceil(fraction * len(apis))), source
    # the split depends on the api labels and the seed, not on the example order
    shuffled = examples[:]
    random.Random(seed).shuffle(shuffled)
    again = split_by_api(shuffled, test_fraction=fraction, seed=seed)
    assert {e.api for e in again["test"]} == test_apis


def test_split_by_api_refuses_bad_fraction():
    for bad in (0, 1, -0.5, 1.5):
        with pytest.raises(ValueError, match="test_fraction"):
            split_by_api([], test_fraction=bad)


def test_split_by_api_on_the_hand_made_examples(examples):
    split = split_by_api(examples, seed=0)
    test_apis = {e.api for e in split["test"]}
    assert {e.api for e in split["train"]}.isdisjoint(test_apis)
    assert {"weather-tools", "shop-tools"} <= {e.source for e in split["test"]}
    assert "onlyapi" not in test_apis  # a one-api source stays in train


# ------------------------------------------------------------------------------ build_rows

def _names(row) -> list[str]:
    return [c["function"]["name"] for c in row.candidates]


def test_rows_have_the_row_format(rows, examples):
    positives = [e for e in examples if e.calls]
    singles = [e for e in positives if len(e.calls) == 1]
    sources = [e for e in examples if not e.calls]
    kinds = Counter(r.kind for r in rows)
    assert kinds == {"positive": len(positives), "negative": len(singles) + len(sources)}
    for r in rows:
        assert r.prompt_format == PROMPT_FORMAT_VERSION
        assert set(r.to_json()) == {"prompt", "target", "query", "candidates", "calls", "source",
                                    "api", "origin", "kind", "stage", "prompt_format", "meta"}
        assert r.target.endswith(END)


def test_every_single_call_positive_has_a_negative_twin(rows):
    by_query: dict[str, list] = {}
    for r in rows:
        by_query.setdefault(r.query, []).append(r)
    twins = 0
    for r in rows:
        if r.kind != "positive" or len(r.calls) != 1:
            continue
        gold = r.calls[0]["name"]
        negatives = [n for n in by_query[r.query] if n.kind == "negative"]
        assert len(negatives) == 1, r.query
        twin = negatives[0]
        assert gold not in _names(twin)       # also the same-named `search` of other APIs
        assert len(_names(twin)) == K
        assert twin.calls == [] and twin.stage == r.stage and twin.api == r.api
        assert twin.meta.get("kind") == "negative"
        assert twin.target == render_target(f'no_relevant_function(query="{r.query}")', END)
        twins += 1
    assert twins == sum(len(VERBS) for _ in TOPICS)
    # multi-call positives get no twin
    for r in rows:
        if r.kind == "positive" and len(r.calls) > 1:
            assert [n.kind for n in by_query[r.query]] == ["positive"]


def test_candidates_count_and_gold_offered(rows):
    for r in rows:
        names = _names(r)
        assert len(names) == K and len(set(names)) == K, (r.query, names)
        assert "no_relevant_function" not in names
        for call in r.calls:
            assert call["name"] in names


def test_curriculum_order_and_distractors(rows, examples):
    stages = [r.stage for r in rows]
    assert stages == sorted(stages) and set(stages) == {0, 1}
    own = {e.query: {f.name for f in e.functions} for e in examples}
    outside, total = 0, 0
    for r in rows:
        distractors = [n for n in _names(r) if n not in {c["name"] for c in r.calls}]
        if r.stage == 1:
            # similar: the example's own API document first (all its functions match the query)
            assert set(distractors) <= own[r.query], (r.query, distractors)
        else:
            total += len(distractors)
            outside += sum(1 for n in distractors if n not in own[r.query])
    # random: drawn from the whole pool of 36 functions, most of them from other APIs
    assert total and outside / total > 0.5, (outside, total)
    # the share of stage 0 follows random_fraction (of the examples, twins follow their positive)
    examples_in_stage0 = len({r.query for r in rows if r.stage == 0})
    assert examples_in_stage0 == round(0.4 * len(examples))


def test_no_curriculum_means_one_similar_stage(examples):
    rows = build_rows(examples, seed=1, k=K, end_token=END, curriculum=False)
    assert {r.stage for r in rows} == {1}
    own = {e.query: {f.name for f in e.functions} for e in examples}
    for r in rows:
        assert set(_names(r)) <= own[r.query]


def test_build_rows_is_deterministic_and_seed_dependent(examples):
    a = [r.to_json() for r in build_rows(examples, seed=5, k=K)]
    b = [r.to_json() for r in build_rows(examples, seed=5, k=K)]
    c = [r.to_json() for r in build_rows(examples, seed=6, k=K)]
    assert a == b and a != c


def test_targets_parse_against_the_stored_candidates(rows):
    for r in rows:
        text = r.target.removesuffix(END)
        calls = parse_call(text, load(r.candidates))
        if r.calls:
            assert [(c.name, c.arguments) for c in calls] == [(c["name"], c["arguments"]) for c in r.calls]
            assert text == answer_text(tuple(calls), r.query)
        else:
            assert [(c.name, c.arguments) for c in calls] == [("no_relevant_function", {"query": r.query})]


def test_prompt_is_rerendered_from_the_stored_candidates(rows):
    for r in rows:
        assert render_prompt(r.query, load(r.candidates)) == r.prompt


def test_negative_of_drops_the_gold_functions_by_name(examples):
    example = next(e for e in examples if len(e.calls) == 1 and e.calls[0].name == "search")
    twin = negative_of(example)
    assert twin.calls == () and twin.query == example.query and twin.api == example.api
    assert [f.name for f in twin.functions] == [f.name for f in example.functions if f.name != "search"]
    assert twin.meta["kind"] == "negative"


def test_small_pool_gives_fewer_candidates_but_never_repeats(examples):
    # one API with two functions: a positive can offer at most 2, its twin at most 1
    fs = _functions()[("solo-tools", "onlyapi")][:2]
    ex = validate(Example("Please search philately record 1", tuple(fs),
                          (FunctionCall("search", {"item_id": 1}),), "solo-tools", "onlyapi"))
    rows = build_rows([ex], seed=0, k=K, end_token=END)
    assert [(r.kind, sorted(_names(r))) for r in rows] == [
        ("positive", sorted(f.name for f in fs)), ("negative", [fs[1].name])]


# Two former gaps in the to_tool -> load round trip: a row's stored candidates re-rendered to a
# different prompt than the one it was trained on.

def test_round_trip_parameter_description_beside_a_schema_description():
    f = FunctionSpec("f", "D.", (Parameter("a", {"type": "string", "description": "schema says"},
                                           description="param says"),))
    assert render_prompt("q", load([f.to_tool()])) == render_prompt("q", [f])


def test_round_trip_description_of_a_boolean_schema_parameter():
    f = FunctionSpec("f", "D.", (Parameter("a", True, description="anything"),))
    assert render_prompt("q", load([f.to_tool()])) == render_prompt("q", [f])


def test_functions_without_a_grammar_are_never_offered(examples):
    """A function whose schema admits no value (required integer limited to below 0 and above 5)
    sits in every API: it must never be a distractor, and every row's candidates compile."""
    from octogram.grammars import GrammarError, to_lark

    broken = FunctionSpec("broken_lookup", "Look up meteorology merchandise records.", (
        Parameter("n", {"type": "integer", "minimum": 5, "maximum": 0}, required=True),))
    with pytest.raises(GrammarError):
        to_lark([broken])
    with_broken = [Example(e.query, e.functions + (broken,), e.calls, e.source, e.api, e.origin,
                           e.meta) for e in examples]
    stats: Counter = Counter()
    rows = build_rows(with_broken, seed=3, k=K, end_token=END, stats=stats)
    assert all("broken_lookup" not in [c["function"]["name"] for c in r.candidates] for r in rows)
    assert stats["functions without a grammar (never offered)"] == len(examples)
    for r in rows:
        to_lark(load(r.candidates))
    # the same rows as without the broken function: dropping it draws nothing else at random
    plain = build_rows(examples, seed=3, k=K, end_token=END)
    assert [r.prompt for r in rows] == [r.prompt for r in plain]


@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0])
def test_negative_ratio_twins_that_share_of_positives(examples, ratio):
    """Training sets may hold fewer negatives than the paper's 1:1: a `ratio` share of the
    single-call positives get a twin, every twin still lacks its gold function."""
    rows = build_rows(examples, seed=5, k=K, end_token=END, negative_ratio=ratio)
    positives = [r for r in rows if r.kind == "positive"]
    twins = [r for r in rows if r.kind == "negative"]
    singles = sum(1 for e in examples if len(e.calls) == 1 and not e.is_negative)
    assert len(positives) == sum(1 for e in examples if not e.is_negative)
    source_negatives = sum(1 for e in examples if e.is_negative)
    made = len(twins) - source_negatives
    if ratio == 0.0:
        assert made == 0
    elif ratio == 1.0:
        assert made == singles
    else:
        assert 0 < made < singles
    for r in twins:
        assert r.target.startswith("no_relevant_function(")


def test_negative_ratio_out_of_range_is_refused(examples):
    with pytest.raises(ValueError, match="negative_ratio"):
        build_rows(examples, negative_ratio=1.5)
