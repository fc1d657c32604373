"""Options declared once: a configuration field carries its default, its limits and its help text.

The configuration dataclasses (:class:`~flint_analysis.am_pi.AmPiConfig`, ``GlobalConfig``, ``LocalConfig``,
``DepthConfig``, ``TrainingConfig``) declare each numeric field with :func:`option`; their
``__post_init__`` calls :func:`check_options`, and the command-line tools build each flag with
:func:`add_option` from the same field: the default, the argparse ``type=`` (which refuses what the
limits refuse, at parse time) and the help text's "(default …)" all come from that one declaration.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flint_analysis.errors import InputError


@dataclass(frozen=True)
class Limit:
    """The values a number option accepts: an integer or a finite float between optional bounds.

    Attributes:
        kind: ``int`` or ``float``.
        minimum, maximum: bounds (``None``: unbounded); ``min_open``/``max_open`` exclude the bound itself.
    """

    kind: type
    minimum: float | None = None
    maximum: float | None = None
    min_open: bool = False
    max_open: bool = False

    def describe(self) -> str:
        low = None if self.minimum is None else f"{'>' if self.min_open else '≥'} {self.minimum:g}"
        high = None if self.maximum is None else f"{'<' if self.max_open else '≤'} {self.maximum:g}"
        bounds = " and ".join(part for part in (low, high) if part)
        what = "an integer" if self.kind is int else "a finite number"
        return what + (f" {bounds}" if bounds else "")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (``None`` when it is)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.kind is int and not isinstance(value, int)):
            return f"must be {self.describe()}, got {value!r}"
        if not math.isfinite(value):
            return f"must be {self.describe()}, got {value!r}"
        if self.minimum is not None and (value < self.minimum or (self.min_open and value == self.minimum)):
            return f"must be {self.describe()}, got {value:g}"
        if self.maximum is not None and (value > self.maximum or (self.max_open and value == self.maximum)):
            return f"must be {self.describe()}, got {value:g}"
        return None

    def argparse_type(self) -> Callable[[str], Any]:
        """An argparse ``type=`` that accepts exactly what :meth:`problem` accepts (ASCII digits only)."""
        from flint_analysis.cli_common import integer, number

        if self.kind is int:
            low = None if self.minimum is None else int(self.minimum) + (1 if self.min_open else 0)
            high = None if self.maximum is None else int(self.maximum) - (1 if self.max_open else 0)
            return integer(low, high)
        return number(self.minimum, self.maximum, self.min_open, self.max_open)


POSITIVE_INT = Limit(int, minimum=1)
NON_NEGATIVE_INT = Limit(int, minimum=0)
FINITE = Limit(float)
POSITIVE = Limit(float, minimum=0.0, min_open=True)
NON_NEGATIVE = Limit(float, minimum=0.0)
FRACTION = Limit(float, minimum=0.0, maximum=1.0)
SEED = Limit(int, minimum=0, maximum=2**63 - 1)


def option(default: Any, limit: Limit | None = None, help: str = "", choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with its default, its :class:`Limit` or ``choices``, and its help text."""
    return dataclasses.field(default=default, metadata={"limit": limit, "help": help, "choices": choices})


def check_options(instance: Any) -> None:
    """Check every :func:`option` field of a dataclass instance.

    Raises:
        InputError: one line naming the field, its limits and the value.
    """
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        limit, choices = f.metadata.get("limit"), f.metadata.get("choices")
        if limit is not None:
            problem = limit.problem(value)
            if problem:
                raise InputError(f"{type(instance).__name__}.{f.name} {problem}")
        if choices is not None and value not in choices:
            raise InputError(f"{type(instance).__name__}.{f.name} must be one of {', '.join(choices)}, got {value!r}")


def field_default(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls``."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    raise ValueError(f"{cls.__name__}.{name} has no default")


def add_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str, cls: type, name: str, help: str | None = None,
    default: Any = dataclasses.MISSING, default_text: str | None = None, aliases: tuple[str, ...] = (), **kwargs: Any,
) -> None:
    """Add ``flag`` (and its ``aliases``) for field ``name`` of config dataclass ``cls``: its default, limits or choices,
    and help text.

    ``default`` overrides the field's (e.g. ``None`` for "the preset's"); ``default_text`` is then what the
    help text says the default is.
    """
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    value = field_default(cls, name) if default is dataclasses.MISSING else default
    limit, choices = f.metadata.get("limit"), f.metadata.get("choices")
    text = help or f.metadata.get("help") or name.replace("_", " ")
    if limit is not None:
        kwargs.setdefault("type", limit.argparse_type())
        text += f", {limit.describe()}"
    if choices is not None:
        kwargs.setdefault("choices", choices)
    shown = " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) if isinstance(value, (list, tuple)) else (
        f"{value:g}" if isinstance(value, float) else value)
    parser.add_argument(flag, *aliases, dest=kwargs.pop("dest", name), default=value, help=f"{text} (default {default_text or shown})",
                        **kwargs)
