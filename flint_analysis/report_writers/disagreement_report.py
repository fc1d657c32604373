"""Write ``flint-analyze disagreement``: counts, worst cases, projection depths, JSON and HTML.

``disagreement.json`` (``"schema": "flint-analysis/disagreement"``) is documented in ``docs/report-schemas.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from flint_analysis.checkpoint import Checkpoint
from flint_analysis.datasets import ImageDataset
from flint_analysis.disagreement import CATEGORIES, ClassDepth, DepthConfig, DisagreementAnalysis, separation
from flint_analysis.atomic_output import OutputLayout, atomic_directory, write_json
from flint_analysis.plots import save_figure
from flint_analysis.plots.disagreement_plots import plot_depth_summary, plot_depths, plot_worst_cases
from flint_analysis.report_writers.common import check_output_folder, header, provenance
from flint_analysis.report_writers.html import escape, image, link, page, table

SCHEMA = "flint-analysis/disagreement"
SCHEMA_VERSION = 1
JSON_NAME = "disagreement.json"
LAYOUT = OutputLayout(
    kind="disagreement", marker=JSON_NAME,
    files=frozenset({JSON_NAME, "index.html", "worst-cases.png", "depth-per-class.png", "depth-summary.png"}),
)
"""Everything :func:`write_disagreement_report` writes: a folder holding anything else is refused."""


def _depth_data(depths: list[ClassDepth], config: DepthConfig, names: list[str]) -> dict[str, Any]:
    agreeing = np.concatenate([d.agreeing_depth for d in depths]) if depths else np.zeros(0)
    disagreeing = np.concatenate([d.disagreeing_depth for d in depths]) if depths else np.zeros(0)
    summary = separation(disagreeing, agreeing)
    summary.update({
        "median_depth_agreeing": float(np.median(agreeing)) if len(agreeing) else None,
        "median_depth_disagreeing": float(np.median(disagreeing)) if len(disagreeing) else None,
        "exact_zero_fraction": float(np.mean(np.r_[np.concatenate([d.agreeing_exact & (d.agreeing_depth == 0) for d in depths]),
                                                      np.concatenate([d.disagreeing_exact & (d.disagreeing_depth == 0) for d in depths])]))
        if depths else None,
    })
    return {
        "space": config.space,
        "settings": {"pca_components": config.pca_components, "agreeing_per_class": config.agreeing_per_class,
                     "n_directions": config.n_directions, "refinement_rounds": config.refinement_rounds,
                     "n_climbs": config.n_climbs, "seed": config.seed, "mad_convention": "average",
                     "reference": "training samples of the class (true label)"},
        "summary": summary,
        "classes": [
            {
                "class": d.class_index, "class_name": names[d.class_index], "reference_size": d.reference_size,
                "dimension": d.dimension, "degenerate": d.degenerate, "note": d.note,
                **separation(d.disagreeing_depth, d.agreeing_depth),
                "agreeing": [{"index": int(i), "depth": float(v), "exact": bool(e)}
                             for i, v, e in zip(d.agreeing_indices, d.agreeing_depth, d.agreeing_exact)],
                "disagreeing": [{"index": int(i), "depth": float(v), "exact": bool(e), "category": CATEGORIES[int(k)]}
                                for i, v, e, k in zip(d.disagreeing_indices, d.disagreeing_depth, d.disagreeing_exact,
                                                      d.disagreeing_category)],
            }
            for d in depths
        ],
        "figures": {"per_class": "depth-per-class.png", "summary": "depth-summary.png"},
    }


def disagreement_report_data(analysis: DisagreementAnalysis, checkpoint: Checkpoint, split: str,
                             depths: list[ClassDepth] | None, depth_config: DepthConfig | None, worst_per_class: int) -> dict[str, Any]:
    names = list(checkpoint.dataset.class_names)
    per_class = analysis.per_class_counts(len(names))
    for entry in per_class:
        entry["class_name"] = names[entry["class"]]
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        **provenance(checkpoint),
        "split": split,
        "k": analysis.k,
        "categories": {
            "within_top_k": "f's class is among g's top-k classes (acceptable to some extent)",
            "outside_top_k": "f's class is not among g's top-k (includes the next one)",
            "outside_top_k_f_correct": "f's class is not among g's top-k and f is right (the worst kind)",
        },
        "counts": analysis.counts(),
        "per_class": per_class,
        "samples": [
            {"index": int(i), "label": int(y), "f": int(f), "g": int(g), "f_rank_in_g": int(r), "category": CATEGORIES[int(c)]}
            for i, y, f, g, r, c in zip(analysis.indices, analysis.labels, analysis.f_predictions, analysis.g_predictions,
                                        analysis.f_rank_in_g, analysis.category)
        ],
        "worst_per_class_shown": worst_per_class,
        "depth": None if depths is None or depth_config is None else _depth_data(depths, depth_config, names),
        "figures": {"worst_cases": "worst-cases.png"},
    }


def format_counts(data: dict[str, Any]) -> str:
    """Counts overall and per class as a terminal table."""
    counts = data["counts"]
    k = data["k"]
    lines = [
        f"{counts['disagreements']} of {counts['samples']} {data['split']} samples where g's class ≠ f's: "
        f"{counts['within_top_k']} with f's class in g's top-{k}, {counts['outside_top_k']} outside "
        f"({counts['outside_top_k_f_correct']} of them with f right: the worst kind)",
        f"{'class':<14} {'samples':>7} {'disagree':>8} {'in top-' + str(k):>9} {'outside':>8} {'f right':>8}",
    ]
    for entry in data["per_class"]:
        lines.append(f"{entry['class_name'][:14]:<14} {entry['samples']:>7} {entry['disagreements']:>8} {entry['within_top_k']:>9} "
                     f"{entry['outside_top_k']:>8} {entry['outside_top_k_f_correct']:>8}")
    depth = data["depth"]
    if depth:
        s = depth["summary"]
        auc = "n/a" if s["auc"] is None else f"{s['auc']:.3f}"
        p = "n/a" if s["p_value"] is None else f"{s['p_value']:.2g}"
        lines.append(
            f"projection depth ({depth['space']} space): median {s['median_depth_disagreeing'] if s['median_depth_disagreeing'] is None else round(s['median_depth_disagreeing'], 4)} "
            f"for disagreements vs {s['median_depth_agreeing'] if s['median_depth_agreeing'] is None else round(s['median_depth_agreeing'], 4)} "
            f"for agreeing samples; AUC (low depth ⇒ disagreement) {auc}, one-sided Mann-Whitney p = {p}"
        )
    return "\n".join(lines)


def write_disagreement_report(analysis: DisagreementAnalysis, checkpoint: Checkpoint, split: str, data_split: ImageDataset,
                              depths: list[ClassDepth] | None, depth_config: DepthConfig | None, output_dir: str | Path,
                              worst_per_class: int = 8, force: bool = False) -> dict[str, Any]:
    """Write the report atomically and return the JSON data.

    ``output_dir`` must be new, empty, or hold only a disagreement report (:data:`LAYOUT`) of this checkpoint (of
    any with ``force``); this is checked first and again when the new folder is moved into place.
    """
    output_dir = Path(output_dir)
    check_output_folder(output_dir, JSON_NAME, checkpoint.sha256, force, LAYOUT)
    names = list(checkpoint.dataset.class_names)
    data = disagreement_report_data(analysis, checkpoint, split, depths, depth_config, worst_per_class)
    worst_rows = []
    for c in range(len(names)):
        chosen = [i for i, entry in enumerate(data["samples"]) if entry["label"] == c and entry["category"] == "outside_top_k_f_correct"]
        chosen = chosen[:worst_per_class]
        if chosen:
            images, _ = data_split.batch([data["samples"][i]["index"] for i in chosen])
            titles = [f"#{data['samples'][i]['index']} g: {names[data['samples'][i]['g']]}"[:22] for i in chosen]
            worst_rows.append((c, images, titles))
    if not worst_rows:
        data["figures"]["worst_cases"] = None
    check = lambda target: check_output_folder(target, JSON_NAME, checkpoint.sha256, force, LAYOUT)  # noqa: E731
    with atomic_directory(output_dir, LAYOUT, check) as staging:
        if worst_rows:
            save_figure(plot_worst_cases(worst_rows, names, checkpoint.dataset.value_range, analysis.k), staging / "worst-cases.png")
        if data["depth"] and depths:
            save_figure(plot_depths(depths, names, data["depth"]["space"]), staging / data["depth"]["figures"]["per_class"])
            save_figure(plot_depth_summary(depths, data["depth"]["space"], data["depth"]["summary"]["auc"]),
                        staging / data["depth"]["figures"]["summary"])
        elif data["depth"]:
            data["depth"]["figures"] = {"per_class": None, "summary": None}
        write_json(staging / JSON_NAME, data)
        body = header("FLINT disagreement analysis", data, f"Split: {escape(split)}, k = {analysis.k}.")
        body.append(f"<pre>{escape(format_counts(data))}</pre>")
        body.append(f"<p>Machine-readable: {link(JSON_NAME, JSON_NAME)}.</p>")
        body.append("<h2>Worst disagreements</h2>")
        body.append(image("worst-cases.png", "worst cases") if worst_rows else "<p>None: every disagreement with f right has f's class in g's top-k.</p>")
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
        (staging / "index.html").write_text(page("FLINT disagreement analysis", body))
    return data
