"""Progress reporting that suits where stderr goes.

On a terminal (or in a notebook) :func:`progress_bar` is a tqdm bar. When stderr is a file or a pipe a
bar would write one carriage-return update after another into the log, so there is no bar; instead a
stage prints one plain line when it ends (``forward pass (test): 4 batches, 1.2 s``), or nothing when the
caller already logs a line per stage (``summary=False``, e.g. the trainer's line per epoch).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO


def stderr_is_terminal(stream: TextIO | None = None) -> bool:
    """Whether progress bars can be drawn: ``stream`` (default ``sys.stderr``) is a terminal, or this is a notebook."""
    stream = sys.stderr if stream is None else stream
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


class ProgressBar:
    """A tqdm bar on a terminal; elsewhere at most one plain line, when the stage ends.

    Use it like tqdm: iterate over it, or call :meth:`update` and :meth:`close` (or use ``with``).

    Args:
        iterable: what to iterate over (``None`` for manual :meth:`update` calls).
        desc: the stage's name, first word of the bar and of the summary line.
        total: number of steps when ``iterable`` has no length.
        unit: name of one step (``batch``, ``step``, ``class``).
        enabled: ``False`` shows nothing at all (``--quiet``).
        leave: keep the finished bar on the terminal.
        summary: off a terminal, print ``"<desc>: <n> <unit>s, <seconds> s"`` when the stage ends.
        stages: off a terminal, also print ``"<desc>: <text>"`` for every :meth:`set_postfix_str` (long
            builds whose steps are minutes apart).
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        desc: str = "",
        total: int | None = None,
        unit: str = "it",
        enabled: bool = True,
        leave: bool = False,
        summary: bool = True,
        stages: bool = False,
    ) -> None:
        self._iterable = iterable
        self._desc = desc
        self._unit = unit
        self._terminal = enabled and stderr_is_terminal()
        self._lines = enabled and not self._terminal
        self._summary = summary
        self._stages = stages
        self._count = 0
        self._started = time.perf_counter()
        self._closed = False
        self._bar = None
        if self._terminal:
            from tqdm.auto import tqdm

            self._bar = tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave)

    def __iter__(self) -> Iterator[Any]:
        source = self._bar if self._bar is not None else self._iterable
        if source is None:
            raise TypeError("this progress bar has no iterable; call update() instead")
        try:
            for item in source:
                self._count += 1
                yield item
        except BaseException:
            self.close(summary=False)
            raise
        self.close()

    def update(self, n: int = 1) -> None:
        self._count += n
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, **values: Any) -> None:
        """Extra numbers on the bar (the terminal only)."""
        if self._bar is not None:
            self._bar.set_postfix(**values, refresh=False)

    def set_postfix_str(self, text: str) -> None:
        """What the stage is doing now: on the bar, or a line of its own with ``stages=True``."""
        if self._bar is not None:
            self._bar.set_postfix_str(text)
        elif self._lines and self._stages:
            self._print(f"{self._desc}: {text}")

    def close(self, summary: bool = True) -> None:
        """End the stage: close the bar, or print its summary line (not when ``summary`` is false: it failed)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._lines and self._summary and summary:
            unit = self._unit if self._count == 1 else self._unit + ("es" if self._unit.endswith(("s", "x", "ch", "sh")) else "s")
            self._print(f"{self._desc}: {self._count} {unit}, {time.perf_counter() - self._started:.1f} s")

    def _print(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        self.close(summary=exc_type is None)


def progress_bar(iterable: Iterable[Any] | None = None, desc: str = "", *, total: int | None = None, unit: str = "it",
                 enabled: bool = True, leave: bool = False, summary: bool = True, stages: bool = False) -> ProgressBar:
    """A :class:`ProgressBar`: tqdm on a terminal, at most a line per stage elsewhere, nothing if not ``enabled``."""
    return ProgressBar(iterable, desc, total=total, unit=unit, enabled=enabled, leave=leave, summary=summary, stages=stages)
