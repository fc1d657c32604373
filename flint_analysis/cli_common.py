"""What both command-line tools share: the one-line-error parser, ``--version`` and the error-to-exit-status wrapper.

Exit statuses: 0 success, 2 a user error (one line on stderr, nothing half-written), 3 the command ran and
wrote its report but found nothing to show (e.g. no class-attribute pair above the threshold), 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable

from flint_analysis.errors import FlintError, PeerStopped

EXIT_USER_ERROR = 2
EXIT_EMPTY_RESULT = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: the reader of standard output went away (``flint-analyze ... | head -1``), as for shell tools."""

EXIT_STATUS_HELP = (
    "exit status: 0 done; 2 bad input (an option, a file, a checkpoint: one line on stderr, nothing written); "
    "3 the report was written but is empty (global: no class-attribute pair above --threshold; a note on stderr says so); "
    "130 interrupted (Ctrl-C)."
)


class OneLineErrorParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (and exit status 2), like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def version_text() -> str:
    """``flint-analysis X (torch Y, torchvision Z, captum W)``, read from the installed metadata (no heavy imports)."""
    from importlib import metadata

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    others = ", ".join(f"{name} {version(name)}" for name in ("torch", "torchvision", "captum"))
    return f"flint-analysis {version('flint-analysis')} ({others})"


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=version_text())


def run_command(prog: str, handler: Callable[[], int], interrupted: Callable[[], str] | None = None) -> int:
    """Run ``handler``; a :class:`FlintError` becomes one line on stderr and status 2, Ctrl-C status 130.

    ``interrupted`` returns the message printed after Ctrl-C (what was or was not written).
    """
    try:
        return handler()
    except PeerStopped:  # rank 0 of the same torchrun run printed the error
        return EXIT_USER_ERROR
    except FlintError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        message = interrupted() if interrupted else "interrupted; nothing was written"
        print(f"\n{prog}: {message}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout's reader closed it: stop quietly, and let nothing flush into the closed pipe at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


# ---------------------------------------------------------------------------------------------------------
# argparse ``type=`` functions: every numeric option is checked once, when it is parsed, and a bad value is
# one line naming the option ("argument --batch-size: must be an integer ≥ 1, got 0") and exit status 2.
# Only ASCII digits count: ``int("²")`` fails and ``int("١٢")`` is 12, so neither reaches ``int``/``float``.

_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
INT64_MAX = 2**63 - 1


def _bounds_text(minimum: float | None, maximum: float | None, min_open: bool, max_open: bool) -> str:
    low = None if minimum is None else f"{'>' if min_open else '≥'} {minimum:g}"
    high = None if maximum is None else f"{'<' if max_open else '≤'} {maximum:g}"
    return " and ".join(part for part in (low, high) if part)


def integer(minimum: int | None = None, maximum: int | None = None, limits: str | None = None) -> Callable[[str], int]:
    """A ``type=`` that accepts ASCII-digit integers in ``[minimum, maximum]`` (``limits``: how the message says it)."""
    if limits is None:
        if minimum is not None and maximum is not None:
            limits = f"an integer from {minimum} to {maximum}"
        elif minimum is not None:
            limits = f"an integer ≥ {minimum}"
        else:
            limits = "an integer"
    high = INT64_MAX if maximum is None else maximum

    def parse(text: str) -> int:
        if not _INTEGER.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"must be {limits} (ASCII digits 0-9), got {text!r}")
        value = int(text)
        if (minimum is not None and value < minimum) or value > high:
            raise argparse.ArgumentTypeError(f"must be {limits}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def number(minimum: float | None = None, maximum: float | None = None, min_open: bool = False,
           max_open: bool = False) -> Callable[[str], float]:
    """A ``type=`` that accepts finite decimal numbers within the bounds (``*_open``: the bound itself is excluded)."""
    bounds = _bounds_text(minimum, maximum, min_open, max_open)
    limits = "a finite number" + (f" {bounds}" if bounds else "")

    def parse(text: str) -> float:
        if not _DECIMAL.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"must be {limits}, got {text!r}")
        value = float(text)
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {limits}, got {text!r} (too large)")
        if minimum is not None and (value < minimum or (min_open and value == minimum)):
            raise argparse.ArgumentTypeError(f"must be {limits}, got {value:g}")
        if maximum is not None and (value > maximum or (max_open and value == maximum)):
            raise argparse.ArgumentTypeError(f"must be {limits}, got {value:g}")
        return value

    parse.__name__ = "number"
    return parse


positive_int = integer(minimum=1)
non_negative_int = integer(minimum=0)


def sample_index(text: str) -> int:
    """A dataset index: ASCII digits, ≥ 0 (the upper end depends on the split and is checked after loading)."""
    stripped = text.strip()
    if re.fullmatch(r"-[0-9]+", stripped):
        raise argparse.ArgumentTypeError(f"indices start at 0, got {stripped}")
    if not re.fullmatch(r"\+?[0-9]+", stripped) or int(stripped) > INT64_MAX:
        raise argparse.ArgumentTypeError(f"must be a sample index (an integer ≥ 0 in ASCII digits 0-9), got {text!r}")
    return int(stripped)


def class_name_or_index(text: str) -> str:
    """A class name or index; an index must be ASCII digits ≥ 0 (names are checked against the checkpoint later)."""
    if re.fullmatch(r"-[0-9]+", text):
        raise argparse.ArgumentTypeError(f"class indices start at 0, got {text}")
    if text.lstrip("-").isdigit() and not re.fullmatch(r"[0-9]+", text):  # '²', '١٢': str.isdigit, not ASCII
        raise argparse.ArgumentTypeError(f"{text!r} is not a class index; write indices with ASCII digits 0-9, or a class name")
    return text


_DEVICE = re.compile(r"auto|cpu|cuda(?::([0-9]+))?")


def device_type(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (N an existing GPU when CUDA is available)."""
    match = _DEVICE.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use auto, cpu, cuda or cuda:N")
    if match.group(1) is not None:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else None
        if count is not None and int(match.group(1)) >= count:
            raise argparse.ArgumentTypeError(f"there is no GPU {text}; this machine has {count} (cuda:0 to cuda:{count - 1})")
    return text


def attribution_setting(text: str) -> tuple[str, int | float | bool]:
    """``NAME=VALUE`` of ``--attribution-setting``: an integer, a finite number or true/false."""
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[a-z_]+", name):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE such as n_steps=100, got {text!r}")
    if value in ("true", "false"):
        return name, value == "true"
    if re.fullmatch(r"[0-9]+", value):
        return name, int(value)
    if re.fullmatch(r"[-+]?[0-9]*\.?[0-9]+(e[-+]?[0-9]+)?", value):
        return name, float(value)
    raise argparse.ArgumentTypeError(f"{name}: expected an integer, a number or true/false, got {value!r}")
