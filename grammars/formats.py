"""What the grammar knows about `format` values, and integer ranges written as regexes.

String formats become patterns over the value (full match). `EXACT_FORMATS` follow their RFC's
syntax (calendar validity, e.g. 30 February, is not checked); `APPROXIMATE_FORMATS` accept a
common, documented subset and are reported with a GrammarWarning. Integer formats are ranges.
"""

from __future__ import annotations

from . import patterns

_DATE = r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]{1,9})?"
_OFFSET = r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_H16 = r"[0-9A-Fa-f]{1,4}"

EXACT_FORMATS: dict[str, str] = {
    "date": _DATE,
    "date-time": _DATE + "T" + _TIME + _OFFSET,
    "time": _TIME + _OFFSET + "?",  # the offset is optional: "14:30:00" is what people send
    "uuid": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "ipv4": rf"{_OCTET}(?:\.{_OCTET}){{3}}",
    "byte": r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?",
    # RFC 4648 section 5; the padding is optional, as most APIs leave it out
    "base64url": r"(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}(?:==)?|[A-Za-z0-9_-]{3}=?)?",
    "date-time-rfc1123": r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (?:0[1-9]|[12][0-9]|3[01]) "
                         r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
                         r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60) GMT",
    "duration": r"-?P(?:[0-9]+Y)?(?:[0-9]+M)?(?:[0-9]+W)?(?:[0-9]+D)?"
                r"(?:T(?:[0-9]+H)?(?:[0-9]+M)?(?:[0-9]+(?:\.[0-9]+)?S)?)?",
}

APPROXIMATE_FORMATS: dict[str, str] = {
    "email": rf"[A-Za-z0-9._%+-]+@{_LABEL}(?:\.{_LABEL})+",
    "hostname": rf"{_LABEL}(?:\.{_LABEL})*",
    "uri": r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\"<>\\^`{|}]+",
    "uri-reference": r"[^\s\"<>\\^`{|}]*",
    "ipv6": rf"(?:{_H16}:){{7}}{_H16}|(?:(?:{_H16}:){{0,6}}{_H16})?::(?:(?:{_H16}:){{0,6}}{_H16})?",
}

ALIASES = {"datetime": "date-time", "dateTime": "date-time", "date_time": "date-time",
           "google-datetime": "date-time", "guid": "uuid", "url": "uri", "ip": "ipv4",
           "idn-email": "email", "idn-hostname": "hostname", "iri": "uri",
           "iri-reference": "uri-reference", "google-duration": "duration"}

# Formats that carry no constraint on the text (hints for tools and documentation).
ANNOTATION_FORMATS = {"binary", "password", "string", "text", "textarea", "html", "markdown"}

INTEGER_FORMATS: dict[str, tuple[int, int]] = {
    "int8": (-2**7, 2**7 - 1), "int16": (-2**15, 2**15 - 1),
    "int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1),
    "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1), "uint64": (0, 2**64 - 1),
}
# Number formats name a binary representation, not a set of texts; these integer formats
# name a meaning, not a range.
NUMBER_FORMATS = {"float", "double", "decimal", "number", "int32", "int64"}
INTEGER_ANNOTATIONS = {"unix-time", "timestamp", "integer", "int"}
# A string that holds an integer (Google APIs send 64-bit integers as strings).
STRING_INTEGER_FORMATS = {**INTEGER_FORMATS, "integer": (None, None), "int": (None, None)}


def string_format(name: str):
    """(full-match regex AST, exact) for a known string format, None for an annotation-only
    format; raises KeyError for an unknown one."""
    name = ALIASES.get(name, name)
    if name in ANNOTATION_FORMATS:
        return None
    if name in STRING_INTEGER_FORMATS:
        return _parsed(int_range_regex(*STRING_INTEGER_FORMATS[name])), True
    if name in EXACT_FORMATS:
        return _parsed(EXACT_FORMATS[name]), True
    return _parsed(APPROXIMATE_FORMATS[name]), False


_CACHE: dict[str, patterns.Node] = {}


def _parsed(source: str) -> patterns.Node:
    if source not in _CACHE:
        _CACHE[source] = patterns.parse(source)
    return _CACHE[source]


# ----------------------------------------------------------------------------- integer ranges

def _same_length(lo: str, hi: str) -> list[str]:
    """Regex alternatives for the decimal numbers lo..hi, both written with the same length."""
    if lo == hi:
        return [lo]
    if len(lo) == 1:
        return [f"[{lo}-{hi}]"]
    if lo[0] == hi[0]:
        return [lo[0] + _group(_same_length(lo[1:], hi[1:]))]
    n = len(lo) - 1
    out = []
    if lo[1:] == "0" * n:
        first = int(lo[0])
    else:
        out.append(lo[0] + _group(_same_length(lo[1:], "9" * n)))
        first = int(lo[0]) + 1
    last = int(hi[0]) if hi[1:] == "9" * n else int(hi[0]) - 1
    if first <= last:
        digit = str(first) if first == last else f"[{first}-{last}]"
        out.append(digit + ("[0-9]" if n == 1 else "[0-9]{%d}" % n))
    if hi[1:] != "9" * n:
        out.append(hi[0] + _group(_same_length("0" * n, hi[1:])))
    return out


def _group(alts: list[str]) -> str:
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def _non_negative(lo: int, hi: int | None) -> list[str]:
    """Alternatives for lo..hi (hi None = unbounded), 0 <= lo, canonical decimal (no leading 0)."""
    out: list[str] = []
    if lo == 0:
        out.append("0")
        lo = 1
        if hi == 0:
            return out
    run: list[int] = []  # consecutive lengths whose every number is in range, merged into one

    def flush(unbounded: bool = False) -> None:
        if run:
            a, b = run[0] - 1, None if unbounded else run[-1] - 1
            out.append("[1-9]" if b == 0 else "[1-9][0-9]" + patterns.quantifier(a, b))
            run.clear()

    length = len(str(lo))
    while True:
        if hi is None and lo == 10 ** (length - 1):  # every longer number is in range too
            run.append(length)
            flush(unbounded=True)
            return out
        top = 10 ** length - 1 if hi is None else min(hi, 10 ** length - 1)
        if lo == 10 ** (length - 1) and top == 10 ** length - 1:
            run.append(length)
        else:
            flush()
            out += _same_length(str(lo), str(top))
        length += 1
        lo = 10 ** (length - 1)
        if hi is not None and length > len(str(hi)):
            flush()
            return out


def int_range_regex(lo: int | None, hi: int | None) -> str:
    """Regex for the canonical decimal integers in [lo, hi] (None = unbounded); '' if empty."""
    if lo is not None and hi is not None and lo > hi:
        return ""
    # Longest alternatives first: Lark matches terminals with Python's leftmost-first `re`,
    # so "12" must not stop at "1". (The language is the same in any order.)
    alts = []
    if hi is None or hi >= 0:  # the non-negative part
        alts += _non_negative(max(lo, 0) if lo is not None else 0, hi)[::-1]
    if lo is None or lo < 0:  # the negative part: -(magnitudes)
        mag_lo = 1 if hi is None or hi >= 0 else -hi
        mag_hi = None if lo is None else -lo
        alts.append("-" + _group(_non_negative(mag_lo, mag_hi)[::-1]))
    return "|".join(alts)


# ----------------------------------------------------------------------------- number ranges

_FRACTION = r"(?:\.[0-9]+)?"


def _magnitudes(lo: int, lo_ex: bool, hi: "int | None", hi_ex: bool) -> list[str]:
    """Alternatives for plain decimals n[.f] >= 0 between integer bounds (hi None: unbounded)."""
    out = []
    start = lo + 1 if lo_ex else lo
    if lo_ex:
        out.append(f"{lo}\\.[0-9]*[1-9][0-9]*")  # lo < x < lo + 1
    if hi is None:
        out.append(_group(_non_negative(start, None)[::-1]) + _FRACTION)
        return out
    if start <= hi - 1:  # integer parts below hi take any fraction
        out.append(_group(_non_negative(start, hi - 1)[::-1]) + _FRACTION)
    if not hi_ex and hi >= start:
        out.append(f"{hi}(?:\\.0+)?")  # exactly hi
    return out


def number_range_alternatives(lo: "int | None", lo_ex: bool, hi: "int | None", hi_ex: bool) -> list[str]:
    """Regex alternatives (each a whole number token) for the plain decimals (JSON number syntax
    without an exponent; no negative zero) x with lo <= x <= hi, bounds integers or None,
    exclusive where flagged. Each alternative is meant to be its own terminal: Lark matches a
    terminal with Python's leftmost-first `re`, which must not stop inside a longer number."""
    alts: list[str] = []
    if hi is None or hi > 0 or (hi == 0 and not hi_ex):
        if lo is not None and lo >= 0:
            alts += _magnitudes(lo, lo_ex, hi, hi_ex)
        else:
            alts += _magnitudes(0, False, hi, hi_ex)
    if lo is None or lo < 0:  # x < 0: its magnitude lies in (max(0, -hi), -lo]
        ylo, ylo_ex = (-hi, hi_ex) if hi is not None and hi < 0 else (0, True)
        yhi, yhi_ex = (None, False) if lo is None else (-lo, lo_ex)
        alts += ["-" + m for m in _magnitudes(ylo, ylo_ex, yhi, yhi_ex)]
    return alts
