"""Typed exceptions of flint-analysis.

Every error a user can cause (a bad checkpoint, a missing dataset, a wrong option) is raised as a
subclass of :class:`FlintError` whose message is one line that names the problem and the fix. The
CLIs print that line and exit with status 2; library users catch the class they care about.
"""

from __future__ import annotations

from typing import Any


def short_repr(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting untrusted values in one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class FlintError(Exception):
    """Base class of every user-facing error raised by flint-analysis."""


class CheckpointError(FlintError):
    """A checkpoint file is missing, unreadable, unsafe or inconsistent."""


class DatasetError(FlintError):
    """A dataset cannot be found or read, or a split/class/index does not exist."""


class ArchitectureError(FlintError):
    """An architecture name or its keyword arguments are not valid."""


class InputError(FlintError, ValueError):
    """An argument or input sample is invalid (out-of-range option, wrong image shape, ...); also a ``ValueError``."""


class OutputError(FlintError):
    """An output location cannot be written (a file where a folder is expected, a foreign report, ...)."""


class DistributedError(FlintError):
    """The processes of a torchrun run could not join or keep their process group (usually: another one failed)."""


class PeerStopped(DistributedError):
    """Raised on the other ranks when rank 0 stopped the run with an error it has printed (they stay silent)."""
