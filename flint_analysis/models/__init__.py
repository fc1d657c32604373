"""FLINT architectures and their registry.

Each architecture is an :class:`~flint_analysis.models.registry.Architecture` record (builder, taps,
default attribution, default preset, argument rules) declared next to its builder; a checkpoint stores
``(name, kwargs)`` with every default filled in, so the model is rebuilt exactly even if a default
changes later. Custom predictors are wrapped directly with :class:`FlintModel`; loading them takes a
``name → builder`` (or record) mapping (``load_checkpoint(path, architectures={...})``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from flint_analysis.errors import ArchitectureError
from flint_analysis.models.flint_model import AttributeHead, FlintModel, FlintOutput, SignedAttributeHead, eval_mode
from flint_analysis.models.lenet import LENET, lenet
from flint_analysis.models.official import OFFICIAL_RESNET18
from flint_analysis.models.registry import (
    ACTIVATIONS,
    BUILDER_CONTRACT,
    Architecture,
    Builder,
    ChoiceRule,
    FloatRule,
    IntRule,
    Rule,
    registry,
)
from flint_analysis.models.resnet import RESNET18, resnet18

ARCHITECTURES: Mapping[str, Architecture] = registry(LENET, RESNET18, OFFICIAL_RESNET18)
"""The built-in architectures. Adding one: a builder and its :class:`Architecture` record next to it, and
the record here."""

KWARG_RULES: Mapping[str, Mapping[str, Rule]] = MappingProxyType({name: a.kwarg_rules for name, a in ARCHITECTURES.items()})
"""Type and range of every keyword argument of the built-in architectures (custom ones are not checked)."""


def _builder(entry: Architecture | Builder) -> Builder:
    return entry.builder if isinstance(entry, Architecture) else entry


def default_attribution(architecture: str) -> str:
    """The paper's input-attribution method for a registered architecture (the gradient for others)."""
    entry = ARCHITECTURES.get(architecture)
    return entry.default_attribution if entry is not None else "gradient"


def validate_architecture_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """Check each keyword argument of a built-in architecture against its record's rules (others are not checked)."""
    entry = ARCHITECTURES.get(name)
    if entry is not None:
        entry.validate(kwargs)


def resolve_architecture_kwargs(
    name: str, kwargs: Mapping[str, Any], architectures: Mapping[str, Architecture | Builder] = ARCHITECTURES
) -> dict[str, Any]:
    """The full keyword arguments of ``architectures[name]``: ``kwargs`` plus every default.

    For the built-in architectures each argument's type and range is checked (:data:`KWARG_RULES`).
    """
    if name not in architectures:
        raise ArchitectureError(f"unknown architecture {name!r}; known: {', '.join(sorted(architectures))}")
    signature = inspect.signature(_builder(architectures[name]))
    try:
        bound = signature.bind(**kwargs)
    except TypeError as error:
        raise ArchitectureError(f"invalid arguments for architecture {name!r}: {error}") from None
    bound.apply_defaults()
    resolved = dict(bound.arguments)
    if architectures[name] is ARCHITECTURES.get(name):  # a custom builder under a built-in name has its own arguments
        validate_architecture_kwargs(name, resolved)
    return resolved


def build_model(
    name: str, kwargs: Mapping[str, Any] | None = None, architectures: Mapping[str, Architecture | Builder] = ARCHITECTURES
) -> FlintModel:
    """Build the registered architecture ``name`` with ``kwargs`` (defaults filled in)."""
    resolved = resolve_architecture_kwargs(name, kwargs or {}, architectures)
    model = _builder(architectures[name])(**resolved)
    model.architecture_name = name
    return model


__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "Architecture",
    "BUILDER_CONTRACT",
    "ChoiceRule",
    "FloatRule",
    "IntRule",
    "default_attribution",
    "KWARG_RULES",
    "AttributeHead",
    "Builder",
    "FlintModel",
    "FlintOutput",
    "SignedAttributeHead",
    "build_model",
    "eval_mode",
    "lenet",
    "resnet18",
    "resolve_architecture_kwargs",
    "validate_architecture_kwargs",
]
