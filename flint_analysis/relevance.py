"""Attribute relevance: per sample (r_{j,ĉ,x}) and per class (r_{j,c}), and class-attribute pair selection.

Paper, "Interpretation Phase — Selecting relevant class-attribute pairs": for a sample ``x`` whose class
predicted by the interpreter is ``ĉ``, ``α_{j,ĉ,x} = φ_j(x)·w_{j,ĉ}`` (``w`` the weights of ``h``) and
``r_{j,ĉ,x} = α_{j,ĉ,x} / max_i |α_{i,ĉ,x}|``. ``r_{j,c}`` is the mean of ``r_{j,ĉ,x}`` over the samples of a
random training subset ``S_rnd`` with ``ĉ = c`` (the paper's formula prints a sum, its text says mean; the
authors' code takes the mean). Pairs with ``r_{j,c}`` above a threshold (paper: 0.1) are analysed.

The normaliser uses ``|α|`` as the paper writes it (the authors' code used the signed max), so a sample
whose largest contribution is negative is still scaled into ``[-1, 1]``. A sample with all ``α = 0`` has
``r = 0``. A class that g never predicts in ``S_rnd`` has no ``r_{j,c}``: it is reported in
``ClassAttributeRelevance.never_predicted`` and its row is 0, never NaN.

Direction of a pair. The paper assumes φ_j ≥ 0, so a relevant pair has ``w_{j,c} > 0`` and "more φ_j"
means "more evidence for c". With LeakyReLU attributes (the authors' MNIST network, this project's
``lenet`` default) an attribute can also be relevant through negative values: ``φ_j < 0`` with
``w_{j,c} < 0`` gives ``α > 0``. Each pair records ``direction = sign(w_{j,c})``; the MAS, attribution and
AM+PI steps work on ``direction · φ_j`` so that they always show what makes the attribute speak *for*
class c. For pairs with ``w_{j,c} > 0`` (every pair of a φ ≥ 0 model) this is exactly the paper's recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def sample_relevance(attributes: Tensor, weight: Tensor, classes: Tensor) -> Tensor:
    """``r_{j,c,x}`` for each sample and its class.

    Args:
        attributes: ``(N, J)`` attribute activations ``φ_j(x)``.
        weight: ``(C, J)`` weight of the linear interpreter ``h``.
        classes: ``(N,)`` the class to explain for each sample (ĉ, g's prediction, or any class asked for).

    Returns:
        ``(N, J)`` relevances in ``[-1, 1]``.
    """
    return normalised_relevance(attributes * weight[classes])


def normalised_relevance(contributions: Tensor) -> Tensor:
    """``r = α / max_i |α_i|`` per row (0 for a row of zeros): ``(N, J)`` contributions α → ``(N, J)`` in ``[-1, 1]``."""
    scale = contributions.abs().amax(dim=1, keepdim=True)
    return torch.where(scale > 0, contributions / scale.clamp_min(torch.finfo(contributions.dtype).tiny), 0.0)


@dataclass(frozen=True)
class ClassAttributeRelevance:
    """Global relevances ``r_{j,c}``.

    Attributes:
        relevance: ``(C, J)``, the mean of ``r_{j,ĉ,x}`` over samples with ``ĉ = c`` (0 where ``counts[c] = 0``).
        counts: ``(C,)`` number of samples g predicted as each class.
    """

    relevance: Tensor
    counts: Tensor

    @property
    def never_predicted(self) -> list[int]:
        """Classes that g predicted for no sample (their relevance is undefined, not 0)."""
        return [int(c) for c in torch.nonzero(self.counts == 0).flatten()]


def class_attribute_relevance(sample_relevances: Tensor, predicted: Tensor, num_classes: int) -> ClassAttributeRelevance:
    """``r_{j,c}``: mean of ``sample_relevances`` over the samples predicted as ``c``.

    Args:
        sample_relevances: ``(N, J)`` values of ``r_{j,ĉ,x}`` (from :func:`sample_relevance` with ĉ).
        predicted: ``(N,)`` ĉ of each sample.
        num_classes: ``C``.
    """
    sums = torch.zeros(num_classes, sample_relevances.shape[1], dtype=sample_relevances.dtype)
    sums.index_add_(0, predicted, sample_relevances)
    counts = torch.bincount(predicted, minlength=num_classes)
    return ClassAttributeRelevance(sums / counts.clamp_min(1).unsqueeze(1).to(sums.dtype), counts)


@dataclass(frozen=True)
class ClassAttributePair:
    """A selected class-attribute pair ``(c, j)`` with its relevance ``r_{j,c}``.

    ``direction`` is ``sign(w_{j,c})``: +1 when large φ_j supports class c, −1 when negative φ_j does.
    """

    class_index: int
    attribute: int
    relevance: float
    direction: int = 1


def select_pairs(
    relevance: ClassAttributeRelevance, weight: Tensor, threshold: float = 0.1, classes: list[int] | None = None
) -> list[ClassAttributePair]:
    """Pairs with ``r_{j,c} > threshold`` (paper default 0.1), by class, then by decreasing relevance.

    Args:
        relevance: the global relevances.
        weight: ``(C, J)`` weight of ``h`` (gives each pair's direction).
        threshold: the selection threshold.
        classes: restrict to these classes (all if ``None``).
    """
    wanted = set(range(relevance.relevance.shape[0]) if classes is None else classes)
    pairs = []
    for c, j in torch.nonzero(relevance.relevance > threshold).tolist():
        if c in wanted and relevance.counts[c] > 0:
            direction = 1 if float(weight[c, j]) >= 0 else -1
            pairs.append(ClassAttributePair(c, j, float(relevance.relevance[c, j]), direction))
    return sorted(pairs, key=lambda p: (p.class_index, -p.relevance, p.attribute))


@dataclass(frozen=True)
class LogitDecomposition:
    """g's logits of an explained class ĉ and a contrast class c′, split into the attributes' contributions.

    Paper, "Interpretation Phase": g's output is linear in Φ, ``h(Φ(x))_c = b_c + Σ_j φ_j(x) w_{j,c}``, and the
    relevance is built from ``α_{j,c,x} = φ_j(x) w_{j,c}``: α is in logit units and, with the bias ``b_c``, sums
    exactly to the logit. The contrast ``Δ_j = α_{j,ĉ,x} − α_{j,c′,x} = φ_j(x) (w_{j,ĉ} − w_{j,c′})`` with
    ``b_ĉ − b_{c′}`` sums to ``logit_ĉ − logit_{c′}``: it answers "why ĉ rather than c′".

    Attributes (``N`` samples, ``J`` attributes):
        explained_class: ``(N,)`` ĉ.
        contrast_class: ``(N,)`` c′.
        bias: ``(N,)`` ``b_ĉ`` (0 for an interpreter without bias).
        contributions: ``(N, J)`` ``α_{j,ĉ,x}``.
        contrast_bias: ``(N,)`` ``b_{c′}``.
        contrast_contributions: ``(N, J)`` ``α_{j,c′,x}``.
    """

    explained_class: Tensor
    contrast_class: Tensor
    bias: Tensor
    contributions: Tensor
    contrast_bias: Tensor
    contrast_contributions: Tensor

    @property
    def logit(self) -> Tensor:
        """``(N,)`` ``b_ĉ + Σ_j α_{j,ĉ,x}``, g's logit of ĉ."""
        return self.bias + self.contributions.sum(dim=1)

    @property
    def contrast_logit(self) -> Tensor:
        """``(N,)`` g's logit of c′."""
        return self.contrast_bias + self.contrast_contributions.sum(dim=1)

    @property
    def difference(self) -> Tensor:
        """``(N, J)`` ``Δ_j = φ_j (w_{j,ĉ} − w_{j,c′})``."""
        return self.contributions - self.contrast_contributions

    @property
    def bias_difference(self) -> Tensor:
        """``(N,)`` ``b_ĉ − b_{c′}``."""
        return self.bias - self.contrast_bias

    @property
    def logit_difference(self) -> Tensor:
        """``(N,)`` ``logit_ĉ − logit_{c′} = b_ĉ − b_{c′} + Σ_j Δ_j``."""
        return self.bias_difference + self.difference.sum(dim=1)

    @property
    def relevance(self) -> Tensor:
        """``(N, J)`` ``r_{j,ĉ,x} = α_{j,ĉ,x} / max_i |α_{i,ĉ,x}|`` (as :func:`sample_relevance`)."""
        return normalised_relevance(self.contributions)

    def select(self, rows: int | slice | Tensor) -> LogitDecomposition:
        """The samples ``rows`` (an ``int`` keeps a batch of one)."""
        rows = slice(rows, rows + 1) if isinstance(rows, int) else rows
        return LogitDecomposition(self.explained_class[rows], self.contrast_class[rows], self.bias[rows], self.contributions[rows],
                                  self.contrast_bias[rows], self.contrast_contributions[rows])


def runner_up_classes(logits: Tensor, explained: Tensor) -> Tensor:
    """``(N,)`` the contrast class c′ of each sample: g's prediction when ĉ is not it, else g's second class.

    Args:
        logits: ``(N, C)`` g's logits (``C ≥ 2``).
        explained: ``(N,)`` ĉ.
    """
    if logits.shape[1] < 2:
        raise ValueError(f"a contrast class needs at least 2 classes, got {logits.shape[1]}")
    masked = logits.clone()
    masked[torch.arange(logits.shape[0]), explained] = -torch.inf
    predicted = logits.argmax(dim=1)
    return torch.where(predicted != explained, predicted, masked.argmax(dim=1))


def logit_decomposition(
    attributes: Tensor, weight: Tensor, bias: Tensor | None, explained: Tensor, contrast: Tensor
) -> LogitDecomposition:
    """Split g's logits of ``explained`` and ``contrast`` into ``b_c`` and ``α_{j,c,x} = φ_j(x) w_{j,c}``.

    Paper: ``h(Φ(x))_c = b_c + Σ_j φ_j(x) w_{j,c}`` (h linear), ``α_{j,c,x} = φ_j(x) w_{j,c}``.

    Args:
        attributes: ``(N, J)`` ``φ(x)``.
        weight: ``(C, J)`` weight of h.
        bias: ``(C,)`` bias of h, or ``None`` (a layer without bias).
        explained: ``(N,)`` ĉ of each sample.
        contrast: ``(N,)`` c′ of each sample (see :func:`runner_up_classes`).
    """
    if attributes.ndim != 2 or weight.ndim != 2 or attributes.shape[1] != weight.shape[1]:
        raise ValueError(f"need (N, J) attributes and a (C, J) weight, got {tuple(attributes.shape)} and {tuple(weight.shape)}")
    bias = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device) if bias is None else bias
    return LogitDecomposition(explained, contrast, bias[explained], attributes * weight[explained],
                              bias[contrast], attributes * weight[contrast])
