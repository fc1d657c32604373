"""Local interpretation of single samples (paper, "Interpretation Phase — Local interpretability", Fig. 7).

For a sample ``x`` the explained class is ĉ, g's prediction ``argmax h(Φ(x))``, or any class the user asks
about ("one can modify ĉ and repeat the same analysis to gain understanding about relevance of
attributes to a different class"). The relevance of every attribute is ``r_{j,ĉ,x}``
(:func:`flint_analysis.relevance.sample_relevance`); the top attributes are analysed with the same tools
as the global pipeline — AM+PI on this sample, input attribution, decoder ablation — and each
attribute's ``φ_j(x)`` is ranked among the training samples of class ĉ. f's and g's predictions are
reported side by side with the rank of f's class among g's classes, since a local interpretation is only
an interpretation of f where g agrees with it (paper, "Interpretation and interpreter network").

g's logit is linear in Φ (``h(Φ(x))_c = b_c + Σ_j φ_j(x) w_{j,c}``), so the explanation also carries the
absolute scale that ``r`` (normalised by its largest ``|α|``) lacks: the contributions ``α_j`` in logit units and
the bias, for ĉ and for a contrast class c′ (g's runner-up, or g's prediction when ĉ was asked for), whose
difference ``Δ_j = φ_j (w_{j,ĉ} − w_{j,c′})`` says why ĉ rather than c′
(:func:`flint_analysis.relevance.logit_decomposition`). Only attributes with ``r_{j,ĉ,x}`` above a threshold
(the global pipeline's, 0.1) are analysed, at most ``top`` of them: fewer are listed when fewer qualify.

Pure computation: tensors in, :class:`LocalExplanation` out; :mod:`flint_analysis.report_writers.local_report`
writes the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from flint_analysis.agreement import rank_of_class
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from flint_analysis.am_pi import AmPiConfig, AmPiResult
from flint_analysis.attribute_tools import (
    AUTO, DEFAULT_TOOL_BATCH_SIZE, AttributeToolResults, AttributeToolsConfig, resolve_attribution, run_attribute_tools,
)
from flint_analysis.distributed import SINGLE_PROCESS, ProcessGroup
from flint_analysis.decoder_ablation import DecoderAblation
from flint_analysis.errors import InputError
from flint_analysis.inference import DEFAULT_BATCH_SIZE, ForwardPass, model_dtype
from flint_analysis.mas import CLASS_BY
from flint_analysis.options import FRACTION, NON_NEGATIVE_INT, POSITIVE_INT, check_options, option
from flint_analysis.models import FlintModel, eval_mode
from flint_analysis.relevance import LogitDecomposition, logit_decomposition, runner_up_classes

if TYPE_CHECKING:
    from flint_analysis.report_writers.local_report import SampleSource


@dataclass(frozen=True)
class LocalConfig:
    """Parameters of a local explanation.

    Attributes:
        top: most attributes analysed (paper Fig. 7: 3): those with ``r_{j,ĉ,x} > relevance_threshold``, by
            decreasing relevance (fewer when fewer qualify).
        relevance_threshold: an attribute is analysed when its ``r_{j,ĉ,x}`` exceeds this (the global
            pipeline's pair threshold, paper: 0.1).
        low_confidence: reports warn when g gives its class a probability below this.
        class_samples: training samples of class ĉ shown per top attribute (its largest ``direction · φ_j``).
        explained_class: the class ĉ to explain (``None``: g's prediction).
        attribution: a Captum method name, ``None``, or ``"auto"`` (default): the paper's choice for the
            model's architecture, the same as ``flint-analyze local``.
        attribution_settings: the method's settings.
        decoder: run the decoder ablation.
        am_pi: AM+PI parameters (the sample itself is the initialisation).
        rank_class_by: training samples "of class ĉ" by g's ``"prediction"`` (default) or ``"label"``.
        tool_batch_size: (sample, attribute) runs per batch of AM+PI, attribution and decoder ablation.
    """

    top: int = option(3, POSITIVE_INT, "most attributes analysed (those with r_(j,ĉ,x) above --relevance-threshold)")
    relevance_threshold: float = option(0.1, FRACTION, "analyse attributes with r_(j,ĉ,x) above this (the global pair threshold)")
    low_confidence: float = option(0.6, FRACTION, "warn when g's probability of its class is below this")
    class_samples: int = option(3, NON_NEGATIVE_INT, "top activating training samples of class ĉ shown per attribute")
    explained_class: int | None = None
    attribution: str | None = AUTO
    decoder: bool = True
    am_pi: AmPiConfig = field(default_factory=AmPiConfig)
    rank_class_by: str = option("prediction", choices=CLASS_BY,
                                help="rank φ_j among training samples that g predicts as ĉ or that are labelled ĉ")
    attribution_settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    tool_batch_size: int = option(DEFAULT_TOOL_BATCH_SIZE, POSITIVE_INT,
                                  "runs per batch of AM+PI, attribution and decoder ablation (the pieces shared out under torchrun)")

    def __post_init__(self) -> None:
        check_options(self)
        self.tools  # noqa: B018 -- checks the attribution method and its settings

    def for_architecture(self, architecture: str | None) -> LocalConfig:
        """This configuration with ``attribution="auto"`` replaced by the architecture's default method."""
        return replace(self, attribution=resolve_attribution(self.attribution, architecture))

    @property
    def tools(self) -> AttributeToolsConfig:
        """The attribute tools' part of the configuration."""
        return AttributeToolsConfig(self.attribution, self.attribution_settings, self.decoder, self.am_pi)


@dataclass(frozen=True)
class AttributeExplanation:
    """One of the top attributes of a sample.

    Attributes:
        attribute: ``j``.
        relevance: ``r_{j,ĉ,x}``.
        activation: ``φ_j(x)``.
        direction: ``sign(w_{j,ĉ})`` (−1: the attribute supports ĉ through negative values).
        rank: 1 + number of training samples of class ĉ with a larger ``direction · φ_j``.
        class_size: number of training samples of class ĉ.
        tools: AM+PI started from this sample, attribution and decoder ablation (one run).
        contribution: ``α_{j,ĉ,x} = φ_j(x) w_{j,ĉ}`` in logit units.
        difference: ``Δ_j = φ_j(x) (w_{j,ĉ} − w_{j,c′})``, logit units.
        class_samples: training-split indices of the class-ĉ samples with the largest ``direction · φ_j``
            (most first), at most :attr:`LocalConfig.class_samples`.
        class_sample_activations: their ``φ_j``.
    """

    attribute: int
    relevance: float
    activation: float
    direction: int
    rank: int
    class_size: int
    tools: AttributeToolResults
    contribution: float = 0.0
    difference: float = 0.0
    class_samples: tuple[int, ...] = ()
    class_sample_activations: tuple[float, ...] = ()

    @property
    def percentile(self) -> float:
        """``100 · rank / class_size``: φ_j(x) is in the top this-many percent of class ĉ's training samples."""
        return 100.0 * self.rank / max(self.class_size, 1)

    @property
    def am_pi(self) -> AmPiResult:
        return self.tools.am_pi

    @property
    def attribution(self) -> Tensor | None:
        """``(C, H, W)`` attribution map of ``direction · φ_j``, or ``None``."""
        return None if self.tools.attribution is None else self.tools.attribution.maps[0]

    @property
    def decoder(self) -> DecoderAblation | None:
        """Decoder ablation (tensors ``(1, C, H, W)``), or ``None``."""
        return self.tools.decoder


@dataclass(frozen=True)
class SampleBatch:
    """The samples to explain, in order: their images with the true label and the origin of each.

    Attributes:
        images: ``(B, C, H, W)`` inputs.
        labels: the ``B`` true labels (``None`` where unknown, e.g. for an image file).
        sources: where each sample came from (a dataset split and index, or an image file).
    """

    images: Tensor
    labels: tuple[int | None, ...]
    sources: tuple[SampleSource, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or not len(self.labels) == len(self.sources) == self.images.shape[0]:
            raise ValueError(f"a sample batch needs (B, C, H, W) images and B labels and sources, got images of shape "
                             f"{tuple(self.images.shape)}, {len(self.labels)} labels and {len(self.sources)} sources")

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def concatenate(cls, batches: Sequence[SampleBatch]) -> SampleBatch:
        """One batch of the samples of ``batches`` (at least one), in order."""
        if not batches:
            raise ValueError("no sample batches to concatenate")
        return cls(torch.cat([batch.images for batch in batches]), tuple(label for batch in batches for label in batch.labels),
                   tuple(source for batch in batches for source in batch.sources))


@dataclass(frozen=True)
class LocalExplanation:
    """Explanation of one sample.

    Attributes:
        image: ``(C, H, W)`` the input.
        label: true label, or ``None`` when unknown.
        f_probabilities, g_probabilities: ``(C,)`` softmax of f's and g's logits.
        explained_class: ĉ.
        attributes: ``(J,)`` ``φ(x)``.
        relevances: ``(J,)`` ``r_{j,ĉ,x}``.
        top: the most relevant attributes with ``r > relevance_threshold``, by decreasing relevance.
        logits: g's logits of ĉ and of the contrast class c′ split into bias and ``α_j`` (a batch of one).
        relevance_threshold: the threshold ``top`` was selected with.
        qualifying: number of attributes with ``r_{j,ĉ,x} > relevance_threshold`` (may exceed ``len(top)``).
    """

    image: Tensor
    label: int | None
    f_probabilities: Tensor
    g_probabilities: Tensor
    explained_class: int
    attributes: Tensor
    relevances: Tensor
    top: list[AttributeExplanation]
    logits: LogitDecomposition | None = None
    relevance_threshold: float = 0.1
    qualifying: int = 0

    @property
    def contrast_class(self) -> int | None:
        """c′: g's runner-up when ĉ is g's prediction, else g's prediction (``None`` without a decomposition)."""
        return None if self.logits is None else int(self.logits.contrast_class[0])

    @property
    def f_class(self) -> int:
        return int(self.f_probabilities.argmax())

    @property
    def g_class(self) -> int:
        return int(self.g_probabilities.argmax())

    @property
    def agree(self) -> bool:
        return self.f_class == self.g_class

    @property
    def f_rank_in_g(self) -> int:
        """Rank of f's class among g's classes (1 when they agree)."""
        return int(rank_of_class(self.g_probabilities.view(1, -1), torch.tensor([self.f_class]))[0])


def explain_samples(
    model: FlintModel,
    images: Tensor,
    labels: list[int | None],
    reference: ForwardPass,
    config: LocalConfig = LocalConfig(),
    device: torch.device | str = "cpu",
    progress: bool = False,
    group: ProcessGroup = SINGLE_PROCESS,
) -> list[LocalExplanation]:
    """Explain ``B`` samples; AM+PI, attribution and decoder ablation run over all (sample, attribute) in batches
    of ``config.tool_batch_size`` runs.

    Args:
        model: the FLINT model (on ``device``).
        images: ``(B, C, H, W)`` inputs.
        labels: true labels (``None`` where unknown).
        reference: forward pass over the training split, for the ranks of φ_j and each top attribute's top
            activating training samples of class ĉ (its ``indices`` are the training-split indices).
        config: parameters.
        device: where to compute.
        progress: show progress bars.
        group: under ``torchrun``, the run's processes: the tools' batches are shared out over them and gathered,
            and every rank returns all explanations, equal to one process's.
    """
    device = torch.device(device)
    config = config.for_architecture(model.architecture_name)
    if config.explained_class is not None and not 0 <= config.explained_class < model.num_classes:
        raise InputError(f"class {config.explained_class} is out of range; use 0-{model.num_classes - 1}")
    with torch.no_grad(), eval_mode(model):  # in batches: many samples (an --indices-file) need not fit at once
        outputs = [model(images[start : start + DEFAULT_BATCH_SIZE].to(device=device, dtype=model_dtype(model)))
                   for start in range(0, max(images.shape[0], 1), DEFAULT_BATCH_SIZE)]  # no samples: one empty batch
    f_logits = torch.cat([out.f_logits.cpu() for out in outputs])
    f_probabilities = torch.softmax(f_logits, dim=1)
    g_logits = torch.cat([out.g_logits.cpu() for out in outputs])
    g_probabilities = torch.softmax(g_logits, dim=1)
    phi = torch.cat([out.attributes.cpu() for out in outputs])
    explained = torch.full((images.shape[0],), config.explained_class) if config.explained_class is not None else g_probabilities.argmax(1)
    weight = model.interpreter.weight.detach().cpu()
    bias = None if model.interpreter.bias is None else model.interpreter.bias.detach().cpu()
    decomposition = logit_decomposition(phi, weight, bias, explained, runner_up_classes(g_logits, explained))
    relevances = decomposition.relevance
    order = torch.argsort(relevances, dim=1, descending=True, stable=True)
    chosen = [[int(j) for j in order[b] if float(relevances[b, j]) > config.relevance_threshold][: config.top]
              for b in range(images.shape[0])]

    rows = torch.tensor([b for b, attributes_b in enumerate(chosen) for _ in attributes_b], dtype=torch.long)
    attributes = torch.tensor([j for attributes_b in chosen for j in attributes_b], dtype=torch.long)
    directions = torch.where(weight[explained[rows], attributes] >= 0, 1.0, -1.0)
    results = None
    if len(rows):
        results = run_attribute_tools(model, images[rows], attributes, directions, config.tools, attributes=phi[rows],
                                      device=device, progress=progress, batch_size=config.tool_batch_size, group=group)
        scale = reference.attributes.abs().amax(dim=0)[attributes]  # the attribute's largest |φ_j| on the training split
        results = replace(results, am_pi=results.am_pi.with_reference_scale(scale))

    reference_classes = reference.g_predictions if config.rank_class_by == "prediction" else reference.labels
    explanations = []
    run = 0
    for b in range(images.shape[0]):
        in_class = reference_classes == explained[b]
        members, member_indices = reference.attributes[in_class], reference.indices[in_class]
        items = []
        for j in chosen[b]:
            s = int(directions[run])
            value = float(phi[b, j])
            best = torch.argsort(s * members[:, j], descending=True, stable=True)[: config.class_samples]
            assert results is not None
            items.append(
                AttributeExplanation(
                    attribute=j,
                    relevance=float(relevances[b, j]),
                    activation=value,
                    direction=s,
                    rank=int((s * members[:, j] > s * value).sum()) + 1,
                    class_size=int(members.shape[0]),
                    tools=results.select(slice(run, run + 1)),
                    contribution=float(decomposition.contributions[b, j]),
                    difference=float(decomposition.difference[b, j]),
                    class_samples=tuple(int(i) for i in member_indices[best]),
                    class_sample_activations=tuple(float(v) for v in members[best, j]),
                )
            )
            run += 1
        explanations.append(
            LocalExplanation(images[b].cpu(), labels[b], f_probabilities[b], g_probabilities[b], int(explained[b]),
                             phi[b], relevances[b], items, decomposition.select(b), config.relevance_threshold,
                             int((relevances[b] > config.relevance_threshold).sum()))
        )
    return explanations
