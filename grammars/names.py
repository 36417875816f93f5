"""Valid, unique Python identifiers for function and argument names taken from API documents."""

from __future__ import annotations

import keyword
import re

_NOT_IDENT = re.compile(r"[^0-9A-Za-z_]+")


def identifier(text: str, fallback: str = "arg") -> str:
    """`text` as a Python identifier: runs of other characters become one `_`, a leading digit
    gets a `_` prefix, a keyword gets a `_` suffix (`from` -> `from_`). Deterministic."""
    name = _NOT_IDENT.sub("_", text).strip("_")
    if not name:
        name = fallback
    if name[0].isdigit():
        name = "_" + name
    if keyword.iskeyword(name) or name in ("True", "False", "None"):
        name += "_"
    return name


class NameTable:
    """Hands out unique names in request order: the first `x` stays `x`, later ones `x_2`, `x_3`."""

    def __init__(self, taken: "set[str] | None" = None):
        self.taken: set[str] = set(taken or ())

    def take(self, name: str) -> str:
        candidate, n = name, 1
        while candidate in self.taken:
            n += 1
            candidate = f"{name}_{n}"
        self.taken.add(candidate)
        return candidate
