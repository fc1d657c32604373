"""Input attribution of an attribute ``φ_j`` (not of a logit), through Captum.

Paper, "Analysis tools for interpretability — Input attribution", and "Choices for interpretation
phase": the gradient for the LeNet-based network and Guided Backpropagation (Springenberg et al. 2014)
for the ResNet-based one. Each method is a Captum class applied to :class:`AttributeHead`
(``x ↦ Φ(x^I)``) with ``target = j``:

- ``gradient``: ``captum.attr.Saliency`` with ``abs=False``, the signed ``∂φ_j/∂x``;
- ``guided-backprop``: ``captum.attr.GuidedBackprop``; it overrides the backward pass of ``nn.ReLU``
  modules only, which is why the architectures use ReLU modules (Φ's LeakyReLU is not guided);
- ``integrated-gradients``: ``captum.attr.IntegratedGradients`` from a constant image (settings
  ``baseline``, default 0, and ``n_steps``, default 50);
- ``input-x-gradient``: ``captum.attr.InputXGradient``.

With ``directions`` (−1 for pairs relevant through negative φ_j) the map explains ``−φ_j`` instead,
through :class:`~flint_analysis.models.SignedAttributeHead`.

Each method is an :class:`AttributionMethod` record in :data:`ATTRIBUTION_METHODS`; adding one is one
entry there. Captum removes its hooks when it returns and only differentiates with respect to the inputs, so the
model is left exactly as it was (mode, hooks, parameters and their gradients).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from flint_analysis.errors import InputError
from flint_analysis.models import FlintModel, SignedAttributeHead, eval_mode


@dataclass(frozen=True)
class AttributionMethod:
    """A registered input-attribution method: the Captum class that computes it and its settings.

    Attributes:
        name: registry name (``--attribution``).
        captum_class: the name of the ``captum.attr`` class applied to the signed attribute head (imported
            when a map is computed, so listing the methods does not import Captum).
        settings: keyword arguments of ``captum_class(...).attribute`` with their defaults; a caller may
            override any of them (and only them).
        description: how the map is computed, as recorded in reports.
    """

    name: str
    captum_class: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def resolve_settings(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The method's settings with ``overrides`` applied; an unknown or invalid setting is an :class:`InputError`."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.settings))
        if unknown:
            allowed = ", ".join(self.settings) or "none"
            raise InputError(f"attribution method {self.name!r} has no setting {unknown[0]!r} (settings: {allowed})")
        resolved = {**self.settings, **overrides}
        if "n_steps" in resolved and (not isinstance(resolved["n_steps"], int) or not 1 <= resolved["n_steps"] <= 10_000):
            raise InputError(f"{self.name}: n_steps must be an integer from 1 to 10000, got {resolved['n_steps']!r}")
        if "baseline" in resolved and not (isinstance(resolved["baseline"], (int, float)) and math.isfinite(resolved["baseline"])):
            raise InputError(f"{self.name}: baseline must be a finite number (a constant image), got {resolved['baseline']!r}")
        return resolved

    def attribute(self, head: SignedAttributeHead, x: Tensor, targets: list[int], settings: Mapping[str, Any]) -> Tensor:
        """Captum's attribution of ``head``'s outputs ``targets`` with respect to ``x``."""
        arguments = dict(settings)
        if "baseline" in arguments:
            arguments["baselines"] = torch.full_like(x, float(arguments.pop("baseline")))
        import captum.attr

        return getattr(captum.attr, self.captum_class)(head).attribute(x, target=targets, **arguments)

    def to_dict(self, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """JSON-ready record of the method and the settings a run used."""
        return {"name": self.name, "captum": self.captum_class, "settings": self.resolve_settings(settings),
                "target": "attribute φ_j"}


ATTRIBUTION_METHODS: Mapping[str, AttributionMethod] = MappingProxyType({
    method.name: method
    for method in (
        AttributionMethod("gradient", "Saliency", {"abs": False}, "the signed gradient ∂φ_j/∂x"),
        AttributionMethod("guided-backprop", "GuidedBackprop", {}, "guided backpropagation through every nn.ReLU"),
        AttributionMethod("integrated-gradients", "IntegratedGradients", {"n_steps": 50, "baseline": 0.0},
                          "integrated gradients from a constant image (baseline), n_steps Riemann steps"),
        AttributionMethod("input-x-gradient", "InputXGradient", {}, "input times gradient"),
    )
})


def attribution_method(name: str) -> AttributionMethod:
    """The registered method ``name``; an unknown name is an :class:`InputError` listing the known ones."""
    if name not in ATTRIBUTION_METHODS:
        raise InputError(f"unknown attribution method {name!r}; use one of {', '.join(ATTRIBUTION_METHODS)}")
    return ATTRIBUTION_METHODS[name]


@dataclass(frozen=True)
class AttributionMaps:
    """Attribution maps of ``B`` runs.

    Attributes:
        maps: ``(B, C, H, W)`` signed maps of ``directions · φ_j`` with respect to the input.
        method: the registry name of the method.
        settings: the settings the method ran with.
    """

    maps: Tensor
    method: str
    settings: Mapping[str, Any]

    def select(self, rows: slice | Tensor) -> AttributionMaps:
        """The runs ``rows``, on the CPU."""
        return AttributionMaps(self.maps[rows].cpu(), self.method, self.settings)


def attribute_inputs(
    model: FlintModel,
    images: Tensor,
    attribute_indices: Tensor,
    directions: Tensor | None = None,
    *,
    method: str = "gradient",
    batch_size: int = 64,
    **settings: Any,
) -> AttributionMaps:
    """Attribution maps of ``directions[b] · φ_{j_b}`` with respect to each input ``x_b``.

    The call shape is the one every attribute tool shares (:mod:`flint_analysis.attribute_tools`):
    ``tool(model, images, attribute_indices, directions, **settings)``.

    Args:
        model: the FLINT model (evaluated in eval mode; its mode is restored).
        images: ``(B, *input_shape)`` inputs.
        attribute_indices: ``(B,)`` the attribute ``j_b`` to explain for each input.
        directions: ``(B,)`` of ±1: explain ``directions[b] · φ_{j_b}`` (default all +1).
        method: one of :data:`ATTRIBUTION_METHODS`.
        batch_size: inputs per Captum call.
        settings: the method's settings (e.g. ``n_steps=100, baseline=0.5`` for integrated gradients).

    Returns:
        :class:`AttributionMaps` with ``(B, *input_shape)`` signed maps.
    """
    registered = attribution_method(method)
    resolved = registered.resolve_settings(settings)
    if attribute_indices.shape != images.shape[:1]:
        raise InputError(f"{attribute_indices.shape[0]} attribute indices for {images.shape[0]} images")
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
            maps.append(registered.attribute(head, x, targets, resolved).detach())
    return AttributionMaps(torch.cat(maps) if maps else torch.empty_like(images), method, resolved)

