"""Counts in words: "1 epoch", "2 epochs"."""

from __future__ import annotations


def plural(n: int | float, word: str, many: str | None = None) -> str:
    """`n` followed by `word`, or by its plural (`many`, default word + "s") unless n is 1."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
