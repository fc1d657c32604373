"""Agreement between the predictor f and the interpreter g.

Paper, "Evaluating the trained models — Fidelity of interpreter" (share of samples where g's class is
f's) and supplement "Disagreement analysis": when they disagree, what matters is whether f's class is
among g's top classes. ``rank_of_class`` gives that rank; f's class is within g's top-k exactly when
its rank is at most k (the same count as scikit-learn's ``top_k_accuracy_score`` when scores are
distinct).
"""

from __future__ import annotations

from torch import Tensor


def rank_of_class(scores: Tensor, classes: Tensor) -> Tensor:
    """1-based rank of ``classes[n]`` among the classes ordered by ``scores[n]``, best first.

    Args:
        scores: ``(N, C)`` scores (logits or probabilities) of g.
        classes: ``(N,)`` the class whose rank is wanted (e.g. f's prediction).

    Returns:
        ``(N,)`` ranks: 1 + the number of classes with a strictly larger score.
    """
    own = scores.gather(1, classes.view(-1, 1))
    return (scores > own).sum(dim=1) + 1
