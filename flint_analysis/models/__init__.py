"""FLINT architectures and their registry.

Each architecture is an :class:`~flint_analysis.models.registry.Architecture` record (builder, taps,
default attribution, default preset, argument rules) declared next to its builder; a checkpoint stores
``(name, kwargs)`` with every default filled in, so the model is rebuilt exactly even if a default
changes later. The built-in networks are :data:`ARCHITECTURES`; the allowlisted torchvision classifiers
are :data:`TORCHVISION_ARCHITECTURES` (``torchvision:NAME``, :mod:`flint_analysis.models.torchvision_models`);
:data:`KNOWN_ARCHITECTURES` holds both and :func:`architecture_entry` looks a name up.

Custom predictors are wrapped directly with :class:`FlintModel`; saving and loading them takes a
``name → builder`` (or record) mapping that adds to the known architectures:
``Checkpoint(model, "mine", kwargs, spec).save(path, architectures={"mine": build_mine})`` checks that
``build_mine(**kwargs)`` rebuilds a model of the same shapes, and
``load_checkpoint(path, architectures={"mine": build_mine})`` rebuilds it.
"""

from __future__ import annotations

import difflib
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
    NamesRule,
    Rule,
    registry,
)
from flint_analysis.models.resnet import RESNET18, resnet18
from flint_analysis.models.torchvision_models import PREFIX as TORCHVISION_PREFIX
from flint_analysis.models.torchvision_models import TORCHVISION_ARCHITECTURES, TORCHVISION_NETWORKS

ARCHITECTURES: Mapping[str, Architecture] = registry(LENET, RESNET18, OFFICIAL_RESNET18)
"""The built-in architectures. Adding one: a builder and its :class:`Architecture` record next to it, and
the record here."""

KNOWN_ARCHITECTURES: Mapping[str, Architecture] = registry(*ARCHITECTURES.values(), *TORCHVISION_ARCHITECTURES.values())
"""The built-in architectures and the torchvision ones (``torchvision:NAME``): every name a checkpoint may use
without a mapping of the caller's."""

KWARG_RULES: Mapping[str, Mapping[str, Rule]] = MappingProxyType({name: a.kwarg_rules for name, a in KNOWN_ARCHITECTURES.items()})
"""Type and range of every keyword argument of the known architectures (custom ones are checked only when
given as :class:`Architecture` records with rules)."""


def _builder(entry: Architecture | Builder) -> Builder:
    return entry.builder if isinstance(entry, Architecture) else entry


def _unknown(name: str, known: Mapping[str, Any]) -> ArchitectureError:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return ArchitectureError(f"unknown architecture {name!r}; {hint}known: {', '.join(sorted(known))}")


def architecture_entry(name: str, architectures: Mapping[str, Architecture | Builder] | None = None) -> Architecture:
    """The record of a known architecture (built-in or ``torchvision:NAME``), or of ``architectures[name]``.

    A plain builder in ``architectures`` gets a record with its name, no taps and the gradient as attribution.

    Raises:
        ArchitectureError: an unknown name, one line listing the known ones.
    """
    known: Mapping[str, Architecture | Builder] = {**KNOWN_ARCHITECTURES, **(architectures or {})}
    if not isinstance(name, str) or name not in known:
        raise _unknown(str(name), known)
    entry = known[name]
    if isinstance(entry, Architecture):
        return entry
    return Architecture(name=name, builder=entry, taps=(), default_attribution="gradient", default_preset="demo")


def default_attribution(architecture: str) -> str:
    """The paper's input-attribution method for a known architecture (the gradient for others)."""
    entry = KNOWN_ARCHITECTURES.get(architecture)
    return entry.default_attribution if entry is not None else "gradient"


def validate_architecture_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """Check each keyword argument of a known architecture against its record's rules (others are not checked)."""
    entry = KNOWN_ARCHITECTURES.get(name)
    if entry is not None:
        entry.validate(kwargs)


def resolve_architecture_kwargs(
    name: str, kwargs: Mapping[str, Any], architectures: Mapping[str, Architecture | Builder] = KNOWN_ARCHITECTURES
) -> dict[str, Any]:
    """The full keyword arguments of ``architectures[name]``: ``kwargs`` plus every default.

    For the known architectures each argument's type and range is checked (:data:`KWARG_RULES`), as for a
    caller's :class:`Architecture` record that has rules. Lists of module names (``taps``) come back as lists.
    """
    if name not in architectures:
        raise _unknown(name, architectures)
    entry = architectures[name]
    signature = inspect.signature(_builder(entry))
    try:
        bound = signature.bind(**kwargs)
    except TypeError as error:
        raise ArchitectureError(f"invalid arguments for architecture {name!r}: {error}") from None
    bound.apply_defaults()
    resolved = dict(bound.arguments)
    if entry is KNOWN_ARCHITECTURES.get(name):  # a custom builder under a known name has its own arguments
        validate_architecture_kwargs(name, resolved)
    elif isinstance(entry, Architecture) and entry.kwarg_rules:
        entry.validate(resolved)
    if isinstance(entry, Architecture):
        for key, rule in entry.kwarg_rules.items():
            if isinstance(rule, NamesRule) and isinstance(resolved.get(key), tuple):
                resolved[key] = list(resolved[key])
    return resolved


def build_model(
    name: str, kwargs: Mapping[str, Any] | None = None, architectures: Mapping[str, Architecture | Builder] = KNOWN_ARCHITECTURES
) -> FlintModel:
    """Build the registered architecture ``name`` with ``kwargs`` (defaults filled in)."""
    resolved = resolve_architecture_kwargs(name, kwargs or {}, architectures)
    model = _builder(architectures[name])(**resolved)
    model.architecture_name = name
    return model


__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "KNOWN_ARCHITECTURES",
    "TORCHVISION_ARCHITECTURES",
    "TORCHVISION_NETWORKS",
    "TORCHVISION_PREFIX",
    "Architecture",
    "architecture_entry",
    "NamesRule",
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
