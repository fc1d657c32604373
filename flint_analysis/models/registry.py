"""The architecture registry: each architecture is a record that carries its facts with its builder.

Like timm's default configs and torchvision's weight metadata, an :class:`Architecture` holds what the rest
of the package needs to know about a network: its builder, the hidden layers Φ reads by default (taps),
the paper's input-attribution method for it, its default training preset, and the type and range of each
builder argument. Records are declared next to their builders (``lenet.py``, ``resnet.py``, and one per
allowlisted torchvision network in ``torchvision_models.py``); ``flint_analysis.models.ARCHITECTURES`` collects
the built-in ones, ``KNOWN_ARCHITECTURES`` those and the torchvision ones.

The builder contract, written once here: a builder is called with keyword arguments only,

- ``num_classes`` (C), ``in_channels``, ``input_size`` (square inputs ``in_channels × input_size × input_size``),
- ``num_attributes`` (J), ``attribute_activation`` (``"leaky_relu"`` or ``"relu"``, Φ's last non-linearity),
- plus any architecture-specific ones with defaults,

and returns a :class:`~flint_analysis.models.flint_model.FlintModel` whose taps are the record's ``taps``.
A checkpoint stores ``(name, kwargs)`` with every default filled in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from flint_analysis.errors import ArchitectureError, short_repr
from flint_analysis.models.flint_model import FlintModel

Builder = Callable[..., FlintModel]
"""``builder(*, num_classes, in_channels, input_size, num_attributes, attribute_activation, **extra) -> FlintModel``."""

BUILDER_CONTRACT = ("num_classes", "in_channels", "input_size", "num_attributes", "attribute_activation")
"""The keyword arguments every builder accepts (the data fills in the first three)."""

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
            return f"must be an integer, got {type(value).__name__} {short_repr(value)}"
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
            return f"must be a number, got {type(value).__name__} {short_repr(value)}"
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
            return f"is an unknown {self.what} {short_repr(value)}; use one of {', '.join(self.choices)}"
        return None


_MODULE_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


@dataclass(frozen=True)
class NamesRule:
    """A list of ``low`` to ``high`` distinct module names (``named_modules()`` names: dotted identifiers of at
    most ``max_length`` characters); whether the model has them is the builder's check."""

    low: int
    high: int
    max_length: int = 100

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, (list, tuple)):
            return f"must be a list of module names, got {type(value).__name__} {short_repr(value)}"
        if not self.low <= len(value) <= self.high:
            return f"must name {self.low} to {self.high} modules, got {len(value)}"
        for name in value:
            if not isinstance(name, str) or len(name) > self.max_length or not _MODULE_NAME.fullmatch(name):
                return (f"holds {short_repr(name)}, not a module name (dotted letters, digits and _, "
                        f"at most {self.max_length} characters)")
        if len(set(value)) != len(value):
            return f"names a module twice: {short_repr(list(value))}"
        return None


Rule = IntRule | FloatRule | ChoiceRule | NamesRule


@dataclass(frozen=True)
class Architecture:
    """A registered architecture and its facts.

    Attributes:
        name: registry name (``--architecture``, stored in checkpoints).
        builder: the function that builds the model (see the module docstring for its contract).
        taps: names of the predictor's hidden layers Φ reads.
        default_attribution: the paper's input-attribution method for this network ("Choices for
            interpretation phase": the gradient for LeNet, guided backpropagation for ResNet).
        default_preset: the training preset used when neither ``--preset`` nor the dataset names one.
        kwarg_rules: type and range of each builder argument (the limits keep a model buildable on an
            ordinary machine; the paper's models are far inside them).
        tap_shapes: ``input_size`` → the ``(channels, height, width)`` of each tap's output, in tap order.
        summary: one line for ``--help`` and the README.
    """

    name: str
    builder: Builder
    taps: tuple[str, ...]
    default_attribution: str
    default_preset: str
    kwarg_rules: Mapping[str, Rule] = field(default_factory=dict)
    tap_shapes: Callable[[int], tuple[tuple[int, int, int], ...]] | None = None
    summary: str = ""

    def __call__(self, **kwargs: Any) -> FlintModel:
        return self.builder(**kwargs)

    def validate(self, kwargs: Mapping[str, Any]) -> None:
        """Check each keyword argument against :attr:`kwarg_rules`.

        Raises:
            ArchitectureError: one line naming the argument, its limits and the value found.
        """
        for key, value in kwargs.items():
            rule = self.kwarg_rules.get(key)
            if rule is None:
                raise ArchitectureError(
                    f"unknown argument {short_repr(key)} for architecture {self.name!r}; known: {', '.join(self.kwarg_rules)}"
                )
            problem = rule.problem(value)
            if problem:
                raise ArchitectureError(f"{self.name} argument {key} {problem}")


def contract_rules(input_size_high: int) -> dict[str, Rule]:
    """The rules of the builder contract's arguments; ``input_size_high`` is the architecture's largest input."""
    return {
        "num_classes": IntRule(2, 10_000),
        "in_channels": IntRule(1, 16),
        "input_size": IntRule(4, input_size_high, multiple_of=4),
        "num_attributes": IntRule(1, 1024),
        "attribute_activation": ChoiceRule(ACTIVATIONS, "attribute activation"),
    }


def registry(*architectures: Architecture) -> Mapping[str, Architecture]:
    """A read-only name → record mapping."""
    return MappingProxyType({architecture.name: architecture for architecture in architectures})
