"""Decoder ablation: what the decoder draws with and without one attribute.

Paper, "Analysis tools for interpretability — Decoder": compare ``d(Φ(x^I))`` with ``d(Φ(x^I) \\ j)``, the
attribute vector with ``φ_j(x^I) = 0``, "removing the effect of attribute j".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flint_analysis.errors import InputError
from flint_analysis.models import FlintModel, eval_mode


@dataclass(frozen=True)
class DecoderAblation:
    """Reconstructions ``(B, *input_shape)``: with φ_j, without it (φ_j = 0), and ``with − without``."""

    with_attribute: Tensor
    without_attribute: Tensor
    difference: Tensor

    def select(self, rows: slice | Tensor) -> DecoderAblation:
        """The runs ``rows``, on the CPU."""
        return DecoderAblation(self.with_attribute[rows].cpu(), self.without_attribute[rows].cpu(), self.difference[rows].cpu())


@torch.no_grad()
def decoder_ablation(
    model: FlintModel,
    images: Tensor | None,
    attribute_indices: Tensor,
    directions: Tensor | None = None,
    *,
    attributes: Tensor | None = None,
) -> DecoderAblation:
    """Decode ``Φ(x_b)`` as it is and with ``φ_{j_b} = 0``.

    Same call shape as the other attribute tools (:mod:`flint_analysis.attribute_tools`); ``directions``
    is accepted for that and unused (setting φ_j to 0 does not depend on its sign).

    Args:
        model: the FLINT model whose decoder is used (eval mode; its mode is restored).
        images: ``(B, *input_shape)`` inputs, or ``None`` when ``attributes`` are given.
        attribute_indices: ``(B,)`` the attribute ``j_b`` to remove from each vector.
        directions: unused.
        attributes: ``(B, J)`` the vectors ``Φ(x_b)`` when already computed (no forward pass then).
    """
    if attributes is None:
        if images is None:
            raise InputError("decoder_ablation needs images or their attribute vectors")
        with eval_mode(model):
            attributes = model(images).attributes
    if attribute_indices.shape != attributes.shape[:1]:
        raise InputError(f"{attribute_indices.shape[0]} attribute indices for {attributes.shape[0]} attribute vectors")
    ablated = attributes.clone()
    ablated[torch.arange(attributes.shape[0]), attribute_indices] = 0.0
    with eval_mode(model.decoder):
        with_attribute = model.decoder(attributes)
        without_attribute = model.decoder(ablated)
    return DecoderAblation(with_attribute, without_attribute, with_attribute - without_attribute)
