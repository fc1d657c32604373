"""Input attribution of an attribute ``φ_j`` (not of a logit), through Captum.

Paper, "Analysis tools for interpretability — Input attribution", and "Choices for interpretation
phase": the gradient for the LeNet-based network and Guided Backpropagation (Springenberg et al. 2014)
for the ResNet-based one. Each method is a Captum class applied to :class:`AttributeHead`
(``x ↦ Φ(x^I)``) with ``target = j``:

- ``gradient``: ``captum.attr.Saliency`` with ``abs=False``, the signed ``∂φ_j/∂x``;
- ``guided-backprop``: ``captum.attr.GuidedBackprop``; it overrides the backward pass of ``nn.ReLU``
  modules only, which is why the architectures use ReLU modules (Φ's LeakyReLU is not guided);
- ``integrated-gradients``: ``captum.attr.IntegratedGradients`` from a black image;
- ``input-x-gradient``: ``captum.attr.InputXGradient``.

With ``directions`` (−1 for pairs relevant through negative φ_j) the map explains ``−φ_j`` instead,
through :class:`~flint_analysis.models.SignedAttributeHead`.

Captum removes its hooks when it returns and only differentiates with respect to the inputs, so the
model is left exactly as it was (mode, hooks, parameters and their gradients).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, Mapping

import torch
from captum.attr import GuidedBackprop, InputXGradient, IntegratedGradients, Saliency
from torch import Tensor

from flint_analysis.errors import InputError
from flint_analysis.models import FlintModel, SignedAttributeHead, eval_mode


def _saliency(head: SignedAttributeHead, x: Tensor, targets: list[int]) -> Tensor:
    return Saliency(head).attribute(x, target=targets, abs=False)


def _guided_backprop(head: SignedAttributeHead, x: Tensor, targets: list[int]) -> Tensor:
    return GuidedBackprop(head).attribute(x, target=targets)


def _integrated_gradients(head: SignedAttributeHead, x: Tensor, targets: list[int]) -> Tensor:
    return IntegratedGradients(head).attribute(x, baselines=torch.zeros_like(x), target=targets, n_steps=50)


def _input_x_gradient(head: SignedAttributeHead, x: Tensor, targets: list[int]) -> Tensor:
    return InputXGradient(head).attribute(x, target=targets)


ATTRIBUTION_METHODS: Mapping[str, Callable[[SignedAttributeHead, Tensor, list[int]], Tensor]] = MappingProxyType(
    {
        "gradient": _saliency,
        "guided-backprop": _guided_backprop,
        "integrated-gradients": _integrated_gradients,
        "input-x-gradient": _input_x_gradient,
    }
)

_PAPER_DEFAULTS = MappingProxyType({"lenet": "gradient", "resnet18": "guided-backprop"})


def default_attribution_method(architecture: str) -> str:
    """The paper's choice: gradient for ``lenet``, guided backpropagation for ``resnet18``."""
    return _PAPER_DEFAULTS.get(architecture, "gradient")


def attribute_inputs(
    model: FlintModel,
    images: Tensor,
    attribute_indices: Tensor,
    method: str = "gradient",
    directions: Tensor | None = None,
    batch_size: int = 64,
) -> Tensor:
    """Attribution maps of ``φ_{j_b}`` with respect to each input ``x_b``.

    Args:
        model: the FLINT model (evaluated in eval mode; its mode is restored).
        images: ``(B, *input_shape)`` inputs.
        attribute_indices: ``(B,)`` the attribute ``j_b`` to explain for each input.
        method: one of :data:`ATTRIBUTION_METHODS`.
        directions: ``(B,)`` of ±1: explain ``directions[b] · φ_{j_b}`` (default all +1).
        batch_size: inputs per Captum call.

    Returns:
        ``(B, *input_shape)`` attribution maps (signed).
    """
    if method not in ATTRIBUTION_METHODS:
        raise InputError(f"unknown attribution method {method!r}; use one of {', '.join(ATTRIBUTION_METHODS)}")
    if attribute_indices.shape != images.shape[:1]:
        raise InputError(f"{attribute_indices.shape[0]} attribute indices for {images.shape[0]} images")
    explain = ATTRIBUTION_METHODS[method]
    head = SignedAttributeHead(model)
    targets_all = attribute_indices.detach().cpu().long().clone()
    if directions is not None:
        targets_all = targets_all + model.num_attributes * (directions.detach().cpu() < 0).long()
    maps: list[Tensor] = []
    with eval_mode(head), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].detach().clone().requires_grad_(True)
            targets = targets_all[start : start + batch_size].tolist()
            maps.append(explain(head, x, targets).detach())
    return torch.cat(maps) if maps else torch.empty_like(images)


def describe_method(method: str) -> dict[str, Any]:
    """A JSON-ready description of an attribution method (recorded in reports)."""
    captum_class = {"gradient": "Saliency(abs=False)", "guided-backprop": "GuidedBackprop",
                    "integrated-gradients": "IntegratedGradients(baseline=0, n_steps=50)", "input-x-gradient": "InputXGradient"}
    return {"name": method, "captum": captum_class[method], "target": "attribute φ_j"}
