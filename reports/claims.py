"""Sentences of a reproduction report that are checked against its numbers.

A report states a conclusion only through :func:`either` (the sentence that the numbers support is
chosen) or :func:`require` (the build fails when the numbers no longer support it), never as fixed text.
"""

from __future__ import annotations

import sys


class ClaimFailed(SystemExit):
    """A sentence the report relies on no longer holds for the numbers it was built from."""


def either(holds: bool, when_true: str, when_false: str) -> str:
    """``when_true`` if the condition computed from the numbers holds, else ``when_false``."""
    return when_true if holds else when_false


def require(holds: bool, claim: str) -> None:
    """Stop the build with a one-line reason when ``claim`` does not hold for this build's numbers."""
    if not holds:
        print(f"build: a claim of the report no longer holds: {claim}; rewrite that part of the report", file=sys.stderr)
        raise ClaimFailed(2)


def increasing(values: list[float]) -> bool:
    return all(a < b for a, b in zip(values, values[1:]))


def decreasing(values: list[float]) -> bool:
    return all(a > b for a, b in zip(values, values[1:]))
