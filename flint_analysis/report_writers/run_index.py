"""The run index: an ``index.html`` in the parent folder of several report folders, one line per report.

``runs/demo/{global,local,metrics,disagreement}`` get ``runs/demo/index.html`` linking each report's own
``index.html`` with its kind, checkpoint and headline, in relative links only, so the run folder can be
copied or moved as a whole.

The parent folder is the user's, so the rules are strict:

- ``index.html`` is created only when it does not exist, and replaced only when it is one this module wrote
  (it carries :data:`GENERATOR_MARKER` in its first :data:`_MARKER_WINDOW` bytes); any other file, a link or a
  folder of that name is left alone;
- it is created only when at least ``minimum`` (default 2) report folders share the parent; an index written
  earlier is kept up to date even when fewer remain;
- it is written through a temporary file and a rename (creation: a hard link, which fails when a file appeared
  in between); nothing else is ever written, and nothing is deleted;
- every file-system failure (read-only parent, full disk) becomes a :class:`RunIndexOutcome` with a message,
  never an exception: the report itself is complete, the index is a convenience.

A report folder is a direct sub-folder holding one of the report kinds' JSON files (``global.json``,
``local.json``, ``metrics.json``, ``disagreement.json``) whose ``schema`` is that kind's; anything else is ignored.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flint_analysis.report_writers.html import escape, how_to_read, lead, link, page, table, Raw

INDEX_NAME = "index.html"
GENERATOR = "flint-analysis run-index"
GENERATOR_MARKER = f"<meta name=\"generator\" content=\"{GENERATOR}\">"
"""The line that marks an ``index.html`` as written by this module (and only such a file is ever replaced)."""
_MARKER_WINDOW = 4096
_MAX_JSON_BYTES = 64 * 1024 * 1024
REPORT_KINDS = (
    ("global", "global.json", "flint-analysis/global"),
    ("local", "local.json", "flint-analysis/local-index"),
    ("metrics", "metrics.json", "flint-analysis/metrics"),
    ("disagreement", "disagreement.json", "flint-analysis/disagreement"),
)
"""``(kind, marker JSON file, its schema)`` of every report kind the index lists, in the order it lists them."""


@dataclass(frozen=True)
class ReportEntry:
    """One report folder of the parent.

    Attributes:
        folder: its name (a direct sub-folder of the parent).
        kind: ``global``, ``local``, ``metrics`` or ``disagreement``.
        checkpoint: the checkpoint's file name (``None`` when the JSON records none).
        sha256: the checkpoint's SHA-256 (``None`` when not recorded).
        headline: one sentence with the report's result.
    """

    folder: str
    kind: str
    checkpoint: str | None
    sha256: str | None
    headline: str


@dataclass(frozen=True)
class RunIndexOutcome:
    """What :func:`refresh_run_index` did.

    Attributes:
        path: the parent's ``index.html``.
        status: ``"written"`` (created or updated), ``"unchanged"`` (ours and already current), ``"too_few"`` (fewer
            than ``minimum`` reports and no index of ours), ``"foreign"`` (an ``index.html`` we did not write is
            there: left alone), ``"failed"`` (a file-system error; see ``message``).
        reports: the report folders found.
        message: why it failed (``"failed"``), else empty.
    """

    path: Path
    status: str
    reports: tuple[ReportEntry, ...] = ()
    message: str = ""


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _headline(kind: str, data: dict[str, Any]) -> str:
    """One sentence of a report's result, read defensively from its JSON (fields may be missing in other versions)."""
    if kind == "global":
        pairs = data.get("pairs") if isinstance(data.get("pairs"), list) else []
        classes = {p.get("class") for p in pairs if isinstance(p, dict)}
        text = f"{len(pairs)} class-attribute pairs over {len(classes)} classes"
        summary = data.get("am_pi_summary")
        runs, activated, raised = _number(_get(summary, "runs")), _number(_get(summary, "activated")), _number(_get(summary, "raised"))
        if runs and activated is not None:
            text += f"; AM+PI activated the attribute in {activated:.0f} of {runs:.0f} runs"
        elif runs and raised is not None:
            text += f"; AM+PI raised φ_j in {raised:.0f} of {runs:.0f} runs"
        return text
    if kind == "local":
        samples = [s for s in data.get("samples") or [] if isinstance(s, dict)] if isinstance(data.get("samples"), list) else []
        agree = sum(1 for s in samples if s.get("agree") is True)
        return f"{len(samples)} explained sample{'s' if len(samples) != 1 else ''}, f and g agree on {agree}"
    if kind == "metrics":
        parts = []
        for model in data.get("models") or []:
            m = _get(model, "metrics")
            values = [_number(_get(m, key)) for key in ("accuracy_f", "accuracy_g", "fidelity")]
            if None in values:
                continue
            chance = " (g at chance)" if _get(m, "g_at_chance") is True else ""
            parts.append(f"{_get(model, 'name')}: f {values[0]:.1f} %, g {values[1]:.1f} %{chance}, fidelity {values[2]:.1f} %")
        return "; ".join(parts) or "metrics"
    counts = data.get("counts")
    n, d, worst = (_number(_get(counts, key)) for key in ("samples", "disagreements", "outside_top_k_f_correct"))
    if n is None or d is None:
        return "disagreement analysis"
    text = f"g ≠ f on {d:.0f} of {n:.0f} {data.get('split', '')} samples"
    if worst is not None:
        text += f"; {worst:.0f} of the worst kind (f right, f's class outside g's top-{data.get('k', 'k')})"
    return text


def _read_report(folder: Path) -> ReportEntry | None:
    for kind, marker, schema in REPORT_KINDS:
        path = folder / marker
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_JSON_BYTES:
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if not isinstance(data, dict) or data.get("schema") != schema:
            continue
        checkpoint = data.get("checkpoint") if isinstance(data.get("checkpoint"), dict) else {}
        path_text, sha256 = checkpoint.get("path"), checkpoint.get("sha256")
        return ReportEntry(folder=folder.name, kind=kind, checkpoint=Path(path_text).name if isinstance(path_text, str) else None,
                           sha256=sha256 if isinstance(sha256, str) else None, headline=_headline(kind, data))
    return None


def find_reports(parent: str | Path) -> list[ReportEntry]:
    """The report folders directly under ``parent`` (links and hidden folders skipped), by kind then name."""
    parent = Path(parent)
    found = []
    try:
        with os.scandir(parent) as scan:
            folders = [Path(e.path) for e in scan if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
    except OSError:
        return []
    for folder in folders:
        entry = _read_report(folder)
        if entry is not None and (folder / "index.html").is_file():
            found.append(entry)
    order = {kind: i for i, (kind, _, _) in enumerate(REPORT_KINDS)}
    return sorted(found, key=lambda e: (order[e.kind], e.folder))


def run_index_html(parent_name: str, reports: list[ReportEntry]) -> str:
    """The page: a lead sentence, a how-to-read box and one table row per report (relative links only)."""
    kinds = sorted({r.kind for r in reports}, key=[k for k, _, _ in REPORT_KINDS].index)
    checkpoints = sorted({r.sha256[:12] for r in reports if r.sha256})
    body = [
        f"<h1>FLINT reports in {escape(parent_name)}</h1>",
        lead(f"{len(reports)} report{'s' if len(reports) != 1 else ''} ({escape(', '.join(kinds))}) of "
             f"{len(checkpoints)} checkpoint{'s' if len(checkpoints) != 1 else ''} share this folder."),
        how_to_read([
            ("global", "the paper's global interpretation: class-attribute relevance, maximum activating samples, AM+PI."),
            ("local", "why f and g predicted what they did for single samples."),
            ("metrics", "accuracy of f and g, fidelity, top-k fidelity and conciseness (CNS)."),
            ("disagreement", "samples where g's class differs from f's, by kind, and their projection depth."),
            ("checkpoint", "the file each report was computed from and the start of its SHA-256: reports of one "
                           "checkpoint share it."),
        ], open_=False),
        table(["report", "kind", "checkpoint", "headline"],
              [[Raw(link(f"{r.folder}/index.html", r.folder)), r.kind,
                Raw(f"{escape(r.checkpoint or '?')} <span class=\"meta\">{escape((r.sha256 or '')[:12])}</span>"), r.headline]
               for r in reports]),
        "<p class=\"meta\">Written by flint-analysis each time a report is written into a folder of this one; "
        "edit or delete it freely: a file without its generator mark is never replaced.</p>",
    ]
    text = page(f"FLINT reports: {parent_name}", body)
    return text.replace("<head>\n", f"<head>\n{GENERATOR_MARKER}\n", 1)


def is_run_index(path: str | Path) -> bool:
    """Whether ``path`` is a regular file (not a link) that this module wrote (:data:`GENERATOR_MARKER` near its start)."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as stream:
        return GENERATOR_MARKER.encode() in stream.read(_MARKER_WINDOW)


def _write_new(path: Path, data: bytes, replace: bool) -> bool:
    """Write ``data`` through a temporary file in the same folder: renamed over ``path`` (``replace``) or hard-linked
    to it, which fails when ``path`` exists. Returns False when ``path`` appeared meanwhile (creation only)."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(temporary, 0o666 & ~mask)
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)


def refresh_run_index(parent: str | Path, minimum: int = 2) -> RunIndexOutcome:
    """Create or update ``parent/index.html`` listing the report folders in ``parent`` (see the module rules).

    Never raises for file-system problems: a failure is the outcome ``"failed"`` with a message.
    """
    parent = Path(parent)
    path = parent / INDEX_NAME
    reports = find_reports(parent)
    try:
        exists = os.path.lexists(path)
        ours = exists and is_run_index(path)
        if exists and not ours:
            return RunIndexOutcome(path, "foreign", tuple(reports))
        if not ours and len(reports) < minimum:
            return RunIndexOutcome(path, "too_few", tuple(reports))
        data = run_index_html(parent.resolve().name or str(parent), reports).encode()
        if ours and path.read_bytes() == data:
            return RunIndexOutcome(path, "unchanged", tuple(reports))
        if not _write_new(path, data, replace=ours):
            return RunIndexOutcome(path, "foreign", tuple(reports))
    except OSError as error:
        return RunIndexOutcome(path, "failed", tuple(reports), error.strerror or type(error).__name__)
    return RunIndexOutcome(path, "written", tuple(reports))
