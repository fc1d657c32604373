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
from flint_analysis.metrics import AT_CHANCE_MARGIN, ModelMetrics
from flint_analysis.plots import save_figure
from flint_analysis.plots.metrics_plots import plot_confusion, plot_conciseness, plot_per_class_fidelity, plot_topk
from flint_analysis.report_writers.common import ReportContent, header, provenance, report_stamp, write_report_folder
from flint_analysis.report_writers.html import Raw, escape, how_to_read, image, lead, link, page, table

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
        "chance_accuracy": metrics.chance_accuracy,
        "g_at_chance": metrics.g_at_chance(),
        "conciseness_no_attribute": {f"{tau:g}": v for tau, v in metrics.conciseness_no_attribute.items()},
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


def curve_models(models: list[tuple[str, Checkpoint, ModelMetrics]], include_chance_models: bool = False) -> list[str]:
    """The names of the models drawn on the CNS and top-k curves: all, or (default) those whose g is not at chance.

    A g at chance (:func:`~flint_analysis.metrics.g_at_chance`, e.g. BASE-f's untrained g) has relevances of
    random weights: its CNS would look concise (a collapsed g even looks the *most* concise) while it explains
    nothing, so it is left out unless asked for; drawn on request, it is greyed out.
    """
    return [name for name, _, metrics in models if include_chance_models or not metrics.g_at_chance()]


def metrics_report_data(models: list[tuple[str, Checkpoint, ModelMetrics]], split: str,
                        include_chance_models: bool = False) -> dict[str, Any]:
    """The content of ``metrics.json``; the first model's provenance is the report's."""
    first = models[0][1]
    drawn = curve_models(models, include_chance_models)
    has_cns = any(metrics.conciseness for name, _, metrics in models if name in drawn)
    return {
        **report_stamp(SCHEMA, SCHEMA_VERSION, first),
        "split": split,
        "curves": {
            "include_chance_models": include_chance_models,
            "chance_margin": AT_CHANCE_MARGIN,
            "drawn": drawn,
            "left_out": [name for name, _, _ in models if name not in drawn],
        },
        "models": [
            {"name": name, "checkpoint": provenance(checkpoint)["checkpoint"], "metrics": _metrics_dict(metrics),
             "figures": {"confusion": f"confusion-{slug}.png", "per_class_fidelity": f"per-class-fidelity-{slug}.png"}}
            for (name, checkpoint, metrics), slug in zip(models, figure_slugs([name for name, _, _ in models]))
        ],
        "figures": {"conciseness": "conciseness.png" if has_cns else None, "topk_fidelity": "topk-fidelity.png" if drawn else None},
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
    for name, _, x in models:
        if x.g_at_chance():
            lines.append(f"note: g of {name} is at chance ({x.accuracy_g:.1f} %, the most frequent class alone scores "
                         f"{x.chance_accuracy:.1f} %): its CNS and top-k fidelity describe random relevances")
    return "\n".join(lines)


def _percent(value: float) -> str:
    return f"{value:.1f} %"


def _middle_tau(taus: list[str]) -> str | None:
    """The τ quoted in sentences: 2 when computed (r > 0.5), else the middle one."""
    return "2" if "2" in taus else (taus[len(taus) // 2] if taus else None)


def _lead_sentence(data: dict[str, Any]) -> str:
    entries = data["models"]
    n = entries[0]["metrics"]["num_samples"]
    split = escape(data["split"])
    parts = []
    for entry in entries:
        m = entry["metrics"]
        tau = _middle_tau(list(m["conciseness"]))
        text = (f"<b>{escape(entry['name'])}</b>: f is right on {_percent(m['accuracy_f'])} and g on {_percent(m['accuracy_g'])} "
                f"of the {n:,} {split} samples; g agrees with f on {_percent(m['fidelity'])}")
        if m["g_at_chance"]:
            text += f" (g is at chance: the most frequent class alone scores {_percent(m['chance_accuracy'])})"
        elif tau is not None:
            text += f" and uses {m['conciseness'][tau]:.2f} attributes per explanation (CNS at τ = {escape(tau)})"
        parts.append(text)
    sentence = "; ".join(parts) + "."
    left_out = data["curves"]["left_out"]
    if left_out:
        sentence += (f" Left out of the CNS and top-k curves because their g is at chance: {escape(', '.join(left_out))} "
                     "(<code>--include-chance-models</code> draws them, greyed out).")
    return sentence


def _how_to_read(data: dict[str, Any]) -> str:
    margin = data["curves"]["chance_margin"]
    return how_to_read([
        ("accuracy f, accuracy g", "share of the samples whose label the predictor f, or the interpreter g = h ∘ Φ, predicts."),
        ("fidelity", "share of the samples where g predicts f's class (agreement with f, not with the label); "
                     "per f-class: among the samples f assigns to that class."),
        ("top-k fidelity", "share of the samples whose f-class is among g's k highest-scoring classes (top-1 = fidelity)."),
        ("CNS<sub>g</sub>(τ)", "conciseness: the mean number of attributes whose relevance r<sub>j,ĉ,x</sub> = "
         "α<sub>j</sub> / max<sub>i</sub>|α<sub>i</sub>| (α<sub>j</sub> = φ<sub>j</sub>(x)·w<sub>j,ĉ</sub>) exceeds 1/τ. "
         "Lower is more concise, but a value <b>below 1</b> means some samples have <i>no</i> attribute above 1/τ: "
         "their largest contribution is negative (or every α is 0), so g's class is not explained by the attributes. "
         "The column “no attr.” gives that share; a model with many such samples is not concise, it is unexplained."),
        ("g at chance", f"g's accuracy is at most {margin:g} points above the majority-class rate (always answering the "
         "most frequent label). Such a g (BASE-f, whose g is never trained, or a collapsed model) has relevances of "
         "random weights; its CNS and top-k fidelity are not comparable with a trained g's and are left out of the curves."),
        ("confusion matrix", "rows: f's class, columns: g's class, cells: sample counts; the diagonal is where they agree."),
    ])


def _metrics_table(data: dict[str, Any]) -> str:
    entries = data["models"]
    ks = list(entries[0]["metrics"]["topk_fidelity"])
    headers = ["model", "N", "acc f", "acc g", "majority class", "fidelity", *[f"top-{k}" for k in ks], "in curves"]
    rows = []
    for entry in entries:
        m = entry["metrics"]
        drawn = entry["name"] in data["curves"]["drawn"]
        rows.append([entry["name"], f"{m['num_samples']:,}", _percent(m["accuracy_f"]),
                     Raw(f"{_percent(m['accuracy_g'])}" + (" <span class=\"warn\">(at chance)</span>" if m["g_at_chance"] else "")),
                     _percent(m["chance_accuracy"]), _percent(m["fidelity"]), *[_percent(m["topk_fidelity"][k]) for k in ks],
                     "yes" if drawn else ("no: g at chance" if m["g_at_chance"] else "no")])
    return table(headers, rows, numeric=list(range(1, len(headers) - 1)))


def _conciseness_table(data: dict[str, Any]) -> str:
    entries = data["models"]
    taus = list(entries[0]["metrics"]["conciseness"])
    if not taus:
        return ""
    headers = ["model", *[f"τ = {t} (r > {1 / float(t):.2g})" for t in taus]]
    rows = []
    for entry in entries:
        m = entry["metrics"]
        rows.append([entry["name"] + (" (g at chance)" if m["g_at_chance"] else ""),
                     *[Raw(f"{m['conciseness'][t]:.2f} <span class=\"meta\">no attr. {m['conciseness_no_attribute'][t]:.0f} %</span>")
                       for t in taus]])
    return ("<p>CNS<sub>g</sub>(τ), and in grey the share of samples with no attribute above 1/τ (“no attr.”), "
            "which pulls CNS below 1:</p>" + table(headers, rows, numeric=list(range(1, len(headers)))))


def _index_html(data: dict[str, Any], table_text: str) -> str:
    body = header("FLINT model metrics", data, f"Split: {escape(data['split'])}.")
    body.append(lead(_lead_sentence(data)))
    body.append(_how_to_read(data))
    body.append("<nav><a href=\"#summary\">summary</a><a href=\"#curves\">curves</a>"
                + "".join(f"<a href=\"#model-{i}\">{escape(e['name'])}</a>" for i, e in enumerate(data["models"]))
                + "<a href=\"#checkpoints\">checkpoints</a></nav>")
    body.append("<h2 id=\"summary\">Summary</h2>")
    body.append(_metrics_table(data))
    body.append(_conciseness_table(data))
    body.append(f"<p>Machine-readable: {link(JSON_NAME, JSON_NAME)}. The same table as printed in the terminal:</p>")
    body.append(f"<details><summary>terminal table</summary><pre>{escape(table_text)}</pre></details>")
    body.append("<h2 id=\"curves\">Conciseness and top-k fidelity</h2>")
    curves = data["curves"]
    if curves["left_out"]:
        reasons = []
        for entry in data["models"]:
            if entry["name"] in curves["left_out"]:
                m = entry["metrics"]
                reasons.append(f"{escape(entry['name'])} (g {_percent(m['accuracy_g'])}, majority class {_percent(m['chance_accuracy'])})")
        body.append(f"<p class=\"warn\">Not drawn: {'; '.join(reasons)}. Their g is at chance, so their CNS and top-k "
                    "fidelity describe random relevances; rerun with <code>--include-chance-models</code> to draw them greyed out.</p>")
    elif any(e["metrics"]["g_at_chance"] for e in data["models"]):
        body.append("<p>Models whose g is at chance are drawn grey and dashed (<code>--include-chance-models</code>); "
                    "their curves describe random relevances.</p>")
    figures = data["figures"]
    if figures["conciseness"]:
        body.append(image(figures["conciseness"], "conciseness curve CNS_g(τ)"))
    if figures["topk_fidelity"]:
        body.append(image(figures["topk_fidelity"], "top-k fidelity curve"))
    if not figures["conciseness"] and not figures["topk_fidelity"]:
        body.append("<p>No curve is drawn: no model has a g above chance.</p>")
    for i, entry in enumerate(data["models"]):
        body.append(f"<h2 id=\"model-{i}\">{escape(entry['name'])}</h2>")
        body += [image(entry["figures"]["confusion"], "confusion"), image(entry["figures"]["per_class_fidelity"], "per-class fidelity")]
    rows = [[m["name"], m["checkpoint"]["path"], m["checkpoint"]["sha256"]] for m in data["models"]]
    body += ["<h2 id=\"checkpoints\">Checkpoints</h2>", table(["model", "path", "sha256"], rows)]
    return page("FLINT model metrics", body)


def write_metrics_report(models: list[tuple[str, Checkpoint, ModelMetrics]], split: str, output_dir: str | Path,
                         force: bool = False, include_chance_models: bool = False) -> dict[str, Any]:
    """Write the report atomically and return the JSON data.

    The CNS and top-k curves leave out models whose g is at chance (:func:`curve_models`) unless
    ``include_chance_models``, which draws them grey and dashed.

    ``output_dir`` must be new, empty, or hold only a metrics report (:data:`LAYOUT`) of the first checkpoint (of
    any with ``force``); this is checked first and again when the new folder is moved into place.
    """
    names = list(models[0][1].dataset.class_names)

    def content() -> ReportContent:
        data = metrics_report_data(models, split, include_chance_models)
        drawn = data["curves"]["drawn"]
        labels = {name: f"{name} (g {m.accuracy_g:.1f} %{', at chance' if m.g_at_chance() else ''})" for name, _, m in models}
        greyed = [name for name, _, m in models if m.g_at_chance()]
        figures = {}
        if data["figures"]["conciseness"]:
            figures["conciseness.png"] = lambda: plot_conciseness(
                {name: m.conciseness for name, _, m in models if name in drawn and m.conciseness}, labels, greyed)
        if data["figures"]["topk_fidelity"]:
            figures["topk-fidelity.png"] = lambda: plot_topk({name: m.topk_fidelity for name, _, m in models if name in drawn}, labels, greyed)
        for (name, _, metrics), entry in zip(models, data["models"]):
            figures[entry["figures"]["confusion"]] = lambda metrics=metrics, name=name: plot_confusion(metrics, names, name)
            figures[entry["figures"]["per_class_fidelity"]] = (
                lambda metrics=metrics, name=name: plot_per_class_fidelity(metrics, names, name))
        return ReportContent(data=data, html=_index_html(data, format_table(models, split)), figures=figures)

    return write_report_folder(output_dir, LAYOUT, models[0][1].sha256, force, content, save=save_figure)
