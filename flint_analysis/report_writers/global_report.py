"""Write the global report: heat maps, per-pair tiles, class grids, overview, ``arrays.npz``, ``global.json``, ``index.html``.

``global.json`` schema (``"schema": "flint-analysis/global"``, ``"schema_version": 1``) and the keys of
``arrays.npz`` are documented in ``docs/report-schemas.md``.

The page shows each (pair, MAS) run as one row of small PNG tiles (``tiles/``) under HTML column titles, so
its labels stay readable at any window width; the per-class PNG grids (``classes/``) hold the same panels
in one figure each. Anchors: ``id="class-{c}"`` for class ``c``'s section and ``id="pair-c{c}-j{j}"`` for
pair (class ``c``, attribute ``j``); local reports link to ``index.html#pair-c{c}-j{j}``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flint_analysis.atomic_output import OutputLayout
from flint_analysis.checkpoint import Checkpoint
from flint_analysis.global_interpretation import GlobalInterpretation, PairAnalysis
from flint_analysis.plots import save_figure
from flint_analysis.plots.global_plots import (
    TILE_KINDS,
    pair_tiles,
    plot_attribute_overview,
    plot_class_grid,
    plot_relevance_heatmap,
    plot_sample_relevance,
    tile_scales,
)
from flint_analysis.plots.style import ImageTile, colormap_css
from flint_analysis.distributed import SINGLE_PROCESS, ProcessGroup
from flint_analysis.report_writers.common import ARRAYS_NAME, ReportContent, header, report_stamp, write_report_folder
from flint_analysis.report_writers.html import Raw, escape, how_to_read, image, lead, link, page, table

SCHEMA = "flint-analysis/global"
SCHEMA_VERSION = 1
JSON_NAME = "global.json"
TILES_FOLDER = "tiles"
TILE_PATTERN = r"c[0-9]{2,}-j[0-9]{2,}-m[0-9]+-(?:" + "|".join(TILE_KINDS) + r")\.png"
LAYOUT = OutputLayout(
    kind="global", marker=JSON_NAME,
    files=frozenset({JSON_NAME, "index.html", "relevance_heatmap.png", "sample_relevance.png", "attribute_overview.png",
                     ARRAYS_NAME}),
    folders=(("classes", OutputLayout(kind="global", file_patterns=(r"class-[0-9]{2,}-[a-z0-9]+(?:-[a-z0-9]+)*\.png",))),
             (TILES_FOLDER, OutputLayout(kind="global", file_patterns=(TILE_PATTERN,)))),
)
"""Everything :func:`write_global_report` writes (see :func:`class_figure_name`, :func:`tile_name`): a folder
holding anything else is refused."""

TILE_COLUMNS = {
    "mas": "maximum activating sample (MAS)",
    "am_pi": "AM+PI",
    "attribution": "attribution",
    "decoder": "d(Φ): decoder's drawing",
    "ablation": "ablation: d(Φ) with φ_j = 0",
    "difference": "difference: d(Φ) − ablation",
}
"""Column titles of the tile tables, by tile name (:data:`~flint_analysis.plots.global_plots.TILE_KINDS`)."""

SIGNED_TILES = ("attribution", "difference")


def class_figure_name(class_index: int, class_name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", class_name).strip("-").lower() or "class"
    return f"classes/class-{class_index:02d}-{slug}.png"


def tile_name(class_index: int, attribute: int, run: int, kind: str) -> str:
    """``tiles/c03-j18-m0-am_pi.png``: the tile ``kind`` of MAS ``run`` of pair (``class_index``, ``attribute``)."""
    return f"{TILES_FOLDER}/c{class_index:02d}-j{attribute:02d}-m{run}-{kind}.png"


def class_anchor(class_index: int) -> str:
    """The ``id`` of class ``class_index``'s section of ``index.html``."""
    return f"class-{class_index}"


def pair_anchor(class_index: int, attribute: int) -> str:
    """The ``id`` of pair (``class_index``, ``attribute``) in ``index.html``."""
    return f"pair-c{class_index}-j{attribute}"


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


def global_report_data(result: GlobalInterpretation, checkpoint: Checkpoint) -> dict[str, Any]:
    """The content of ``global.json``."""
    spec = checkpoint.dataset
    config = result.config
    never = result.relevance.never_predicted
    matrix = [None if c in never else [float(v) for v in row] for c, row in enumerate(result.relevance.relevance.tolist())]
    pairs = []
    for analysis in result.analyses:
        pair, mas = analysis.pair, analysis.mas
        kinds = list(pair_tiles(analysis, 0, spec.value_range)) if len(mas.indices) else []
        pairs.append({
            "class": pair.class_index,
            "class_name": spec.class_names[pair.class_index],
            "attribute": pair.attribute,
            "relevance": pair.relevance,
            "direction": pair.direction,
            "anchor": pair_anchor(pair.class_index, pair.attribute),
            "figure": class_figure_name(pair.class_index, spec.class_names[pair.class_index]) if len(mas.indices) else None,
            "mas": [
                {
                    "index": int(mas.indices[k]),
                    "label": int(mas.labels[k]),
                    "g_prediction": int(mas.predictions[k]),
                    "activation": float(mas.activations[k]),
                    "am_pi": analysis.am_pi.run_record(k),
                    "tiles": {kind: tile_name(pair.class_index, pair.attribute, k, kind) for kind in kinds},
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
            "tool_batch_size": config.tool_batch_size,
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
        "arrays": ARRAYS_NAME,
    }


def global_arrays(result: GlobalInterpretation, input_shape: Sequence[int]) -> dict[str, Tensor]:
    """The images and maps of every (pair, MAS) run, for ``arrays.npz``; ``R`` runs in ``global.json`` order.

    Row ``r`` is MAS ``run_mas[r]`` of ``pairs[run_pair[r]]`` of ``global.json``. Keys (``(R, C, H, W)`` unless
    noted): ``run_pair``, ``run_mas``, ``run_class``, ``run_attribute``, ``run_direction``, ``run_index``
    (training-split index of the MAS), all ``(R,)`` int64; ``mas_images``; ``am_pi_images``;
    ``attribution_maps`` (when attribution ran); ``decoder_with_attribute``, ``decoder_without_attribute``,
    ``decoder_difference`` (when the decoder ablation ran); ``relevance`` ``(C, J)`` r_{j,c} (NaN rows: classes
    g never predicted in S_rnd).
    """
    runs = [(p, k, a) for p, a in enumerate(result.analyses) for k in range(len(a.mas.indices))]
    empty = torch.empty((0, *input_shape))

    def stack(get: Callable[[PairAnalysis], Tensor]) -> Tensor:
        parts = [get(a) for a in result.analyses if len(a.mas.indices)]
        return torch.cat(parts).float() if parts else empty

    def column(value: Callable[[int, int, PairAnalysis], int]) -> Tensor:
        return torch.tensor([value(p, k, a) for p, k, a in runs], dtype=torch.int64)

    relevance = result.relevance.relevance.clone().float()
    relevance[list(result.relevance.never_predicted)] = float("nan")
    arrays = {
        "run_pair": column(lambda p, k, a: p),
        "run_mas": column(lambda p, k, a: k),
        "run_class": column(lambda p, k, a: a.pair.class_index),
        "run_attribute": column(lambda p, k, a: a.pair.attribute),
        "run_direction": column(lambda p, k, a: a.pair.direction),
        "run_index": column(lambda p, k, a: int(a.mas.indices[k])),
        "mas_images": stack(lambda a: a.images),
        "am_pi_images": stack(lambda a: a.am_pi.images),
        "relevance": relevance,
    }
    if result.config.attribution is not None:
        arrays["attribution_maps"] = stack(lambda a: a.tools.attribution.maps)
    if result.config.decoder:
        arrays["decoder_with_attribute"] = stack(lambda a: a.tools.decoder.with_attribute)
        arrays["decoder_without_attribute"] = stack(lambda a: a.tools.decoder.without_attribute)
        arrays["decoder_difference"] = stack(lambda a: a.tools.decoder.difference)
    return arrays


# ---------------------------------------------------------------------------------------------- the page
def _colour_bar(kind: str, ticks: Sequence[str], width: int = 150) -> str:
    labels = "".join(f"<span>{escape(t)}</span>" for t in ticks)
    return (f"<span class=\"cbar\" style=\"width:{width}px\"><span class=\"cbar-strip\" style=\"background:{colormap_css(kind)}\"></span>"
            f"<span class=\"cbar-ticks\">{labels}</span></span>")


def _signed_number(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals, without a minus sign on a value that rounds to zero."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _class_title(class_index: int, name: str) -> str:
    return f"class {class_index}" if name == str(class_index) else f"class {class_index}: {escape(name)}"


def _outcome_html(record: dict[str, Any]) -> str:
    """AM+PI's mark, word and numbers for one run (a ``run_record``)."""
    outcome = record["outcome"]
    css = {"activated": "ok", "saturated": "sat"}.get(outcome, "warn")
    mark = {"activated": "✓", "saturated": "⚠"}.get(outcome, "✗")
    word = {"activated": "activated", "saturated": "saturated", "not_activated": "not activated"}.get(outcome, outcome)
    ratio = record.get("ratio")
    ratio_text = "ratio undefined" if ratio is None else f"{_signed_number(ratio, 2)}× the MAS"
    weak = "<br><span class=\"warn\">weak MAS</span>" if record.get("weak_reference") else ""
    return (f"<span class=\"{css}\">{mark} {escape(word)}</span>{weak}<br>{ratio_text}<br>"
            f"φ {_signed_number(record['reference_activation'], 2)} → {_signed_number(record['final_activation'], 2)}")


def _mark_counts(records: Sequence[dict[str, Any]]) -> str:
    parts = []
    for outcome, mark, css in (("activated", "✓", "ok"), ("saturated", "⚠", "sat"), ("not_activated", "✗", "warn")):
        count = sum(r["outcome"] == outcome for r in records)
        if count:
            parts.append(f"<span class=\"{css}\">{count} {mark}</span>")
    ratios = ", ".join("–" if r.get("ratio") is None else f"{_signed_number(r['ratio'], 1)}×" for r in records)
    weak = sum(bool(r.get("weak_reference")) for r in records)
    return (" ".join(parts) + (f" <span class=\"meta\">({ratios})</span>" if records else "")
            + (f" <span class=\"warn\">{weak} weak MAS</span>" if weak else ""))


def _direction_text(direction: int) -> str:
    """The direction of a pair as HTML: "via φ>0" or "via φ<0" (escaped)."""
    return escape("via φ>0" if direction > 0 else "via φ<0")


def _tile_table(pairs: Sequence[dict[str, Any]], kinds: Sequence[str], scales: dict[tuple[str, int], dict[str, float]],
                names: Sequence[str], attribution: str | None, value_range: Sequence[float]) -> str:
    """One class's tiles: a row per (pair, MAS), the pair's label cell spanning its MAS rows."""
    low, high = value_range
    heads = ["pair"]
    for kind in kinds:
        title = escape(TILE_COLUMNS[kind])
        if kind == "am_pi":
            title += f"<br><span class=\"meta\">on the data's range [{low:g}, {high:g}], not rescaled</span>"
        elif kind == "attribution":
            title = f"attribution: {escape(attribution or '')} of φ_j" + "<br>" + _colour_bar("attribution", ("−s", "0", "+s"), 96)
        elif kind == "difference":
            title += "<br>" + _colour_bar("difference", ("−s", "0", "+s"), 96)
        heads.append(title)
    rows = []
    for pair in pairs:
        c, j = pair["class"], pair["attribute"]
        direction = _direction_text(pair["direction"])
        label = (f"<a href=\"#{pair['anchor']}\"><b>φ{j}</b></a><br>r<sub>j,c</sub> = {pair['relevance']:.2f}<br>"
                 f"<span class=\"{'neg' if pair['direction'] < 0 else 'meta'}\">{direction}</span>")
        mas = pair["mas"]
        if not mas:
            rows.append(f"<tr id=\"{pair['anchor']}\"><td class=\"pair\">{label}</td>"
                        f"<td colspan=\"{len(kinds)}\">no sample of this class in the pool: no MAS</td></tr>")
            continue
        for k, sample in enumerate(mas):
            cells = [f"<td class=\"pair\" rowspan=\"{len(mas)}\">{label}</td>"] if k == 0 else []
            for kind in kinds:
                src = sample["tiles"].get(kind)
                if src is None:
                    cells.append("<td></td>")
                    continue
                caption = ""
                if kind == "mas":
                    caption = f"#{sample['index']} · φ<sub>{j}</sub>={sample['activation']:.2f}"
                    if sample["label"] != c:
                        caption += f"<br><span class=\"warn\">label: {escape(names[sample['label']])}</span>"
                    if sample["g_prediction"] != c:
                        caption += f"<br><span class=\"warn\">g: {escape(names[sample['g_prediction']])}</span>"
                elif kind == "am_pi":
                    caption = _outcome_html(sample["am_pi"])
                elif kind in SIGNED_TILES:
                    caption = f"s = {scales[(pair['anchor'], k)][kind]:.3g}"
                alt = f"{TILE_COLUMNS[kind]}, φ{j}, MAS #{sample['index']}"
                cells.append(f"<td><img class=\"tile\" src=\"{escape(src)}\" alt=\"{escape(alt)}\" loading=\"lazy\">"
                             f"<span class=\"cap\">{caption}</span></td>")
            row_id = f" id=\"{pair['anchor']}\"" if k == 0 else ""
            rows.append(f"<tr{row_id}>{''.join(cells)}</tr>")
    head = "".join(f"<th>{h}</th>" for h in heads)
    return f"<div class=\"scroll\"><table class=\"tiles\"><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"


def _how_to_read(params: dict[str, Any], attribution: str | None, decoder: bool) -> str:
    threshold = params["threshold"]
    saturation = params["am_pi"].get("saturation_ratio", 3)
    terms = [
        ("r<sub>j,c</sub>", "how much attribute φ<sub>j</sub> speaks for class c: over the samples of S<sub>rnd</sub> that g "
         "predicts as c, the mean of r<sub>j,c,x</sub> = α<sub>j</sub> / max<sub>i</sub>|α<sub>i</sub>| with "
         "α<sub>j</sub> = φ<sub>j</sub>(x) w<sub>j,c</sub> (w: the weights of g's linear layer h). 1: always the strongest "
         f"contribution; between −1 and 1. Pairs above the threshold {threshold:g} are analysed (boxed in the heat map)."),
        ("direction", "the sign of w<sub>j,c</sub>. <b>via φ&gt;0</b>: large φ<sub>j</sub> speaks for c. <b>via φ&lt;0</b>: "
         "the attribute speaks for c through <i>negative</i> values (w<sub>j,c</sub> &lt; 0; possible because Φ ends in a "
         "LeakyReLU); such pairs are hatched in the heat map and their value marked −, and their MAS, AM+PI and "
         "attribution work on −φ<sub>j</sub>."),
        ("MAS", "maximum activating samples: the training samples g predicts as c with the largest direction·φ<sub>j</sub>. "
         "“#319” is the sample's index in the training split, φ its activation."),
        ("AM+PI", "activation maximisation with partial initialisation (the paper's main tool): starting from a faint copy "
         "of the MAS, the input is optimised to raise direction·φ<sub>j</sub> while staying smooth and inside the data "
         "range. Tiles are drawn on the data's fixed range, not rescaled, so a faint result looks faint. "
         "<b>ratio</b> = final direction·φ<sub>j</sub> ÷ the MAS's own (full-intensity) direction·φ<sub>j</sub>. "
         f"<span class=\"ok\">✓ activated</span>: ratio between 1 and {saturation:g}; "
         f"<span class=\"sat\">⚠ saturated</span>: above {saturation:g} (an exaggerated pattern, not the MAS's); "
         "<span class=\"warn\">✗ not activated</span>: below 1 (AM+PI did not reach what the sample itself does). "
         "“φ a → b”: the MAS's own φ<sub>j</sub> → AM+PI's final φ<sub>j</sub>. "
         "<span class=\"warn\">weak MAS</span>: the MAS's own |φ<sub>j</sub>| is under 10 % of the attribute's largest "
         "|φ<sub>j</sub>| in S<sub>rnd</sub>, so the attribute barely responds to it and reaching its value says little "
         "(common for pairs via φ&lt;0: a LeakyReLU's negative values are small)."),
    ]
    if attribution:
        terms.append(("attribution map", f"{escape(attribution)} of direction·φ<sub>j</sub> with respect to the MAS's pixels "
                      "(summed over the channels of a colour image; arrays.npz keeps each channel): red pixels raise it, blue ones lower it. Each map has its own scale ±s (printed under it), "
                      "s its largest magnitude, so compare shapes, not colours, across maps."))
    if decoder:
        terms += [
            ("d(Φ)", "the decoder's drawing of the MAS from all its attributes."),
            ("ablation", "the same drawing with φ<sub>j</sub> set to 0: what the decoder draws without the attribute."),
            ("difference map", "d(Φ) − ablation: red where φ<sub>j</sub> adds ink, blue where it removes some; scale ±s "
             "as for attribution maps."),
        ]
    terms += [
        ("per-sample relevance", "r<sub>j,ĉ,x</sub> of every attribute (rows) for 80 random samples of S<sub>rnd</sub> "
         "(columns, grouped by true class), ĉ g's prediction: which attributes g used for each sample (paper Fig. 21)."),
        ("attribute overview", "for every attribute, the samples with the largest φ<sub>j</sub>, whatever their class; "
         "for attributes relevant through φ&lt;0, the samples with the most negative φ<sub>j</sub>, labelled so."),
    ]
    return how_to_read(terms)


def _lead(data: dict[str, Any], headline: str) -> str:
    pairs = data["pairs"]
    params = data["parameters"]
    classes = sorted({p["class"] for p in pairs})
    names = data["dataset"]["class_names"]
    never = data["subset"]["classes_never_predicted"]
    if pairs:
        negative = sum(p["direction"] < 0 for p in pairs)
        text = (f"{len(pairs)} class–attribute pairs over {len(classes)} of {len(names)} classes have "
                f"r<sub>j,c</sub> &gt; {params['threshold']:g}"
                + (f" ({negative} of them through φ&lt;0)" if negative else "") + f". {escape(headline.rstrip('.'))}.")
    else:
        largest = max((v for row in data["relevance"]["matrix"] if row is not None for v in row), default=0.0)
        text = (f"<span class=\"warn\">No class–attribute pair has r<sub>j,c</sub> &gt; {params['threshold']:g}</span> "
                f"(the largest is {largest:.3f}); lower --threshold.")
    if never:
        text += f" <span class=\"warn\">g never predicted {escape(', '.join(names[c] for c in never))} in S<sub>rnd</sub>.</span>"
    return lead(text)


def _index_html(data: dict[str, Any], headline: str, scales: dict[tuple[str, int], dict[str, float]]) -> str:
    names = data["dataset"]["class_names"]
    params = data["parameters"]
    attribution = params["attribution"]
    body = header("FLINT global interpretation", data)
    body.append(_lead(data, headline))
    body.append(_how_to_read(params, attribution, params["decoder"]))
    body.append(
        f"<p>S<sub>rnd</sub>: {params['subset_size']} random training samples (seed {params['seed']}). Machine-readable: "
        f"{link('global.json', 'global.json')}; every image and map as arrays: {link(data['arrays'], data['arrays'])}.</p>")
    body.append("<nav>" + "".join(link(f, n) for n, f in (("heat map", "#heatmap"), ("pairs", "#pairs"), ("classes", "#classes"),
                                                            ("per-sample relevance", "#samples"), ("overview", "#overview"),
                                                            ("parameters", "#parameters"))) + "</nav>")
    body.append("<h2 id=\"heatmap\">Class-attribute relevance</h2>")
    body.append(image(data["figures"]["relevance_heatmap"], "relevance heat map"))

    body.append("<h2 id=\"pairs\">Selected pairs</h2>")
    rows = []
    for pair in data["pairs"]:
        c = pair["class"]
        rows.append([
            Raw(link(f"#{class_anchor(c)}", pair["class_name"])),
            Raw(link(f"#{pair['anchor']}", f"φ{pair['attribute']}")),
            f"{pair['relevance']:.3f}",
            Raw(f"<span class=\"neg\">{_direction_text(-1)}</span>" if pair["direction"] < 0 else _direction_text(1)),
            ", ".join(f"#{m['index']} (φ={m['activation']:.2f})" for m in pair["mas"]) or "none",
            Raw(_mark_counts([m["am_pi"] for m in pair["mas"]])),
        ])
    if rows:
        body.append(table(["class", "attribute", Raw("r<sub>j,c</sub>"), "direction", "maximum activating samples (#index, φ_j)",
                           "AM+PI outcomes (ratio to the MAS)"], rows, numeric=[2]))
    else:
        body.append("<p>No pair is above the threshold.</p>")

    body.append("<h2 id=\"classes\">Classes: every pair and maximum activating sample</h2>")
    low, high = data["dataset"]["value_range"]
    body.append(
        "<div class=\"legend\"><div>" + _colour_bar("input", (f"{low:g}", f"{high:g}")) +
        f" the data's fixed range [{low:g}, {high:g}]: MAS, AM+PI, d(Φ) and ablation tiles (AM+PI is not rescaled: "
        "pixels outside the range are drawn black or white).</div><div>" + _colour_bar("difference", ("−s", "0", "+s")) +
        " attribution and difference maps: red positive, blue negative; s, printed under each map, is its largest magnitude.</div></div>")
    kinds = [k for k in TILE_KINDS if any(k in m["tiles"] for p in data["pairs"] for m in p["mas"])]
    by_class: dict[int, list[dict[str, Any]]] = {}
    for pair in data["pairs"]:
        by_class.setdefault(pair["class"], []).append(pair)
    never = set(data["subset"]["classes_never_predicted"])
    for c, name in enumerate(names):
        pairs = by_class.get(c, [])
        body.append(f"<h3 id=\"{class_anchor(c)}\">{_class_title(c, name)}</h3>")
        if not pairs:
            reason = "g never predicted it in S<sub>rnd</sub>" if c in never else f"no attribute has r<sub>j,c</sub> &gt; {params['threshold']:g}"
            body.append(f"<p class=\"meta\">No pair: {reason}.</p>")
            continue
        figure = data["figures"]["classes"].get(str(c))
        body.append(f"<p class=\"meta\">{len(pairs)} pair(s): " + ", ".join(
            f"{link('#' + p['anchor'], 'φ' + str(p['attribute']))} (r = {p['relevance']:.2f}, {_direction_text(p['direction'])})" for p in pairs)
            + (f". The same panels as one figure: {link(figure, figure)}" if figure else "") + ".</p>")
        body.append(_tile_table(pairs, kinds, scales, names, attribution, (low, high)))

    body.append("<h2 id=\"samples\">Per-sample relevance</h2>")
    body.append(image(data["figures"]["sample_relevance"], "per-sample relevance"))
    body.append("<h2 id=\"overview\">All attributes</h2>")
    body.append(image(data["figures"]["attribute_overview"], "attribute overview"))
    body.append("<h2 id=\"parameters\">Parameters</h2>")
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


def _save(item: Any, path: Path) -> None:
    """Save a figure (through this module's ``save_figure``) or an :class:`ImageTile`."""
    if isinstance(item, ImageTile):
        item.save(path)
    else:
        save_figure(item, path)


def write_global_report(result: GlobalInterpretation, checkpoint: Checkpoint, output_dir: str | Path, force: bool = False,
                        group: ProcessGroup = SINGLE_PROCESS) -> dict[str, Any]:
    """Write the whole report into ``output_dir`` atomically and return the JSON data.

    ``output_dir`` must be new, empty, or hold only a global report (:data:`LAYOUT`) of this checkpoint (of any
    with ``force``); this is checked first and again when the new folder is moved into place. Under ``torchrun``
    every rank calls it: the figures are drawn by all of them and rank 0 alone writes the folder
    (:func:`~flint_analysis.report_writers.common.write_report_folder`).
    """
    spec = checkpoint.dataset
    config = result.config

    def content() -> ReportContent:
        data = global_report_data(result, checkpoint)
        plotted = result.plotted_rows
        figures: dict[str, Callable[[], Any]] = {
            "relevance_heatmap.png": lambda: plot_relevance_heatmap(result.relevance, result.pairs, spec.class_names, config.threshold),
            "sample_relevance.png": lambda: plot_sample_relevance(result.sample_relevances[plotted], result.subset.labels[plotted],
                                                                  spec.class_names),
            "attribute_overview.png": lambda: plot_attribute_overview(result.overview, result.relevance, spec.class_names,
                                                                      spec.value_range, config.threshold, result.pairs),
        }
        for class_index, analyses in _class_groups(result).items():
            figures[class_figure_name(class_index, spec.class_names[class_index])] = (
                lambda analyses=analyses: plot_class_grid(analyses, spec.class_names, spec.value_range, config.attribution))
        scales: dict[tuple[str, int], dict[str, float]] = {}
        for analysis, pair in zip(result.analyses, data["pairs"]):
            for k, sample in enumerate(pair["mas"]):
                scales[(pair["anchor"], k)] = tile_scales(analysis, k)
                tiles = pair_tiles(analysis, k, spec.value_range)
                for kind, path in sample["tiles"].items():
                    figures[path] = lambda tile=tiles[kind]: tile
        headline = result.am_pi_summary().headline()
        return ReportContent(data=data, html=_index_html(data, headline, scales), figures=figures,
                             folders=("classes", TILES_FOLDER), arrays=global_arrays(result, spec.input_shape))

    return write_report_folder(output_dir, LAYOUT, checkpoint.sha256, force, content, save=_save, group=group)
