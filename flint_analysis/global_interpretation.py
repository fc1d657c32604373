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

from dataclasses import dataclass, field

import torch
from torch import Tensor

from flint_analysis.am_pi import AmPiConfig, AmPiResult, am_pi
from flint_analysis.attribution import ATTRIBUTION_METHODS, attribute_inputs
from flint_analysis.datasets import ImageDataset
from flint_analysis.decoder_ablation import DecoderAblation, decoder_ablation
from flint_analysis.errors import InputError
from flint_analysis.inference import ForwardPass, forward_pass
from flint_analysis.mas import CLASS_BY, MaxActivatingSamples, max_activating_samples
from flint_analysis.models import AttributeHead, FlintModel
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
        attribution: a method of :data:`~flint_analysis.attribution.ATTRIBUTION_METHODS`, or ``None``.
        decoder: run the decoder ablation.
        am_pi: AM+PI hyper-parameters.
        classes: restrict the analysed pairs to these classes (``None``: all).
        overview_samples: top activating samples per attribute in the overview grid.
        relevance_plot_samples: random samples of ``S_rnd`` in the per-sample relevance plot (paper Fig. 21: 80).
        seed: seed of ``S_rnd`` and of the plotted samples.
        batch_size: batch size of forward passes.
    """

    subset_size: int = 1000
    threshold: float = 0.1
    mas_per_pair: int = 3
    mas_pool: str = "subset"
    mas_class_by: str = "prediction"
    attribution: str | None = "gradient"
    decoder: bool = True
    am_pi: AmPiConfig = field(default_factory=AmPiConfig)
    classes: tuple[int, ...] | None = None
    overview_samples: int = 5
    relevance_plot_samples: int = 80
    seed: int = 0
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.subset_size < 1:
            raise InputError(f"the subset size must be positive, got {self.subset_size}")
        if self.mas_pool not in MAS_POOLS:
            raise InputError(f"unknown MAS pool {self.mas_pool!r}; use one of {', '.join(MAS_POOLS)}")
        if self.mas_class_by not in CLASS_BY:
            raise InputError(f"unknown MAS class grouping {self.mas_class_by!r}; use one of {', '.join(CLASS_BY)}")
        if self.attribution is not None and self.attribution not in ATTRIBUTION_METHODS:
            raise InputError(f"unknown attribution method {self.attribution!r}; use one of {', '.join(ATTRIBUTION_METHODS)} or none")


@dataclass(frozen=True)
class PairAnalysis:
    """Everything computed for one selected pair.

    Attributes:
        mas: the pair and its maximum activating samples (``k`` of them).
        images: ``(k, *input_shape)`` the MAS images.
        am_pi: AM+PI outputs of the ``k`` runs.
        attribution: ``(k, *input_shape)`` attribution maps of φ_j, or ``None``.
        decoder: decoder ablation of φ_j, or ``None``.
    """

    mas: MaxActivatingSamples
    images: Tensor
    am_pi: AmPiResult
    attribution: Tensor | None
    decoder: DecoderAblation | None

    @property
    def pair(self) -> ClassAttributePair:
        return self.mas.pair


@dataclass(frozen=True)
class AttributeOverview:
    """The most activating samples of every attribute in the pool, whatever their class.

    Attributes:
        indices: ``(J, k)`` dataset indices; activations: ``(J, k)``; labels: ``(J, k)``; images: ``(J, k, *input_shape)``.
    """

    indices: Tensor
    activations: Tensor
    labels: Tensor
    images: Tensor


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


def random_subset(num_samples: int, size: int, seed: int) -> Tensor:
    """``S_rnd``: ``min(size, num_samples)`` distinct indices drawn with ``seed``, sorted."""
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    return order[: min(size, num_samples)].sort().values


def analyse_pairs(
    model: FlintModel,
    dataset: ImageDataset,
    pool: ForwardPass,
    mas: list[MaxActivatingSamples],
    attribution: str | None,
    decoder: bool,
    am_pi_config: AmPiConfig,
    device: torch.device,
    progress: bool = False,
) -> list[PairAnalysis]:
    """Attribution, decoder ablation and AM+PI for every (pair, MAS), each as one batch.

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
    images_device = images.to(device)
    ampi = am_pi(AttributeHead(model), images_device, attributes.to(device), am_pi_config, directions.to(device), progress=progress)
    maps = attribute_inputs(model, images_device, attributes.to(device), attribution, directions).cpu() if attribution else None
    ablation = decoder_ablation(model, phi.to(device), attributes.to(device)) if decoder else None
    analyses, start = [], 0
    for n, m in zip(counts, mas):
        rows = slice(start, start + n)
        start += n
        analyses.append(
            PairAnalysis(
                mas=m,
                images=images[rows],
                am_pi=ampi.select(rows),
                attribution=None if maps is None else maps[rows],
                decoder=None if ablation is None else DecoderAblation(
                    ablation.with_attribute[rows].cpu(), ablation.without_attribute[rows].cpu(), ablation.difference[rows].cpu()
                ),
            )
        )
    return analyses


def global_interpretation(
    model: FlintModel,
    train: ImageDataset,
    config: GlobalConfig = GlobalConfig(),
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> GlobalInterpretation:
    """Run the global pipeline on the training split ``train``.

    Args:
        model: the FLINT model (already on ``device``).
        train: the training split.
        config: parameters.
        device: where to compute.
        progress: show progress bars.
    """
    device = torch.device(device)
    subset_indices = random_subset(len(train), config.subset_size, config.seed)
    if config.mas_pool == "train":
        pool = forward_pass(model, train, batch_size=config.batch_size, device=device, progress=progress,
                            description="forward pass (training split)")
        subset = pool.select(subset_indices)  # the pool covers the whole split, in index order
    else:
        subset = forward_pass(model, train, subset_indices, batch_size=config.batch_size, device=device,
                              progress=progress, description="forward pass (S_rnd)")
        pool = subset
    weight = model.interpreter.weight.detach().cpu()
    relevances = sample_relevance(subset.attributes, weight, subset.g_predictions)
    relevance = class_attribute_relevance(relevances, subset.g_predictions, model.num_classes)
    pairs = select_pairs(relevance, weight, config.threshold, list(config.classes) if config.classes is not None else None)
    mas = max_activating_samples(pool, pairs, config.mas_per_pair, config.mas_class_by)
    analyses = analyse_pairs(model, train, pool, mas, config.attribution, config.decoder, config.am_pi, device, progress)
    overview = attribute_overview(pool, train, config.overview_samples)
    plotted = random_subset(len(subset), config.relevance_plot_samples, config.seed + 1)
    plotted = plotted[torch.argsort(subset.labels[plotted], stable=True)]
    return GlobalInterpretation(config, subset, relevances, relevance, pairs, analyses, overview, plotted)


def attribute_overview(pool: ForwardPass, dataset: ImageDataset, per_attribute: int) -> AttributeOverview:
    """The ``per_attribute`` samples of ``pool`` with the largest φ_j, for every attribute ``j``."""
    k = min(per_attribute, len(pool))
    top = torch.topk(pool.attributes, k, dim=0).indices.T  # (J, k) rows of the pool
    images, _ = dataset.batch(pool.indices[top.flatten()])
    return AttributeOverview(
        indices=pool.indices[top],
        activations=torch.gather(pool.attributes.T, 1, top),
        labels=pool.labels[top],
        images=images.view(*top.shape, *images.shape[1:]),
    )
