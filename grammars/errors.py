"""Typed errors and warnings of the grammars layer; each one names where the problem is."""

from __future__ import annotations

import warnings


def _located(message: str, location: str) -> str:
    return f"{location}: {message}" if location else message


class GrammarError(ValueError):
    """Bad input: an unreadable document, a schema that cannot be turned into a grammar, a call
    that does not match the offered functions. `location` is a document path with a JSON pointer
    (``api.json#/paths/~1pets/get``), a parameter path (``get_pet.filter.tags[2]``) or a position
    in a text (``line 1, column 7``); `keyword` names the schema keyword when one is at fault."""

    def __init__(self, message: str, location: str = "", keyword: str | None = None):
        super().__init__(_located(message, location))
        self.message, self.location, self.keyword = message, location, keyword

    def __reduce__(self):  # keep location and keyword across processes
        return type(self), (self.message, self.location, self.keyword)


class GrammarWarning(UserWarning):
    """A schema keyword the grammar expresses only approximately or not at all. `to_lark(...,
    strict=True)` raises the same report as a `GrammarError` instead."""

    def __init__(self, message: str, location: str = "", keyword: str | None = None):
        super().__init__(_located(message, location))
        self.message, self.location, self.keyword = message, location, keyword

    def __reduce__(self):
        return type(self), (self.message, self.location, self.keyword)


class Reporter:
    """Collects the warnings of one operation (load, to_lark); strict mode turns the first one
    into a GrammarError. Duplicates (a shared schema reached twice) are reported once."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.items: dict[tuple[str, str, str | None], GrammarWarning] = {}

    def warn(self, message: str, location: str = "", keyword: str | None = None) -> None:
        if self.strict:
            raise GrammarError(message + " (strict mode)", location, keyword)
        key = (message, location, keyword)
        if key not in self.items:
            self.items[key] = GrammarWarning(message, location, keyword)

    def extend(self, reported: "list[GrammarWarning] | tuple[GrammarWarning, ...]") -> None:
        for w in reported:
            self.warn(w.message, w.location, w.keyword)

    def emit(self, stacklevel: int = 3) -> None:
        for w in self.items.values():
            warnings.warn(w, stacklevel=stacklevel)
