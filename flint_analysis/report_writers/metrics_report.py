"""Write ``flint-analyze metrics``: a terminal table, ``metrics.json``, PNGs and ``index.html``.

``metrics.json`` (``"schema": "flint-analysis/metrics"``) is documented in ``docs/report-schemas.md``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from flint_analysis.checkpoint import Checkpoint
from flint_analysis.atomic_output import OutputLayout
from flint_analysis.metrics import ModelMetrics
from flint_analysis.plots import save_figure
from flint_analysis.plots.metrics_plots import plot_confusion, plot_conciseness, plot_per_class_fidelity, plot_topk
from flint_analysis.report_writers.common import ReportContent, header, provenance, report_stamp, write_report_folder
from flint_analysis.report_writers.html import escape, image, link, page, table

SCHEMA = "flint-analysis/metrics"
SCHEMA_VERSION = 1
JSON_NAME = "metrics.json"
_SLUG = r"[a-z0-9]+(?:-[a-z0-9]+)*"  # what _slug() returns
LAYOUT = OutputLayout(
    kind="metrics", marker=JSON_NAME, files=frozenset({JSON_NAME, "index.html", "conciseness.png", "topk-fidelity.png"}),
    file_patterns=(rf"confusion-{_SLUG}\.png", rf"per-class-fidelity-{_SLUG}\.png"),
)
"""Everything :func:`write_metrics_report` writes: a folder holding anything else is refused."""


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "model"


def figure_slugs(names: list[str]) -> list[str]:
    """One file-name part per model, distinct even where names differ only in case or punctuation.

    ``_slug`` lower-cases (so the files are distinct on case-insensitive file systems too); a slug already
    taken by an earlier model gets ``-2``, ``-3``, ... in order, so the first keeps the plain one.
    """
    taken: set[str] = set()
    slugs = []
    for name in names:
        base = candidate = _slug(name)
        suffix = 2
        while candidate in taken:
            candidate = f"{base}-{suffix}"
            suffix += 1
        taken.add(candidate)
        slugs.append(candidate)
    return slugs


def _topk_by_label(metrics: ModelMetrics) -> dict[str, float]:
    """Top-k fidelity keyed as in the JSON and the table: ``"k"``."""
    return {str(k): v for k, v in metrics.topk_fidelity.items()}


def _conciseness_by_label(metrics: ModelMetrics) -> dict[str, float]:
    """CNS keyed as in the JSON and the table: ``f"{τ:g}"``."""
    return {f"{tau:g}": v for tau, v in metrics.conciseness.items()}


def _per_class_fidelity(metrics: ModelMetrics) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in metrics.per_class_fidelity]


def _metrics_dict(metrics: ModelMetrics) -> dict[str, Any]:
    return {
        "num_samples": metrics.num_samples,
        "accuracy_f": metrics.accuracy_f,
        "accuracy_g": metrics.accuracy_g,
        "fidelity": metrics.fidelity,
        "per_class_fidelity": _per_class_fidelity(metrics),
        "per_class_counts": [int(v) for v in metrics.per_class_counts],
        "confusion_f_rows_g_columns": metrics.confusion.tolist(),
        "topk_fidelity": _topk_by_label(metrics),
        "conciseness": _conciseness_by_label(metrics),
    }


def metrics_report_data(models: list[tuple[str, Checkpoint, ModelMetrics]], split: str) -> dict[str, Any]:
    """The content of ``metrics.json``; the first model's provenance is the report's."""
    first = models[0][1]
    return {
        **report_stamp(SCHEMA, SCHEMA_VERSION, first),
        "split": split,
        "models": [
            {"name": name, "checkpoint": provenance(checkpoint)["checkpoint"], "metrics": _metrics_dict(metrics),
             "figures": {"confusion": f"confusion-{slug}.png", "per_class_fidelity": f"per-class-fidelity-{slug}.png"}}
            for (name, checkpoint, metrics), slug in zip(models, figure_slugs([name for name, _, _ in models]))
        ],
        "figures": {"conciseness": "conciseness.png", "topk_fidelity": "topk-fidelity.png"},
    }


def format_table(models: list[tuple[str, Checkpoint, ModelMetrics]], split: str) -> str:
    """The terminal table: accuracies, fidelity, top-k fidelity, CNS, per-class fidelity (class names of the first model)."""
    names = list(models[0][1].dataset.class_names)
    width = max(12, *(len(name) for name, _, _ in models))
    ks = list(_topk_by_label(models[0][2]))
    taus = list(_conciseness_by_label(models[0][2]))
    lines = [f"{'model':<{width}}  {'split':<5}  {'N':>6}  {'acc f':>6}  {'acc g':>6}  {'fidelity':>8}  "
             + "  ".join(f"{'top-' + k:>6}" for k in ks)]
    for name, _, x in models:
        topk = _topk_by_label(x)
        lines.append(f"{name:<{width}}  {split:<5}  {x.num_samples:>6}  {x.accuracy_f:>6.2f}  {x.accuracy_g:>6.2f}  "
                     f"{x.fidelity:>8.2f}  " + "  ".join(f"{topk[k]:>6.2f}" for k in ks))
    if taus:
        lines += ["", f"{'CNS_g(τ)':<{width}}  " + "  ".join(f"{'τ=' + t:>6}" for t in taus)]
        for name, _, x in models:
            conciseness = _conciseness_by_label(x)
            lines.append(f"{name:<{width}}  " + "  ".join(f"{conciseness[t]:>6.3f}" for t in taus))
    lines.append("")
    for name, _, x in models:
        lines.append(f"fidelity per f-class ({name}): " + ", ".join(
            f"{names[c]} {'n/a' if v is None else f'{v:.1f}'}" for c, v in enumerate(_per_class_fidelity(x))))
    return "\n".join(lines)


def _index_html(data: dict[str, Any], table_text: str) -> str:
    body = header("FLINT model metrics", data, f"Split: {escape(data['split'])}.")
    body.append(f"<pre>{escape(table_text)}</pre>")
    body.append(f"<p>Machine-readable: {link(JSON_NAME, JSON_NAME)}.</p>")
    body.append("<h2>Conciseness and top-k fidelity</h2>")
    body += [image("conciseness.png", "conciseness"), image("topk-fidelity.png", "top-k fidelity")]
    for entry in data["models"]:
        body.append(f"<h2>{escape(entry['name'])}</h2>")
        body += [image(entry["figures"]["confusion"], "confusion"), image(entry["figures"]["per_class_fidelity"], "per-class fidelity")]
    rows = [[m["name"], m["checkpoint"]["path"], m["checkpoint"]["sha256"]] for m in data["models"]]
    body += ["<h2>Checkpoints</h2>", table(["model", "path", "sha256"], rows)]
    return page("FLINT model metrics", body)


def write_metrics_report(models: list[tuple[str, Checkpoint, ModelMetrics]], split: str, output_dir: str | Path,
                         force: bool = False) -> dict[str, Any]:
    """Write the report atomically and return the JSON data.

    ``output_dir`` must be new, empty, or hold only a metrics report (:data:`LAYOUT`) of the first checkpoint (of
    any with ``force``); this is checked first and again when the new folder is moved into place.
    """
    names = list(models[0][1].dataset.class_names)

    def content() -> ReportContent:
        data = metrics_report_data(models, split)
        figures = {
            "conciseness.png": lambda: plot_conciseness({name: m.conciseness for name, _, m in models}),
            "topk-fidelity.png": lambda: plot_topk({name: m.topk_fidelity for name, _, m in models}),
        }
        for (name, _, metrics), entry in zip(models, data["models"]):
            figures[entry["figures"]["confusion"]] = lambda metrics=metrics, name=name: plot_confusion(metrics, names, name)
            figures[entry["figures"]["per_class_fidelity"]] = (
                lambda metrics=metrics, name=name: plot_per_class_fidelity(metrics, names, name))
        return ReportContent(data=data, html=_index_html(data, format_table(models, split)), figures=figures)

    return write_report_folder(output_dir, LAYOUT, models[0][1].sha256, force, content, save=save_figure)
