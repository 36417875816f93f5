"""Python-`re` regular expressions (the subset that denotes regular languages) → syntax trees.

A tree is made of tuples over *codepoint* sets, so that the automaton layer can encode every
set as UTF-8 byte ranges:

    ("set", ((lo, hi), ...))     one codepoint from sorted, disjoint, inclusive ranges
    ("cat", (node, ...))         concatenation
    ("alt", (node, ...))         alternation
    ("rep", node, min, max)      repetition, max None = unbounded

Supported: literals, the escapes Python's `re` gives meaning to inside and outside classes,
`\\d \\w \\s` and their negations with `re`'s Unicode meaning, classes with ranges and negation,
`.`, groups (capturing, non-capturing, named), alternation, greedy and lazy quantifiers (a lazy
quantifier matches the same language under full-match semantics). Anchors, word boundaries,
lookaround, backreferences, conditionals, possessive quantifiers and inline flags are rejected
with an error naming the position: they do not denote a regular language of whole matches, or
change meaning with context.
"""

from __future__ import annotations

import functools
import sys

from .compile_errors import GrammarCompileError

MAX_CODEPOINT = sys.maxunicode
Ranges = tuple[tuple[int, int], ...]


def normalize(ranges) -> Ranges:
    """Sort and merge overlapping or adjacent ranges."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def complement(ranges: Ranges) -> Ranges:
    out, nxt = [], 0
    for lo, hi in normalize(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CODEPOINT:
        out.append((nxt, MAX_CODEPOINT))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def _unicode_class(name: str) -> Ranges:
    """`re`'s Unicode meaning of \\d, \\w, \\s for str patterns, as codepoint ranges."""
    test = {"d": str.isdecimal,
            "w": lambda c: c.isalnum() or c == "_",
            "s": lambda c: c in " \t\n\r\f\v\x1c\x1d\x1e\x1f\x85" or c.isspace()}[name]
    ranges, start = [], None
    for cp in range(MAX_CODEPOINT + 1):
        if 0xD800 <= cp <= 0xDFFF:
            ok = False
        else:
            ok = test(chr(cp))
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            ranges.append((start, cp - 1))
            start = None
    if start is not None:
        ranges.append((start, MAX_CODEPOINT))
    return tuple(ranges)


def class_escape(letter: str) -> Ranges:
    base = _unicode_class(letter.lower())
    return complement(base) if letter.isupper() else base


_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a", "0": "\0"}


def _fold_case(ranges: Ranges) -> Ranges:
    """Add the other case of every cased character (what re.IGNORECASE matches, closely)."""
    extra = []
    for lo, hi in ranges:
        if hi - lo > 0x3000:  # a huge range already holds nearly every cased letter
            hi_scan = min(hi, lo + 0x3000)
        else:
            hi_scan = hi
        for cp in range(lo, hi_scan + 1):
            ch = chr(cp)
            for other in (ch.lower(), ch.upper(), ch.casefold()):
                if len(other) == 1 and other != ch:
                    extra.append((ord(other), ord(other)))
    return normalize(ranges + tuple(extra))


def literal(text: str, ignore_case: bool = False):
    """The tree of a literal string."""
    items = []
    for ch in text:
        r = ((ord(ch), ord(ch)),)
        items.append(("set", _fold_case(r) if ignore_case else r))
    return ("cat", tuple(items))


class _Parser:
    def __init__(self, pattern: str, flags: str, where: str, keep_lazy: bool = False):
        self.p = pattern
        self.keep_lazy = keep_lazy
        self.i = 0
        self.ignore_case = "i" in flags
        self.dotall = "s" in flags
        self.where = where
        if "x" in flags:
            self.fail("the verbose flag 'x' is not supported")

    def fail(self, what: str, at: int | None = None):
        pos = self.i if at is None else at
        raise GrammarCompileError(f"{what} at position {pos} of /{self.p}/", where=self.where)

    def peek(self) -> str | None:
        return self.p[self.i] if self.i < len(self.p) else None

    def parse(self):
        node = self.alternation()
        if self.i != len(self.p):
            self.fail("unbalanced ')'")
        return node

    def alternation(self):
        branches = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.sequence())
        return branches[0] if len(branches) == 1 else ("alt", tuple(branches))

    def sequence(self):
        items = []
        while self.peek() not in (None, "|", ")"):
            items.append(self.quantified(self.atom()))
        return ("cat", tuple(items))

    def quantified(self, node):
        c = self.peek()
        if c in ("*", "+", "?"):
            self.i += 1
            lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
        elif c == "{":
            parsed = self.braces()
            if parsed is None:
                return node
            lo, hi = parsed
        else:
            return node
        lazy = self.peek() == "?"
        if lazy:
            self.i += 1  # lazy: same language under full-match semantics
        elif self.peek() == "+":
            self.fail("possessive quantifiers are not supported")
        if self.peek() in ("*", "+", "?") or (self.peek() == "{" and self.braces_ahead()):
            self.fail("multiple repeat")
        if lazy and self.keep_lazy:
            return ("rep", node, lo, hi, True)
        return ("rep", node, lo, hi)

    def braces_ahead(self) -> bool:
        saved = self.i
        try:
            return self.braces() is not None
        finally:
            self.i = saved

    def braces(self):
        """Parse {n}, {n,}, {,m}, {n,m}; a brace that is not a quantifier is a literal (as in re)."""
        j = self.p.find("}", self.i)
        if j < 0:
            return None
        body = self.p[self.i + 1:j]
        parts = body.split(",")
        if len(parts) > 2 or not all(x.strip().isdigit() or x == "" for x in parts) or body == "" \
                or (len(parts) == 1 and parts[0] == ""):
            return None
        if len(parts) == 1:
            lo = hi = int(parts[0])
        else:
            lo = int(parts[0]) if parts[0] else 0
            hi = int(parts[1]) if parts[1] else None
        if hi is not None and hi < lo:
            self.fail(f"bad repetition {{{body}}}")
        self.i = j + 1
        return lo, hi

    def atom(self):
        c = self.peek()
        if c == "(":
            return self.group()
        if c == "[":
            return ("set", self.char_class())
        if c == ".":
            self.i += 1
            return ("set", complement(()) if self.dotall else complement(((10, 10),)))
        if c in ("^", "$"):
            self.fail(f"anchor '{c}' is not supported (a terminal always matches whole)")
        if c in ("*", "+", "?"):
            self.fail("nothing to repeat")
        if c == "\\":
            ranges = self.escape(in_class=False)
        else:
            self.i += 1
            ranges = ((ord(c), ord(c)),)
        return ("set", _fold_case(ranges) if self.ignore_case else ranges)

    def group(self):
        start = self.i
        self.i += 1
        if self.p.startswith("?", self.i):
            rest = self.p[self.i:]
            if rest.startswith("?:"):
                self.i += 2
            elif rest.startswith("?P<"):
                close = self.p.find(">", self.i)
                if close < 0:
                    self.fail("unterminated group name")
                self.i = close + 1
            elif rest[:3] in ("?=", "?!", "?<=", "?<!") or rest[:2] in ("?=", "?!") or rest.startswith("?<"):
                self.fail("lookaround is not supported", start)
            elif rest.startswith("?P="):
                self.fail("backreferences are not supported", start)
            elif rest.startswith("?("):
                self.fail("conditional groups are not supported", start)
            elif rest.startswith("?#"):
                close = self.p.find(")", self.i)
                self.i = close + 1
                return ("cat", ())
            else:
                self.fail("inline flags are not supported (use the terminal's flags)", start)
        node = self.alternation()
        if self.peek() != ")":
            self.fail("missing ')'", start)
        self.i += 1
        return node

    def escape(self, in_class: bool) -> Ranges:
        start = self.i
        self.i += 1
        c = self.peek()
        if c is None:
            self.fail("trailing backslash")
        self.i += 1
        if c in "dwsDWS":
            return class_escape(c)
        if c in _SIMPLE_ESCAPES:
            if c == "0":  # \0 and octal
                digits = "0"
                while len(digits) < 3 and (self.peek() or "x") in "01234567":
                    digits += self.p[self.i]
                    self.i += 1
                cp = int(digits, 8)
                return ((cp, cp),)
            cp = ord(_SIMPLE_ESCAPES[c])
            return ((cp, cp),)
        if c == "b" and in_class:
            return ((8, 8),)
        if c in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[c]
            digits = self.p[self.i:self.i + width]
            if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
                self.fail(f"bad \\{c} escape", start)
            self.i += width
            cp = int(digits, 16)
            return ((cp, cp),)
        if c == "N":
            self.fail("\\N{...} escapes are not supported", start)
        if c.isdigit():
            self.fail("backreferences are not supported", start)
        if c in "AZbBzG":
            self.fail(f"anchor '\\{c}' is not supported (a terminal always matches whole)", start)
        if c.isalnum():
            self.fail(f"bad escape '\\{c}'", start)
        return ((ord(c), ord(c)),)

    def char_class(self) -> Ranges:
        start = self.i
        self.i += 1
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            c = self.peek()
            if c is None:
                self.fail("unterminated character class", start)
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            lo_set = self.class_atom()
            if self.peek() == "-" and self.i + 1 < len(self.p) and self.p[self.i + 1] != "]":
                self.i += 1
                hi_set = self.class_atom()
                if len(lo_set) != 1 or len(hi_set) != 1 or lo_set[0][0] != lo_set[0][1] \
                        or hi_set[0][0] != hi_set[0][1]:
                    self.fail("bad character range", start)
                lo, hi = lo_set[0][0], hi_set[0][0]
                if hi < lo:
                    self.fail("bad character range (end before start)", start)
                ranges.append((lo, hi))
            else:
                ranges.extend(lo_set)
        result = normalize(ranges)
        if self.ignore_case:
            result = _fold_case(result)
        return complement(result) if negate else result

    def class_atom(self) -> Ranges:
        c = self.peek()
        if c == "\\":
            return self.escape(in_class=True)
        if c == "[" and self.p.startswith("[:", self.i):
            self.fail("POSIX classes are not supported")
        self.i += 1
        return ((ord(c), ord(c)),)


def parse_regex(pattern: str, flags: str = "", where: str = "regex", keep_lazy: bool = False):
    """Parse `pattern` (Python `re` syntax) into a codepoint syntax tree. `keep_lazy=True` marks
    lazy repetitions `("rep", node, min, max, True)`, for the matcher that needs which match `re`
    picks (`ignore.py`), not only the language."""
    return _Parser(pattern, flags, where, keep_lazy).parse()


def utf8_sequences(lo: int, hi: int) -> list[list[tuple[int, int]]]:
    """Split a codepoint range into UTF-8 byte-range sequences that match exactly its encodings."""
    out = []
    stack = [(lo, hi)]
    while stack:
        lo, hi = stack.pop()
        if lo > hi:
            continue
        if lo <= 0xDFFF and hi >= 0xD800:  # surrogates have no UTF-8 encoding
            stack.append((lo, 0xD7FF))
            stack.append((0xE000, hi))
            continue
        split = False
        for limit in (0x7F, 0x7FF, 0xFFFF):
            if lo <= limit < hi:
                stack.append((lo, limit))
                stack.append((limit + 1, hi))
                split = True
                break
        if split:
            continue
        if hi <= 0x7F:
            out.append([(lo, hi)])
            continue
        for i in range(1, 4):
            m = (1 << (6 * i)) - 1
            if (lo & ~m) != (hi & ~m):
                if lo & m:
                    stack.append((lo, lo | m))
                    stack.append(((lo | m) + 1, hi))
                    split = True
                    break
                if (hi & m) != m:
                    stack.append((lo, (hi & ~m) - 1))
                    stack.append((hi & ~m, hi))
                    split = True
                    break
        if split:
            continue
        out.append(list(zip(chr(lo).encode(), chr(hi).encode())))
    return out
