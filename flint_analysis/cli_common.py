"""What both command-line tools share: the one-line-error parser, ``--version`` and the error-to-exit-status wrapper.

Exit statuses: 0 success, 2 a user error (one line on stderr, nothing half-written), 3 the command ran and
wrote its report but found nothing to show (e.g. no class-attribute pair above the threshold), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from flint_analysis.errors import FlintError

EXIT_USER_ERROR = 2
EXIT_EMPTY_RESULT = 3
EXIT_INTERRUPTED = 130


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
    except FlintError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        message = interrupted() if interrupted else "interrupted; nothing was written"
        print(f"\n{prog}: {message}", file=sys.stderr)
        return EXIT_INTERRUPTED
