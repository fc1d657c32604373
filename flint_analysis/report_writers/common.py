"""What every report shares: provenance, the output-folder safety check, and the page header."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flint_analysis.checkpoint import Checkpoint
from flint_analysis.errors import OutputError
from flint_analysis.report_writers.html import escape
from flint_analysis.runtime import library_versions


def provenance(checkpoint: Checkpoint) -> dict[str, Any]:
    """The checkpoint's identity and the libraries of this run, recorded in every report JSON."""
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
    }


def check_output_folder(target: Path, json_name: str, sha256: str | None, force: bool) -> None:
    """Refuse to replace anything but an empty folder or a report of the same checkpoint.

    Raises:
        OutputError: ``target`` is a file; or a non-empty folder that is not a flint-analysis report of
            this kind; or a report of another checkpoint and ``force`` is false.
    """
    if not target.exists():
        return
    if not target.is_dir():
        raise OutputError(f"output path {target} is a file; give a directory path (-o DIR)")
    if not any(target.iterdir()):
        return
    marker = target / json_name
    if not marker.is_file():
        raise OutputError(f"{target} exists and is not a flint-analysis report folder (no {json_name}); choose a new or empty folder with -o")
    try:
        recorded = json.loads(marker.read_text()).get("checkpoint", {}).get("sha256")
    except (json.JSONDecodeError, AttributeError, OSError):
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
