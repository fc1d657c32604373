"""Write the global report: class grids, heat maps, overview, ``global.json`` and ``index.html``.

``global.json`` schema (``"schema": "flint-analysis/global"``, ``"schema_version": 1``) is documented in
``docs/report-schemas.md``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flint_analysis.checkpoint import Checkpoint
from flint_analysis.global_interpretation import GlobalInterpretation, PairAnalysis
from flint_analysis.atomic_output import OutputLayout
from flint_analysis.plots import save_figure
from flint_analysis.plots.global_plots import (
    plot_attribute_overview,
    plot_class_grid,
    plot_relevance_heatmap,
    plot_sample_relevance,
)
from flint_analysis.report_writers.common import ReportContent, header, report_stamp, write_report_folder
from flint_analysis.report_writers.html import Raw, escape, image, link, page, table

SCHEMA = "flint-analysis/global"
SCHEMA_VERSION = 1
JSON_NAME = "global.json"
LAYOUT = OutputLayout(
    kind="global", marker=JSON_NAME,
    files=frozenset({JSON_NAME, "index.html", "relevance_heatmap.png", "sample_relevance.png", "attribute_overview.png"}),
    folders=(("classes", OutputLayout(kind="global", file_patterns=(r"class-[0-9]{2,}-[a-z0-9]+(?:-[a-z0-9]+)*\.png",))),),
)
"""Everything :func:`write_global_report` writes (see :func:`class_figure_name`): a folder holding anything else is refused."""


def class_figure_name(class_index: int, class_name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", class_name).strip("-").lower() or "class"
    return f"classes/class-{class_index:02d}-{slug}.png"


def global_report_data(result: GlobalInterpretation, checkpoint: Checkpoint) -> dict[str, Any]:
    """The content of ``global.json``."""
    spec = checkpoint.dataset
    config = result.config
    never = result.relevance.never_predicted
    matrix = [None if c in never else [float(v) for v in row] for c, row in enumerate(result.relevance.relevance.tolist())]
    pairs = []
    for analysis in result.analyses:
        pair, mas = analysis.pair, analysis.mas
        pairs.append({
            "class": pair.class_index,
            "class_name": spec.class_names[pair.class_index],
            "attribute": pair.attribute,
            "relevance": pair.relevance,
            "direction": pair.direction,
            "figure": class_figure_name(pair.class_index, spec.class_names[pair.class_index]) if len(mas.indices) else None,
            "mas": [
                {
                    "index": int(mas.indices[k]),
                    "label": int(mas.labels[k]),
                    "g_prediction": int(mas.predictions[k]),
                    "activation": float(mas.activations[k]),
                    "am_pi": {
                        "initial_activation": float(analysis.am_pi.initial_activation[k]),
                        "final_activation": float(analysis.am_pi.final_activation[k]),
                        "gain": float(analysis.am_pi.gain[k]),
                        "raised": bool(analysis.am_pi.raised[k]),
                    },
                }
                for k in range(len(mas.indices))
            ],
        })
    plotted = result.plotted_rows
    return {
        **report_stamp(SCHEMA, SCHEMA_VERSION, checkpoint),
        "split": "train",
        "parameters": {
            "subset_size": config.subset_size,
            "threshold": config.threshold,
            "mas_per_pair": config.mas_per_pair,
            "mas_pool": config.mas_pool,
            "mas_class_by": config.mas_class_by,
            "attribution": config.attribution,
            "attribution_method": config.tools.attribution_record(),
            "decoder": config.decoder,
            "am_pi": config.am_pi.to_dict(),
            "classes": None if config.classes is None else list(config.classes),
            "seed": config.seed,
        },
        "subset": {
            "indices": result.subset.indices.tolist(),
            "g_predicted_counts": result.relevance.counts.tolist(),
            "classes_never_predicted": never,
        },
        "relevance": {"rows": "classes", "columns": "attributes", "matrix": matrix},
        "pairs": pairs,
        "am_pi_summary": result.am_pi_summary().to_dict(),
        "per_sample_relevance": {
            "indices": result.subset.indices[plotted].tolist(),
            "labels": result.subset.labels[plotted].tolist(),
            "g_predictions": result.subset.g_predictions[plotted].tolist(),
            "values": result.sample_relevances[plotted].tolist(),
        },
        "figures": {
            "relevance_heatmap": "relevance_heatmap.png",
            "sample_relevance": "sample_relevance.png",
            "attribute_overview": "attribute_overview.png",
            "classes": {str(p["class"]): p["figure"] for p in pairs if p["figure"]},
        },
    }


def _index_html(data: dict[str, Any]) -> str:
    names = data["dataset"]["class_names"]
    params = data["parameters"]
    summary = data["am_pi_summary"]
    body = header("FLINT global interpretation", data)
    never = data["subset"]["classes_never_predicted"]
    body.append(
        f"<p>{len(data['pairs'])} class-attribute pairs with r<sub>j,c</sub> &gt; {params['threshold']:g} on S<sub>rnd</sub> "
        f"({params['subset_size']} random training samples, seed {params['seed']}). AM+PI raised φ<sub>j</sub> in "
        f"<span class=\"{'ok' if summary['not_raised'] == 0 else 'warn'}\">{summary['raised']} of {summary['runs']}</span> runs"
        + (f"; <span class=\"warn\">g never predicted {', '.join(escape(names[c]) for c in never)} in S<sub>rnd</sub></span>" if never else "")
        + f". Machine-readable: {link('global.json', 'global.json')}.</p>"
    )
    body.append("<nav>" + "".join(link(f, n) for n, f in (("heat map", "#heatmap"), ("classes", "#classes"),
                                                            ("per-sample relevance", "#samples"), ("overview", "#overview"))) + "</nav>")
    body.append("<h2 id=\"heatmap\">Class-attribute relevance</h2>")
    body.append(image(data["figures"]["relevance_heatmap"], "relevance heat map"))
    body.append("<h2 id=\"classes\">Selected pairs</h2>")
    rows = []
    for pair in data["pairs"]:
        failed = [m for m in pair["mas"] if not m["am_pi"]["raised"]]
        rows.append([
            Raw(link(pair["figure"], pair["class_name"]) if pair["figure"] else escape(pair["class_name"])),
            f"φ{pair['attribute']}",
            f"{pair['relevance']:.3f}",
            ", ".join(f"#{m['index']} (φ={m['activation']:.2f})" for m in pair["mas"]),
            Raw(f"<span class=\"warn\">{len(failed)} of {len(pair['mas'])} not raised</span>" if failed else "all raised"),
        ])
    body.append(table(["class", "attribute", "r_{j,c}", "maximum activating samples", "AM+PI"], rows, numeric=[2]))
    for class_index, figure in data["figures"]["classes"].items():
        body.append(f"<h3>{escape(names[int(class_index)])}</h3>")
        body.append(image(figure, f"class {names[int(class_index)]}"))
    body.append("<h2 id=\"samples\">Per-sample relevance</h2>")
    body.append(image(data["figures"]["sample_relevance"], "per-sample relevance"))
    body.append("<h2 id=\"overview\">All attributes</h2>")
    body.append(image(data["figures"]["attribute_overview"], "attribute overview"))
    body.append("<h2>Parameters</h2>")
    flat = {k: v for k, v in params.items() if k not in ("am_pi", "attribution_method")}
    method = params.get("attribution_method")
    if method:
        flat["attribution"] = f"{method['name']} (Captum {method['captum']}" + "".join(
            f", {k}={v}" for k, v in method["settings"].items()) + ")"
    flat.update({f"am_pi.{k}": v for k, v in params["am_pi"].items()})
    body.append(table(["parameter", "value"], [[k, v] for k, v in flat.items()]))
    return page("FLINT global interpretation", body)


def _class_groups(result: GlobalInterpretation) -> dict[int, list[PairAnalysis]]:
    groups: dict[int, list[PairAnalysis]] = {}
    for analysis in result.analyses:
        if len(analysis.mas.indices):
            groups.setdefault(analysis.pair.class_index, []).append(analysis)
    return groups


def write_global_report(result: GlobalInterpretation, checkpoint: Checkpoint, output_dir: str | Path, force: bool = False) -> dict[str, Any]:
    """Write the whole report into ``output_dir`` atomically and return the JSON data.

    ``output_dir`` must be new, empty, or hold only a global report (:data:`LAYOUT`) of this checkpoint (of any
    with ``force``); this is checked first and again when the new folder is moved into place.
    """
    spec = checkpoint.dataset
    config = result.config

    def content() -> ReportContent:
        data = global_report_data(result, checkpoint)
        plotted = result.plotted_rows
        figures = {
            "relevance_heatmap.png": lambda: plot_relevance_heatmap(result.relevance, result.pairs, spec.class_names, config.threshold),
            "sample_relevance.png": lambda: plot_sample_relevance(result.sample_relevances[plotted], result.subset.labels[plotted],
                                                                  spec.class_names),
            "attribute_overview.png": lambda: plot_attribute_overview(result.overview, result.relevance, spec.class_names,
                                                                      spec.value_range, config.threshold),
        }
        for class_index, analyses in _class_groups(result).items():
            figures[class_figure_name(class_index, spec.class_names[class_index])] = (
                lambda analyses=analyses: plot_class_grid(analyses, spec.class_names, spec.value_range, config.attribution))
        return ReportContent(data=data, html=_index_html(data), figures=figures, folders=("classes",))

    return write_report_folder(output_dir, LAYOUT, checkpoint.sha256, force, content, save=save_figure)
