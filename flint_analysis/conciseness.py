"""Conciseness of interpretations, CNS (paper, "Evaluating the trained models — Conciseness").

For a sample ``x`` with interpreter class ĉ, ``CNS_{g,x} = |{j : r_{j,ĉ,x} > 1/τ}|`` for a threshold
``1/τ``, ``τ > 1``; ``CNS_g(τ)`` is its mean over the test data, plotted against τ (paper Fig. 3–4; the
authors' code uses τ ∈ {1.5, 2, 2.5, 3, 4, 5}). ``r`` is normalised by ``max_i |α_i|`` as the paper
defines it (the authors' current code used the signed max).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from flint_analysis.errors import InputError
from flint_analysis.options import Limit

PAPER_TAUS = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
TAU = Limit(float, minimum=1.0, min_open=True)
"""The one rule for τ: finite and greater than 1 (``--taus`` is parsed with it)."""


def conciseness_counts(relevances: Tensor, tau: float) -> Tensor:
    """``CNS_{g,x}``: ``(N, J)`` relevances ``r_{j,ĉ,x}`` → ``(N,)`` counts of attributes above ``1/τ``."""
    problem = TAU.problem(tau)
    if problem:
        raise InputError(f"τ {problem}")
    return (relevances > 1.0 / tau).sum(dim=1)


def conciseness_curve(relevances: Tensor, taus: Sequence[float] = PAPER_TAUS) -> dict[float, float]:
    """``CNS_g(τ)`` for each τ: the mean of :func:`conciseness_counts` over the samples."""
    if relevances.shape[0] == 0:
        raise InputError("conciseness needs at least one sample")
    return {float(tau): float(conciseness_counts(relevances, tau).double().mean()) for tau in taus}
