"""Disagreement between f and g (paper supplement, "Disagreement analysis", Fig. 13–15, Eq. 1).

Sorting. A disagreement sample (g's class ≠ f's) is "acceptable to some extent" when f's class is
within g's top-k classes (the attributes can still potentially interpret f's prediction); worse when it
is not; and worst when, in addition, f predicts the true label.

Outlyingness. The paper computes the projection depth (Eq. 1, :mod:`flint_analysis.projection_depth`)
of the disagreement samples of a class, and of random agreeing samples of the same class, with respect
to that class's training samples (Fig. 14): low depth means the disagreement is an outlier.

Depth space and degenerate data — the policy. On raw pixels many axes have MAD = 0 and a class of n
training images in d = 784 dimensions with n ≤ 2d lies on hyperplanes, so the *exact* Eq. (1) depth is 0
for almost every sample (see ``projection_depth``): raw-pixel depth as the paper states it tells
nothing apart. The default space is therefore ``"pca"``: the inputs projected on the first
``pca_components`` (default 20, far below n/2) principal components of the class's training images
(scikit-learn's PCA, fitted on the reference class only). Projection depth is affine invariant, so this
is Eq. (1) restricted to the subspace where the class varies most, computed on continuous coordinates.
``"pixels"`` keeps the strict raw-input value (exact zeros proven and marked), ``"attributes"`` uses
Φ(x). The report always records which space and settings were used, and measures whether disagreement
samples can be told from agreeing ones: the ROC AUC of "lower depth ⇒ disagreement" (scikit-learn)
and a one-sided Mann–Whitney U test (scipy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from flint_analysis.agreement import rank_of_class
from flint_analysis.datasets import ImageDataset
from flint_analysis.errors import InputError
from flint_analysis.inference import ForwardPass
from flint_analysis.projection_depth import is_degenerate_reference, projection_depth

CATEGORIES = ("within_top_k", "outside_top_k", "outside_top_k_f_correct")
DEPTH_SPACES = ("pca", "pixels", "attributes")


@dataclass(frozen=True)
class DisagreementAnalysis:
    """The disagreement samples of a split, sorted by how bad they are.

    Attributes:
        k: the top-k used.
        rows: ``(M,)`` rows of the forward pass where g's class ≠ f's.
        indices, labels, f_predictions, g_predictions: ``(M,)``.
        f_rank_in_g: ``(M,)`` rank of f's class among g's classes (≥ 2).
        category: ``(M,)`` index into :data:`CATEGORIES`: 0 within g's top-k, 1 outside and f wrong,
            2 outside and f right (the worst kind).
        num_samples: samples in the split; labels_all: ``(N,)`` their labels (for per-class totals).
    """

    k: int
    rows: Tensor
    indices: Tensor
    labels: Tensor
    f_predictions: Tensor
    g_predictions: Tensor
    f_rank_in_g: Tensor
    category: Tensor
    num_samples: int
    labels_all: Tensor

    def counts(self) -> dict[str, int]:
        """Overall counts; ``outside_top_k`` includes the worst kind, ``outside_top_k_f_correct``."""
        return {
            "samples": self.num_samples,
            "disagreements": int(self.rows.shape[0]),
            "within_top_k": int((self.category == 0).sum()),
            "outside_top_k": int((self.category > 0).sum()),
            "outside_top_k_f_correct": int((self.category == 2).sum()),
        }

    def per_class_counts(self, num_classes: int) -> list[dict[str, int]]:
        """The same counts for each true class."""
        totals = torch.bincount(self.labels_all, minlength=num_classes)
        result = []
        for c in range(num_classes):
            mine = self.labels == c
            result.append({
                "class": c,
                "samples": int(totals[c]),
                "disagreements": int(mine.sum()),
                "within_top_k": int((mine & (self.category == 0)).sum()),
                "outside_top_k": int((mine & (self.category > 0)).sum()),
                "outside_top_k_f_correct": int((mine & (self.category == 2)).sum()),
            })
        return result


def analyse_disagreement(forward: ForwardPass, k: int = 3) -> DisagreementAnalysis:
    """Find and sort the samples where g's class differs from f's.

    Raises:
        InputError: ``k`` is not in ``1 … C − 1``.
    """
    num_classes = forward.g_logits.shape[1]
    if not 1 <= k < num_classes:
        raise InputError(f"-k {k} is out of range; use 1 ≤ k < {num_classes} (the number of classes)")
    f_pred, g_pred = forward.f_predictions, forward.g_predictions
    rows = torch.nonzero(f_pred != g_pred).flatten()
    ranks = rank_of_class(forward.g_logits[rows], f_pred[rows])
    f_correct = f_pred[rows] == forward.labels[rows]
    category = torch.where(ranks <= k, 0, torch.where(f_correct, 2, 1))
    return DisagreementAnalysis(k, rows, forward.indices[rows], forward.labels[rows], f_pred[rows], g_pred[rows],
                                ranks, category, len(forward), forward.labels)


@dataclass(frozen=True)
class DepthConfig:
    """Parameters of the projection-depth analysis.

    Attributes:
        space: ``"pca"`` (default, see the module docstring), ``"pixels"`` (the paper's, strict) or ``"attributes"``.
        pca_components: components of the per-class PCA (capped at a tenth of the class size).
        agreeing_per_class: random agreeing samples per class compared with the disagreements (paper: 100).
        n_directions, refinement_rounds, n_climbs: the depth search budget (see ``projection_depth``).
        seed: seed of the agreeing samples and of the depth search.
    """

    space: str = "pca"
    pca_components: int = 20
    agreeing_per_class: int = 100
    n_directions: int = 1000
    refinement_rounds: int = 30
    n_climbs: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.space not in DEPTH_SPACES:
            raise InputError(f"unknown depth space {self.space!r}; use one of {', '.join(DEPTH_SPACES)}")
        if self.pca_components < 1 or self.agreeing_per_class < 1:
            raise InputError("--pca-components and --agreeing must be positive")


@dataclass(frozen=True)
class ClassDepth:
    """Depths of one class's test samples with respect to its training samples.

    Attributes:
        class_index: the class.
        reference_size: training samples of the class (``n``); dimension: ``d`` of the depth space.
        degenerate: the reference lies on a hyperplane or has MAD = 0 axes, so exact zeros are common.
        note: why the estimate may be weak (``None`` when nothing to say).
        agreeing_indices, agreeing_depth, agreeing_exact: ``(A,)``.
        disagreeing_indices, disagreeing_depth, disagreeing_exact, disagreeing_category: ``(M,)``.
    """

    class_index: int
    reference_size: int
    dimension: int
    degenerate: bool
    note: str | None
    agreeing_indices: np.ndarray
    agreeing_depth: np.ndarray
    agreeing_exact: np.ndarray
    disagreeing_indices: np.ndarray
    disagreeing_depth: np.ndarray
    disagreeing_exact: np.ndarray
    disagreeing_category: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))


def separation(disagreeing: np.ndarray, agreeing: np.ndarray) -> dict[str, float | None]:
    """How well low depth singles out disagreements: ROC AUC and a one-sided Mann–Whitney U p-value.

    AUC = P(depth of a disagreement < depth of an agreeing sample), ties counted one half; ``None``
    where a group is empty.
    """
    from scipy.stats import mannwhitneyu
    from sklearn.metrics import roc_auc_score

    if len(disagreeing) == 0 or len(agreeing) == 0:
        return {"auc": None, "p_value": None}
    truth = np.r_[np.ones(len(disagreeing)), np.zeros(len(agreeing))]
    auc = float(roc_auc_score(truth, -np.r_[disagreeing, agreeing]))
    p_value = float(mannwhitneyu(disagreeing, agreeing, alternative="less").pvalue)
    return {"auc": auc, "p_value": p_value if np.isfinite(p_value) else None}


def _features(space: str, images: Tensor, attributes: Tensor) -> np.ndarray:
    if space == "attributes":
        return attributes.double().numpy()
    return images.flatten(1).double().numpy()


def disagreement_depth(
    analysis: DisagreementAnalysis,
    test: ForwardPass,
    test_data: ImageDataset,
    train: ForwardPass,
    train_data: ImageDataset,
    config: DepthConfig = DepthConfig(),
    progress: bool = False,
) -> list[ClassDepth]:
    """Projection depth of each class's disagreement samples and of random agreeing ones (paper Fig. 14).

    Args:
        analysis: the disagreement samples of ``test``.
        test: forward pass over the analysed split; test_data: that split.
        train: forward pass over the training split; train_data: the training split (the references).
        config: parameters.
        progress: show a progress bar over classes.

    Only classes with at least one disagreement are analysed; classes are by true label.
    """
    from sklearn.decomposition import PCA
    from flint_analysis.progress import progress_bar

    generator = torch.Generator().manual_seed(config.seed)
    agree_rows = torch.nonzero(test.f_predictions == test.g_predictions).flatten()
    classes = sorted({int(c) for c in analysis.labels})
    results = []
    for c in progress_bar(classes, "projection depth", unit="class", enabled=progress):
        reference_rows = torch.nonzero(train.labels == c).flatten()
        n = int(reference_rows.shape[0])
        mine = analysis.labels == c
        dis_rows = analysis.rows[mine]
        candidates = agree_rows[test.labels[agree_rows] == c]
        chosen = candidates[torch.randperm(candidates.shape[0], generator=generator)[: config.agreeing_per_class]].sort().values
        query_rows = torch.cat([chosen, dis_rows])
        reference = _features(config.space, train_data.batch(train.indices[reference_rows])[0], train.attributes[reference_rows])
        queries = _features(config.space, test_data.batch(test.indices[query_rows])[0], test.attributes[query_rows])
        note = None
        if n < 2:
            results.append(ClassDepth(c, n, reference.shape[1], True, f"only {n} training sample(s): no depth",
                                      test.indices[chosen].numpy(), np.zeros(len(chosen)), np.zeros(len(chosen), bool),
                                      test.indices[dis_rows].numpy(), np.zeros(len(dis_rows)), np.zeros(len(dis_rows), bool),
                                      analysis.category[mine].numpy()))
            continue
        if config.space == "pca":
            components = min(config.pca_components, max(1, n // 10), reference.shape[1])
            if components < config.pca_components:
                note = f"{n} training samples: PCA reduced to {components} components (≤ n/10) to keep n ≫ 2d"
            pca = PCA(n_components=components, svd_solver="full").fit(reference)
            reference, queries = pca.transform(reference), pca.transform(queries)
        d = reference.shape[1]
        degenerate = is_degenerate_reference(reference)
        if degenerate and n <= 2 * d:
            note = (f"{n} training samples in {d} dimensions (n ≤ 2d): the data lie on hyperplanes, so the exact depth "
                    "is 0 for almost every sample; use --depth-space pca for a meaningful comparison")
        elif degenerate:
            note = "some directions have MAD = 0 (discrete or constant coordinates): many depths are exactly 0"
        result = projection_depth(queries, reference, n_directions=config.n_directions,
                                  refinement_rounds=config.refinement_rounds, n_climbs=config.n_climbs, seed=config.seed)
        a = len(chosen)
        results.append(ClassDepth(
            c, n, d, degenerate, note,
            test.indices[chosen].numpy(), result.depth[:a].copy(), result.exact[:a].copy(),
            test.indices[dis_rows].numpy(), result.depth[a:].copy(), result.exact[a:].copy(),
            analysis.category[mine].numpy(),
        ))
    return results
