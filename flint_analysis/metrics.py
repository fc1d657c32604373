"""Quantitative evaluation of a FLINT model on a split (paper, "Evaluating the trained models", Tables 1–3,
Fig. 3–4; supplement "Disagreement analysis" for the top-k fidelity).

- accuracy of f and of g against the labels;
- fidelity: the share of samples where g's class is f's;
- per-class fidelity, grouped by f's class (fidelity is agreement with f, so f's decision defines the
  group; this needs no labels);
- the f-versus-g confusion matrix (rows f's class, columns g's);
- top-k fidelity: the share of samples whose f-class is among g's k best classes
  (scikit-learn's ``top_k_accuracy_score`` with f's prediction as the target);
- conciseness ``CNS_g(τ)`` (:mod:`flint_analysis.conciseness`), and the share of samples with no attribute
  above ``1/τ`` (what pulls ``CNS_g(τ)`` below 1);
- whether g is *at chance* (:func:`g_at_chance`): its accuracy within :data:`AT_CHANCE_MARGIN` points of the
  majority-class rate. The CNS and top-k fidelity of such a g (BASE-f, whose g is never trained, or a
  collapsed model) interpret nothing and are left out of the comparison figures by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from flint_analysis.conciseness import PAPER_TAUS, conciseness_counts, conciseness_curve
from flint_analysis.errors import InputError
from flint_analysis.inference import ForwardPass
from flint_analysis.relevance import sample_relevance

DEFAULT_KS = (1, 2, 3, 4, 5)

AT_CHANCE_MARGIN = 5.0
"""Percentage points above the majority-class rate within which g counts as at chance (:func:`g_at_chance`).

On the 1,000 test images of mnist5k one binomial standard deviation of an accuracy near 10 % is about
0.95 points, so 5 points is over five standard deviations: a g that learnt anything clears it by far (the demo
g: 96 %), an untrained one (BASE-f: about 7 %) or a collapsed one (about 10 %) does not."""


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
        chance_accuracy: the majority-class rate in %: ``100 · max_c |{x : y(x) = c}| / N``, the accuracy of
            always answering the most frequent label (≥ ``100 / C``).
        conciseness_no_attribute: ``{τ: %}`` share of samples with ``CNS_{g,x}(τ) = 0``: no attribute has
            ``r_{j,ĉ,x} > 1/τ``, which happens when the largest ``|α_j|`` is a negative contribution (or all
            ``α_j = 0``). Each such sample pulls ``CNS_g(τ)`` towards 0, so values below 1 mean *missing*
            explanations, not concise ones.
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
    chance_accuracy: float = 0.0
    conciseness_no_attribute: dict[float, float] = field(default_factory=dict)

    def g_at_chance(self, margin: float = AT_CHANCE_MARGIN) -> bool:
        """:func:`g_at_chance` of this model."""
        return g_at_chance(self.accuracy_g, self.chance_accuracy, margin)


def g_at_chance(accuracy_g: float, chance_accuracy: float, margin: float = AT_CHANCE_MARGIN) -> bool:
    """Whether g's accuracy (%) is within ``margin`` points of the majority-class rate ``chance_accuracy`` (%).

    The rule: ``accuracy_g ≤ chance_accuracy + margin``. The paper compares CNS and top-k fidelity only
    across trained interpreters (Fig. 3–4, Tables 1–3); a g at chance (BASE-f trains f alone, β = γ = δ = 0)
    has relevances of random weights, and its CNS says nothing about conciseness.
    """
    return accuracy_g <= chance_accuracy + margin


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
    label_counts = np.bincount(labels, minlength=num_classes)
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
        chance_accuracy=100.0 * float(label_counts.max()) / len(labels),
        conciseness_no_attribute={float(tau): 100.0 * float((conciseness_counts(relevances, tau) == 0).double().mean()) for tau in taus}
        if relevances is not None else {},
    )
