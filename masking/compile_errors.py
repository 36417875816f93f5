"""The masking layer's errors: each names the operation and, where there is one, the grammar line."""

from __future__ import annotations


class GrammarCompileError(ValueError):
    """A grammar could not be compiled into a finite-state mask.

    `where` names the place (a rule or terminal, a grammar line, a regex position) so that the
    message points at what to fix.
    """

    def __init__(self, message: str, *, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class GrammarViolation(RuntimeError):
    """A token that the grammar does not allow reached a matcher that was told to enforce it."""
