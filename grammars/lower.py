"""JSON Schema -> the value types of ir.py, with every keyword either expressed or reported.

Decisions an engineer needs to know (the README repeats them):

* Recursion is unrolled here, never left to the grammar: a `$ref` whose schema lies on a
  reference cycle may nest at most `max_depth` times along any path; past that, an optional
  property or union branch is left out and a required one makes the enclosing value impossible.
  Free-form values (`{}`, `type: object` without properties, `any`) nest containers at most
  `max_depth` levels. The generated grammars are therefore regular.
* Objects with declared properties are closed: only those keys, in declaration order.
  `readOnly` properties are left out (requests do not send them).
* `nullable: true` adds null to whatever its schema accepts.
* Lengths and item counts are expressed up to `max_repeat` (default 64); a larger bound is
  reported and dropped. Integer bounds are expressed exactly (as regexes), and so are integral
  bounds on numbers (a bounded number is then written as a plain decimal, without exponent);
  other number bounds are reported.
* Reported (GrammarWarning, or GrammarError in strict mode): numeric bounds on non-integers,
  `multipleOf`, `uniqueItems: true`, `not`, `if`, `dependentRequired`/`dependentSchemas`/
  `dependencies`, `patternProperties`, `propertyNames`, `contains`, `unevaluated*`,
  `min/maxProperties` on closed objects (unless implied), unsupported patterns, unknown or
  approximate formats, `oneOf` whose branches can overlap, a second pattern/format in `allOf`,
  a pattern whose automaton needs more than `max_pattern_states` states (`pattern_size.py`; the
  report names the function and parameter).
"""

from __future__ import annotations

import itertools
import json
import math
import weakref
from collections.abc import Mapping
from typing import Any

from . import formats, patterns
from .pattern_size import MAX_PATTERN_STATES, exceeds_states
from .errors import GrammarError, GrammarWarning
from .ir import AnyV, Arr, Bool, Def, Int, Lit, Map, Node, Null, Num, Obj, Str, Union, union
from .refs import RefTable, escape_token, graph_of
from .values import accepts, same_value, value_key

ANNOTATIONS = {"title", "description", "default", "example", "examples", "deprecated", "readOnly",
               "writeOnly", "$comment", "$id", "$schema", "$anchor", "$dynamicAnchor", "discriminator",
               "xml", "externalDocs", "contentMediaType", "contentEncoding", "contentSchema", "$defs",
               "definitions", "id", "name", "in", "style", "explode", "allowReserved", "collectionFormat",
               "allowEmptyValue", "optional"}
UNEXPRESSED = {
    "not": "'not' is not expressed",
    "if": "'if'/'then'/'else' is not expressed",
    "dependencies": "'dependencies' is not expressed",
    "dependentRequired": "'dependentRequired' is not expressed",
    "dependentSchemas": "'dependentSchemas' is not expressed",
    "propertyNames": "'propertyNames' is not expressed",
    "contains": "'contains' (and min/maxContains) is not expressed",
    "unevaluatedProperties": "'unevaluatedProperties' is not expressed",
    "unevaluatedItems": "'unevaluatedItems' is not expressed",
    "$dynamicRef": "'$dynamicRef' is not supported",
    "$recursiveRef": "'$recursiveRef' is not supported",
}
TYPE_NAMES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
              "null": "null", "array": "array", "object": "object",
              # loose names used by function-calling datasets and hand-written tool specs
              "str": "string", "text": "string", "file": "string", "int": "integer", "long": "integer",
              "float": "number", "double": "number", "bool": "boolean", "none": "null",
              "nonetype": "null", "list": "array", "tuple": "array", "dict": "object", "map": "object"}
ANY_TYPE_NAMES = {"any", "object?", "mixed", "json"}
_CONSTRAINT_FREE = ANNOTATIONS | {"nullable"}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# Lowerings of shared documents are cached (keyed on the document's RefTable) so that many
# operations of one big API pay for each shared schema once.
_CACHES: "weakref.WeakKeyDictionary[RefTable, dict]" = weakref.WeakKeyDictionary()
_PATTERNS: dict[str, Any] = {}


def _pattern_ast(pattern: str):
    """(full-match AST, None) or (None, reason); cached."""
    if pattern not in _PATTERNS:
        try:
            ast = patterns.full_match(patterns.parse(pattern))
            if patterns.is_empty(ast):
                raise patterns.RegexUnsupported("the pattern matches nothing")
            _PATTERNS[pattern] = (ast, None)
        except patterns.RegexUnsupported as e:
            _PATTERNS[pattern] = (None, str(e))
        except RecursionError:
            _PATTERNS[pattern] = (None, "pattern nested too deeply")
    return _PATTERNS[pattern]


class Lowering:
    """Lowers the schemas of one set of `defs` (one document) with fixed depth/repeat bounds."""

    def __init__(self, defs: Mapping[str, Any], *, max_depth: int = 3, max_repeat: int = 64,
                 strict: bool = False, max_pattern_states: int = MAX_PATTERN_STATES):
        if not isinstance(max_depth, int) or max_depth < 0:
            raise GrammarError(f"max_depth must be a non-negative integer, got {max_depth!r}")
        if not isinstance(max_repeat, int) or max_repeat < 1:
            raise GrammarError(f"max_repeat must be a positive integer, got {max_repeat!r}")
        if isinstance(max_pattern_states, bool) or not isinstance(max_pattern_states, int) \
                or max_pattern_states < 1:
            raise GrammarError(f"max_pattern_states must be a positive integer, got {max_pattern_states!r}")
        self.defs, self.max_depth, self.max_repeat, self.strict = defs, max_depth, max_repeat, strict
        self.max_pattern_states = max_pattern_states
        self.subject = ""  # the function and parameter being lowered, for reports that need them
        self.graph = graph_of(defs)
        if isinstance(defs, RefTable):
            self.memo = _CACHES.setdefault(defs, {}).setdefault((max_depth, max_repeat, max_pattern_states), {})
        else:
            self.memo = {}
        self._frames: list[list[GrammarWarning]] = []
        self.reported: list[GrammarWarning] = []  # warnings outside any named schema
        self.quiet = 0
        self._quiet_memo: dict = {}

    # ------------------------------------------------------------------ reporting

    def warn(self, message: str, location: str, keyword: str) -> None:
        if self.quiet:
            return
        if self.strict:
            raise GrammarError(message + " (strict mode)", location, keyword)
        (self._frames[-1] if self._frames else self.reported).append(GrammarWarning(message, location, keyword))

    def where(self, ref: str) -> str:
        return self.defs.location(ref) if isinstance(self.defs, RefTable) else ref

    # ------------------------------------------------------------------ entry points

    def lower(self, schema: Any, budget: int, loc: str) -> Node | None:
        """The values `schema` admits, or None when it admits none within the bounds."""
        if schema is True:
            return AnyV(self.max_depth)
        if schema is False:
            return None
        if not isinstance(schema, Mapping):
            raise GrammarError(f"a schema must be an object or a boolean, got {type(schema).__name__}", loc)
        if schema.get("nullable") is True:
            rest = {k: v for k, v in schema.items() if k != "nullable"}
            return union([self.lower(rest, budget, loc), Null()])
        if "$ref" in schema:
            ref = schema["$ref"]
            if not isinstance(ref, str):
                raise GrammarError("$ref must be a string", loc, "$ref")
            siblings = {k: v for k, v in schema.items()
                        if k != "$ref" and k not in _CONSTRAINT_FREE and not str(k).startswith("x-")}
            if siblings:  # constraints beside a $ref apply too (JSON Schema 2019+)
                return self.lower({"allOf": [{"$ref": ref}, siblings]}, budget, loc)
            return self.lower_ref(ref, budget, loc)
        if "allOf" in schema:
            members = schema["allOf"]
            if (isinstance(members, list) and len(members) == 1 and isinstance(members[0], Mapping)
                    and set(members[0]) == {"$ref"} and all(k in _CONSTRAINT_FREE or str(k).startswith("x-")
                                                           for k in schema if k != "allOf")):
                return self.lower_ref(members[0]["$ref"], budget, loc)  # the common "$ref + description" idiom
            merged, spent = self.merge_all_of(schema, loc)
            if merged is False or spent > budget:
                return None
            return self.lower(merged, budget - spent, loc)
        for key, message in UNEXPRESSED.items():
            if key in schema:
                self.warn(message, loc, key)
        if "anyOf" in schema or "oneOf" in schema:
            return self.lower_alternatives(schema, budget, loc)
        if "const" in schema:
            return self.lower_literals([schema["const"]], schema, budget, loc, "const")
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list):
                raise GrammarError(f"'enum' must be a list, got {type(values).__name__}", loc, "enum")
            items_enum = self.enum_of_items(schema, values, loc)
            if items_enum is not None:
                return self.lower(items_enum, budget, loc)
            return self.lower_literals(values, schema, budget, loc, "enum")
        types = self.types_of(schema, loc)
        if types is None:
            types = self.inferred_types(schema)
            if types is None:
                return AnyV(self.max_depth)
        return union([self.lower_typed(t, schema, budget, loc) for t in types])

    def lower_ref(self, ref: str, budget: int, loc: str) -> Node | None:
        try:
            target = self.defs[ref]
        except (KeyError, TypeError):
            raise GrammarError(f"$ref {ref!r} does not resolve to anything in the document", loc, "$ref") from None
        if self.graph.on_cycle(ref):
            if budget == 0:
                return None  # recursion budget spent: this branch is left out
            budget -= 1
        key = (ref, budget)
        # a quiet lowering drops its warnings, so it must not fill the shared cache
        memo = self._quiet_memo if self.quiet else self.memo
        if key in memo:
            return memo[key]
        self._frames.append([])
        try:
            node = self.lower(target, budget, self.where(ref))
        finally:
            reported = self._frames.pop()
        result = None if node is None else Def(ref, node, tuple(reported), budget)
        memo[key] = result
        return result

    # ------------------------------------------------------------------ composition

    def merge_all_of(self, schema: Mapping[str, Any], loc: str) -> "tuple[dict | bool, int]":
        """(merged schema or False, recursion budget spent on inlined recursive $refs)."""
        members: list[Any] = []
        spent = self._collect(schema, loc, (), members)
        if any(m is False for m in members):
            return False, spent
        merged: dict[str, Any] = {}
        for m in members:
            merged = self._merge2(merged, m, loc)
            if merged is False:  # type: ignore[comparison-overlap]
                return False, spent
        if "type" in merged:
            admits_null = all(_admits_null(m) for m in members)
            merged.pop("nullable", None)
            if admits_null:
                merged["nullable"] = True
        return merged, spent

    def _collect(self, schema: Any, loc: str, refs: tuple, out: list) -> int:
        """Flatten allOf members into `out`; returns how many recursive $refs were inlined
        (each costs one level of the recursion budget, as lower_ref charges)."""
        if schema is True:
            return 0
        if schema is False:
            out.append(False)
            return 0
        if not isinstance(schema, Mapping):
            raise GrammarError("an allOf member must be a schema object", loc, "allOf")
        if "$ref" in schema:
            ref = schema["$ref"]
            if not isinstance(ref, str):
                raise GrammarError("$ref must be a string", loc, "$ref")
            if ref in refs:
                raise GrammarError(f"allOf includes itself through $ref {ref!r}", loc, "allOf")
            try:
                target = self.defs[ref]
            except (KeyError, TypeError):
                raise GrammarError(f"$ref {ref!r} does not resolve to anything in the document", loc, "$ref") from None
            spent = int(self.graph.on_cycle(ref))
            spent += self._collect(target, self.where(ref), refs + (ref,), out)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            if rest:
                spent += self._collect(rest, loc, refs, out)
            return spent
        if "allOf" in schema:
            members = schema["allOf"]
            if not isinstance(members, list):
                raise GrammarError("'allOf' must be a list", loc, "allOf")
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            spent = 0
            if rest:
                spent += self._collect(rest, loc, refs, out)
            for i, m in enumerate(members):
                spent += self._collect(m, f"{loc}/allOf/{i}", refs, out)
            return spent
        out.append(schema)
        return 0

    def _merge2(self, a: dict, b: Mapping[str, Any], loc: str) -> Any:
        out = dict(a)
        for key, value in b.items():
            if key not in out:
                out[key] = value
                continue
            old = out[key]
            if key == "type":
                ta, tb = self.types_of({"type": old}, loc), self.types_of({"type": value}, loc)
                if ta is None or tb is None:
                    out[key] = old if tb is None else value
                    continue
                both = [t for t in ta if t in tb] + (["integer"] if "integer" in ta and "number" in tb or
                                                     "number" in ta and "integer" in tb else [])
                both = list(dict.fromkeys(both))
                if not both:
                    return False
                out[key] = both
            elif key == "properties" and isinstance(old, Mapping) and isinstance(value, Mapping):
                props = dict(old)
                for name, sub in value.items():
                    props[name] = {"allOf": [props[name], sub]} if name in props else sub
                out[key] = props
            elif key == "required" and isinstance(old, list) and isinstance(value, list):
                out[key] = list(dict.fromkeys(old + value))
            elif key == "enum" and isinstance(old, list) and isinstance(value, list):
                allowed = {value_key(w) for w in value}
                out[key] = [v for v in old if value_key(v) in allowed]
            elif key == "const":
                if not same_value(old, value):
                    return False
            elif key in ("minimum", "minLength", "minItems", "minProperties"):
                if _is_number(old) and _is_number(value):
                    out[key] = max(old, value)
            elif key in ("maximum", "maxLength", "maxItems", "maxProperties"):
                if _is_number(old) and _is_number(value):
                    out[key] = min(old, value)
            elif key in ("items", "not", "contains", "propertyNames"):
                if isinstance(old, Mapping) and isinstance(value, Mapping):
                    out[key] = {"allOf": [old, value]}
            elif key == "additionalProperties":
                if old is False or value is False:
                    out[key] = False
                elif isinstance(old, Mapping) and isinstance(value, Mapping):
                    out[key] = {"allOf": [old, value]}
                elif old is True:
                    out[key] = value
            elif key in ("anyOf", "oneOf") and isinstance(old, list) and isinstance(value, list):
                if len(old) * len(value) <= 64:
                    out[key] = [{"allOf": [x, y]} for x, y in itertools.product(old, value)]
                else:
                    self.warn(f"allOf of two {key} lists with {len(old)}x{len(value)} combinations: the second is not expressed",
                              loc, key)
            elif key in ("pattern", "format"):
                if old != value:
                    self.warn(f"allOf with a second {key} {value!r}: not expressed (the first, {old!r}, is)", loc, key)
            elif key == "uniqueItems":
                out[key] = bool(old) or bool(value)
        return out

    def lower_alternatives(self, schema: Mapping[str, Any], budget: int, loc: str) -> Node | None:
        base = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        constrained = any(k not in _CONSTRAINT_FREE and not str(k).startswith("x-") for k in base)
        branches: list[tuple[Any, str]] = []
        any_of, one_of = schema.get("anyOf"), schema.get("oneOf")
        for key, alts in (("anyOf", any_of), ("oneOf", one_of)):
            if alts is not None and (not isinstance(alts, list) or not alts):
                raise GrammarError(f"'{key}' must be a non-empty list", loc, key)
        if any_of is not None and one_of is not None:
            if len(any_of) * len(one_of) > 64:
                self.warn("anyOf and oneOf together have too many combinations: oneOf is not expressed", loc, "oneOf")
                pairs = [(a, f"{loc}/anyOf/{i}") for i, a in enumerate(any_of)]
            else:
                pairs = [({"allOf": [a, o]}, f"{loc}/anyOf/{i}") for i, a in enumerate(any_of) for o in one_of]
            branches = pairs
        else:
            key, alts = ("anyOf", any_of) if any_of is not None else ("oneOf", one_of)
            branches = [(alt, f"{loc}/{key}/{i}") for i, alt in enumerate(alts)]
        nodes = []
        for alt, where in branches:
            sub = {"allOf": [base, alt]} if constrained else alt
            node = self.lower(sub, budget, where)
            if node is not None:
                nodes.append(node)
        if one_of is not None and len(nodes) > 1 and not _pairwise_disjoint(nodes):
            self.warn("oneOf branches can overlap: a value matching several of them is accepted", loc, "oneOf")
        return union(nodes)

    def enum_of_items(self, schema: Mapping[str, Any], values: list, loc: str) -> "dict | None":
        """The sloppy form of tool JSON (BFCL and others): `"type": "array"` with an `enum` of
        item values (no value an array, so as written no array matches). Read as an enum of the
        items, with a GrammarWarning (a GrammarError in strict mode); None for any other schema."""
        raw = schema.get("type")
        kinds = raw if isinstance(raw, list) else [raw]
        if not all(isinstance(k, str) for k in kinds):
            return None
        kinds = [k.strip().lower() for k in kinds]
        if "array" not in kinds or not set(kinds) <= {"array", "null"}:
            return None
        items = schema.get("items", True)
        if "prefixItems" in schema or isinstance(items, list) or items is False:
            return None
        item_values = [v for v in values if v is not None]
        if not item_values or any(isinstance(v, list) for v in values):
            return None  # an enum of arrays (or of null alone): as written
        self.warn("'enum' beside \"type\": \"array\" lists no array, only item values: "
                  "read as an enum of the items", loc, "enum")
        listed = {"enum": item_values}
        if isinstance(items, Mapping) and items:
            listed = {"allOf": [items, listed]}  # the items' own constraints still apply
        return {**{k: v for k, v in schema.items() if k != "enum"}, "items": listed}

    def lower_literals(self, values: list, schema: Mapping[str, Any], budget: int, loc: str, keyword: str) -> Node | None:
        rest = {k: v for k, v in schema.items() if k not in ("enum", "const")}
        if any(k not in _CONSTRAINT_FREE and not str(k).startswith("x-") for k in rest):
            self.quiet += 1  # the literals are checked against the rest; its own reports are moot
            try:
                other = self.lower(rest, budget, loc)
            finally:
                self.quiet -= 1
            fitting = [v for v in values if other is not None and accepts(other, v)]
            if not fitting and values and "type" in rest:
                fitting = self.literals_of_another_type(values, rest, budget, loc, keyword)
            values = fitting
        kept: list[Any] = []
        seen: set = set()
        for v in values:
            if not _json_value(v):
                raise GrammarError(f"{keyword} value {v!r} is not a JSON value", loc, keyword)
            key = (type(v), value_key(v))  # 1 and 1.0 are both kept: they are written differently
            if key not in seen:
                seen.add(key)
                kept.append(v)
        return Lit(tuple(kept)) if kept else None

    def literals_of_another_type(self, values: list, rest: Mapping[str, Any], budget: int,
                                 loc: str, keyword: str) -> list:
        """The sloppy form of API documents where no listed value has the declared type
        (`"type": "integer", "enum": ["1", "2"]`): read as the values listed, as they are
        written, with a GrammarWarning (a GrammarError in strict mode). The other constraints
        still apply."""
        untyped = {k: v for k, v in rest.items() if k != "type"}
        self.quiet += 1
        try:
            other = self.lower(untyped, budget, loc)
        finally:
            self.quiet -= 1
        fitting = [v for v in values if other is not None and accepts(other, v)]
        if fitting:
            shown = ", ".join(json.dumps(v) for v in fitting[:3]) + (", ..." if len(fitting) > 3 else "")
            self.warn(f"no '{keyword}' value is of the declared type {json.dumps(rest['type'])}: "
                      f"read as the values listed ({shown})", loc, keyword)
        return fitting

    # ------------------------------------------------------------------ types

    def types_of(self, schema: Mapping[str, Any], loc: str) -> "list[str] | None":
        raw = schema.get("type")
        if raw is None:
            return None
        names = raw if isinstance(raw, list) else [raw]
        out: list[str] = []
        for name in names:
            if not isinstance(name, str):
                raise GrammarError(f"'type' must be a string or a list of strings, got {raw!r}", loc, "type")
            key = name.strip().lower()
            if key in ANY_TYPE_NAMES:
                return None
            if key not in TYPE_NAMES:
                raise GrammarError(f"unknown type {name!r}", loc, "type")
            if TYPE_NAMES[key] not in out:
                out.append(TYPE_NAMES[key])
        return out or None

    def inferred_types(self, schema: Mapping[str, Any]) -> "list[str] | None":
        """Types implied by type-specific keywords when `type` is absent (`properties` without
        `type: object` is common in API documents)."""
        kinds = []
        if any(k in schema for k in ("properties", "required", "additionalProperties", "minProperties", "maxProperties")):
            kinds.append("object")
        if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems")):
            kinds.append("array")
        if any(k in schema for k in ("pattern", "minLength", "maxLength")):
            kinds.append("string")
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
            kinds.append("number")
        fmt = schema.get("format")
        if not kinds and isinstance(fmt, str):
            if fmt in formats.INTEGER_FORMATS:
                kinds.append("integer")
            elif fmt in ("float", "double", "decimal"):
                kinds.append("number")
            else:
                kinds.append("string")
        return kinds or None

    def lower_typed(self, kind: str, s: Mapping[str, Any], budget: int, loc: str) -> Node | None:
        if kind == "string":
            return self.lower_string(s, loc)
        if kind == "integer":
            return self.lower_integer(s, loc)
        if kind == "number":
            return self.lower_number(s, loc)
        if kind == "boolean":
            return Bool()
        if kind == "null":
            return Null()
        if kind == "array":
            return self.lower_array(s, budget, loc)
        return self.lower_object(s, budget, loc)

    def _count(self, s: Mapping[str, Any], key: str, loc: str) -> "int | None":
        value = s.get(key)
        if value is None:
            return None
        if not _is_number(value) or value < 0:
            raise GrammarError(f"'{key}' must be a non-negative integer, got {value!r}", loc, key)
        return int(value)

    def _bounded(self, lo: "int | None", hi: "int | None", lo_key: str, hi_key: str, loc: str):
        """Apply max_repeat: bounds above it are reported and dropped."""
        lo = lo or 0
        if hi is not None and hi > self.max_repeat:
            self.warn(f"'{hi_key}' {hi} is above the repetition bound {self.max_repeat}: not expressed", loc, hi_key)
            hi = None
        if lo > self.max_repeat:
            self.warn(f"'{lo_key}' {lo} is above the repetition bound {self.max_repeat}: not expressed", loc, lo_key)
            lo = 0
        return lo, hi

    def lower_string(self, s: Mapping[str, Any], loc: str) -> Node | None:
        min_len = self._count(s, "minLength", loc) or 0
        max_len = self._count(s, "maxLength", loc)
        if max_len is not None and max_len < min_len:
            return None
        ast = None
        pattern = s.get("pattern")
        if pattern is not None:
            if not isinstance(pattern, str):
                raise GrammarError(f"'pattern' must be a string, got {pattern!r}", loc, "pattern")
            ast, why = _pattern_ast(pattern)
            if ast is None:
                self.warn(f"pattern {pattern!r} is not expressed ({why}); any string is accepted", loc, "pattern")
        fmt = s.get("format")
        if isinstance(fmt, str) and fmt:
            try:
                known = formats.string_format(fmt)
            except KeyError:
                self.warn(f"format {fmt!r} is not expressed (unknown format)", loc, "format")
                known = None
            if known is not None:
                fmt_ast, exact = known
                if ast is None:
                    ast = fmt_ast
                    if not exact:
                        self.warn(f"format {fmt!r} is expressed approximately (a common subset of the syntax)", loc, "format")
                else:
                    self.warn(f"format {fmt!r} beside a pattern is not expressed (the pattern is)", loc, "format")
        if ast is None:
            lo, hi = self._bounded(min_len, max_len, "minLength", "maxLength", loc)
            return Str(None, lo, hi)
        if min_len or max_len is not None:
            single = patterns.single_repeat(ast)
            if single is not None:
                ranges, a, b = single
                lo = max(a, min_len)
                hi = b if max_len is None else (max_len if b is None else min(b, max_len))
                if hi is not None and hi < lo:
                    return None
                ast = ("rep", ("set", ranges), lo, hi)
            else:
                for key in ("minLength", "maxLength"):
                    if key in s:
                        self.warn(f"'{key}' beside a pattern or format is not expressed", loc, key)
        ast, clipped = patterns.bound_repeats(ast, self.max_repeat)
        if clipped:
            self.warn(f"a repetition bound above {self.max_repeat} in the pattern or length is not expressed", loc,
                      "pattern" if pattern is not None else "maxLength")
        if patterns.is_search(ast):
            ast, clipped = patterns.bound_search_repeats(ast, patterns.SEARCH_MAX_SPREAD)
            if clipped:
                self.warn(f"an upper repetition bound more than {patterns.SEARCH_MAX_SPREAD} above "
                          "the lower one, in a pattern not anchored at the start, is not expressed "
                          "(searching for it from every position needs an automaton of millions "
                          "of states)", loc, "pattern")
        if pattern is not None and exceeds_states(ast, self.max_pattern_states):
            self.warn(f"pattern {pattern!r}{self.subject} is not expressed: its automaton needs more than "
                      f"{self.max_pattern_states} states (max_pattern_states); any string is accepted",
                      loc, "pattern")
            lo, hi = self._bounded(min_len, max_len, "minLength", "maxLength", loc)
            return Str(None, lo, hi)
        return Str(ast)

    def _numeric_bounds(self, s: Mapping[str, Any], loc: str):
        """(lo, lo_exclusive, hi, hi_exclusive) from both the 3.0 (boolean) and 3.1 forms."""
        lo = hi = None
        lo_ex = hi_ex = False
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
            value = s.get(key)
            if value is not None and not isinstance(value, bool) and not _is_number(value):
                raise GrammarError(f"'{key}' must be a number, got {value!r}", loc, key)
        if _is_number(s.get("minimum")):
            lo, lo_ex = s["minimum"], s.get("exclusiveMinimum") is True
        if _is_number(s.get("maximum")):
            hi, hi_ex = s["maximum"], s.get("exclusiveMaximum") is True
        if _is_number(s.get("exclusiveMinimum")) and (lo is None or s["exclusiveMinimum"] >= lo):
            lo, lo_ex = s["exclusiveMinimum"], True
        if _is_number(s.get("exclusiveMaximum")) and (hi is None or s["exclusiveMaximum"] <= hi):
            hi, hi_ex = s["exclusiveMaximum"], True
        return lo, lo_ex, hi, hi_ex

    def lower_integer(self, s: Mapping[str, Any], loc: str) -> Node | None:
        lo, lo_ex, hi, hi_ex = self._numeric_bounds(s, loc)
        ilo = None if lo is None else (math.floor(lo) + 1 if lo_ex else math.ceil(lo))
        ihi = None if hi is None else (math.ceil(hi) - 1 if hi_ex else math.floor(hi))
        fmt = s.get("format")
        if isinstance(fmt, str) and fmt in formats.INTEGER_FORMATS:
            flo, fhi = formats.INTEGER_FORMATS[fmt]
            ilo = flo if ilo is None else max(ilo, flo)
            ihi = fhi if ihi is None else min(ihi, fhi)
        elif isinstance(fmt, str) and fmt and fmt not in formats.NUMBER_FORMATS and fmt not in formats.INTEGER_ANNOTATIONS:
            self.warn(f"format {fmt!r} on an integer is not expressed", loc, "format")
        step = s.get("multipleOf")
        if step is not None and not (_is_number(step) and float(step).is_integer() and int(step) == 1):
            self.warn(f"'multipleOf' {step!r} is not expressed", loc, "multipleOf")
        if ilo is not None and ihi is not None and ilo > ihi:
            return None
        return Int(ilo, ihi)

    def lower_number(self, s: Mapping[str, Any], loc: str) -> Node | None:
        lo, lo_ex, hi, hi_ex = self._numeric_bounds(s, loc)
        if lo is not None and hi is not None and (lo > hi or (lo == hi and (lo_ex or hi_ex))):
            return None
        integral = all(b is None or float(b).is_integer() for b in (lo, hi))
        if not integral:  # bounds between integers are not written as regexes
            for key in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
                value = s.get(key)
                if value is not None and value is not False and value is not True:
                    self.warn(f"'{key}' {value!r} on a number is not expressed (only integer bounds are)", loc, key)
            lo = hi = None
        fmt = s.get("format")
        if isinstance(fmt, str) and fmt and fmt not in formats.NUMBER_FORMATS and fmt not in formats.INTEGER_FORMATS:
            self.warn(f"format {fmt!r} on a number is not expressed", loc, "format")
        if s.get("multipleOf") is not None:
            self.warn(f"'multipleOf' {s['multipleOf']!r} is not expressed", loc, "multipleOf")
        return Num(None if lo is None else int(lo), lo_ex, None if hi is None else int(hi), hi_ex)

    def lower_array(self, s: Mapping[str, Any], budget: int, loc: str) -> Node | None:
        items, prefix_items = s.get("items"), s.get("prefixItems")
        if isinstance(items, list):  # draft 4 tuple form
            prefix, rest, rest_key = items, s.get("additionalItems", True), "additionalItems"
        elif prefix_items is not None:
            if not isinstance(prefix_items, list):
                raise GrammarError("'prefixItems' must be a list", loc, "prefixItems")
            prefix, rest, rest_key = prefix_items, items if items is not None else True, "items"
        else:
            prefix, rest, rest_key = [], items, "items"
        prefix_nodes: list[Node] = []
        for i, sub in enumerate(prefix):
            node = self.lower(sub, budget, f"{loc}/{'items' if isinstance(items, list) else 'prefixItems'}/{i}")
            if node is None:
                rest = False  # nothing can stand at position i, so the list ends before it
                break
            prefix_nodes.append(node)
        if rest is None:
            rest_node: Node | None = AnyV(max(self.max_depth - 1, 0))
        elif rest is False:
            rest_node = None
        elif rest is True:
            rest_node = AnyV(max(self.max_depth - 1, 0))
        else:
            rest_node = self.lower(rest, budget, f"{loc}/{rest_key}")
        lo, hi = self._bounded(self._count(s, "minItems", loc), self._count(s, "maxItems", loc), "minItems", "maxItems", loc)
        if rest_node is None:
            hi = len(prefix_nodes) if hi is None else min(hi, len(prefix_nodes))
        if hi is not None and lo > hi:
            return None
        if s.get("uniqueItems") is True:
            self.warn("'uniqueItems' is not expressed (repeated items are accepted)", loc, "uniqueItems")
        return Arr(tuple(prefix_nodes), rest_node, lo, hi)

    def lower_object(self, s: Mapping[str, Any], budget: int, loc: str) -> Node | None:
        props = s.get("properties")
        if props is not None and not isinstance(props, Mapping):
            raise GrammarError("'properties' must be an object", loc, "properties")
        required = s.get("required")
        if isinstance(required, bool) or required is None:
            required = []  # `required: true` on a property is a Swagger-ism; the parent decides
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise GrammarError(f"'required' must be a list of property names, got {required!r}", loc, "required")
        extra = s.get("additionalProperties", True)
        if extra is not None and not isinstance(extra, (bool, Mapping)):
            raise GrammarError("'additionalProperties' must be a boolean or a schema", loc, "additionalProperties")
        if "patternProperties" in s:
            self.warn("'patternProperties' is not expressed", loc, "patternProperties")
        min_size, max_size = self._count(s, "minProperties", loc), self._count(s, "maxProperties", loc)
        if props or required:
            entries = []
            wanted = set(required)
            for key, sub in (props or {}).items():
                if isinstance(sub, Mapping) and sub.get("readOnly") is True:
                    continue
                node = self.lower(sub, budget, f"{loc}/properties/{escape_token(key)}")
                if node is None:
                    if key in wanted:
                        return None
                    continue
                entries.append((key, node, key in wanted))
            for key in required:
                if props is None or key not in props:
                    if extra is False:
                        return None
                    node = AnyV(max(self.max_depth - 1, 0)) if extra in (True, None) else self.lower(extra, budget, f"{loc}/additionalProperties")
                    if node is None:
                        return None
                    entries.append((key, node, True))
            n_required = sum(1 for e in entries if e[2])
            if (min_size or 0) > n_required:
                self.warn(f"'minProperties' {min_size} is not expressed", loc, "minProperties")
            if max_size is not None and max_size < len(entries):
                self.warn(f"'maxProperties' {max_size} is not expressed", loc, "maxProperties")
            return Obj(tuple(entries))
        if extra is False:
            return Obj(())
        value = (AnyV(max(self.max_depth - 1, 0)) if extra in (True, None) or extra == {}
                 else self.lower(extra, budget, f"{loc}/additionalProperties"))
        lo, hi = self._bounded(min_size, max_size, "minProperties", "maxProperties", loc)
        if value is None:
            return Map(None, 0, 0) if lo == 0 else None
        if hi is not None and lo > hi:
            return None
        return Map(value, lo, hi)


def _admits_null(schema: Any) -> bool:
    if not isinstance(schema, Mapping):
        return schema is True
    if schema.get("nullable") is True:
        return True
    t = schema.get("type")
    if t is None:
        return "enum" not in schema and "const" not in schema
    return t == "null" or (isinstance(t, list) and "null" in t)


def _json_value(v: Any) -> bool:
    if v is None or isinstance(v, (bool, str, int)):
        return True
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, list):
        return all(_json_value(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _json_value(x) for k, x in v.items())
    return False


# ----------------------------------------------------------------------------- oneOf overlap

def _kinds(node: Node) -> set:
    if isinstance(node, Def):
        return _kinds(node.node)
    if isinstance(node, Union):
        return set().union(*(_kinds(a) for a in node.alts))
    if isinstance(node, Str):
        return {"string"}
    if isinstance(node, (Int, Num)):
        return {"number"}
    if isinstance(node, Bool):
        return {"boolean"}
    if isinstance(node, Null):
        return {"null"}
    if isinstance(node, Arr):
        return {"array"}
    if isinstance(node, (Obj, Map)):
        return {"object"}
    return {"string", "number", "boolean", "null", "array", "object"}


def _overlap(a: Node, b: Node) -> bool:
    while isinstance(a, Def):
        a = a.node
    while isinstance(b, Def):
        b = b.node
    if isinstance(a, Union):
        return any(_overlap(x, b) for x in a.alts)
    if isinstance(b, Union):
        return any(_overlap(a, x) for x in b.alts)
    if isinstance(a, Lit) and isinstance(b, Lit):
        return not {value_key(x) for x in a.values}.isdisjoint(value_key(y) for y in b.values)
    if isinstance(a, Lit):
        return any(accepts(b, v) for v in a.values)
    if isinstance(b, Lit):
        return any(accepts(a, v) for v in b.values)
    if isinstance(a, Int) and isinstance(b, Int):
        return not ((a.hi is not None and b.lo is not None and a.hi < b.lo) or
                    (b.hi is not None and a.lo is not None and b.hi < a.lo))
    if isinstance(a, Obj) and isinstance(b, Obj):
        keys_a = {k: (n, r) for k, n, r in a.props}
        keys_b = {k: (n, r) for k, n, r in b.props}
        for k, (n, r) in keys_a.items():
            if r and (k not in keys_b or not _overlap(n, keys_b[k][0])):
                return False
        for k, (n, r) in keys_b.items():
            if r and k not in keys_a:
                return False
        return True
    return bool(_kinds(a) & _kinds(b))


def _pairwise_disjoint(nodes: list[Node]) -> bool:
    """No value matches two of `nodes`. Literal branches (`oneOf` of many `const`s) are checked
    together through one set, so they cost linear time; the others pairwise."""
    plain = [_unwrap(n) for n in nodes]
    literals = [n for n in plain if isinstance(n, Lit)]
    others = [n for n in plain if not isinstance(n, Lit)]
    seen: set = set()
    for lit in literals:
        keys = {value_key(v) for v in lit.values}
        if not seen.isdisjoint(keys):
            return False
        seen |= keys
    if any(_overlap(a, b) for a, b in itertools.combinations(others, 2)):
        return False
    return not any(_overlap(o, lit) for o in others for lit in literals)


def _unwrap(node: Node) -> Node:
    while isinstance(node, Def):
        node = node.node
    return node


# ----------------------------------------------------------------------------- functions

def lower_function(spec: Any, lowering: Lowering) -> list[tuple[Any, Node]]:
    """(parameter, value type) for each parameter of a FunctionSpec that can take a value.
    A required parameter that admits no value makes the function impossible: GrammarError."""
    out = []
    for p in spec.parameters:
        where = p.source or f"{spec.name}({p.name})"
        lowering.subject = f" (function {spec.name!r}, parameter {p.name!r})"
        node = lowering.lower(p.schema, lowering.max_depth, where)
        if node is None:
            if p.required:
                raise GrammarError(f"required parameter {p.name!r} of {spec.name!r} admits no value "
                                   f"(contradictory schema, or recursion deeper than max_depth={lowering.max_depth})",
                                   where)
            continue
        out.append((p, node))
    return out


def collect_warnings(lowering: Lowering, roots: "list[Node]") -> list[GrammarWarning]:
    """Warnings raised for these roots, including those cached on shared named schemas."""
    from .ir import walk
    found = list(lowering.reported)
    for node in walk(Union(tuple(roots))):
        if isinstance(node, Def):
            found.extend(node.warnings)
    return found
