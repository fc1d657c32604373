"""Write ``flint-analyze metrics``: a terminal table, ``metrics.json``, PNGs and ``index.html``.

``metrics.json`` (``"schema": "flint-analysis/metrics"``) is documented in ``docs/report-schemas.md``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from flint_analysis.checkpoint import Checkpoint
from flint_analysis.atomic_output import OutputLayout, atomic_directory, write_json
from flint_analysis.metrics import ModelMetrics
from flint_analysis.plots import save_figure
from flint_analysis.plots.metrics_plots import plot_confusion, plot_conciseness, plot_per_class_fidelity, plot_topk
from flint_analysis.report_writers.common import check_output_folder, header, provenance
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


def _metrics_dict(metrics: ModelMetrics) -> dict[str, Any]:
    return {
        "num_samples": metrics.num_samples,
        "accuracy_f": metrics.accuracy_f,
        "accuracy_g": metrics.accuracy_g,
        "fidelity": metrics.fidelity,
        "per_class_fidelity": [None if math.isnan(v) else float(v) for v in metrics.per_class_fidelity],
        "per_class_counts": [int(v) for v in metrics.per_class_counts],
        "confusion_f_rows_g_columns": metrics.confusion.tolist(),
        "topk_fidelity": {str(k): v for k, v in metrics.topk_fidelity.items()},
        "conciseness": {f"{tau:g}": v for tau, v in metrics.conciseness.items()},
    }


def metrics_report_data(models: list[tuple[str, Checkpoint, ModelMetrics]], split: str) -> dict[str, Any]:
    """The content of ``metrics.json``; the first model's provenance is the report's."""
    first = models[0][1]
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        **provenance(first),
        "split": split,
        "models": [
            {"name": name, "checkpoint": provenance(checkpoint)["checkpoint"], "metrics": _metrics_dict(metrics),
             "figures": {"confusion": f"confusion-{slug}.png", "per_class_fidelity": f"per-class-fidelity-{slug}.png"}}
            for (name, checkpoint, metrics), slug in zip(models, figure_slugs([name for name, _, _ in models]))
        ],
        "figures": {"conciseness": "conciseness.png", "topk_fidelity": "topk-fidelity.png"},
    }


def format_table(data: dict[str, Any]) -> str:
    """The terminal table: accuracies, fidelity, top-k fidelity, CNS, per-class fidelity."""
    names = data["dataset"]["class_names"]
    models = data["models"]
    width = max(12, *(len(m["name"]) for m in models))
    ks = list(models[0]["metrics"]["topk_fidelity"])
    taus = list(models[0]["metrics"]["conciseness"])
    lines = [f"{'model':<{width}}  {'split':<5}  {'N':>6}  {'acc f':>6}  {'acc g':>6}  {'fidelity':>8}  "
             + "  ".join(f"{'top-' + k:>6}" for k in ks)]
    for m in models:
        x = m["metrics"]
        lines.append(f"{m['name']:<{width}}  {data['split']:<5}  {x['num_samples']:>6}  {x['accuracy_f']:>6.2f}  {x['accuracy_g']:>6.2f}  "
                     f"{x['fidelity']:>8.2f}  " + "  ".join(f"{x['topk_fidelity'][k]:>6.2f}" for k in ks))
    if taus:
        lines += ["", f"{'CNS_g(τ)':<{width}}  " + "  ".join(f"{'τ=' + t:>6}" for t in taus)]
        for m in models:
            lines.append(f"{m['name']:<{width}}  " + "  ".join(f"{m['metrics']['conciseness'][t]:>6.3f}" for t in taus))
    lines.append("")
    for m in models:
        fidelity = m["metrics"]["per_class_fidelity"]
        lines.append(f"fidelity per f-class ({m['name']}): " + ", ".join(
            f"{names[c]} {'n/a' if v is None else f'{v:.1f}'}" for c, v in enumerate(fidelity)))
    return "\n".join(lines)


def write_metrics_report(models: list[tuple[str, Checkpoint, ModelMetrics]], split: str, output_dir: str | Path,
                         force: bool = False) -> dict[str, Any]:
    """Write the report atomically and return the JSON data.

    ``output_dir`` must be new, empty, or hold only a metrics report (:data:`LAYOUT`) of the first checkpoint (of
    any with ``force``); this is checked first and again when the new folder is moved into place.
    """
    output_dir = Path(output_dir)
    sha256 = models[0][1].sha256
    check_output_folder(output_dir, JSON_NAME, sha256, force, LAYOUT)
    data = metrics_report_data(models, split)
    names = list(models[0][1].dataset.class_names)
    check = lambda target: check_output_folder(target, JSON_NAME, sha256, force, LAYOUT)  # noqa: E731
    with atomic_directory(output_dir, LAYOUT, check) as staging:
        save_figure(plot_conciseness({name: m.conciseness for name, _, m in models}), staging / "conciseness.png")
        save_figure(plot_topk({name: m.topk_fidelity for name, _, m in models}), staging / "topk-fidelity.png")
        for (name, _, metrics), entry in zip(models, data["models"]):
            save_figure(plot_confusion(metrics, names, name), staging / entry["figures"]["confusion"])
            save_figure(plot_per_class_fidelity(metrics, names, name), staging / entry["figures"]["per_class_fidelity"])
        write_json(staging / JSON_NAME, data)
        body = header("FLINT model metrics", data, f"Split: {escape(split)}.")
        body.append(f"<pre>{escape(format_table(data))}</pre>")
        body.append(f"<p>Machine-readable: {link(JSON_NAME, JSON_NAME)}.</p>")
        body.append("<h2>Conciseness and top-k fidelity</h2>")
        body += [image("conciseness.png", "conciseness"), image("topk-fidelity.png", "top-k fidelity")]
        for entry in data["models"]:
            body.append(f"<h2>{escape(entry['name'])}</h2>")
            body += [image(entry["figures"]["confusion"], "confusion"), image(entry["figures"]["per_class_fidelity"], "per-class fidelity")]
        rows = [[m["name"], m["checkpoint"]["path"], m["checkpoint"]["sha256"]] for m in data["models"]]
        body += ["<h2>Checkpoints</h2>", table(["model", "path", "sha256"], rows)]
        (staging / "index.html").write_text(page("FLINT model metrics", body))
    return data
