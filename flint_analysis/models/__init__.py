"""FLINT architectures and their registry.

Like torchvision's model builders, each architecture is a function ``builder(**kwargs) -> FlintModel``
registered under a name; a checkpoint stores ``(name, kwargs)`` with every default filled in, so the
model is rebuilt exactly even if a default changes later. Custom predictors are wrapped directly with
:class:`FlintModel` and saved with their own builder mapping passed to ``save``/``load``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from flint_analysis.errors import ArchitectureError
from flint_analysis.models.flint_model import AttributeHead, FlintModel, FlintOutput, SignedAttributeHead, eval_mode
from flint_analysis.models.lenet import lenet
from flint_analysis.models.resnet import resnet18

Builder = Callable[..., FlintModel]

ARCHITECTURES: Mapping[str, Builder] = MappingProxyType({"lenet": lenet, "resnet18": resnet18})


def resolve_architecture_kwargs(
    name: str, kwargs: Mapping[str, Any], architectures: Mapping[str, Builder] = ARCHITECTURES
) -> dict[str, Any]:
    """The full keyword arguments of ``architectures[name]``: ``kwargs`` plus every default."""
    if name not in architectures:
        raise ArchitectureError(f"unknown architecture {name!r}; known: {', '.join(sorted(architectures))}")
    signature = inspect.signature(architectures[name])
    try:
        bound = signature.bind(**kwargs)
    except TypeError as error:
        raise ArchitectureError(f"invalid arguments for architecture {name!r}: {error}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def build_model(name: str, kwargs: Mapping[str, Any] | None = None, architectures: Mapping[str, Builder] = ARCHITECTURES) -> FlintModel:
    """Build the registered architecture ``name`` with ``kwargs`` (defaults filled in)."""
    resolved = resolve_architecture_kwargs(name, kwargs or {}, architectures)
    return architectures[name](**resolved)


__all__ = [
    "ARCHITECTURES",
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
]
