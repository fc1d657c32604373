"""What every report shares: provenance, the output-folder safety check, the folder skeleton, and the page header."""

from __future__ import annotations

import importlib
import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flint_analysis.atomic_output import (
    OutputLayout, atomic_directory, describe_os_error, foreign_message, remove_stale_leftovers, resolve_output_folder, write_json,
)
from flint_analysis.checkpoint import Checkpoint
from flint_analysis.distributed import SINGLE_PROCESS, ProcessGroup, current_run_record
from flint_analysis.errors import OutputError
from flint_analysis.report_writers.html import escape
from flint_analysis.runtime import compute_environment, library_versions


def provenance(checkpoint: Checkpoint) -> dict[str, Any]:
    """The checkpoint's identity and the libraries and compute environment of this run, recorded in every report JSON.

    ``environment`` (:func:`~flint_analysis.runtime.compute_environment` on the model's device) says why two
    runs with the same seed can differ in their last digits: torch build, CPU capability, threads, device; and
    the run's ``world_size`` and ``backend`` (:func:`~flint_analysis.distributed.current_run_record`: 1 and
    ``null`` for one process, e.g. 2 and ``"gloo"`` under ``torchrun --nproc-per-node 2`` on CPU) and the
    ``dtype`` the model computed in (``float32``, or ``float64`` with ``flint-analyze --float64``).
    """
    device = next((p.device for p in checkpoint.model.parameters()), None)
    return {
        "checkpoint": {
            "path": str(checkpoint.path) if checkpoint.path else None,
            "sha256": checkpoint.sha256,
            "architecture": checkpoint.architecture,
            "architecture_kwargs": checkpoint.architecture_kwargs,
            "epochs_completed": checkpoint.epochs_completed,
        },
        "dataset": {"name": checkpoint.dataset.name, "class_names": list(checkpoint.dataset.class_names),
                    "value_range": list(checkpoint.dataset.value_range)},
        "versions": library_versions(),
        "environment": compute_environment(device) | current_run_record()
        | {"dtype": str(next((p.dtype for p in checkpoint.model.parameters()), "torch.float32")).removeprefix("torch.")},
    }


def report_stamp(schema: str, schema_version: int, checkpoint: Checkpoint) -> dict[str, Any]:
    """The keys every report JSON starts with: its schema and version, then :func:`provenance`."""
    return {"schema": schema, "schema_version": schema_version, **provenance(checkpoint)}


_WRITER_MODULES = {"global.json": "global_report", "local.json": "local_report", "metrics.json": "metrics_report",
                   "disagreement.json": "disagreement_report"}


def report_layout(json_name: str) -> OutputLayout:
    """The :class:`OutputLayout` (every name it writes) of the report kind whose JSON file is ``json_name``."""
    return importlib.import_module(f"flint_analysis.report_writers.{_WRITER_MODULES[json_name]}").LAYOUT


def check_output_folder(target: Path, json_name: str, sha256: str | None, force: bool, layout: OutputLayout | None = None) -> None:
    """Refuse to replace anything but an empty folder or a report of the same checkpoint that holds only its own files.

    A report folder is replaced as a whole, so the rule is strict: a folder that holds anything its report kind
    does not write (see ``LAYOUT`` of each writer: exact names and patterns, no links) is refused, ``--force`` or
    not, and nothing in it is touched. Stale leftovers of killed runs beside ``target`` are removed first (see
    :func:`flint_analysis.atomic_output.remove_stale_leftovers`).

    Raises:
        OutputError: ``target`` is a file, a dangling link, below a file or the current folder; or a non-empty
            folder with files this report kind does not write; or a report of another checkpoint (or an
            incomplete one, without ``json_name``) and ``force`` is false; or it cannot be read.
    """
    layout = layout or report_layout(json_name)
    path = resolve_output_folder(target)
    remove_stale_leftovers(path)
    if not path.exists():
        return
    try:
        foreign = layout.foreign_entries(path)
        empty = not any(path.iterdir())
    except OSError as error:
        raise OutputError(f"cannot read output folder {target}: {describe_os_error(error)}; choose another folder with -o") from None
    if foreign:
        raise OutputError(foreign_message(Path(target), layout, foreign))
    if empty:
        return
    marker = path / json_name
    if not marker.is_file():
        if force:
            return
        raise OutputError(f"{target} holds an incomplete {layout.kind} report (no {json_name}, e.g. left by an interrupted "
                          "run of an older version); pass --force to replace it or choose another folder with -o")
    try:
        recorded = json.loads(marker.read_text()).get("checkpoint", {}).get("sha256")
    except (json.JSONDecodeError, AttributeError, OSError, UnicodeDecodeError):
        recorded = None
    if recorded != sha256 and not force:
        raise OutputError(
            f"{target} holds a report of another checkpoint (sha256 {str(recorded)[:12]}…, this one is {str(sha256)[:12]}…); "
            "pass --force to replace it or choose another folder with -o"
        )


def header(title: str, data: dict[str, Any], extra: str = "") -> list[str]:
    """The page title and the provenance line."""
    checkpoint = data["checkpoint"]
    return [
        f"<h1>{escape(title)}</h1>",
        f"<p class=\"meta\">checkpoint <code>{escape(checkpoint['path'])}</code> (sha256 <code>{escape(str(checkpoint['sha256'])[:16])}…</code>), "
        f"{escape(checkpoint['architecture'])}, dataset {escape(data['dataset']['name'])}; "
        f"flint-analysis {escape(data['versions'].get('flint-analysis'))}, torch {escape(data['versions'].get('torch'))}, "
        f"captum {escape(data['versions'].get('captum'))}. {extra}</p>",
    ]


ARRAYS_NAME = "arrays.npz"


def write_arrays(path: Path, arrays: Mapping[str, Any]) -> None:
    """Write ``arrays`` (name → tensor or array) to ``path`` as a NumPy ``.npz``, readable with
    ``numpy.load(path)`` (no ``allow_pickle``): every value becomes a plain numeric NumPy array."""
    import numpy as np

    plain = {}
    for name, value in arrays.items():
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        if array.dtype == object:
            raise ValueError(f"array {name!r} holds Python objects; arrays.npz takes numbers only")
        plain[name] = array
    with open(path, "wb") as stream:
        np.savez(stream, **plain)


@dataclass(frozen=True)
class ReportContent:
    """What :func:`write_report_folder` puts in a report folder.

    Attributes:
        data: the JSON data, written as the layout's marker file (e.g. ``global.json``).
        html: the text of ``index.html``.
        figures: file name (relative to the folder) → a function that draws the figure; drawn and saved one
            at a time, in this order.
        folders: sub-folders created first (even when no figure goes into them).
        arrays: name → array written to ``arrays.npz`` (uncompressed ``numpy.savez``, no pickled objects; the
            layout must list ``arrays.npz``); nothing is written when empty. Keys are documented per report in
            ``docs/report-schemas.md``.
    """

    data: dict[str, Any]
    html: str
    figures: Mapping[str, Callable[[], Any]] = field(default_factory=dict)
    folders: Sequence[str] = ()
    arrays: Mapping[str, Any] = field(default_factory=dict)


def _drawn_share(figures: Mapping[str, Callable[[], Any]], save: Callable[[Any, Path], None], group: ProcessGroup) -> dict[str, bytes]:
    """The bytes of the figures this rank draws under torchrun: every ``world_size``-th one, from its rank on."""
    drawn = {}
    with tempfile.TemporaryDirectory(prefix="flint-figures-") as scratch:
        for number, (name, draw) in enumerate(figures.items()):
            if number % group.world_size == group.rank:
                path = Path(scratch) / f"{number}{Path(name).suffix}"
                save(draw(), path)
                drawn[name] = path.read_bytes()
    return drawn


def write_report_folder(output_dir: str | Path, layout: OutputLayout, sha256: str | None, force: bool,
                        content: Callable[[], ReportContent], save: Callable[[Any, Path], None],
                        group: ProcessGroup = SINGLE_PROCESS) -> dict[str, Any]:
    """Write a report folder atomically and return its JSON data: the skeleton of the global, metrics and disagreement writers.

    1. :func:`check_output_folder` on ``output_dir`` (marker ``layout.marker``), before anything is computed;
    2. ``content()`` builds the data, the page and the figure makers;
    3. in a staging folder (:func:`~flint_analysis.atomic_output.atomic_directory`): the sub-folders, every
       figure (``save(figure, path)``), the JSON, ``index.html``;
    4. under the lock, the same check again on ``output_dir``, then the swap.

    ``save`` is the writer module's ``save_figure`` (passed in, so that it can be replaced per writer).

    Under ``torchrun`` (``group`` of W processes; every rank calls this with the same result) the figures are drawn
    by all ranks, each every W-th one, and their bytes gathered on rank 0, which alone checks, writes and swaps the
    folder; the other ranks write nothing and return the data. The figures must be files (not sub-reports).
    """
    output_dir = Path(output_dir)
    marker = layout.marker
    if marker is None:
        raise ValueError(f"the {layout.kind} layout names no marker file")

    def check(target: Path) -> None:
        check_output_folder(target, marker, sha256, force, layout)

    if group.distributed and not group.is_main:
        report = content()
        group.all_gather_objects(_drawn_share(report.figures, save, group))
        return report.data
    check(output_dir)
    report = content()
    with atomic_directory(output_dir, layout, check) as staging:
        for folder in report.folders:
            (staging / folder).mkdir()
        if group.distributed:
            drawn: dict[str, bytes] = {}
            for share in group.all_gather_objects(_drawn_share(report.figures, save, group)):
                drawn.update(share)
            for name in report.figures:
                (staging / name).write_bytes(drawn[name])
        else:
            for name, draw in report.figures.items():
                save(draw(), staging / name)
        if report.arrays:
            write_arrays(staging / ARRAYS_NAME, report.arrays)
        write_json(staging / marker, report.data)
        (staging / "index.html").write_text(report.html)
    return report.data
