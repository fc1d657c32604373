"""The global interpretation pipeline (paper, "Interpretation Phase — Global interpretability", Fig. 2).

1. a forward pass over a random training subset ``S_rnd`` (and over the whole training split only when
   the MAS pool is ``"train"``), shared by every later step;
2. relevances ``r_{j,ĉ,x}`` and ``r_{j,c}`` (:mod:`flint_analysis.relevance`) and the pairs above the
   threshold;
3. the MAS of each pair (:mod:`flint_analysis.mas`);
4. for all (pair, MAS) at once: Captum attribution of φ_j, decoder ablation and AM+PI.

Pure computation: tensors in, a :class:`GlobalInterpretation` out. Figures and files are made by
:mod:`flint_analysis.report_writers.global_report`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from flint_analysis.am_pi import AmPiConfig, AmPiResult, AmPiSummary  # AmPiSummary: re-exported
from flint_analysis.attribute_tools import (
    AUTO, DEFAULT_TOOL_BATCH_SIZE, AttributeToolResults, AttributeToolsConfig, resolve_attribution, run_attribute_tools,
)
from flint_analysis.distributed import SINGLE_PROCESS, ProcessGroup
from flint_analysis.datasets import ImageDataset
from flint_analysis.decoder_ablation import DecoderAblation
from flint_analysis.inference import DEFAULT_BATCH_SIZE, ForwardPass, forward_pass
from flint_analysis.options import FINITE, POSITIVE_INT, SEED, check_options, option
from flint_analysis.mas import CLASS_BY, MaxActivatingSamples, max_activating_samples
from flint_analysis.models import FlintModel
from flint_analysis.relevance import (
    ClassAttributePair,
    ClassAttributeRelevance,
    class_attribute_relevance,
    sample_relevance,
    select_pairs,
)

MAS_POOLS = ("subset", "train")


@dataclass(frozen=True)
class GlobalConfig:
    """Parameters of the global pipeline; defaults are the paper's ("Choices for interpretation phase").

    Attributes:
        subset_size: size of ``S_rnd`` (paper: 1000).
        threshold: pairs with ``r_{j,c}`` above it are analysed (paper: 0.1).
        mas_per_pair: maximum activating samples per pair (paper: 3).
        mas_pool: ``"subset"`` (``S_rnd``) or ``"train"`` (the whole training split).
        mas_class_by: ``"prediction"`` (g's class, as for ``r_{j,c}``) or ``"label"``.
        attribution: a method of :data:`~flint_analysis.attribution.ATTRIBUTION_METHODS`, ``None``, or ``"auto"``
            (default): the paper's choice for the model's architecture (gradient for lenet, guided
            backpropagation for resnet18), the same as ``flint-analyze global``.
        attribution_settings: the method's settings (e.g. integrated gradients' ``n_steps``, ``baseline``).
        decoder: run the decoder ablation.
        am_pi: AM+PI hyper-parameters.
        classes: restrict the analysed pairs to these classes (``None``: all).
        overview_samples: top activating samples per attribute in the overview grid.
        relevance_plot_samples: random samples of ``S_rnd`` in the per-sample relevance plot (paper Fig. 21: 80).
        seed: seed of ``S_rnd`` and of the plotted samples.
        batch_size: batch size of forward passes.
        tool_batch_size: (pair, MAS) runs per batch of AM+PI, attribution and decoder ablation.
    """

    subset_size: int = option(1000, POSITIVE_INT, "size of the random training subset S_rnd")
    threshold: float = option(0.1, FINITE, "select pairs with r_(j,c) above this")
    mas_per_pair: int = option(3, POSITIVE_INT, "maximum activating samples per pair")
    mas_pool: str = option("subset", choices=MAS_POOLS, help="where MAS are searched: S_rnd or the whole training split")
    mas_class_by: str = option("prediction", choices=CLASS_BY,
                               help="a sample belongs to class c by g's prediction (as for r_(j,c)) or by its label")
    attribution: str | None = AUTO
    decoder: bool = True
    am_pi: AmPiConfig = field(default_factory=AmPiConfig)
    classes: tuple[int, ...] | None = None
    attribution_settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    overview_samples: int = option(5, POSITIVE_INT)
    relevance_plot_samples: int = option(80, POSITIVE_INT)
    seed: int = option(0, SEED, "seed of every random choice")
    batch_size: int = option(DEFAULT_BATCH_SIZE, POSITIVE_INT, "batch size of forward passes")
    tool_batch_size: int = option(DEFAULT_TOOL_BATCH_SIZE, POSITIVE_INT,
                                  "runs per batch of AM+PI, attribution and decoder ablation (the pieces shared out under torchrun)")

    def __post_init__(self) -> None:
        check_options(self)
        self.tools  # noqa: B018 -- checks the attribution method and its settings

    def for_architecture(self, architecture: str | None) -> GlobalConfig:
        """This configuration with ``attribution="auto"`` replaced by the architecture's default method."""
        return replace(self, attribution=resolve_attribution(self.attribution, architecture))

    @property
    def tools(self) -> AttributeToolsConfig:
        """The attribute tools' part of the configuration."""
        return AttributeToolsConfig(self.attribution, self.attribution_settings, self.decoder, self.am_pi)


@dataclass(frozen=True)
class PairAnalysis:
    """Everything computed for one selected pair.

    Attributes:
        mas: the pair and its maximum activating samples (``k`` of them).
        images: ``(k, *input_shape)`` the MAS images.
        tools: AM+PI, attribution and decoder ablation of the ``k`` runs (one per MAS).
    """

    mas: MaxActivatingSamples
    images: Tensor
    tools: AttributeToolResults

    @property
    def pair(self) -> ClassAttributePair:
        return self.mas.pair

    @property
    def am_pi(self) -> AmPiResult:
        return self.tools.am_pi

    @property
    def attribution(self) -> Tensor | None:
        """``(k, *input_shape)`` attribution maps of φ_j, or ``None``."""
        return None if self.tools.attribution is None else self.tools.attribution.maps

    @property
    def decoder(self) -> DecoderAblation | None:
        return self.tools.decoder


@dataclass(frozen=True)
class AttributeOverview:
    """The most activating samples of every attribute in the pool, whatever their class, in both directions.

    An attribute is shown by the samples that activate it most (the paper's MAS, "Interpretation Phase").
    An attribute relevant to a class through negative values (a selected pair with ``w_{j,c} < 0``, see
    :mod:`flint_analysis.relevance`) speaks for that class with its *most negative* φ_j, so those samples
    are kept as well; :meth:`shown_directions` says which of the two an overview should show.

    Attributes:
        indices: ``(J, k)`` dataset indices of the ``k`` samples with the largest φ_j; activations: ``(J, k)``;
            labels: ``(J, k)``; images: ``(J, k, *input_shape)``.
        lowest_indices, lowest_activations, lowest_labels, lowest_images: the same for the ``k`` smallest
            (most negative) φ_j, smallest first.
        relevant_positive: ``(J,)`` bool, φ_j is relevant to a selected pair through φ_j > 0 (``w_{j,c} > 0``).
        relevant_negative: ``(J,)`` bool, φ_j is relevant to a selected pair through φ_j < 0 (``w_{j,c} < 0``).
    """

    indices: Tensor
    activations: Tensor
    labels: Tensor
    images: Tensor
    lowest_indices: Tensor
    lowest_activations: Tensor
    lowest_labels: Tensor
    lowest_images: Tensor
    relevant_positive: Tensor
    relevant_negative: Tensor

    def shown_directions(self, attribute: int) -> list[int]:
        """The directions to show for ``attribute``: ``[+1]`` (largest φ_j) unless it is relevant through φ_j < 0:
        ``[-1]`` (most negative φ_j) when only through φ_j < 0, ``[+1, -1]`` when through both signs."""
        if not bool(self.relevant_negative[attribute]):
            return [1]
        return [1, -1] if bool(self.relevant_positive[attribute]) else [-1]

    def samples(self, attribute: int, direction: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(indices, activations, labels, images)`` of ``attribute``'s ``k`` samples: largest φ_j for
        ``direction`` +1, most negative for −1."""
        if direction > 0:
            return self.indices[attribute], self.activations[attribute], self.labels[attribute], self.images[attribute]
        return (self.lowest_indices[attribute], self.lowest_activations[attribute], self.lowest_labels[attribute],
                self.lowest_images[attribute])


@dataclass(frozen=True)
class GlobalInterpretation:
    """Result of :func:`global_interpretation`.

    Attributes:
        config: the parameters used.
        subset: forward pass over ``S_rnd`` (``N`` samples).
        sample_relevances: ``(N, J)`` ``r_{j,ĉ,x}`` with ĉ g's prediction (the paper's Fig. 21 data).
        relevance: ``r_{j,c}`` and per-class counts.
        pairs: selected pairs, by class then decreasing relevance.
        analyses: one :class:`PairAnalysis` per pair, same order.
        overview: top activating samples per attribute.
        plotted_rows: ``(P,)`` rows of ``subset`` shown in the per-sample relevance plot, grouped by label.
    """

    config: GlobalConfig
    subset: ForwardPass
    sample_relevances: Tensor
    relevance: ClassAttributeRelevance
    pairs: list[ClassAttributePair]
    analyses: list[PairAnalysis]
    overview: AttributeOverview
    plotted_rows: Tensor

    def am_pi_summary(self) -> AmPiSummary:
        """The outcomes of the AM+PI runs of all pairs (one per MAS, judged against the MAS's own φ_j)."""
        return AmPiSummary.from_results(a.am_pi for a in self.analyses)

    @property
    def classes_with_pairs(self) -> set[int]:
        """The classes of the analysed pairs."""
        return {a.pair.class_index for a in self.analyses}

    @property
    def largest_relevance(self) -> float:
        """The largest ``r_{j,c}`` over the classes g predicts in ``S_rnd`` (0.0 if none): no pair is selected above it."""
        never = set(self.relevance.never_predicted)
        rows = self.relevance.relevance.tolist()
        return max((float(v) for c, row in enumerate(rows) if c not in never for v in row), default=0.0)


def random_subset(num_samples: int, size: int, seed: int) -> Tensor:
    """``S_rnd``: ``min(size, num_samples)`` distinct indices drawn with ``seed``, sorted."""
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    return order[: min(size, num_samples)].sort().values


def analyse_pairs(
    model: FlintModel,
    dataset: ImageDataset,
    pool: ForwardPass,
    mas: list[MaxActivatingSamples],
    tools: AttributeToolsConfig,
    device: torch.device,
    progress: bool = False,
    batch_size: int = DEFAULT_TOOL_BATCH_SIZE,
    group: ProcessGroup = SINGLE_PROCESS,
) -> list[PairAnalysis]:
    """The attribute tools for every (pair, MAS), run in batches of ``batch_size`` runs (shared out over ``group``).

    The attribute vectors for the decoder are taken from ``pool`` (no second forward pass).
    """
    if not mas:
        return []
    counts = [len(m.indices) for m in mas]
    indices = torch.cat([m.indices for m in mas])
    attributes = torch.cat([torch.full((n,), m.pair.attribute) for n, m in zip(counts, mas)]).long()
    directions = torch.cat([torch.full((n,), float(m.pair.direction)) for n, m in zip(counts, mas)])
    images, _ = dataset.batch(indices)
    row_of = {int(index): row for row, index in enumerate(pool.indices.tolist())}
    phi = pool.attributes[torch.tensor([row_of[int(i)] for i in indices], dtype=torch.long)]
    results = run_attribute_tools(model, images, attributes, directions, tools, attributes=phi, device=device, progress=progress,
                                  batch_size=batch_size, group=group)
    scale = pool.attributes.abs().amax(dim=0)[attributes]  # each attribute's largest |φ_j| in the pool: weak MAS are flagged
    results = replace(results, am_pi=results.am_pi.with_reference_scale(scale))
    analyses, start = [], 0
    for n, m in zip(counts, mas):
        rows = slice(start, start + n)
        start += n
        analyses.append(PairAnalysis(mas=m, images=images[rows], tools=results.select(rows)))
    return analyses


def global_interpretation(
    model: FlintModel,
    train: ImageDataset,
    config: GlobalConfig = GlobalConfig(),
    device: torch.device | str = "cpu",
    progress: bool = False,
    group: ProcessGroup = SINGLE_PROCESS,
) -> GlobalInterpretation:
    """Run the global pipeline on the training split ``train``.

    Args:
        model: the FLINT model (already on ``device``).
        train: the training split.
        config: parameters.
        device: where to compute.
        progress: show progress bars.
        group: under ``torchrun``, the run's processes: the forward passes' batches and the attribute tools'
            batches are shared out over them and gathered (:mod:`flint_analysis.distributed`); every rank returns
            the whole result, equal to one process's.
    """
    device = torch.device(device)
    config = config.for_architecture(model.architecture_name)
    subset_indices = random_subset(len(train), config.subset_size, config.seed)
    if config.mas_pool == "train":
        pool = forward_pass(model, train, batch_size=config.batch_size, device=device, progress=progress,
                            description="forward pass (training split)", group=group)
        subset = pool.select(subset_indices)  # the pool covers the whole split, in index order
    else:
        subset = forward_pass(model, train, subset_indices, batch_size=config.batch_size, device=device,
                              progress=progress, description="forward pass (S_rnd)", group=group)
        pool = subset
    weight = model.interpreter.weight.detach().cpu()
    relevances = sample_relevance(subset.attributes, weight, subset.g_predictions)
    relevance = class_attribute_relevance(relevances, subset.g_predictions, model.num_classes)
    pairs = select_pairs(relevance, weight, config.threshold, list(config.classes) if config.classes is not None else None)
    mas = max_activating_samples(pool, pairs, config.mas_per_pair, config.mas_class_by)
    analyses = analyse_pairs(model, train, pool, mas, config.tools, device, progress, config.tool_batch_size, group)
    overview = attribute_overview(pool, train, config.overview_samples, pairs)
    plotted = random_subset(len(subset), config.relevance_plot_samples, config.seed + 1)
    plotted = plotted[torch.argsort(subset.labels[plotted], stable=True)]
    return GlobalInterpretation(config, subset, relevances, relevance, pairs, analyses, overview, plotted)


def attribute_overview(
    pool: ForwardPass, dataset: ImageDataset, per_attribute: int, pairs: Sequence[ClassAttributePair] = ()
) -> AttributeOverview:
    """The ``per_attribute`` samples of ``pool`` with the largest and with the smallest φ_j, for every attribute ``j``.

    Args:
        pool: forward pass over the samples to choose from (``N`` samples, ``J`` attributes).
        dataset: the dataset ``pool.indices`` index into (for the images).
        per_attribute: ``k``, samples per attribute and direction (at most ``N``).
        pairs: the selected pairs; their directions (sign of ``w_{j,c}``) give ``relevant_positive`` /
            ``relevant_negative``.
    """
    k = min(per_attribute, len(pool))
    num_attributes = pool.attributes.shape[1]
    top = torch.topk(pool.attributes, k, dim=0).indices.T  # (J, k) rows of the pool, largest first
    low = torch.topk(pool.attributes, k, dim=0, largest=False).indices.T  # (J, k) smallest first
    images, _ = dataset.batch(pool.indices[torch.cat([top.flatten(), low.flatten()])])
    images = images.view(2, *top.shape, *images.shape[1:])
    positive = torch.zeros(num_attributes, dtype=torch.bool)
    negative = torch.zeros(num_attributes, dtype=torch.bool)
    for pair in pairs:
        (positive if pair.direction > 0 else negative)[pair.attribute] = True
    return AttributeOverview(
        indices=pool.indices[top],
        activations=torch.gather(pool.attributes.T, 1, top),
        labels=pool.labels[top],
        images=images[0],
        lowest_indices=pool.indices[low],
        lowest_activations=torch.gather(pool.attributes.T, 1, low),
        lowest_labels=pool.labels[low],
        lowest_images=images[1],
        relevant_positive=positive,
        relevant_negative=negative,
    )
