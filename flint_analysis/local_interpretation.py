"""Local interpretation of single samples (paper, "Interpretation Phase — Local interpretability", Fig. 7).

For a sample ``x`` the explained class is ĉ, g's prediction ``argmax h(Φ(x))``, or any class the user asks
about ("one can modify ĉ and repeat the same analysis to gain understanding about relevance of
attributes to a different class"). The relevance of every attribute is ``r_{j,ĉ,x}``
(:func:`flint_analysis.relevance.sample_relevance`); the top attributes are analysed with the same tools
as the global pipeline — AM+PI on this sample, input attribution, decoder ablation — and each
attribute's ``φ_j(x)`` is ranked among the training samples of class ĉ. f's and g's predictions are
reported side by side with the rank of f's class among g's classes, since a local interpretation is only
an interpretation of f where g agrees with it (paper, "Interpretation and interpreter network").

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
from flint_analysis.attribute_tools import AUTO, AttributeToolResults, AttributeToolsConfig, resolve_attribution, run_attribute_tools
from flint_analysis.decoder_ablation import DecoderAblation
from flint_analysis.errors import InputError
from flint_analysis.inference import ForwardPass
from flint_analysis.mas import CLASS_BY
from flint_analysis.options import POSITIVE_INT, check_options, option
from flint_analysis.models import FlintModel, eval_mode
from flint_analysis.relevance import sample_relevance

if TYPE_CHECKING:
    from flint_analysis.report_writers.local_report import SampleSource


@dataclass(frozen=True)
class LocalConfig:
    """Parameters of a local explanation.

    Attributes:
        top: number of most relevant attributes analysed (paper Fig. 7: 3).
        explained_class: the class ĉ to explain (``None``: g's prediction).
        attribution: a Captum method name, ``None``, or ``"auto"`` (default): the paper's choice for the
            model's architecture, the same as ``flint-analyze local``.
        attribution_settings: the method's settings.
        decoder: run the decoder ablation.
        am_pi: AM+PI parameters (the sample itself is the initialisation).
        rank_class_by: training samples "of class ĉ" by g's ``"prediction"`` (default) or ``"label"``.
    """

    top: int = option(3, POSITIVE_INT, "number of top attributes analysed")
    explained_class: int | None = None
    attribution: str | None = AUTO
    decoder: bool = True
    am_pi: AmPiConfig = field(default_factory=AmPiConfig)
    rank_class_by: str = option("prediction", choices=CLASS_BY,
                                help="rank φ_j among training samples that g predicts as ĉ or that are labelled ĉ")
    attribution_settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

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
    """

    attribute: int
    relevance: float
    activation: float
    direction: int
    rank: int
    class_size: int
    tools: AttributeToolResults

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
        top: the most relevant attributes, by decreasing relevance.
    """

    image: Tensor
    label: int | None
    f_probabilities: Tensor
    g_probabilities: Tensor
    explained_class: int
    attributes: Tensor
    relevances: Tensor
    top: list[AttributeExplanation]

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
) -> list[LocalExplanation]:
    """Explain ``B`` samples; AM+PI, attribution and decoder ablation run once over all (sample, attribute).

    Args:
        model: the FLINT model (on ``device``).
        images: ``(B, C, H, W)`` inputs.
        labels: true labels (``None`` where unknown).
        reference: forward pass over the training split, for the ranks of φ_j.
        config: parameters.
        device: where to compute.
        progress: show progress bars.
    """
    device = torch.device(device)
    config = config.for_architecture(model.architecture_name)
    if config.explained_class is not None and not 0 <= config.explained_class < model.num_classes:
        raise InputError(f"class {config.explained_class} is out of range; use 0-{model.num_classes - 1}")
    with torch.no_grad(), eval_mode(model):
        out = model(images.to(device))
    f_probabilities = torch.softmax(out.f_logits, dim=1).cpu()
    g_probabilities = torch.softmax(out.g_logits, dim=1).cpu()
    phi = out.attributes.cpu()
    explained = torch.full((images.shape[0],), config.explained_class) if config.explained_class is not None else g_probabilities.argmax(1)
    weight = model.interpreter.weight.detach().cpu()
    relevances = sample_relevance(phi, weight, explained)
    top = min(config.top, model.num_attributes)
    top_attributes = torch.argsort(relevances, dim=1, descending=True, stable=True)[:, :top]  # (B, top)

    rows = torch.arange(images.shape[0]).repeat_interleave(top)
    attributes = top_attributes.flatten()
    directions = torch.where(weight[explained[rows], attributes] >= 0, 1.0, -1.0)
    results = run_attribute_tools(model, images[rows], attributes, directions, config.tools, attributes=phi[rows],
                                  device=device, progress=progress)

    reference_classes = reference.g_predictions if config.rank_class_by == "prediction" else reference.labels
    explanations = []
    for b in range(images.shape[0]):
        members = reference.attributes[reference_classes == explained[b]]
        items = []
        for t in range(top):
            run = b * top + t
            j, s = int(attributes[run]), int(directions[run])
            value = float(phi[b, j])
            items.append(
                AttributeExplanation(
                    attribute=j,
                    relevance=float(relevances[b, j]),
                    activation=value,
                    direction=s,
                    rank=int((s * members[:, j] > s * value).sum()) + 1,
                    class_size=int(members.shape[0]),
                    tools=results.select(slice(run, run + 1)),
                )
            )
        explanations.append(
            LocalExplanation(images[b].cpu(), labels[b], f_probabilities[b], g_probabilities[b], int(explained[b]),
                             phi[b], relevances[b], items)
        )
    return explanations
