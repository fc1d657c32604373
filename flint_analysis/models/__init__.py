"""FLINT architectures and their registry.

Like torchvision's model builders, each architecture is a function ``builder(**kwargs) -> FlintModel``
registered under a name; a checkpoint stores ``(name, kwargs)`` with every default filled in, so the
model is rebuilt exactly even if a default changes later. Custom predictors are wrapped directly with
:class:`FlintModel` and saved with their own builder mapping passed to ``save``/``load``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from flint_analysis.errors import ArchitectureError
from flint_analysis.models.flint_model import AttributeHead, FlintModel, FlintOutput, SignedAttributeHead, eval_mode
from flint_analysis.models.lenet import lenet
from flint_analysis.models.resnet import resnet18

Builder = Callable[..., FlintModel]

ARCHITECTURES: Mapping[str, Builder] = MappingProxyType({"lenet": lenet, "resnet18": resnet18})

ACTIVATIONS = ("leaky_relu", "relu")
"""The names :func:`~flint_analysis.models.flint_model.activation_module` knows."""


@dataclass(frozen=True)
class IntRule:
    """An integer keyword argument in ``[low, high]`` (and a multiple of ``multiple_of``)."""

    low: int
    high: int
    multiple_of: int = 1

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"must be an integer, got {type(value).__name__} {_short(value)}"
        if not self.low <= value <= self.high:
            return f"must be between {self.low} and {self.high}, got {value}"
        if value % self.multiple_of:
            return f"must be a multiple of {self.multiple_of}, got {value}"
        return None


@dataclass(frozen=True)
class FloatRule:
    """A real keyword argument in ``[low, high)``."""

    low: float
    high: float

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"must be a number, got {type(value).__name__} {_short(value)}"
        if not self.low <= value < self.high:  # also False for NaN
            return f"must be at least {self.low:g} and below {self.high:g}, got {value}"
        return None


@dataclass(frozen=True)
class ChoiceRule:
    """A string keyword argument from a fixed set."""

    choices: tuple[str, ...]
    what: str = "value"

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str) or value not in self.choices:
            return f"is an unknown {self.what} {_short(value)}; use one of {', '.join(self.choices)}"
        return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# The limits keep a model buildable on an ordinary machine; the paper's models are far inside them
# (28×28 inputs, 1 channel, 10 classes, J = 24/25). resnet18's decoder ends in FC(8·S², C·S²), hence its
# smaller input size.
KWARG_RULES: Mapping[str, Mapping[str, IntRule | FloatRule | ChoiceRule]] = MappingProxyType({
    "lenet": MappingProxyType({
        "num_classes": IntRule(2, 10_000),
        "in_channels": IntRule(1, 16),
        "input_size": IntRule(4, 256, multiple_of=4),
        "num_attributes": IntRule(1, 1024),
        "attribute_activation": ChoiceRule(ACTIVATIONS, "attribute activation"),
        "dropout": FloatRule(0.0, 1.0),
    }),
    "resnet18": MappingProxyType({
        "num_classes": IntRule(2, 10_000),
        "in_channels": IntRule(1, 16),
        "input_size": IntRule(4, 64, multiple_of=4),
        "num_attributes": IntRule(1, 1024),
        "attribute_activation": ChoiceRule(ACTIVATIONS, "attribute activation"),
    }),
})
"""Type and range of every keyword argument of the built-in architectures (custom ones are not checked)."""


def validate_architecture_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """Check each keyword argument of a built-in architecture against :data:`KWARG_RULES`.

    Raises:
        ArchitectureError: one line naming the argument, its limits and the value found.
    """
    rules = KWARG_RULES.get(name)
    if rules is None:
        return
    for key, value in kwargs.items():
        rule = rules.get(key)
        if rule is None:
            raise ArchitectureError(f"unknown argument {_short(key)} for architecture {name!r}; known: {', '.join(rules)}")
        problem = rule.problem(value)
        if problem:
            raise ArchitectureError(f"{name} argument {key} {problem}")


def resolve_architecture_kwargs(
    name: str, kwargs: Mapping[str, Any], architectures: Mapping[str, Builder] = ARCHITECTURES
) -> dict[str, Any]:
    """The full keyword arguments of ``architectures[name]``: ``kwargs`` plus every default.

    For the built-in architectures each argument's type and range is checked (:data:`KWARG_RULES`).
    """
    if name not in architectures:
        raise ArchitectureError(f"unknown architecture {name!r}; known: {', '.join(sorted(architectures))}")
    signature = inspect.signature(architectures[name])
    try:
        bound = signature.bind(**kwargs)
    except TypeError as error:
        raise ArchitectureError(f"invalid arguments for architecture {name!r}: {error}") from None
    bound.apply_defaults()
    resolved = dict(bound.arguments)
    if architectures[name] is ARCHITECTURES.get(name):  # a custom builder under a built-in name has its own arguments
        validate_architecture_kwargs(name, resolved)
    return resolved


def build_model(name: str, kwargs: Mapping[str, Any] | None = None, architectures: Mapping[str, Builder] = ARCHITECTURES) -> FlintModel:
    """Build the registered architecture ``name`` with ``kwargs`` (defaults filled in)."""
    resolved = resolve_architecture_kwargs(name, kwargs or {}, architectures)
    return architectures[name](**resolved)


__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
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
