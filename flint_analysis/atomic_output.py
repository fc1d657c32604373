"""Atomic output: files and whole report folders appear complete or not at all."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flint_analysis.errors import OutputError


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a directory; give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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


@contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Build a folder in a temporary sibling and move it to ``target`` only if the block succeeds.

    An existing ``target`` folder is replaced as a whole when the block succeeds and left untouched
    when it fails; a file at ``target`` is refused before anything is written.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise OutputError(f"output path {target} is a file; give a directory path (-o DIR)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    os.chmod(staging, 0o777 & ~_current_umask())  # mkdtemp creates 0700
    try:
        yield staging
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, retired / "previous")
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
