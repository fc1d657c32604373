"""Write ``flint-analyze disagreement``: counts, worst cases, projection depths, JSON and HTML.

``disagreement.json`` (``"schema": "flint-analysis/disagreement"``) is documented in ``docs/report-schemas.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flint_analysis.checkpoint import Checkpoint
from flint_analysis.datasets import ImageDataset
from flint_analysis.disagreement import (
    ClassDepth, DepthConfig, DepthSummary, DisagreementAnalysis, DisagreementCategory, summarise_depths,
)
from flint_analysis.atomic_output import OutputLayout
from flint_analysis.plots import save_figure
from flint_analysis.plots.disagreement_plots import plot_depth_summary, plot_depths, plot_worst_cases
from flint_analysis.report_writers.common import ReportContent, header, report_stamp, write_report_folder
from flint_analysis.report_writers.html import escape, image, link, page, table

SCHEMA = "flint-analysis/disagreement"
SCHEMA_VERSION = 1
JSON_NAME = "disagreement.json"
LAYOUT = OutputLayout(
    kind="disagreement", marker=JSON_NAME,
    files=frozenset({JSON_NAME, "index.html", "worst-cases.png", "depth-per-class.png", "depth-summary.png"}),
)
"""Everything :func:`write_disagreement_report` writes: a folder holding anything else is refused."""


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
                             depth_summary: DepthSummary | None = None, worst: dict[int, list[int]] | None = None) -> dict[str, Any]:
    """The content of ``disagreement.json``.

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
        "depth": depth,
        "figures": {"worst_cases": "worst-cases.png" if worst else None},
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


def _index_html(data: dict[str, Any], counts: str) -> str:
    body = header("FLINT disagreement analysis", data, f"Split: {escape(data['split'])}, k = {data['k']}.")
    body.append(f"<pre>{escape(counts)}</pre>")
    body.append(f"<p>Machine-readable: {link(JSON_NAME, JSON_NAME)}.</p>")
    body.append("<h2>Worst disagreements</h2>")
    body.append(image("worst-cases.png", "worst cases") if data["figures"]["worst_cases"]
                else "<p>None: every disagreement with f right has f's class in g's top-k.</p>")
    if data["depth"]:
        depth = data["depth"]
        body.append("<h2>Projection depth</h2>")
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
                 "n/a" if c["auc"] is None else f"{c['auc']:.3f}"] for c in depth["classes"]]
        body.append(table(["class", "n (train)", "d", "disagreeing", "agreeing", "AUC"], rows, numeric=[1, 2, 3, 4, 5]))
    return page("FLINT disagreement analysis", body)


def write_disagreement_report(analysis: DisagreementAnalysis, checkpoint: Checkpoint, split: str, data_split: ImageDataset,
                              depths: list[ClassDepth] | None, depth_config: DepthConfig | None, output_dir: str | Path,
                              worst_per_class: int = 8, force: bool = False) -> dict[str, Any]:
    """Write the report atomically and return the JSON data.

    ``output_dir`` must be new, empty, or hold only a disagreement report (:data:`LAYOUT`) of this checkpoint (of
    any with ``force``); this is checked first and again when the new folder is moved into place.
    """
    names = list(checkpoint.dataset.class_names)

    def content() -> ReportContent:
        worst = analysis.worst_cases(len(names), worst_per_class)
        summary = summarise_depths(depths) if depths is not None and depth_config is not None else None
        data = disagreement_report_data(analysis, checkpoint, split, depths, depth_config, worst_per_class, summary, worst)
        figures = {}
        if worst:
            rows = []
            for c, positions in worst.items():
                chosen = [int(analysis.indices[i]) for i in positions]
                images, _ = data_split.batch(chosen)
                titles = [f"#{index} g: {names[int(analysis.g_predictions[i])]}"[:22] for index, i in zip(chosen, positions)]
                rows.append((c, images, titles))
            figures["worst-cases.png"] = lambda: plot_worst_cases(rows, names, checkpoint.dataset.value_range, analysis.k)
        depth = data["depth"]
        if depth and depths:
            figures[depth["figures"]["per_class"]] = lambda: plot_depths(depths, names, depth["space"])
            figures[depth["figures"]["summary"]] = lambda: plot_depth_summary(depths, depth["space"], depth["summary"]["auc"])
        counts = format_counts(analysis, split, names, depth["space"] if depth else None, summary if depth else None)
        return ReportContent(data=data, html=_index_html(data, counts), figures=figures)

    return write_report_folder(output_dir, LAYOUT, checkpoint.sha256, force, content, save=save_figure)
