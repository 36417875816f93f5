"""FunctionSpecs -> Lark grammar text for one call syntax (`python` or `json`).

The output is canonical: exactly one text per call. Arguments come in declaration order
(required ones always, optional ones omittable), separated by exactly ", "; JSON is spaced as
`json.dumps` spaces it. There is no `%ignore` and no recursion (recursive schemas are unrolled
while lowering), so the masking layer can compile the grammar into one finite automaton.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import formats, patterns
from .errors import GrammarError, Reporter
from .ir import AnyV, Arr, Bool, Def, Int, Lit, Map, Node, Null, Num, Obj, Str, Union
from .lower import Lowering, collect_warnings, lower_function
from .pattern_size import MAX_PATTERN_STATES
from .spec import NO_RELEVANT_FUNCTION, FunctionSpec
from .values import render

COMMON_LARK_DIR = str(Path(__file__).resolve().parent)
COMMON_LARK_FILE = Path(COMMON_LARK_DIR) / "octogram_common.lark"
STYLES = ("python", "json")


@functools.lru_cache(maxsize=1)
def common_terminals() -> dict[str, str]:
    """NAME -> definition body, from octogram_common.lark (one definition per line)."""
    out = {}
    for line in COMMON_LARK_FILE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*):\s*(.+?)\s*$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def lark_literal(text: str) -> str:
    """A Lark string literal that matches `text` exactly."""
    if not text:
        raise ValueError("empty literal")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextlib.contextmanager
def deep_recursion(limit: int = 20000) -> Iterator[None]:
    """Unrolled schemas of big APIs nest deeply; allow it for the duration of one call."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _rule_name(hint: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "_", hint.lower()).strip("_")[:40].strip("_")
    if not name or not name[0].isalpha():
        name = "v_" + name
    return name


class _Emitter:
    """Writes IR nodes as Lark rules and terminals, sharing identical bodies."""

    def __init__(self, style: str, max_repeat: int):
        self.style, self.max_repeat = style, max_repeat
        self.rules: dict[str, str] = {}
        self.rule_by_body: dict[str, str] = {}
        self.terminals: dict[str, str] = {}
        self.terminal_by_body: dict[str, str] = {}
        self.common: set[str] = set()
        self.memo: dict[int, tuple[Node, str]] = {}
        # names used by to_lark itself and by the common terminals are never handed out
        self.taken: set[str] = {"start", "call", *common_terminals()}

    # ------------------------------------------------------------------ naming

    def _fresh(self, base: str) -> str:
        name, n = base, 1
        while name in self.taken:
            n += 1
            name = f"{base}_{n}"
        self.taken.add(name)
        return name

    def rule(self, hint: str, body: str) -> str:
        if body in self.rule_by_body:
            return self.rule_by_body[body]
        name = self._fresh(_rule_name(hint))
        self.rules[name] = body
        self.rule_by_body[body] = name
        return name

    def terminal(self, hint: str, body: str) -> str:
        if body in self.terminal_by_body:
            return self.terminal_by_body[body]
        name = self._fresh(_rule_name(hint).upper())
        self.terminals[name] = body
        self.terminal_by_body[body] = name
        return name

    def use(self, name: str) -> str:
        self.common.add(name)
        return name

    # ------------------------------------------------------------------ values

    def literal(self, value: object) -> str:
        return lark_literal(render(value, self.style))

    def expr(self, node: Node, hint: str) -> str:
        """An expression for `node` that is safe to concatenate and to quantify."""
        # keyed by identity; the node is kept in the entry so that its id cannot be reused by
        # another (later) node while this grammar is being written
        entry = self.memo.get(id(node))
        if entry is None or entry[0] is not node:
            entry = (node, self._expr(node, hint))
            self.memo[id(node)] = entry
        return entry[1]

    def _expr(self, node: Node, hint: str) -> str:
        py = self.style == "python"
        if isinstance(node, Def):
            name = node.ref.rsplit("/", 1)[-1].replace("~1", "_").replace("~0", "_")
            return self.expr(node.node, f"{name}_r{node.budget}")
        if isinstance(node, Str):
            return self._string(node, hint)
        if isinstance(node, Int):
            if node.lo is None and node.hi is None:
                return self.use("INT")
            if node.lo == 0 and node.hi is None:
                return self.use("NONNEG_INT")
            body = "/" + formats.int_range_regex(node.lo, node.hi) + "/"
            lo = "n" if node.lo is None else str(node.lo).replace("-", "m")
            hi = "n" if node.hi is None else str(node.hi).replace("-", "m")
            return self.terminal(f"int_{lo}_{hi}", body)
        if isinstance(node, Num):
            if not node.bounded:
                return self.use("NUMBER")
            if (node.lo, node.lo_ex, node.hi) == (0, False, None):
                return self.use("NONNEG_DECIMAL")
            lo = "n" if node.lo is None else str(node.lo).replace("-", "m") + ("x" if node.lo_ex else "")
            hi = "n" if node.hi is None else str(node.hi).replace("-", "m") + ("x" if node.hi_ex else "")
            terms = [self.terminal(f"num_{lo}_{hi}", f"/{alt}/")
                     for alt in formats.number_range_alternatives(node.lo, node.lo_ex, node.hi, node.hi_ex)]
            if not terms:
                raise GrammarError("a number range without values")  # lowering returns None first
            return terms[0] if len(terms) == 1 else self.rule(f"num_{lo}_{hi}", " | ".join(terms))
        if isinstance(node, Bool):
            return self.use("PY_BOOL" if py else "JSON_BOOL")
        if isinstance(node, Null):
            return self.use("PY_NONE" if py else "JSON_NULL")
        if isinstance(node, Lit):
            alts = [self.literal(v) for v in node.values]
            return alts[0] if len(alts) == 1 else self.rule(hint, " | ".join(alts))
        if isinstance(node, Union):
            alts = list(dict.fromkeys(self.expr(a, f"{hint}_{i}") for i, a in enumerate(node.alts)))
            return alts[0] if len(alts) == 1 else self.rule(hint, " | ".join(alts))
        if isinstance(node, Arr):
            return self._array(node, hint)
        if isinstance(node, Obj):
            items = [(f"{lark_literal(render(k, self.style) + ': ')} {self.expr(sub, f'{hint}_{k}')}", req)
                     for k, sub, req in node.props]
            body, optional = self.sequence(items, hint)
            if not body:
                return lark_literal("{}")
            return self.rule(hint, f'"{{" {"[" + body + "]" if optional else body} "}}"')
        if isinstance(node, Map):
            if node.value is None:
                return lark_literal("{}")
            pair = f'{self.use("STRING")} ": " {self.expr(node.value, hint + "_value")}'
            return self.rule(hint, self.repeat('"{"', '"}"', pair, node.min_size, node.max_size))
        if isinstance(node, AnyV):
            return self._any(node.depth)
        raise TypeError(f"unknown node {node!r}")

    def _string(self, node: Str, hint: str) -> str:
        if node.regex is not None:
            return self.terminal(hint, '/"' + patterns.to_literal_regex(node.regex) + '"/')
        lo, hi = node.min_len, node.max_len
        if (lo, hi) == (0, None):
            return self.use("STRING")
        if (lo, hi) == (1, None):
            return self.use("NONEMPTY_STRING")
        if hi == 0:
            return lark_literal('""')
        char = self.use("STRING_CHAR")
        return self.rule(f"{hint}_str", f'"\\"" {self.times(char, lo, hi, "chars")} "\\""')

    # Lark rewrites `x ~ 0..m` as m+1 alternatives of lengths 0..m (O(m^2) symbols, which its
    # grammar analysis and anything built on its loader pay for); above this bound "up to k
    # more" is a chain of optional blocks of 1, 2, 4, ... units (O(k) symbols, log k rules).
    SMALL_REPEAT = 4

    def times(self, unit: str, lo: int, hi: "int | None", hint: str) -> str:
        """`unit` (an atomic expression) repeated lo..hi times (hi None: unbounded)."""
        parts = []
        if lo:
            parts.append(unit if lo == 1 else f"{unit} ~ {lo}")
        if hi is None:
            parts.append(f"{unit}*")
        elif hi > lo:
            extra = hi - lo
            if extra <= self.SMALL_REPEAT:
                parts.append(f"{unit}?" if extra == 1 else f"{unit} ~ 0..{extra}")
            else:
                parts.append(self.up_to(unit, extra, hint))
        return " ".join(parts)

    def up_to(self, unit: str, k: int, hint: str) -> str:
        """A rule matching `unit` 0..k times: optional blocks of 1, 2, 4, ... units and a last
        block for the remainder, so every count 0..k is some choice of blocks."""
        sizes, total = [], 0
        while total + (1 << len(sizes)) <= k:
            sizes.append(1 << len(sizes))
            total += sizes[-1]
        if k > total:
            sizes.append(k - total)
        name = ""
        for size in reversed(sizes):
            block = unit if size == 1 else f"{unit} ~ {size}"
            name = self.rule(f"{hint}_upto{k}", f"[{block}]" + (f" {name}" if name else ""))
        return name

    def repeat(self, open_: str, close: str, item: str, lo: int, hi: "int | None") -> str:
        """open item (", " item)... close with lo..hi items (hi None: unbounded)."""
        if hi == 0:
            return f"{open_} {close}"
        more = self.times(f'(", " {item})', max(lo - 1, 0), None if hi is None else hi - 1, item.lower() + "_more")
        inner = f"{item} {more}".strip()
        return f"{open_} {inner} {close}" if lo >= 1 else f"{open_} [{inner}] {close}"

    def _array(self, node: Arr, hint: str) -> str:
        lo, hi = node.min_items, node.max_items
        prefix = list(node.prefix)
        if hi is not None:
            prefix = prefix[:hi]
        if not prefix:
            if node.items is None or hi == 0:
                return lark_literal("[]")
            item = self.expr(node.items, hint + "_item")
            return self.rule(hint, self.repeat('"["', '"]"', item, lo, hi))
        exprs = [self.expr(p, f"{hint}_{i}") for i, p in enumerate(prefix)]
        k = len(exprs)
        # the elements after the prefix: between max(lo-k, 0) and hi-k more
        tail = ""
        if node.items is not None and (hi is None or hi > k):
            item = self.expr(node.items, hint + "_item")
            a, b = max(lo - k, 0), None if hi is None else hi - k
            tail = self.times(f'(", " {item})', a, b, item.lower() + "_more")
        # positions k-1 .. 0, each optional once the minimum is met
        inner = tail
        for i in range(k - 1, -1, -1):
            piece = (exprs[i] if i == 0 else f'", " {exprs[i]}') + (f" {inner}" if inner else "")
            inner = piece if i < lo else f"[{piece}]"
        return self.rule(hint, f'"[" {inner} "]"')

    def _any(self, depth: int) -> str:
        py = self.style == "python"
        scalars = [self.use("STRING"), self.use("NUMBER"), self.use("PY_BOOL" if py else "JSON_BOOL"),
                   self.use("PY_NONE" if py else "JSON_NULL")]
        if depth <= 0:
            return self.rule("any_scalar", " | ".join(scalars))
        inner = self._any(depth - 1)
        array = self.repeat('"["', '"]"', inner, 0, None)
        obj = self.repeat('"{"', '"}"', f'{self.use("STRING")} ": " {inner}', 0, None)
        return self.rule(f"any_depth{depth}", " | ".join(scalars + [array, obj]))

    # ------------------------------------------------------------------ sequences

    # Lark expands every `[x]` of a rule into "with and without", so a rule holding k of them
    # has 2**k expansions (in Lark and in anything built on Lark's loader). Long runs of optional
    # items are therefore chained through small rules, at most this many optional items each.
    MAX_OPTIONAL_PER_RULE = 3

    def sequence(self, items: "list[tuple[str, bool]]", hint: str) -> "tuple[str, bool]":
        """Items in order joined by ", ": required ones always, optional ones omittable.
        Returns (expression, may_be_empty); the expression is '' when there are no items."""
        n = len(items)
        if n == 0:
            return "", True
        first_req = next((i for i, (_, req) in enumerate(items) if req), None)
        starts = range(0, (first_req if first_req is not None else n - 1) + 1)
        tails: dict[int, str] = {}

        def tail(i: int) -> str:
            """Items i.. each preceded by ", " ('' past the end); long runs continue in a rule."""
            if i not in tails:
                parts, j, optional = [], i, 0
                while j < n:
                    e, req = items[j]
                    if not req:
                        if optional == self.MAX_OPTIONAL_PER_RULE:
                            break
                        optional += 1
                    parts.append(f'", " {e}' if req else f'[", " {e}]')
                    j += 1
                if j < n:
                    parts.append(self.rule(f"{hint}_from{j}", tail(j)))
                tails[i] = " ".join(parts)
            return tails[i]

        alts = [" ".join(filter(None, (items[j][0], tail(j + 1)))) for j in starts]
        if len(alts) == 1:
            return alts[0], first_req is None
        return self.rule(hint + "_args", " | ".join(alts)), first_req is None


def _check_functions(functions: Sequence[FunctionSpec], include_no_relevant: bool) -> list[FunctionSpec]:
    if isinstance(functions, FunctionSpec):
        functions = [functions]
    specs = list(functions)
    for f in specs:
        if not isinstance(f, FunctionSpec):
            raise GrammarError(f"expected FunctionSpec objects, got {type(f).__name__}")
    names = [f.name for f in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise GrammarError(f"duplicate function names: {', '.join(dupes)}")
    if include_no_relevant:
        if NO_RELEVANT_FUNCTION.name in names:
            raise GrammarError(f"{NO_RELEVANT_FUNCTION.name!r} is reserved (it is always offered); "
                               "rename the function or pass include_no_relevant=False")
        specs.append(NO_RELEVANT_FUNCTION)
    if not specs:
        raise GrammarError("no functions to build a grammar for")
    return specs


def to_lark(functions: Sequence[FunctionSpec], style: str = "python", *, max_depth: int = 3,
            strict: bool = False, parallel: bool = True, include_no_relevant: bool = True,
            max_repeat: int = 64, max_pattern_states: int = MAX_PATTERN_STATES) -> str:
    """Lark grammar (start rule `start`) accepting exactly the canonical calls to `functions`.

    style: "python" (``f(a=1, b="x")``, values as Python literals) or "json"
    (``{"name": "f", "arguments": {"a": 1, "b": "x"}}``). `parallel` adds the list form
    ``[call, call, ...]``; `include_no_relevant` adds ``no_relevant_function(query="...")`` as a
    call that stands alone. `max_depth` bounds recursive schemas and free-form values;
    `max_repeat` bounds the lengths and item counts that are expressed; a `pattern` whose
    automaton needs more than `max_pattern_states` states is not expressed. Keywords that are not
    expressed are reported as GrammarWarning, or raised as GrammarError when `strict`.
    """
    if style not in STYLES:
        raise GrammarError(f"unknown style {style!r}: expected 'python' or 'json'")
    specs = _check_functions(functions, include_no_relevant)
    reporter = Reporter(strict)
    emitter = _Emitter(style, max_repeat)
    call_rules: list[str] = []
    no_relevant_rule = None
    with deep_recursion():
        for spec in specs:
            lowering = Lowering(spec.defs, max_depth=max_depth, max_repeat=max_repeat, strict=strict,
                                max_pattern_states=max_pattern_states)
            try:
                params = lower_function(spec, lowering)
            except RecursionError:
                raise GrammarError(f"the schemas of {spec.name!r} nest too deeply to lower", spec.source) from None
            reporter.extend(collect_warnings(lowering, [node for _, node in params]))
            hint = f"{spec.name}"
            items = []
            for p, node in params:
                key = f"{p.name}=" if style == "python" else render(p.name, "json") + ": "
                items.append((f"{lark_literal(key)} {emitter.expr(node, f'{hint}_{p.name}')}", p.required))
            body, optional = emitter.sequence(items, hint)
            args = f"[{body}]" if body and optional else body
            if style == "python":
                head, tail = f"{spec.name}(", ")"
            else:
                head, tail = '{"name": ' + render(spec.name, "json") + ', "arguments": {', "}}"
            text = " ".join(part for part in (lark_literal(head), args, lark_literal(tail)) if part)
            name = emitter._fresh("fn_" + _rule_name(spec.name))
            emitter.rules[name] = text
            if spec is NO_RELEVANT_FUNCTION:
                no_relevant_rule = name
            else:
                call_rules.append(name)
    reporter.emit(stacklevel=3)

    head_rules = {}
    if call_rules:
        head_rules["call"] = " | ".join(call_rules)
        calls = 'call | "[" call (", " call)* "]"' if parallel else "call"
        head_rules["start"] = calls + (f" | {no_relevant_rule}" if no_relevant_rule else "")
    else:
        head_rules["start"] = no_relevant_rule  # type: ignore[assignment]

    common = common_terminals()
    needed, pending = set(), list(emitter.common)
    while pending:  # common terminals may use one another
        t = pending.pop()
        if t not in needed:
            needed.add(t)
            pending += [u for u in re.findall(r"\b[A-Z][A-Z0-9_]*\b", common[t]) if u in common]
    lines = [f"// octogram grammar: style={style}, max_depth={max_depth}, functions: "
             + ", ".join(s.name for s in specs)]
    lines += [f"{k}: {v}" for k, v in head_rules.items()]
    lines += [f"{k}: {v}" for k, v in emitter.rules.items()]
    lines += [f"{k}: {v}" for k, v in emitter.terminals.items()]
    lines += [f"{k}: {common[k]}" for k in sorted(needed)]
    return "\n".join(lines) + "\n"
