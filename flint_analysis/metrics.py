"""Quantitative evaluation of a FLINT model on a split (paper, "Evaluating the trained models", Tables 1–3,
Fig. 3–4; supplement "Disagreement analysis" for the top-k fidelity).

- accuracy of f and of g against the labels;
- fidelity: the share of samples where g's class is f's;
- per-class fidelity, grouped by f's class (fidelity is agreement with f, so f's decision defines the
  group; this needs no labels);
- the f-versus-g confusion matrix (rows f's class, columns g's);
- top-k fidelity: the share of samples whose f-class is among g's k best classes
  (scikit-learn's ``top_k_accuracy_score`` with f's prediction as the target);
- conciseness ``CNS_g(τ)`` (:mod:`flint_analysis.conciseness`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flint_analysis.conciseness import PAPER_TAUS, conciseness_curve
from flint_analysis.errors import InputError
from flint_analysis.inference import ForwardPass
from flint_analysis.relevance import sample_relevance

DEFAULT_KS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class ModelMetrics:
    """Metrics of one model on one split (percentages in [0, 100]).

    Attributes:
        num_samples: ``N``.
        accuracy_f, accuracy_g, fidelity: in %.
        per_class_fidelity: ``(C,)`` fidelity among samples f assigns to each class, NaN where f assigns none.
        per_class_counts: ``(C,)`` number of samples f assigns to each class.
        confusion: ``(C, C)`` counts, rows f's class, columns g's class.
        topk_fidelity: ``{k: %}``.
        conciseness: ``{τ: CNS_g(τ)}``.
    """

    num_samples: int
    accuracy_f: float
    accuracy_g: float
    fidelity: float
    per_class_fidelity: np.ndarray
    per_class_counts: np.ndarray
    confusion: np.ndarray
    topk_fidelity: dict[int, float]
    conciseness: dict[float, float]


def topk_fidelity(f_predictions: np.ndarray, g_scores: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[int, float]:
    """Share (%) of samples whose f-class is within g's top-k classes, for each k."""
    num_classes = g_scores.shape[1]
    bad = [k for k in ks if not 1 <= k < num_classes] if num_classes > 2 else [k for k in ks if k != 1]
    if bad:
        raise InputError(f"k = {bad[0]} is out of range: top-k needs 1 ≤ k < {num_classes} (the number of classes)")
    labels = np.arange(num_classes)
    from sklearn.metrics import top_k_accuracy_score  # imported here: listing DEFAULT_KS for --help needs no scikit-learn

    return {int(k): 100.0 * float(top_k_accuracy_score(f_predictions, g_scores, k=k, labels=labels)) for k in ks}


def evaluate(forward: ForwardPass, weight: np.ndarray | None = None, ks: Sequence[int] = DEFAULT_KS,
             taus: Sequence[float] = PAPER_TAUS) -> ModelMetrics:
    """All metrics of a forward pass.

    Args:
        forward: the model's outputs on the split.
        weight: ``(C, J)`` weight of ``h`` (needed for CNS).
        ks: the k of the top-k fidelity.
        taus: the τ of CNS.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix

    if len(forward) == 0:
        raise InputError("the split has no samples")
    labels = forward.labels.numpy()
    f_pred, g_pred = forward.f_predictions.numpy(), forward.g_predictions.numpy()
    num_classes = forward.g_logits.shape[1]
    classes = np.arange(num_classes)
    counts = np.bincount(f_pred, minlength=num_classes)
    agree = np.bincount(f_pred[f_pred == g_pred], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(counts > 0, 100.0 * agree / np.maximum(counts, 1), np.nan)
    relevances = sample_relevance(forward.attributes, forward.g_logits.new_tensor(weight), forward.g_predictions) if weight is not None else None
    return ModelMetrics(
        num_samples=len(forward),
        accuracy_f=100.0 * accuracy_score(labels, f_pred),
        accuracy_g=100.0 * accuracy_score(labels, g_pred),
        fidelity=100.0 * accuracy_score(f_pred, g_pred),
        per_class_fidelity=per_class,
        per_class_counts=counts,
        confusion=confusion_matrix(f_pred, g_pred, labels=classes),
        topk_fidelity=topk_fidelity(f_pred, forward.g_logits.double().numpy(), ks),
        conciseness=conciseness_curve(relevances, taus) if relevances is not None else {},
    )
