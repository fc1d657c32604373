"""The FLINT training losses (paper, section "Imposing interpretability properties").

Every term is averaged over the mini-batch (the paper writes sums over S; with Adam a common batch scale
does not change the optimum). Within a sample: ``L_if`` is the mean squared error per pixel, the scale
on which the paper's Table 4 reports it (0.029 for MNIST); ``‖Φ‖₁`` sums over the J attributes as the
paper writes it, or averages over them (``l1_reduction="mean"``, the authors' code).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from flint_analysis.models import FlintOutput
from flint_analysis.training.config import LossWeights


def real_entropy(values: Tensor) -> Tensor:
    """Entropy of a real vector, ``E(v) = −Σ_i p_i log p_i`` with ``p = softmax(v)`` (paper, after Jain et al. 2017).

    Args:
        values: ``(..., J)``.

    Returns:
        ``(...)`` entropies, computed along the last dimension.
    """
    log_p = torch.log_softmax(values, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def output_fidelity_loss(g_logits: Tensor, f_logits: Tensor) -> Tensor:
    """``L_of``: cross-entropy of ``g`` against the soft targets ``softmax(f)``, ``f`` detached.

    The paper prints ``−Σ h(Φ(x))ᵀ log f(x)``, with the roles of f and g swapped relative to its stated
    goal ("g(x) should be close to f(x)"); this is the intended direction, as in the authors' code: the
    targets are f's probabilities (no gradient to f's output), the gradient still reaches f's hidden
    layers through Φ. Shapes ``(B, C)`` → scalar mean over the batch.
    """
    return F.cross_entropy(g_logits, torch.softmax(f_logits.detach(), dim=1))


def input_fidelity_loss(reconstruction: Tensor, images: Tensor) -> Tensor:
    """``L_if``: mean squared error between ``d(Φ(x))`` and ``x`` (paper, "Fidelity to Input")."""
    return F.mse_loss(reconstruction, images)


def conciseness_entropy(attributes: Tensor) -> Tensor:
    """Mean over the batch of ``E(|Φ(x)|)``; ``(B, J)`` → scalar.

    ``|Φ|`` equals ``Φ`` for the paper's φ ≥ 0 and keeps LeakyReLU attributes' small negative values
    from counting as "less active than zero" (as the authors' code does).
    """
    return real_entropy(attributes.abs()).mean()


def diversity_entropy(attributes: Tensor) -> Tensor:
    """``E(Φ̄_S)``, the entropy of the batch-mean attribute vector ``mean_x |Φ(x)|``; ``(B, J)`` → scalar."""
    return real_entropy(attributes.abs().mean(dim=0))


def l1_norm(attributes: Tensor, reduction: str = "sum") -> Tensor:
    """Mean over the batch of ``‖Φ(x)‖₁`` (``"sum"`` over attributes) or of its mean over attributes."""
    per_sample = attributes.abs().sum(dim=1) if reduction == "sum" else attributes.abs().mean(dim=1)
    return per_sample.mean()


@dataclass(frozen=True)
class LossTerms:
    """The loss of one batch and its parts (scalars)."""

    total: Tensor
    prediction: Tensor
    output_fidelity: Tensor
    input_fidelity: Tensor
    conciseness_diversity: Tensor
    conciseness: Tensor
    diversity: Tensor
    l1: Tensor

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(cls.__dataclass_fields__)

    def as_tensor(self) -> Tensor:
        """The terms stacked in :meth:`names` order, detached: ``(8,)``."""
        return torch.stack([getattr(self, name).detach() for name in self.names()])

    def as_floats(self) -> dict[str, float]:
        return dict(zip(self.names(), self.as_tensor().tolist()))


def flint_loss(
    output: FlintOutput, images: Tensor, labels: Tensor, weights: LossWeights, l1_reduction: str = "sum"
) -> LossTerms:
    """``L = L_pred + β L_of + γ L_if + δ L_cd`` (Algorithm 1, line 12), ``L_cd = ζ[−μ E(Φ̄) + E(Φ)] + η‖Φ‖₁``.

    Args:
        output: the model's output with ``reconstruction``.
        images: ``(B, *input_shape)`` inputs; labels: ``(B,)``.
        weights: the weights in force this epoch.
        l1_reduction: see :func:`l1_norm`.
    """
    if output.reconstruction is None:
        raise ValueError("flint_loss needs the reconstruction: call the model with reconstruct=True")
    prediction = F.cross_entropy(output.f_logits, labels)
    output_fidelity = output_fidelity_loss(output.g_logits, output.f_logits)
    input_fidelity = input_fidelity_loss(output.reconstruction, images)
    conciseness = conciseness_entropy(output.attributes)
    diversity = diversity_entropy(output.attributes)
    l1 = l1_norm(output.attributes, l1_reduction)
    conciseness_diversity = weights.zeta * (conciseness - weights.mu * diversity) + weights.eta * l1
    total = (
        prediction
        + weights.beta * output_fidelity
        + weights.gamma * input_fidelity
        + weights.delta * conciseness_diversity
    )
    return LossTerms(total, prediction, output_fidelity, input_fidelity, conciseness_diversity, conciseness, diversity, l1)


def distributed_flint_loss(
    output: FlintOutput, images: Tensor, labels: Tensor, weights: LossWeights, l1_reduction: str, *,
    local_sizes: list[int], rank: int,
) -> tuple[LossTerms, Tensor]:
    """This process's share of :func:`flint_loss` on a global batch split over the ranks of a DDP run.

    ``local_sizes[r]`` samples of the global batch (``N = Σ local_sizes``) are on rank ``r``. Every term but the
    diversity entropy is a mean over samples; on rank ``r`` it is scaled by ``W n_r / N`` so that DDP's
    average of the ranks' gradients is the gradient of the mean over the whole global batch. The diversity
    entropy ``E(Φ̄)`` needs the batch mean of ``|Φ|`` over the whole global batch: the ranks' attributes are
    gathered with autograd (:func:`~flint_analysis.distributed.all_gather_with_gradient`, whose backward sums each
    rank's gradient into every rank), every rank computes the same ``E(Φ̄)``, and DDP's average leaves exactly its gradient.

    Returns:
        The terms (local means, except ``diversity``: the global batch's; ``total`` as :func:`flint_loss`
        would log it from these) and the objective to call ``backward()`` on.
    """
    from flint_analysis.distributed import ProcessGroup, all_gather_with_gradient

    world_size, count, total_count = len(local_sizes), local_sizes[rank], sum(local_sizes)
    widest = max(local_sizes)
    attributes = output.attributes
    padded = torch.cat([attributes, attributes.new_zeros(widest - count, attributes.shape[1])]) if count < widest else attributes
    gathered = all_gather_with_gradient(padded, ProcessGroup(world_size=world_size, rank=rank))
    batch_attributes = torch.cat([part[:size] for part, size in zip(gathered, local_sizes)])
    diversity = diversity_entropy(batch_attributes)
    if count == 0:  # an empty share still takes part in the gradient exchange, with zero gradients
        zero = sum(t.sum() for t in (output.f_logits, output.g_logits, output.attributes, output.reconstruction)) * 0.0
        terms = LossTerms(*(zero.detach() for _ in LossTerms.names()))
        return replace(terms, diversity=diversity.detach()), zero - weights.delta * weights.zeta * weights.mu * diversity
    local = flint_loss(output, images, labels, weights, l1_reduction)
    conciseness_diversity = weights.zeta * (local.conciseness - weights.mu * diversity) + weights.eta * local.l1
    separable = (local.prediction + weights.beta * local.output_fidelity + weights.gamma * local.input_fidelity
                 + weights.delta * (weights.zeta * local.conciseness + weights.eta * local.l1))
    objective = (world_size * count / total_count) * separable - weights.delta * weights.zeta * weights.mu * diversity
    total = local.prediction + weights.beta * local.output_fidelity + weights.gamma * local.input_fidelity + weights.delta * conciseness_diversity
    return replace(local, total=total, conciseness_diversity=conciseness_diversity, diversity=diversity), objective
