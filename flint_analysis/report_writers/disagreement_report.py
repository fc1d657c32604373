"""Write ``flint-analyze disagreement``: counts, worst cases, projection depths, JSON and HTML.

``disagreement.json`` (``"schema": "flint-analysis/disagreement"``) is documented in ``docs/report-schemas.md``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flint_analysis.checkpoint import Checkpoint
from flint_analysis.datasets import ImageDataset
from flint_analysis.disagreement import (
    ClassDepth, DepthConfig, DepthSummary, DisagreementAnalysis, DisagreementCategory, summarise_depths,
)
from flint_analysis.atomic_output import OutputLayout
from flint_analysis.plots import save_figure
from flint_analysis.plots.disagreement_plots import plot_depth_summary, plot_depths, plot_worst_cases
from flint_analysis.report_writers.common import ARRAYS_NAME, ReportContent, header, report_stamp, write_report_folder
from flint_analysis.report_writers.html import Raw, escape, how_to_read, image, lead, link, page, table
from flint_analysis.report_writers.local_report import LAYOUT as LOCAL_LAYOUT

SCHEMA = "flint-analysis/disagreement"
SCHEMA_VERSION = 1
JSON_NAME = "disagreement.json"
WORST_FOLDER = "worst"
"""The sub-folder holding the local reports of the explained worst disagreements (``--explain-worst``)."""
LAYOUT = OutputLayout(
    kind="disagreement", marker=JSON_NAME,
    files=frozenset({JSON_NAME, "index.html", "worst-cases.png", "depth-per-class.png", "depth-summary.png", ARRAYS_NAME}),
    folders=((WORST_FOLDER, LOCAL_LAYOUT),),
)
"""Everything :func:`write_disagreement_report` writes: a folder holding anything else is refused. ``worst/`` is a
local report folder (its own layout)."""


@dataclass(frozen=True)
class WorstExplanations:
    """Local reports of the worst disagreements, written into the report's :data:`WORST_FOLDER`.

    Attributes:
        positions: positions into the analysis's ``(M,)`` arrays, worst first
            (:meth:`~flint_analysis.disagreement.DisagreementAnalysis.worst_first`).
        folders: the sample folder of each inside :data:`WORST_FOLDER` (its ``report.html`` is linked).
        write: writes the local reports into the folder it is given (a path that does not exist yet), e.g.
            :func:`flint_analysis.report_writers.local_report.write_local_reports` with that ``output_dir``.
    """

    positions: list[int]
    folders: list[str]
    write: Callable[[Path], Any]


@dataclass(frozen=True)
class _SubReport:
    """A folder written by another writer into the staging folder (see :func:`_save`)."""

    write: Callable[[Path], Any]


def _write_sub_report(write: Callable[[Path], Any], path: Path) -> None:
    """Have ``write`` build the folder ``path`` inside the staging folder.

    The staging folder is locked by the atomic write that owns it, and a report writer locks its target's parent
    before its own swap, so writing straight into ``path`` would wait on our own lock. The sub-report is built in a
    hidden sibling of the staging folder instead (named like it, so a killed run's leftover is cleaned up like
    it), at the same depth, so its relative links are already the final ones, and then moved in.
    """
    staging = path.parent
    target_name = staging.name[1:].rsplit(".", 2)[0]  # staging: .NAME.XXXXXXXX.partial
    build = Path(tempfile.mkdtemp(prefix=f".{target_name}.", suffix=".partial", dir=staging.parent))
    try:
        write(build / path.name)
        os.replace(build / path.name, path)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _save(item: Any, path: Path) -> None:
    """``save`` of :func:`write_report_folder`: figures as PNG, a :class:`_SubReport` by its own writer."""
    if isinstance(item, _SubReport):
        _write_sub_report(item.write, path)
    else:
        save_figure(item, path)


def _depth_data(depths: list[ClassDepth], config: DepthConfig, summary: DepthSummary, names: list[str]) -> dict[str, Any]:
    return {
        "space": config.space,
        "settings": {"pca_components": config.pca_components, "agreeing_per_class": config.agreeing_per_class,
                     "n_directions": config.n_directions, "refinement_rounds": config.refinement_rounds,
                     "n_climbs": config.n_climbs, "seed": config.seed, "mad_convention": config.mad_convention,
                     "reference": "training samples of the class (true label)"},
        "summary": summary.to_dict(),
        "classes": [
            {
                "class": d.class_index, "class_name": names[d.class_index], "reference_size": d.reference_size,
                "dimension": d.dimension, "degenerate": d.degenerate, "note": d.note,
                **d.separation(),
                "agreeing": [{"index": int(i), "depth": float(v), "exact": bool(e)}
                             for i, v, e in zip(d.agreeing_indices, d.agreeing_depth, d.agreeing_exact)],
                "disagreeing": [{"index": int(i), "depth": float(v), "exact": bool(e), "category": DisagreementCategory.from_code(k).value}
                                for i, v, e, k in zip(d.disagreeing_indices, d.disagreeing_depth, d.disagreeing_exact,
                                                      d.disagreeing_category)],
            }
            for d in depths
        ],
        "figures": {"per_class": "depth-per-class.png", "summary": "depth-summary.png"} if depths
        else {"per_class": None, "summary": None},
    }


def disagreement_report_data(analysis: DisagreementAnalysis, checkpoint: Checkpoint, split: str,
                             depths: list[ClassDepth] | None, depth_config: DepthConfig | None, worst_per_class: int,
                             depth_summary: DepthSummary | None = None, worst: dict[int, list[int]] | None = None,
                             explained: WorstExplanations | None = None) -> dict[str, Any]:
    """The content of ``disagreement.json``.

    ``explained`` lists the worst disagreements that have a local report in :data:`WORST_FOLDER`.

    ``depth_summary`` (:func:`~flint_analysis.disagreement.summarise_depths` of ``depths``) and ``worst``
    (:meth:`~flint_analysis.disagreement.DisagreementAnalysis.worst_cases`) are computed when not given.
    """
    names = list(checkpoint.dataset.class_names)
    per_class = analysis.per_class_counts(len(names))
    for entry in per_class:
        entry["class_name"] = names[entry["class"]]
    if worst is None:
        worst = analysis.worst_cases(len(names), worst_per_class)
    depth = None
    if depths is not None and depth_config is not None:
        depth = _depth_data(depths, depth_config, summarise_depths(depths) if depth_summary is None else depth_summary, names)
    return {
        **report_stamp(SCHEMA, SCHEMA_VERSION, checkpoint),
        "split": split,
        "k": analysis.k,
        "categories": {category.value: category.description for category in DisagreementCategory},
        "counts": analysis.counts(),
        "per_class": per_class,
        "samples": [
            {"index": int(i), "label": int(y), "f": int(f), "g": int(g), "f_rank_in_g": int(r), "category": c.value}
            for i, y, f, g, r, c in zip(analysis.indices, analysis.labels, analysis.f_predictions, analysis.g_predictions,
                                        analysis.f_rank_in_g, analysis.categories)
        ],
        "worst_per_class_shown": worst_per_class,
        "explained_worst": [
            {"index": int(analysis.indices[i]), "label": int(analysis.labels[i]), "f": int(analysis.f_predictions[i]),
             "g": int(analysis.g_predictions[i]), "f_rank_in_g": int(analysis.f_rank_in_g[i]),
             "category": DisagreementCategory.from_code(int(analysis.category[i])).value,
             "report": f"{WORST_FOLDER}/{folder}/report.html"}
            for i, folder in zip(explained.positions, explained.folders)
        ] if explained is not None else [],
        "depth": depth,
        "arrays": ARRAYS_NAME if worst else None,
        "figures": {"worst_cases": "worst-cases.png" if worst else None,
                    "explained_worst_index": f"{WORST_FOLDER}/index.html" if explained is not None and explained.positions else None},
    }


def format_counts(analysis: DisagreementAnalysis, split: str, class_names: Sequence[str], depth_space: str | None = None,
                  depth_summary: DepthSummary | None = None) -> str:
    """Counts overall and per class as a terminal table, then the pooled depth separation (with ``depth_summary``)."""
    counts = analysis.counts()
    k = analysis.k
    lines = [
        f"{counts['disagreements']} of {counts['samples']} {split} samples where g's class ≠ f's: "
        f"{counts['within_top_k']} with f's class in g's top-{k}, {counts['outside_top_k']} outside "
        f"({counts['outside_top_k_f_correct']} of them with f right: the worst kind)",
        f"{'class':<14} {'samples':>7} {'disagree':>8} {'in top-' + str(k):>9} {'outside':>8} {'f right':>8}",
    ]
    for entry in analysis.per_class_counts(len(class_names)):
        lines.append(f"{class_names[entry['class']][:14]:<14} {entry['samples']:>7} {entry['disagreements']:>8} {entry['within_top_k']:>9} "
                     f"{entry['outside_top_k']:>8} {entry['outside_top_k_f_correct']:>8}")
    if depth_summary is not None:
        s = depth_summary
        auc = "n/a" if s.auc is None else f"{s.auc:.3f}"
        p = "n/a" if s.p_value is None else f"{s.p_value:.2g}"
        lines.append(
            f"projection depth ({depth_space} space): median {s.median_depth_disagreeing if s.median_depth_disagreeing is None else round(s.median_depth_disagreeing, 4)} "
            f"for disagreements vs {s.median_depth_agreeing if s.median_depth_agreeing is None else round(s.median_depth_agreeing, 4)} "
            f"for agreeing samples; AUC (low depth ⇒ disagreement) {auc}, one-sided Mann-Whitney p = {p}"
        )
    return "\n".join(lines)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _lead_sentence(data: dict[str, Any]) -> str:
    counts, k = data["counts"], data["k"]
    n, d = counts["samples"], counts["disagreements"]
    text = (f"g's class differs from f's on <b>{d:,} of {n:,}</b> {escape(data['split'])} samples ({100 * d / max(n, 1):.1f} %): "
            f"{counts['within_top_k']:,} with f's class still among g's top {k}, {counts['outside_top_k']:,} outside it, "
            f"<b>{counts['outside_top_k_f_correct']:,}</b> of them with f right (the worst kind).")
    depth = data["depth"]
    auc = depth["summary"]["auc"] if depth else None
    if auc is not None:
        verdict = ("singles them out well" if auc >= 0.8 else "tells them apart somewhat" if auc >= 0.6
                   else "does not tell them apart")
        text += f" Low projection depth {verdict} (AUC {auc:.2f}; 0.5 is chance)."
    return text


def _how_to_read(data: dict[str, Any]) -> str:
    k = data["k"]
    return how_to_read([
        ("disagreement", "a sample where g's class (the interpreter's) differs from f's (the predictor's): the "
                         "interpretation then speaks for another class than the one f chose."),
        (f"within top-{k}", f"f's class is among g's {k} highest-scoring classes: acceptable to some extent, the "
                            "attributes can still account for f's decision."),
        (f"outside top-{k}", f"f's class is not among g's {k} best; <b>f right</b>: in addition f predicts the true "
                             "label, so g fails where f succeeds: the worst kind, shown first."),
        ("f's class is g's n-th choice", "where g ranks f's class among all classes (1st would be agreement)."),
        ("#319", "a sample's index in the analysed split (e.g. test image 319); local reports are named "
                 "<code>test-00319</code>."),
        ("projection depth", "how central a sample is among its class's training samples (supplement Eq. 1): 1 at the "
                             "centre, near 0 for outliers. Computed in the space named below, for each class's "
                             "disagreements and for random agreeing samples of the same class."),
        ("AUC", "the probability that a disagreement is less deep than an agreeing sample of its class (ties count "
                "one half): 0.5 means depth does not tell them apart, 1 that every disagreement is an outlier."),
        ("p", "one-sided Mann–Whitney U test of “disagreements are less deep”."),
    ])


_KIND_WORDS = {
    DisagreementCategory.OUTSIDE_TOP_K_F_CORRECT.value: "worst: f right, outside g's top {k}",
    DisagreementCategory.OUTSIDE_TOP_K.value: "outside g's top {k}, f wrong",
    DisagreementCategory.WITHIN_TOP_K.value: "within g's top {k}",
}


def _explained_table(data: dict[str, Any], names: Sequence[str]) -> str:
    rows = []
    for entry in data["explained_worst"]:
        rows.append([Raw(link(entry["report"], f"#{entry['index']}")), names[entry["label"]], names[entry["f"]], names[entry["g"]],
                     f"{_ordinal(entry['f_rank_in_g'])} of {len(names)}", _KIND_WORDS[entry["category"]].format(k=data["k"])])
    return table(["sample (local report)", "label", "f's class", "g's class", "f's class is g's", "kind"], rows)


def _index_html(data: dict[str, Any], counts: str) -> str:
    names = data["dataset"]["class_names"]
    body = header("FLINT disagreement analysis", data, f"Split: {escape(data['split'])}, k = {data['k']}.")
    body.append(lead(_lead_sentence(data)))
    body.append(_how_to_read(data))
    sections = [("counts", "counts"), ("worst", "worst disagreements")]
    if data["explained_worst"]:
        sections.append(("explained", "explained"))
    if data["depth"]:
        sections.append(("depth", "projection depth"))
    body.append("<nav>" + "".join(f"<a href=\"#{anchor}\">{text}</a>" for anchor, text in sections) + "</nav>")
    body.append("<h2 id=\"counts\">Counts</h2>")
    rows = [[c["class_name"], c["samples"], c["disagreements"], c["within_top_k"], c["outside_top_k"], c["outside_top_k_f_correct"]]
            for c in data["per_class"]]
    totals = data["counts"]
    rows.append([Raw("<b>all</b>"), totals["samples"], totals["disagreements"], totals["within_top_k"], totals["outside_top_k"],
                 totals["outside_top_k_f_correct"]])
    body.append(table(["true class", "samples", "disagreements", f"within top-{data['k']}", f"outside top-{data['k']}",
                       "outside, f right"], rows, numeric=[1, 2, 3, 4, 5]))
    body.append(f"<p>Machine-readable: {link(JSON_NAME, JSON_NAME)}"
                + (f"; the worst cases' images: {link(data['arrays'], data['arrays'])}" if data["arrays"] else "")
                + ".</p>")
    body.append(f"<details><summary>terminal summary</summary><pre>{escape(counts)}</pre></details>")
    body.append("<h2 id=\"worst\">Worst disagreements</h2>")
    if data["figures"]["worst_cases"]:
        body.append(f"<p>Up to {data['worst_per_class_shown']} per true class: f predicts the label, yet f's class is not among "
                    f"g's top {data['k']}. Each title gives the sample's index and g's class.</p>")
        body.append(image(data["figures"]["worst_cases"], "worst cases"))
    else:
        body.append("<p>None: every disagreement with f right has f's class in g's top-k.</p>")
    if data["explained_worst"]:
        body.append(f"<h2 id=\"explained\">The {len(data['explained_worst'])} worst disagreements, explained</h2>")
        body.append("<p>Each links to its local report (why f and g predicted what they did; g's class is explained). "
                    f"All of them: {link(data['figures']['explained_worst_index'], 'index of the local reports')}.</p>")
        body.append(_explained_table(data, names))
    if data["depth"]:
        depth = data["depth"]
        body.append("<h2 id=\"depth\">Projection depth</h2>")
        body.append(f"<p>Depth of each class's disagreement samples and of up to {depth['settings']['agreeing_per_class']} random "
                    f"agreeing samples of the same class, with respect to the class's training samples, in the "
                    f"<b>{escape(depth['space'])}</b> space (see the module documentation of <code>flint_analysis.disagreement</code> "
                    "for the policy on degenerate data).</p>")
        notes = [[c["class_name"], c["note"]] for c in depth["classes"] if c["note"]]
        if notes:
            body.append(table(["class", "note"], notes))
        if depth["figures"]["summary"]:
            body += [image(depth["figures"]["summary"], "depth summary"), image(depth["figures"]["per_class"], "depth per class")]
        rows = [[c["class_name"], c["reference_size"], c["dimension"], len(c["disagreeing"]), len(c["agreeing"]),
                 "n/a" if c["auc"] is None else f"{c['auc']:.3f}",
                 "n/a" if c["p_value"] is None else f"{c['p_value']:.2g}"] for c in depth["classes"]]
        body.append(table(["class", "n (train)", "d", "disagreeing", "agreeing", "AUC", "p"], rows, numeric=[1, 2, 3, 4, 5, 6]))
    return page("FLINT disagreement analysis", body)


def write_disagreement_report(analysis: DisagreementAnalysis, checkpoint: Checkpoint, split: str, data_split: ImageDataset,
                              depths: list[ClassDepth] | None, depth_config: DepthConfig | None, output_dir: str | Path,
                              worst_per_class: int = 8, force: bool = False,
                              explained: WorstExplanations | None = None) -> dict[str, Any]:
    """Write the report atomically and return the JSON data.

    ``output_dir`` must be new, empty, or hold only a disagreement report (:data:`LAYOUT`) of this checkpoint (of
    any with ``force``); this is checked first and again when the new folder is moved into place. With
    ``explained``, its local reports are written into :data:`WORST_FOLDER` inside the same staging folder, so the
    whole report, local reports included, appears in one step.

    ``arrays.npz`` holds the worst-case images of ``worst-cases.png``: ``worst_case_images`` ``(n, C, H, W)`` in
    the data's units and ``worst_case_indices`` ``(n,)`` their indices in the split, class by class as drawn.
    """
    names = list(checkpoint.dataset.class_names)

    def content() -> ReportContent:
        worst = analysis.worst_cases(len(names), worst_per_class)
        summary = summarise_depths(depths) if depths is not None and depth_config is not None else None
        data = disagreement_report_data(analysis, checkpoint, split, depths, depth_config, worst_per_class, summary, worst,
                                        explained)
        figures: dict[str, Callable[[], Any]] = {}
        arrays = {}
        if worst:
            rows = []
            for c, positions in worst.items():
                chosen = [int(analysis.indices[i]) for i in positions]
                images, _ = data_split.batch(chosen)
                titles = [f"#{index} g: {names[int(analysis.g_predictions[i])]}"[:22] for index, i in zip(chosen, positions)]
                rows.append((c, images, titles))
            figures["worst-cases.png"] = lambda: plot_worst_cases(rows, names, checkpoint.dataset.value_range, analysis.k)
            arrays = {"worst_case_images": torch.cat([images for _, images, _ in rows]).float(),
                      "worst_case_indices": torch.tensor([int(analysis.indices[i]) for positions in worst.values() for i in positions])}
        depth = data["depth"]
        if depth and depths:
            figures[depth["figures"]["per_class"]] = lambda: plot_depths(depths, names, depth["space"])
            figures[depth["figures"]["summary"]] = lambda: plot_depth_summary(depths, depth["space"], depth["summary"]["auc"])
        if explained is not None and explained.positions:
            figures[WORST_FOLDER] = lambda: _SubReport(explained.write)
        counts = format_counts(analysis, split, names, depth["space"] if depth else None, summary if depth else None)
        return ReportContent(data=data, html=_index_html(data, counts), figures=figures, arrays=arrays)

    return write_report_folder(output_dir, LAYOUT, checkpoint.sha256, force, content, save=_save)
