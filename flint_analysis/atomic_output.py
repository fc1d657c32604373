"""Atomic output: files and whole report folders appear complete or not at all, and only ever replace our own files.

A report folder is built in a hidden sibling staging folder (``.NAME.XXXXXXXX.partial``) and swapped into place
with two renames, under an exclusive lock on the parent folder during which the caller's safety check runs again:
two runs cannot both pass the check and then overwrite each other. The folder that is replaced must hold nothing
but the files its report kind writes (an :class:`OutputLayout`); anything else is refused, never deleted.

Leftovers of a run that was killed (``.NAME.XXXXXXXX.partial`` / ``.old`` folders, ``.NAME.XXXXXXXX.tmp`` files,
exactly our naming) are removed by the next run that writes ``NAME``, but only when stale: older than the current
process and not locked (every live staging folder and temporary file is held under ``flock`` by its writer).
Every ``OSError`` while writing (a full disk, a read-only folder) becomes one :class:`OutputError` line.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flint_analysis.errors import OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no locks, the age rule alone protects staging folders
    fcntl = None  # type: ignore[assignment]

_PROCESS_START = time.time()
_RANDOM = r"[a-z0-9_]{8}"  # the random part of tempfile's names
_LEFTOVER = re.compile(r"\.(?P<name>.+)\." + _RANDOM + r"\.(?P<kind>tmp|partial|old)")
_HINTS = {
    errno.ENOSPC: "free space or choose another",
    errno.EDQUOT: "free space (disk quota exceeded) or choose another",
    errno.EACCES: "make it writable or choose another",
    errno.EPERM: "make it writable or choose another",
    errno.EROFS: "the file system is read-only; choose another",
}


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def describe_os_error(error: OSError) -> str:
    """``No space left on device (errno ENOSPC)``."""
    name = errno.errorcode.get(error.errno, str(error.errno)) if error.errno is not None else "?"
    return f"{error.strerror or error} (errno {name})"


def write_error(target: str | Path, error: OSError, report: bool = True) -> OutputError:
    """One line for an ``OSError`` while writing ``target`` (a report folder, or a file): what failed, why, the fix."""
    hint = _HINTS.get(error.errno, "choose another")
    if report:
        return OutputError(f"cannot write report to {target}: {describe_os_error(error)}; {hint} -o")
    return OutputError(f"cannot write {target}: {describe_os_error(error)}; {hint} output path")


# ---------------------------------------------------------------------------------------------- layouts
@dataclass(frozen=True)
class OutputLayout:
    """The exact names a report kind writes into its folder: what a replacement may remove.

    Attributes:
        kind: the report kind, named in messages (``"global"``).
        marker: the JSON file that identifies a complete report (``"global.json"``).
        files: exact names of regular files.
        file_patterns: regular expressions (full match) of other regular file names.
        folders: ``(name pattern, layout of its content)`` of sub-folders.
        required: files a (sub-)folder must hold to count as written by us.

    Symbolic links are never ours. Hidden leftovers of our atomic writes (``.NAME.XXXXXXXX.tmp|partial|old``
    where ``NAME`` is one of the names above) are ours.
    """

    kind: str
    marker: str | None = None
    files: frozenset[str] = frozenset()
    file_patterns: tuple[str, ...] = ()
    folders: tuple[tuple[str, OutputLayout], ...] = ()
    required: tuple[str, ...] = ()
    _compiled: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", tuple(re.compile(p) for p in self.file_patterns))

    def owns_file(self, name: str) -> bool:
        return name in self.files or any(p.fullmatch(name) for p in self._compiled)

    def folder_layout(self, name: str) -> OutputLayout | None:
        return next((layout for pattern, layout in self.folders if re.fullmatch(pattern, name)), None)

    def foreign_entries(self, folder: str | Path) -> list[str]:
        """Paths (relative to ``folder``, sub-folders with a trailing ``/``) of entries this report kind does not write.

        Raises:
            OSError: ``folder`` cannot be read.
        """
        foreign: list[str] = []
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        for entry in entries:
            name = entry.name
            if entry.is_symlink():
                foreign.append(name)
            elif entry.is_file(follow_symlinks=False) and self.owns_file(name):
                continue
            elif entry.is_dir(follow_symlinks=False) and (inner := self.folder_layout(name)) is not None:
                if not all(os.path.isfile(os.path.join(entry.path, r)) and not os.path.islink(os.path.join(entry.path, r))
                           for r in inner.required):
                    foreign.append(name + "/")
                else:
                    foreign += [f"{name}/{sub}" for sub in inner.foreign_entries(entry.path)]
            elif (match := _LEFTOVER.fullmatch(name)) and (self.owns_file(match["name"]) or self.folder_layout(match["name"])) \
                    and (entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False)):
                continue  # a leftover of one of our atomic writes
            else:
                foreign.append(name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
        return foreign


def foreign_message(target: Path, layout: OutputLayout, foreign: list[str]) -> str:
    """The refusal of a folder that holds files its report kind does not write."""
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    if layout.marker and os.path.isfile(target / layout.marker):
        return (f"{target} holds {shown} besides its {layout.kind} report; a report folder is replaced as a whole and may "
                "hold nothing but the report's own files (--force does not change this): move those away or choose another folder with -o")
    return (f"{target} exists and is not a flint-analysis report folder (it holds {shown}, which a {layout.kind} report "
            "does not write); choose a new or empty folder with -o")


# ------------------------------------------------------------------------------------------ output paths
def resolve_output_folder(target: str | Path) -> Path:
    """The absolute path of report folder ``target``, checked before anything is written.

    A symbolic link to a folder stands for that folder. Raises :class:`OutputError` (one line) when ``target``
    is a file, a dangling symbolic link, below a file, the file-system root, or the current folder or one
    that contains it (a report folder is replaced as a whole, the current folder cannot be).
    """
    given = Path(target)
    path = given
    if path.is_symlink():
        if not path.exists():
            raise OutputError(f"output path {given} is a symbolic link to {os.readlink(path)}, which does not exist; "
                              "create that folder or choose another with -o")
        path = Path(os.path.realpath(path))
    path = Path(os.path.abspath(path))
    if not path.name:
        raise OutputError(f"cannot write a report folder at {given}; choose a sub-folder with -o")
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputError(f"output path {given} is below {ancestor}, which is a file; choose a folder path with -o")
            break
        if os.path.lexists(ancestor):
            raise OutputError(f"output path {given} is below {ancestor}, a symbolic link to nothing; choose another folder with -o")
    if path.exists() and not path.is_dir():
        raise OutputError(f"output path {given} is a file; give a directory path (-o DIR)")
    if path.is_dir():
        try:
            here = os.path.realpath(os.getcwd())
        except OSError:
            here = None
        real = os.path.realpath(path)
        if here is not None and (here == real or here.startswith(real.rstrip(os.sep) + os.sep)):
            raise OutputError(f"output folder {given} is the current folder or contains it, and a report folder is replaced "
                              "as a whole; run the command from another folder or choose another -o")
    return path


# ----------------------------------------------------------------------------------- locks and leftovers
def _lock(path: str | Path, blocking: bool = False) -> int | None:
    """An open descriptor of ``path`` holding an exclusive ``flock``; ``None`` if locks are unavailable."""
    if fcntl is None:
        return None
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        os.close(descriptor)
        return None
    return descriptor


def _unlock(descriptor: int | None) -> None:
    if descriptor is not None:
        os.close(descriptor)  # closing releases the flock


def _is_live(path: str) -> bool:
    """Whether a writer still holds ``path`` (its ``flock``); unknown counts as live."""
    if fcntl is None:
        return False
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(descriptor)


def remove_stale_leftovers(target: str | Path, kinds: tuple[str, ...] = ("partial", "old", "tmp")) -> None:
    """Remove what killed runs left beside ``target``: ``.NAME.XXXXXXXX.partial|old`` folders, ``.tmp`` files.

    Only exactly that naming, only real folders/files (no links), and only when stale: last modified before
    this process started and not locked by a live writer. When ``target`` itself is missing because a run was
    killed between the two renames of a swap, the previous folder (``.NAME.XXXXXXXX.old/previous``) is put back.
    """
    target = Path(target)
    pattern = re.compile(r"\." + re.escape(target.name) + r"\." + _RANDOM + r"\.(" + "|".join(kinds) + ")")
    try:
        with os.scandir(target.parent) as scan:
            entries = [e for e in scan if pattern.fullmatch(e.name)]
    except OSError:
        return
    stale: list[tuple[float, str, Path]] = []
    for entry in entries:
        kind = pattern.fullmatch(entry.name)[1]  # type: ignore[index]
        try:
            if entry.is_symlink() or not (entry.is_file(follow_symlinks=False) if kind == "tmp" else entry.is_dir(follow_symlinks=False)):
                continue
            modified = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if modified < _PROCESS_START and not _is_live(entry.path):
            stale.append((modified, kind, Path(entry.path)))
    if not os.path.lexists(target):
        previous = sorted((m, p / "previous") for m, k, p in stale
                          if k == "old" and (p / "previous").is_dir() and not (p / "previous").is_symlink())
        if previous:
            try:
                os.replace(previous[-1][1], target)
            except OSError:
                pass
    for _, kind, path in stale:
        try:
            path.unlink() if kind == "tmp" else shutil.rmtree(path)
        except OSError:
            pass


@contextmanager
def _deferred_signals() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM/SIGHUP back while the folder is swapped (main thread only).

    A Ctrl-C during the swap is dropped: the report is complete by then and the command ends normally.
    Other signals are delivered again once the swap is done.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if number is not None and signal.getsignal(number) is not None:
            previous[number] = signal.signal(number, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in received:
            if number != signal.SIGINT:
                os.kill(os.getpid(), number)


# ------------------------------------------------------------------------------------------------- files
def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Stale temporary files of earlier killed writes of ``path`` (``.NAME.XXXXXXXX.tmp``) are removed first.

    Raises:
        OutputError: ``path`` is a directory, or writing fails (full disk, read-only folder, ...).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a directory; give a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_leftovers(path, ("tmp",))
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise write_error(path, error, report=False) from None
    try:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # marks it live until it is renamed
        view = memoryview(data)
        while view:
            view = view[os.write(handle, view):]
        os.fsync(handle)
        os.fchmod(handle, 0o666 & ~_current_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise write_error(path, error, report=False) from None
        raise
    finally:
        os.close(handle)


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats replaced by ``None`` (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def dumps_json(value: Any) -> str:
    """Deterministic, strict JSON text (sorted keys, no NaN/inf) of plain Python ``value``."""
    return json.dumps(json_safe(value), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str | Path, value: Any) -> None:
    """Atomically write ``value`` as strict JSON."""
    atomic_write_bytes(path, dumps_json(value).encode())


# ----------------------------------------------------------------------------------------------- folders
def _swap(staging: Path, target: Path, layout: OutputLayout | None) -> tuple[Path, int | None] | None:
    """Move ``staging`` to ``target``; the old ``target`` goes to a hidden ``.old`` folder, returned for removal."""
    if not os.path.lexists(target):
        os.replace(staging, target)
        return None
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    lock = _lock(retired)
    previous = retired / "previous"
    os.replace(target, previous)
    try:
        foreign = layout.foreign_entries(previous) if layout is not None else []
        if foreign:  # written between the check and the move: give it back untouched
            raise OutputError(foreign_message(target, layout, foreign))  # type: ignore[arg-type]
        os.replace(staging, target)
    except BaseException:
        if not os.path.lexists(target):
            os.replace(previous, target)
        _unlock(lock)
        shutil.rmtree(retired, ignore_errors=True)
        raise
    return retired, lock


@contextmanager
def atomic_directory(
    target: str | Path,
    layout: OutputLayout | None = None,
    check: Callable[[Path], None] | None = None,
    finish: Callable[[Path], None] | None = None,
) -> Iterator[Path]:
    """Build a folder in a hidden sibling and move it to ``target`` only if the block succeeds.

    Rule for the folder that is replaced: it may hold only what ``layout`` says its report kind writes; a folder
    with anything else (a checkpoint, notes, a link, another report's files) is refused with an
    :class:`OutputError` before anything is written, and again at the moment of the swap, and nothing in it is
    touched. Without ``layout`` an existing folder is replaced as a whole.

    After the block, under an exclusive lock on the parent folder: ``check(target)`` runs again (e.g. "the folder
    holds a report of the same checkpoint"; it raises to refuse), then ``finish(staging)`` completes the staging
    folder from the current state of ``target`` (e.g. kept samples), then the swap. A failing or interrupted block
    leaves ``target`` untouched and removes the staging folder; every ``OSError`` becomes one ``OutputError`` line.
    """
    given = target
    target = resolve_output_folder(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if layout is not None and target.is_dir() and (foreign := layout.foreign_entries(target)):
            raise OutputError(foreign_message(Path(given), layout, foreign))
        remove_stale_leftovers(target)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    except OSError as error:
        raise write_error(given, error) from None
    staging_lock = _lock(staging)  # marks the staging folder live for other runs' clean-up
    retired = None
    try:
        try:
            os.chmod(staging, 0o777 & ~_current_umask())  # mkdtemp creates 0700
            yield staging
            parent_lock = _lock(target.parent, blocking=True)
            try:
                with _deferred_signals():
                    if check is not None:
                        check(target)
                    if finish is not None:
                        finish(staging)
                    retired = _swap(staging, target, layout)
            finally:
                _unlock(parent_lock)
        except OSError as error:
            raise write_error(given, error) from None
    finally:
        _unlock(staging_lock)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if retired is not None:
            _unlock(retired[1])
            shutil.rmtree(retired[0], ignore_errors=True)
