"""Regular expressions of string values: JSON-Schema `pattern`s and the string formats.

A pattern (ECMA-262 syntax, as JSON Schema specifies) is parsed into a small AST over Unicode
code points. The AST is then written out in two ways:

* `to_value_regex` — a Python `re` regex over the *value*, used to validate parsed calls;
* `to_literal_regex` — a regex over the *quoted literal that spells the value* in a call. A
  value character that the call syntax must escape (a quote, a backslash, a control character)
  becomes its escape sequence, exactly as `json.dumps(..., ensure_ascii=False)` writes it.

Only the masking layer's regex subset is ever emitted: literals, `\\xNN`/`\\uNNNN` escapes,
character classes, `(?:...)`, `|` and the quantifiers `* + ? {n} {n,} {n,m}`.
Anchors are accepted only where they can be removed (`^` first and `$` last in a branch); a
branch without them means "contains", as in JSON Schema. `\\p{...}` is supported for general
categories (`\\p{L}`, `\\p{Lu}`, `\\p{Letter}`), `ASCII` and `Any`. Lookaround, backreferences,
word boundaries and other Unicode properties raise `RegexUnsupported`.
"""

from __future__ import annotations

import functools
import random

MAX_CP = 0x10FFFF
Ranges = tuple  # tuple[tuple[int, int], ...] sorted, disjoint, inclusive
Node = tuple  # ("set", ranges) | ("seq", nodes) | ("alt", nodes) | ("rep", node, lo, hi|None) | ("bol",) | ("eol",)


class RegexUnsupported(ValueError):
    """The pattern uses a construct that a finite automaton over the value cannot express here."""


# ----------------------------------------------------------------------------- character sets

def norm(ranges) -> Ranges:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def complement(ranges: Ranges) -> Ranges:
    out, prev = [], 0
    for lo, hi in ranges:
        if lo > prev:
            out.append((prev, lo - 1))
        prev = hi + 1
    if prev <= MAX_CP:
        out.append((prev, MAX_CP))
    return tuple(out)


def minus(a: Ranges, b: Ranges) -> Ranges:
    return intersect(a, complement(b))


def intersect(a: Ranges, b: Ranges) -> Ranges:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def contains(ranges: Ranges, cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


def _chars(text: str) -> Ranges:
    return norm((ord(c), ord(c)) for c in text)


DIGIT = ((0x30, 0x39),)
WORD = norm([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
SPACE = norm([(0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
              (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000),
              (0xFEFF, 0xFEFF)])
LINE_TERMINATORS = _chars("\n\r\u2028\u2029")
ANY = ((0, MAX_CP),)
DOT = complement(LINE_TERMINATORS)
SURROGATES = ((0xD800, 0xDFFF),)

# What the call syntax escapes inside a string literal, and how (json.dumps, ensure_ascii=False).
SPECIAL = norm([(0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C)])
SHORT_ESCAPES = {0x22: '"', 0x5C: "\\", 0x08: "b", 0x0C: "f", 0x0A: "n", 0x0D: "r", 0x09: "t"}


def escape_char(cp: int) -> str:
    """How a string literal in a call spells the special character `cp`."""
    if cp in SHORT_ESCAPES:
        return "\\" + SHORT_ESCAPES[cp]
    return "\\u%04x" % cp


# ----------------------------------------------------------------------------- Unicode properties

_CATEGORY_NAMES = {
    "Letter": "L", "Cased_Letter": "LC", "Uppercase_Letter": "Lu", "Lowercase_Letter": "Ll",
    "Titlecase_Letter": "Lt", "Modifier_Letter": "Lm", "Other_Letter": "Lo", "Mark": "M",
    "Nonspacing_Mark": "Mn", "Spacing_Mark": "Mc", "Enclosing_Mark": "Me", "Number": "N",
    "Decimal_Number": "Nd", "Letter_Number": "Nl", "Other_Number": "No", "Punctuation": "P",
    "Connector_Punctuation": "Pc", "Dash_Punctuation": "Pd", "Open_Punctuation": "Ps",
    "Close_Punctuation": "Pe", "Initial_Punctuation": "Pi", "Final_Punctuation": "Pf",
    "Other_Punctuation": "Po", "Symbol": "S", "Math_Symbol": "Sm", "Currency_Symbol": "Sc",
    "Modifier_Symbol": "Sk", "Other_Symbol": "So", "Separator": "Z", "Space_Separator": "Zs",
    "Line_Separator": "Zl", "Paragraph_Separator": "Zp", "Other": "C", "Control": "Cc",
    "Format": "Cf", "Surrogate": "Cs", "Private_Use": "Co", "Unassigned": "Cn",
}
_CATEGORIES: dict[str, Ranges] = {}


def unicode_property(name: str) -> "Ranges | None":
    """Code point ranges of an ECMA-262 `\\p{...}` name: a general category (short or long
    name, optionally `General_Category=`/`gc=`), `ASCII` or `Any`; None for anything else
    (scripts, binary properties). Categories are those of Python's `unicodedata`."""
    if name in ("Any",):
        return ANY
    if name == "ASCII":
        return ((0, 0x7F),)
    for prefix in ("General_Category=", "gc="):
        if name.startswith(prefix):
            name = name[len(prefix):]
    code = _CATEGORY_NAMES.get(name, name)
    if not _CATEGORIES:
        import unicodedata
        spans: dict[str, list[tuple[int, int]]] = {}
        start, current = 0, unicodedata.category("\0")
        for cp in range(1, MAX_CP + 2):
            cat = unicodedata.category(chr(cp)) if cp <= MAX_CP else None
            if cat != current:
                spans.setdefault(current, []).append((start, cp - 1))
                start, current = cp, cat
        for cat, ranges in spans.items():
            _CATEGORIES[cat] = norm(ranges)
    if code == "LC":
        return norm(r for c in ("Lu", "Ll", "Lt") for r in _CATEGORIES.get(c, ()))
    if len(code) == 1:
        members = [c for c in _CATEGORIES if c[0] == code]
        return norm(r for c in members for r in _CATEGORIES[c]) if members else None
    return _CATEGORIES.get(code)


# ----------------------------------------------------------------------------- parser

_SYNTAX = set("^$\\.*+?()[]{}|/")
# Escapes that mean something in other regex dialects but not in ECMA-262: refuse rather than
# guess (ECMA would read `\A` as a plain `A`, which is never what the author meant).
_FOREIGN_ESCAPES = set("AZzhHRKGQEXaeiIjJlLmMNoOgyY")


class _Parser:
    def __init__(self, pattern: str):
        self.s, self.i = pattern, 0

    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.s[j] if j < len(self.s) else None

    def fail(self, why: str) -> RegexUnsupported:
        return RegexUnsupported(f"{why} at offset {self.i}")

    def parse(self) -> Node:
        node = self.alt()
        if self.i != len(self.s):
            raise self.fail("unbalanced ')'")
        return node

    def alt(self) -> Node:
        branches = [self.seq()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.seq())
        return branches[0] if len(branches) == 1 else ("alt", tuple(branches))

    def seq(self) -> Node:
        items: list[Node] = []
        while self.peek() is not None and self.peek() not in "|)":
            atom = self.atom()
            atom = self.quantified(atom)
            items.append(atom)
        return items[0] if len(items) == 1 else ("seq", tuple(items))

    def quantified(self, atom: Node) -> Node:
        while True:
            c = self.peek()
            if c == "*":
                lo, hi, n = 0, None, 1
            elif c == "+":
                lo, hi, n = 1, None, 1
            elif c == "?":
                lo, hi, n = 0, 1, 1
            elif c == "{" and (b := self.braces()) is not None:
                lo, hi, n = b
            else:
                return atom
            if atom[0] in ("bol", "eol"):
                raise self.fail("quantifier after an anchor")
            self.i += n
            if self.peek() == "?":  # lazy: same language
                self.i += 1
            if self.peek() in ("*", "+", "?") or (self.peek() == "{" and self.braces()):
                raise self.fail("nothing to repeat (possessive or double quantifier)")
            atom = ("rep", atom, lo, hi)

    def braces(self):
        j, s = self.i + 1, self.s
        k = j
        while k < len(s) and s[k].isdigit():
            k += 1
        if k == j:
            return None
        lo = int(s[j:k])
        if k < len(s) and s[k] == "}":
            return lo, lo, k + 1 - self.i
        if k >= len(s) or s[k] != ",":
            return None
        m = k + 1
        while m < len(s) and s[m].isdigit():
            m += 1
        if m >= len(s) or s[m] != "}":
            return None
        hi = int(s[k + 1:m]) if m > k + 1 else None
        if hi is not None and hi < lo:
            raise self.fail("quantifier range out of order")
        return lo, hi, m + 1 - self.i

    def atom(self) -> Node:
        c = self.s[self.i]
        if c == "(":
            return self.group()
        if c == "[":
            self.i += 1
            return ("set", self.char_class())
        if c == ".":
            self.i += 1
            return ("set", DOT)
        if c == "^":
            self.i += 1
            return ("bol",)
        if c == "$":
            self.i += 1
            return ("eol",)
        if c == "\\":
            self.i += 1
            kind, value = self.escape(in_class=False)
            return ("set", value if kind == "set" else ((value, value),))
        if c in "*+?":
            raise self.fail("nothing to repeat")
        self.i += 1
        return ("set", ((ord(c), ord(c)),))

    def group(self) -> Node:
        self.i += 1
        if self.peek() == "?":
            nxt = self.peek(1)
            if nxt == ":":
                self.i += 2
            elif nxt == "<" and self.peek(2) not in ("=", "!"):
                self.skip_group_name(">")
            elif nxt == "P" and self.peek(2) == "<":
                self.i += 1
                self.skip_group_name(">")
            elif nxt in ("=", "!") or (nxt == "<" and self.peek(2) in ("=", "!")):
                raise self.fail("lookaround")
            else:
                raise self.fail("inline flags or an unknown group kind")
        inner = self.alt()
        if self.peek() != ")":
            raise self.fail("unterminated group")
        self.i += 1
        return inner

    def skip_group_name(self, close: str) -> None:
        end = self.s.find(close, self.i + 2)
        if end < 0:
            raise self.fail("unterminated group name")
        self.i = end + 1

    def escape(self, in_class: bool):
        c = self.peek()
        if c is None:
            raise self.fail("trailing backslash")
        self.i += 1
        if c == "d":
            return "set", DIGIT
        if c == "D":
            return "set", complement(DIGIT)
        if c == "w":
            return "set", WORD
        if c == "W":
            return "set", complement(WORD)
        if c == "s":
            return "set", SPACE
        if c == "S":
            return "set", complement(SPACE)
        simple = {"t": 9, "n": 10, "v": 11, "f": 12, "r": 13}
        if c in simple:
            return "char", simple[c]
        if c == "b":
            if in_class:
                return "char", 8
            raise self.fail("word boundary \\b")
        if c == "B":
            raise self.fail("word boundary \\B")
        if c == "0" and not (self.peek() or "").isdigit():
            return "char", 0
        if c.isdigit():
            raise self.fail("backreference")
        if c == "x":
            return "char", self.hex_digits(2)
        if c == "u":
            if self.peek() == "{":
                end = self.s.find("}", self.i)
                if end < 0:
                    raise self.fail("unterminated \\u{...}")
                try:
                    cp = int(self.s[self.i + 1:end], 16)
                except ValueError:
                    raise self.fail("bad \\u{...}") from None
                self.i = end + 1
                if cp > MAX_CP:
                    raise self.fail("code point out of range")
                return "char", cp
            return "char", self.hex_digits(4)
        if c == "c":
            letter = self.peek()
            if letter is None or not letter.isalpha() or not letter.isascii():
                raise self.fail("bad \\c escape")
            self.i += 1
            return "char", ord(letter) % 32
        if c in "pP":
            if self.peek() != "{":
                raise self.fail("bad \\p escape")
            end = self.s.find("}", self.i)
            if end < 0:
                raise self.fail("unterminated \\p{...}")
            name = self.s[self.i + 1:end]
            ranges = unicode_property(name)
            if ranges is None:
                raise self.fail(f"Unicode property class \\p{{{name}}} (only general categories, ASCII and Any)")
            self.i = end + 1
            return "set", complement(ranges) if c == "P" else ranges
        if c == "k":
            raise self.fail("named backreference")
        if c.isalpha() and (c in _FOREIGN_ESCAPES or c.isascii()):
            raise self.fail(f"escape \\{c} (not ECMA-262)")
        return "char", ord(c)  # identity escape: \. \- \/ \: ...

    def hex_digits(self, n: int) -> int:
        text = self.s[self.i:self.i + n]
        if len(text) != n or any(ch not in "0123456789abcdefABCDEF" for ch in text):
            raise self.fail("bad hex escape")
        self.i += n
        return int(text, 16)

    def class_atom(self):
        c = self.peek()
        if c is None:
            raise self.fail("unterminated character class")
        if c == "\\":
            self.i += 1
            return self.escape(in_class=True)
        self.i += 1
        return "char", ord(c)

    def char_class(self) -> Ranges:
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        items: list[tuple[int, int]] = []
        while True:
            if self.peek() is None:
                raise self.fail("unterminated character class")
            if self.peek() == "]":
                self.i += 1
                break
            kind, lo = self.class_atom()
            if kind == "char" and self.peek() == "-" and self.peek(1) not in (None, "]"):
                self.i += 1
                kind2, hi = self.class_atom()
                if kind2 == "char":
                    if hi < lo:
                        raise self.fail("character range out of order")
                    items.append((lo, hi))
                    continue
                items += [(lo, lo), (0x2D, 0x2D), *hi]  # `[a-\d]`: the dash is literal
                continue
            items += [(lo, lo)] if kind == "char" else list(lo)
        ranges = norm(items)
        return complement(ranges) if negate else ranges


def parse(pattern: str) -> Node:
    """Parse an ECMA-262 pattern; raises RegexUnsupported."""
    if not isinstance(pattern, str):
        raise RegexUnsupported("pattern is not a string")
    return _Parser(pattern).parse()


def _has_anchor(node: Node) -> bool:
    kind = node[0]
    if kind in ("bol", "eol"):
        return True
    if kind in ("seq", "alt"):
        return any(_has_anchor(n) for n in node[1])
    if kind == "rep":
        return _has_anchor(node[1])
    return False


def full_match(node: Node) -> Node:
    """The pattern as a full-match AST without anchors: each top-level branch keeps a leading
    `^` / trailing `$` by dropping it and otherwise gains "any text" on that side (JSON Schema
    patterns are searches, not full matches)."""
    branches = node[1] if node[0] == "alt" else (node,)
    out = []
    anything = ("rep", ("set", ANY), 0, None)
    for branch in branches:
        items = list(branch[1]) if branch[0] == "seq" else [branch]
        start = end = False
        while items and items[0] == ("bol",):
            items.pop(0)
            start = True
        while items and items[-1] == ("eol",):
            items.pop()
            end = True
        if any(_has_anchor(n) for n in items):
            raise RegexUnsupported("an anchor inside the pattern")
        if not start:
            items = _trim_edge_repeats(items[::-1])[::-1]
        if not end:
            items = _trim_edge_repeats(items)
        items = ([] if start else [anything]) + items
        if not end and items[-1:] != [anything]:
            items.append(anything)
        out.append(items[0] if len(items) == 1 else ("seq", tuple(items)))
    return out[0] if len(out) == 1 else ("alt", tuple(out))


def _trim_edge_repeats(items: list) -> list:
    """Next to "any text", `X{n,m}` matches what `X{n}` does (any text absorbs the rest), and
    `X{0,m}` matches nothing extra: trimming keeps the DFA of an unanchored `[a-z]{1,63}` at
    two states instead of one per position and combination (it is the last of `items`)."""
    items = list(items)
    while items and items[-1][0] == "rep" and items[-1][3] != items[-1][2]:
        _, inner, lo, _hi = items.pop()
        if lo > 0:
            items.append(("rep", inner, lo, lo))
            break
    return items


# In a pattern searched from any position (not anchored at the start), a repeat with a wide
# range makes the automaton remember every overlapping attempt: `{0,48}` there is millions of
# states. Fixed counts (`{12}`) stay small.
SEARCH_MAX_SPREAD = 8


def is_search(node: Node) -> bool:
    """True when some branch of a full-match AST starts with "any text" (no `^`)."""
    anything = ("rep", ("set", ANY), 0, None)
    for branch in node[1] if node[0] == "alt" else (node,):
        first = branch[1][0] if branch[0] == "seq" and branch[1] else branch
        if first == anything:
            return True
    return False


def _loosen_repeats(node: Node, loosen) -> tuple[Node, bool]:
    """Replace each `{n,m}` for which `loosen(n, m)` gives a lower bound k by `{k,}`; says if
    it did."""
    kind = node[0]
    if kind in ("seq", "alt"):
        parts = [_loosen_repeats(n, loosen) for n in node[1]]
        return (kind, tuple(p for p, _ in parts)), any(c for _, c in parts)
    if kind == "rep":
        inner, changed = _loosen_repeats(node[1], loosen)
        lo, hi = node[2], node[3]
        k = loosen(lo, hi)
        if k is not None:
            return ("rep", inner, k, None), True
        return ("rep", inner, lo, hi), changed
    return node, False


def bound_search_repeats(node: Node, spread: int) -> tuple[Node, bool]:
    """Replace `{n,m}` with m - n above `spread` by `{n,}`; says if it did."""
    return _loosen_repeats(node, lambda lo, hi: lo if hi is not None and hi - lo > spread else None)


def bound_repeats(node: Node, bound: int) -> tuple[Node, bool]:
    """Replace `{n,m}` with m (or n) above `bound` by `{min(n, bound),}`; says if it did."""
    return _loosen_repeats(node, lambda lo, hi: min(lo, bound)
                           if (hi is not None and hi > bound) or lo > bound else None)


def is_empty(node: Node) -> bool:
    """True when the AST matches no string at all (e.g. an empty class `[]`)."""
    kind = node[0]
    if kind == "set":
        return not node[1]
    if kind == "seq":
        return any(is_empty(n) for n in node[1])
    if kind == "alt":
        return all(is_empty(n) for n in node[1])
    if kind == "rep":
        return node[2] > 0 and is_empty(node[1])
    return False


def single_repeat(node: Node):
    """(set ranges, lo, hi) when the AST is one repeated character class, else None; lets a
    length bound be folded into the pattern (`[a-z]+` with maxLength 8 -> `[a-z]{1,8}`)."""
    if node[0] == "rep" and node[1][0] == "set":
        return node[1][1], node[2], node[3]
    if node[0] == "set":
        return node[1], 1, 1
    return None


# ----------------------------------------------------------------------------- emitters

# Characters written raw; other ASCII punctuation gets a backslash. `\xNN`/`\uNNNN` are used
# only for control and non-ASCII characters: Lark's grammar loader turns those escapes into
# the characters themselves before compiling, which would make an escaped `\x5d` a real `]`.
# A quote is written `\"` too: Lark mis-reads a raw quote right after an escaped backslash.
_SAFE_INSIDE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !#%&',:;<=>@_`~")
_SAFE_OUTSIDE = _SAFE_INSIDE | {"-"}
_SAFE_INSIDE |= set(".*+?(){}|$")


def _cp(cp: int, inside: bool) -> str:
    ch = chr(cp)
    if ch in (_SAFE_INSIDE if inside else _SAFE_OUTSIDE):
        return ch
    if 0x20 < cp < 0x7F:
        return "\\" + ch  # punctuation: \. \] \- \/ \\ ...
    if cp < 0x80:
        return "\\x%02x" % cp
    if cp <= 0xFFFF:
        return "\\u%04x" % cp
    return ch  # astral characters are written raw (UTF-8 in the grammar text)


def _class(ranges: Ranges) -> str:
    """A character class for `ranges`; negated when that is shorter (sets that reach U+10FFFF)."""
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return _cp(ranges[0][0], inside=False)
    if ranges == ANY:  # only in value regexes; literal regexes always exclude the specials
        return "[\\x00-\\U0010ffff]"
    negate = bool(ranges) and ranges[-1][1] == MAX_CP
    body = complement(ranges) if negate else ranges
    parts = []
    for lo, hi in body:
        if lo == hi:
            parts.append(_cp(lo, True))
        elif hi == lo + 1:
            parts.append(_cp(lo, True) + _cp(hi, True))
        else:
            parts.append(_cp(lo, True) + "-" + _cp(hi, True))
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def quantifier(lo: int, hi: int | None) -> str:
    """The regex quantifier for `lo` to `hi` repeats (None: unbounded): `*`, `+`, `?`, `{m,n}`."""
    if (lo, hi) == (0, None):
        return "*"
    if (lo, hi) == (1, None):
        return "+"
    if (lo, hi) == (0, 1):
        return "?"
    if hi is None:
        return "{%d,}" % lo
    if lo == hi:
        return "{%d}" % lo
    return "{%d,%d}" % (lo, hi)


def _emit(node: Node, set_text, top: bool = True) -> str:
    """Generic emitter; `set_text(ranges)` returns (text, is_atomic)."""
    kind = node[0]
    if kind == "set":
        text, atomic = set_text(node[1])
        return text if atomic or top else f"(?:{text})"
    if kind == "seq":
        return "".join(_emit(n, set_text, top=False) if n[0] != "seq" else _emit(n, set_text, top=True)
                       for n in node[1])
    if kind == "alt":
        body = "|".join(_emit(n, set_text, top=True) for n in node[1])
        return body if top else f"(?:{body})"
    if kind == "rep":
        inner = node[1]
        text = _emit(inner, set_text, top=False)
        if inner[0] in ("seq", "rep"):
            text = f"(?:{text})"
        return text + quantifier(node[2], node[3])
    raise ValueError(f"anchor left in the AST: {node!r}")


def _value_set(ranges: Ranges) -> tuple[str, bool]:
    if not ranges:
        raise RegexUnsupported("an empty character class")
    return _class(ranges), True


@functools.lru_cache(maxsize=4096)
def literal_set(ranges: Ranges) -> tuple[str, bool]:
    """Regex (over the literal) for one value character drawn from `ranges`."""
    if not ranges:
        raise RegexUnsupported("an empty character class")
    raw = minus(ranges, SPECIAL)
    special = intersect(ranges, SPECIAL)
    alts = []
    if raw:
        alts.append(_class(raw))
    short = sorted(SHORT_ESCAPES[cp] for lo, hi in special for cp in range(lo, hi + 1) if cp in SHORT_ESCAPES)
    if short:
        body = "".join(_cp(ord(c), True) if c not in "\\" else "\\\\" for c in short)
        alts.append("\\\\" + (body if len(short) == 1 else f"[{body}]"))
    controls = [cp for lo, hi in special for cp in range(lo, hi + 1) if cp not in SHORT_ESCAPES]
    if controls:
        if len(controls) == 32 - 5:  # every control without a short escape
            alts.append("\\\\u00(?:0[0-7bef]|1[0-9a-f])")
        else:
            alts.append("\\\\u00" + ("%02x" % controls[0] if len(controls) == 1
                                      else "(?:" + "|".join("%02x" % c for c in controls) + ")"))
    # atomic = one regex atom, safe to quantify without a group
    return "|".join(alts), len(alts) == 1 and not alts[0].startswith("\\\\")


def to_value_regex(node: Node) -> str:
    """Python `re` regex over the value (use with re.fullmatch)."""
    return _emit(node, _value_set)


def to_literal_regex(node: Node) -> str:
    """Regex over the literal spelling of the value, without the surrounding quotes; grouped,
    so it can be placed between the quotes as is."""
    return _emit(node, literal_set, top=False)


# ----------------------------------------------------------------------------- sampling

# Characters a sample may use for sets that admit nearly everything: they exercise the escapes.
SAMPLE_POOL = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.,:/@#!?()[]{}'"
               '"\\\n\t\r\x01\x1f\x7féü中文😀€')


def sample_char(ranges: Ranges, rng: random.Random) -> str:
    if ranges[-1][1] == MAX_CP:  # nearly everything: draw from the pool, mostly printable
        pool = [c for c in SAMPLE_POOL if contains(ranges, ord(c))]
        if pool:
            return rng.choice(pool)
    usable = minus(ranges, SURROGATES)
    if not usable:
        raise RegexUnsupported("only surrogate code points")
    sizes = [min(hi - lo + 1, 256) for lo, hi in usable]
    lo, hi = rng.choices(usable, weights=sizes)[0]
    return chr(rng.randint(lo, min(hi, lo + 255)))


def sample(node: Node, rng: random.Random, extra: int = 4) -> str:
    """A random string the AST matches; unbounded repeats add at most `extra` items."""
    kind = node[0]
    if kind == "set":
        return sample_char(node[1], rng)
    if kind == "seq":
        return "".join(sample(n, rng, extra) for n in node[1])
    if kind == "alt":
        options = [n for n in node[1] if not is_empty(n)]
        return sample(rng.choice(options), rng, extra)
    if kind == "rep":
        lo, hi = node[2], node[3]
        count = rng.randint(lo, lo + extra if hi is None else min(hi, lo + extra))
        return "".join(sample(node[1], rng, extra) for _ in range(count))
    raise ValueError(f"anchor left in the AST: {node!r}")
