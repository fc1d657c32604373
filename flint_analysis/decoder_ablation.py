"""Decoder ablation: what the decoder draws with and without one attribute.

Paper, "Analysis tools for interpretability — Decoder": compare ``d(Φ(x^I))`` with ``d(Φ(x^I) \\ j)``, the
attribute vector with ``φ_j(x^I) = 0``, "removing the effect of attribute j".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flint_analysis.models import FlintModel, eval_mode


@dataclass(frozen=True)
class DecoderAblation:
    """Reconstructions ``(B, *input_shape)``: with φ_j, without it (φ_j = 0), and ``with − without``."""

    with_attribute: Tensor
    without_attribute: Tensor
    difference: Tensor


@torch.no_grad()
def decoder_ablation(model: FlintModel, attributes: Tensor, attribute_indices: Tensor) -> DecoderAblation:
    """Decode ``attributes`` ``(B, J)`` as they are and with ``attributes[b, j_b] = 0``.

    Args:
        model: the FLINT model whose decoder is used (eval mode; its mode is restored).
        attributes: ``(B, J)`` attribute vectors ``Φ(x^I)``.
        attribute_indices: ``(B,)`` the attribute ``j_b`` to remove from each vector.
    """
    ablated = attributes.clone()
    ablated[torch.arange(attributes.shape[0]), attribute_indices] = 0.0
    with eval_mode(model.decoder):
        with_attribute = model.decoder(attributes)
        without_attribute = model.decoder(ablated)
    return DecoderAblation(with_attribute, without_attribute, with_attribute - without_attribute)
