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

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum

import numpy as np
import torch
from torch import Tensor

from flint_analysis.distributed import SINGLE_PROCESS, ProcessGroup, gather_concatenated, shard
from flint_analysis.agreement import rank_of_class
from flint_analysis.datasets import ImageDataset
from flint_analysis.errors import InputError
from flint_analysis.inference import ForwardPass
from flint_analysis.options import NON_NEGATIVE_INT, POSITIVE_INT, SEED, Limit, check_options, option
from flint_analysis.projection_depth import MAD_CONVENTIONS, is_degenerate_reference, projection_depth

DEPTH_SPACES = ("pca", "pixels", "attributes")


class DisagreementCategory(str, Enum):
    """The kind of a disagreement sample; the value is its name in the report JSON.

    Attributes:
        code: the sample's value in :attr:`DisagreementAnalysis.category` and ``ClassDepth.disagreeing_category``.
        description: what the category's count in :meth:`DisagreementAnalysis.counts` holds. A sample is of one
            kind only, but the count ``outside_top_k`` holds both kinds outside g's top-k, so it includes
            ``outside_top_k_f_correct``.
    """

    code: int
    description: str

    def __new__(cls, value: str, code: int, description: str) -> DisagreementCategory:
        member = str.__new__(cls, value)
        member._value_ = value
        member.code = code
        member.description = description
        return member

    WITHIN_TOP_K = ("within_top_k", 0, "f's class is among g's top-k classes (acceptable to some extent)")
    OUTSIDE_TOP_K = ("outside_top_k", 1, "f's class is not among g's top-k (includes the next one)")
    OUTSIDE_TOP_K_F_CORRECT = ("outside_top_k_f_correct", 2, "f's class is not among g's top-k and f is right (the worst kind)")

    @classmethod
    def from_code(cls, code: int) -> DisagreementCategory:
        """The category whose :attr:`code` is ``code``."""
        return _CATEGORY_BY_CODE[int(code)]


_CATEGORY_BY_CODE = {category.code: category for category in DisagreementCategory}
_WITHIN, _OUTSIDE, _WORST = (category.code for category in DisagreementCategory)


@dataclass(frozen=True)
class DisagreementAnalysis:
    """The disagreement samples of a split, sorted by how bad they are.

    Attributes:
        k: the top-k used.
        rows: ``(M,)`` rows of the forward pass where g's class ≠ f's.
        indices, labels, f_predictions, g_predictions: ``(M,)``.
        f_rank_in_g: ``(M,)`` rank of f's class among g's classes (≥ 2).
        category: ``(M,)`` :attr:`DisagreementCategory.code` of each sample: 0 within g's top-k, 1 outside and
            f wrong, 2 outside and f right (the worst kind).
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
            DisagreementCategory.WITHIN_TOP_K.value: int((self.category == _WITHIN).sum()),
            DisagreementCategory.OUTSIDE_TOP_K.value: int((self.category != _WITHIN).sum()),
            DisagreementCategory.OUTSIDE_TOP_K_F_CORRECT.value: int((self.category == _WORST).sum()),
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
                DisagreementCategory.WITHIN_TOP_K.value: int((mine & (self.category == _WITHIN)).sum()),
                DisagreementCategory.OUTSIDE_TOP_K.value: int((mine & (self.category != _WITHIN)).sum()),
                DisagreementCategory.OUTSIDE_TOP_K_F_CORRECT.value: int((mine & (self.category == _WORST)).sum()),
            })
        return result

    @property
    def categories(self) -> list[DisagreementCategory]:
        """``(M,)`` the category of each sample."""
        return [DisagreementCategory.from_code(code) for code in self.category.tolist()]

    def worst_cases(self, num_classes: int, per_class: int) -> dict[int, list[int]]:
        """The samples shown as worst cases: outside g's top-k while f is right.

        Returns, for each true class ``0 … num_classes − 1`` that has any (in class order), the positions (into
        this analysis's ``(M,)`` arrays) of its first ``per_class`` such samples, in the analysis's order.
        """
        labels = self.labels.tolist()
        worst = (self.category == _WORST).tolist()
        chosen = {}
        for c in range(num_classes):
            positions = [i for i, (label, bad) in enumerate(zip(labels, worst)) if label == c and bad][:per_class]
            if positions:
                chosen[c] = positions
        return chosen

    def worst_first(self, n: int) -> list[int]:
        """The positions (into the ``(M,)`` arrays) of the ``n`` worst disagreements, worst first.

        Order: the worst kind (f right, f's class outside g's top-k) first, then outside the top-k with f wrong,
        then within the top-k; within a kind, f's class ranked lower by g first (larger ``f_rank_in_g``), then
        by sample index. Deterministic: no ties are left.
        """
        severity = {_WORST: 0, _OUTSIDE: 1, _WITHIN: 2}
        keys = [(severity[int(c)], -int(r), int(i), position)
                for position, (c, r, i) in enumerate(zip(self.category.tolist(), self.f_rank_in_g.tolist(), self.indices.tolist()))]
        return [key[-1] for key in sorted(keys)[:max(n, 0)]]


DEFAULT_TOP_K = 3
"""The paper's top-k of g that counts as acceptable (disagreement analysis: top-3)."""

WORST_PER_CLASS = 8
"""Worst cases drawn per class in the worst-case grid."""


def check_top_k(k: int, num_classes: int) -> None:
    """The one rule for ``k``: ``1 ≤ k < C``.

    Raises:
        InputError: ``k`` is out of range.
    """
    if not 1 <= k < num_classes:
        raise InputError(f"-k {k} is out of range; use 1 ≤ k < {num_classes} (the number of classes)")


def analyse_disagreement(forward: ForwardPass, k: int = DEFAULT_TOP_K) -> DisagreementAnalysis:
    """Find and sort the samples where g's class differs from f's.

    Raises:
        InputError: ``k`` is not in ``1 … C − 1``.
    """
    num_classes = forward.g_logits.shape[1]
    check_top_k(k, num_classes)
    f_pred, g_pred = forward.f_predictions, forward.g_predictions
    rows = torch.nonzero(f_pred != g_pred).flatten()
    ranks = rank_of_class(forward.g_logits[rows], f_pred[rows])
    f_correct = f_pred[rows] == forward.labels[rows]
    category = torch.where(ranks <= k, _WITHIN, torch.where(f_correct, _WORST, _OUTSIDE))
    return DisagreementAnalysis(k, rows, forward.indices[rows], forward.labels[rows], f_pred[rows], g_pred[rows],
                                ranks, category, len(forward), forward.labels)


MAX_DEPTH_DIRECTIONS = 100_000
"""The depth search draws all its directions at once (dimension × directions floats): the cap keeps that under ~1 GB."""


@dataclass(frozen=True)
class DepthConfig:
    """Parameters of the projection-depth analysis.

    Attributes:
        space: ``"pca"`` (default, see the module docstring), ``"pixels"`` (the paper's, strict) or ``"attributes"``.
        pca_components: components of the per-class PCA (capped at a tenth of the class size).
        agreeing_per_class: random agreeing samples per class compared with the disagreements (paper: 100).
        n_directions, refinement_rounds, n_climbs: the depth search budget (see ``projection_depth``).
        seed: seed of the agreeing samples and of the depth search.
        mad_convention: the MAD of an even number of projections, one of
            :data:`~flint_analysis.projection_depth.MAD_CONVENTIONS` (see ``projection_depth``).
    """

    space: str = option("pca", choices=DEPTH_SPACES,
                        help="pca (the inputs on the class's first principal components, non-degenerate), "
                        "pixels (the paper's raw input, strict: mostly exact zeros on pixel data) or attributes (Φ(x))")
    pca_components: int = option(20, POSITIVE_INT, "principal components of the pca space (capped at n/10)")
    agreeing_per_class: int = option(100, POSITIVE_INT, "random agreeing samples per class")
    n_directions: int = option(1000, Limit(int, 1, MAX_DEPTH_DIRECTIONS), "shared random directions of the depth search")
    refinement_rounds: int = option(30, NON_NEGATIVE_INT, "refinement rounds of the depth search")
    n_climbs: int = option(4, POSITIVE_INT, "climbs per query of the depth search")
    seed: int = option(0, SEED)
    mad_convention: str = option("average", choices=MAD_CONVENTIONS, help="the MAD of an even number of projections")

    def __post_init__(self) -> None:
        check_options(self)


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

    def separation(self) -> dict[str, float | None]:
        """:func:`separation` of this class's disagreeing and agreeing depths."""
        return separation(self.disagreeing_depth, self.agreeing_depth)


@dataclass(frozen=True)
class DepthSummary:
    """The depths of all analysed classes pooled (the ``depth.summary`` of the report).

    Attributes:
        auc, p_value: :func:`separation` of all disagreeing against all agreeing depths.
        median_depth_agreeing, median_depth_disagreeing: ``None`` where the group is empty.
        exact_zero_fraction: share of all depths (agreeing and disagreeing) that are proven exactly 0;
            ``None`` without classes.
    """

    auc: float | None
    p_value: float | None
    median_depth_agreeing: float | None
    median_depth_disagreeing: float | None
    exact_zero_fraction: float | None

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


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


def summarise_depths(depths: Sequence[ClassDepth]) -> DepthSummary:
    """Pool the classes of :func:`disagreement_depth`: separation, medians and the share of exact zeros."""
    agreeing = np.concatenate([d.agreeing_depth for d in depths]) if depths else np.zeros(0)
    disagreeing = np.concatenate([d.disagreeing_depth for d in depths]) if depths else np.zeros(0)
    pooled = separation(disagreeing, agreeing)
    return DepthSummary(
        auc=pooled["auc"],
        p_value=pooled["p_value"],
        median_depth_agreeing=float(np.median(agreeing)) if len(agreeing) else None,
        median_depth_disagreeing=float(np.median(disagreeing)) if len(disagreeing) else None,
        exact_zero_fraction=float(np.mean(np.r_[np.concatenate([d.agreeing_exact & (d.agreeing_depth == 0) for d in depths]),
                                                np.concatenate([d.disagreeing_exact & (d.disagreeing_depth == 0) for d in depths])]))
        if depths else None,
    )


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
    group: ProcessGroup = SINGLE_PROCESS,
) -> list[ClassDepth]:
    """Projection depth of each class's disagreement samples and of random agreeing ones (paper Fig. 14).

    Args:
        analysis: the disagreement samples of ``test``.
        test: forward pass over the analysed split; test_data: that split.
        train: forward pass over the training split; train_data: the training split (the references).
        config: parameters.
        progress: show a progress bar over classes.
        group: under ``torchrun``, the classes are shared out over the run's processes and the results gathered;
            every rank returns all classes, equal to one process's (each class's depth has its own seed).

    Only classes with at least one disagreement are analysed; classes are by true label.
    """
    from sklearn.decomposition import PCA
    from flint_analysis.progress import progress_bar

    generator = torch.Generator().manual_seed(config.seed)
    agree_rows = torch.nonzero(test.f_predictions == test.g_predictions).flatten()
    classes = sorted({int(c) for c in analysis.labels})
    chosen_of = {}  # the agreeing samples of every class, drawn in class order from one generator on every rank
    for c in classes:
        candidates = agree_rows[test.labels[agree_rows] == c]
        chosen_of[c] = candidates[torch.randperm(candidates.shape[0], generator=generator)[: config.agreeing_per_class]].sort().values
    results = []
    for c in progress_bar(shard(classes, group), "projection depth", unit="class", enabled=progress and group.is_main):
        reference_rows = torch.nonzero(train.labels == c).flatten()
        n = int(reference_rows.shape[0])
        mine = analysis.labels == c
        dis_rows = analysis.rows[mine]
        chosen = chosen_of[c]
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
                                  refinement_rounds=config.refinement_rounds, n_climbs=config.n_climbs, seed=config.seed,
                                  mad_convention=config.mad_convention)
        a = len(chosen)
        results.append(ClassDepth(
            c, n, d, degenerate, note,
            test.indices[chosen].numpy(), result.depth[:a].copy(), result.exact[:a].copy(),
            test.indices[dis_rows].numpy(), result.depth[a:].copy(), result.exact[a:].copy(),
            analysis.category[mine].numpy(),
        ))
    return gather_concatenated(results, group)
