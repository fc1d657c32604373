"""Figures of the global interpretation: relevance heat map, per-sample relevances, class grids, overview.

The global page lays the class grids out as HTML tables of small tiles (:func:`pair_tiles`); the per-class
PNG (:func:`plot_class_grid`) holds the same panels in one figure, for slides and papers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import seaborn as sns
from matplotlib.patches import Patch, Rectangle
from matplotlib.figure import Figure
from torch import Tensor

from flint_analysis.global_interpretation import AttributeOverview, PairAnalysis
from flint_analysis.relevance import ClassAttributePair, ClassAttributeRelevance
from flint_analysis.plots.style import ACCENT_COLOR, FONT_SIZE, ImageTile, new_figure, plain_text, show_image, signed_limit
from flint_analysis.plots.tool_panels import draw_panels, tool_panel_names, tool_panels

NEGATIVE_HATCH = "////"
"""Hatching of heat-map boxes of pairs relevant through φ_j < 0."""

TILE_KINDS = ("mas", "am_pi", "attribution", "decoder", "ablation", "difference")
"""The tiles of one (pair, MAS) row of the global page, in column order."""


@plain_text
def plot_relevance_heatmap(
    relevance: ClassAttributeRelevance, pairs: Sequence[ClassAttributePair], class_names: Sequence[str], threshold: float
) -> Figure:
    """``r_{j,c}`` as attributes × classes (the paper's Fig. 20), selected pairs boxed and labelled.

    Pairs relevant through φ_j < 0 (``w_{j,c} < 0``) are hatched and their label carries a "−" after
    the value; a legend line says so. Classes g never predicted are left blank and marked as such.
    """
    values = relevance.relevance.numpy().T  # (J, C)
    num_attributes, num_classes = values.shape
    never = set(relevance.never_predicted)
    mask = np.zeros_like(values, dtype=bool)
    mask[:, sorted(never)] = True
    labels = np.full(values.shape, "", dtype=object)
    for pair in pairs:
        labels[pair.attribute, pair.class_index] = f"{pair.relevance:.2f}" + ("−" if pair.direction < 0 else "")
    long_names = max((len(n) for n in class_names), default=0) > 3
    figure = new_figure(1.6 + 0.62 * num_classes, 2.0 + 0.3 * num_attributes + (0.09 * min(max(len(n) for n in class_names), 24) if long_names else 0))
    ax = figure.add_subplot()
    sns.heatmap(values, mask=mask, ax=ax, cmap="RdBu_r", center=0.0, vmin=-1.0, vmax=1.0, annot=labels, fmt="",
                annot_kws={"fontsize": FONT_SIZE}, linewidths=0.3, linecolor="#eeeeee",
                cbar_kws={"label": "r(j,c)", "shrink": 0.6})
    negative_cells = {(pair.class_index + 0.5, pair.attribute + 0.5) for pair in pairs if pair.direction < 0}
    for pair in pairs:
        negative = pair.direction < 0
        ax.add_patch(Rectangle((pair.class_index, pair.attribute), 1, 1, fill=False, edgecolor="black",
                               linewidth=1.2, hatch=NEGATIVE_HATCH if negative else None))
    for text in ax.texts:  # the hatched boxes' values stay readable on a white label
        if tuple(float(v) for v in text.get_position()) in negative_cells:
            text.set_color("black")
            text.set_bbox({"facecolor": "white", "edgecolor": "none", "pad": 1.0, "alpha": 0.9})
            text.set_zorder(5)
    ax.set_xticks(np.arange(num_classes) + 0.5)
    ax.set_xticklabels([f"{name}\n(never predicted)" if c in never else name for c, name in enumerate(class_names)],
                       rotation=45 if long_names else 0, ha="right" if long_names else "center",
                       rotation_mode="anchor" if long_names else "default", fontsize=FONT_SIZE)
    ax.set_yticks(np.arange(num_attributes) + 0.5)
    ax.set_yticklabels([f"φ{j}" for j in range(num_attributes)], rotation=0, fontsize=FONT_SIZE)
    ax.set_xlabel("class c (g's prediction)", fontsize=FONT_SIZE)
    ax.set_ylabel("attribute j", fontsize=FONT_SIZE)
    ax.set_title(f"class-attribute relevance r(j,c); boxed: r(j,c) > {threshold:g} ({len(pairs)} pairs)", fontsize=FONT_SIZE + 1)
    handles = [Patch(facecolor="white", edgecolor="black", label="relevant through φ_j > 0 (w_jc > 0)"),
               Patch(facecolor="white", edgecolor="black", hatch=NEGATIVE_HATCH, label="relevant through φ_j < 0 (w_jc < 0), value marked −")]
    figure.legend(handles=handles, loc="outside lower center", ncols=1, fontsize=FONT_SIZE, frameon=False)
    return figure


@plain_text
def plot_sample_relevance(values: Tensor, labels: Tensor, class_names: Sequence[str]) -> Figure:
    """``r_{j,ĉ,x}`` for samples grouped by true class (the paper's Fig. 21): attributes × samples."""
    data = values.numpy().T
    num_attributes, num_samples = data.shape
    figure = new_figure(2.0 + 0.09 * num_samples, 1.6 + 0.25 * num_attributes)
    ax = figure.add_subplot()
    sns.heatmap(data, ax=ax, cmap="RdBu_r", center=0.0, vmin=-1.0, vmax=1.0, xticklabels=False,
                cbar_kws={"label": "r(j,ĉ,x)", "shrink": 0.6})
    label_list = labels.tolist()
    boundaries = [i for i in range(1, num_samples) if label_list[i] != label_list[i - 1]]
    for x in boundaries:
        ax.axvline(x, color="black", linewidth=0.8)
    starts = [0] + boundaries
    ends = boundaries + [num_samples]
    long_names = max((len(n) for n in class_names), default=0) > 3
    ax.set_xticks([(s + e) / 2 for s, e in zip(starts, ends)])
    ax.set_xticklabels([class_names[label_list[s]] for s in starts], fontsize=FONT_SIZE, rotation=30 if long_names else 0,
                       ha="right" if long_names else "center", rotation_mode="anchor" if long_names else "default")
    ax.set_yticks(np.arange(num_attributes) + 0.5)
    ax.set_yticklabels([f"φ{j}" for j in range(num_attributes)], rotation=0, fontsize=FONT_SIZE - 1)
    ax.set_xlabel("samples of S_rnd, grouped by true class", fontsize=FONT_SIZE)
    ax.set_title(f"relevance of each attribute for g's prediction, {num_samples} random samples", fontsize=FONT_SIZE + 1)
    return figure


def pair_tiles(analysis: PairAnalysis, run: int, value_range: tuple[float, float]) -> dict[str, ImageTile]:
    """The tiles of MAS ``run`` of a pair, by :data:`TILE_KINDS` name (only the tools that ran).

    The MAS, AM+PI and decoder tiles are drawn on the data's fixed ``value_range`` (AM+PI is not rescaled);
    the attribution and difference maps on ``±`` their own :func:`~flint_analysis.plots.style.signed_limit`,
    which the page prints under each.
    """
    tools = analysis.tools
    tiles = {"mas": ImageTile(analysis.images[run], "input", value_range),
             "am_pi": ImageTile(tools.am_pi.images[run], "am_pi", value_range)}
    if tools.attribution is not None:
        tiles["attribution"] = ImageTile(tools.attribution.maps[run], "attribution")
    if tools.decoder is not None:
        tiles["decoder"] = ImageTile(tools.decoder.with_attribute[run], "decoder", value_range)
        tiles["ablation"] = ImageTile(tools.decoder.without_attribute[run], "decoder", value_range)
        tiles["difference"] = ImageTile(tools.decoder.difference[run], "difference")
    return tiles


def tile_scales(analysis: PairAnalysis, run: int) -> dict[str, float]:
    """The ``±`` colour scale of the signed tiles of MAS ``run`` (see :func:`pair_tiles`), by tile name."""
    tools = analysis.tools
    scales = {}
    if tools.attribution is not None:
        scales["attribution"] = signed_limit(tools.attribution.maps[run])
    if tools.decoder is not None:
        scales["difference"] = signed_limit(tools.decoder.difference[run])
    return scales


@plain_text
def plot_class_grid(
    analyses: Sequence[PairAnalysis], class_names: Sequence[str], value_range: tuple[float, float], attribution_name: str | None
) -> Figure:
    """One row per class-attribute pair of a class; per MAS: input, AM+PI, attribution, decoder pair."""
    per_mas = ["input"] + tool_panel_names(analyses[0].tools, attribution_name, difference=False)
    n_mas = max(len(a.mas.indices) for a in analyses)
    columns = n_mas * len(per_mas)
    figure = new_figure(0.9 + 1.1 * columns, 0.6 + 1.45 * len(analyses))
    grid = figure.add_gridspec(len(analyses), columns, wspace=0.06, hspace=0.12)
    for row, analysis in enumerate(analyses):
        pair = analysis.pair
        for k in range(n_mas):
            axes = [figure.add_subplot(grid[row, k * len(per_mas) + p]) for p in range(len(per_mas))]
            if k >= len(analysis.mas.indices):
                for ax in axes:
                    ax.axis("off")
                continue
            phi = float(analysis.mas.activations[k])
            label = int(analysis.mas.labels[k])
            note = "" if label == pair.class_index else f"\nlabel {class_names[label]}"
            show_image(axes[0], analysis.images[k], "input", value_range, f"#{int(analysis.mas.indices[k])} φ={phi:.2f}{note}")
            draw_panels(axes[1:], tool_panels(analysis.tools, k, None, attribution_name, titles=row == 0), value_range)
            if k == 0:
                sign = "" if pair.direction > 0 else "\n(via φ<0)"
                axes[0].set_ylabel(f"φ{pair.attribute}\nr={pair.relevance:.2f}{sign}", fontsize=FONT_SIZE + 1, rotation=0,
                                   ha="right", va="center", labelpad=12, color=ACCENT_COLOR)
    name = class_names[analyses[0].pair.class_index]
    figure.suptitle(f"class {name}: {len(analyses)} relevant attribute(s), {n_mas} maximum activating samples each\n"
                    f"AM+PI drawn on the data's range [{value_range[0]:g}, {value_range[1]:g}], not rescaled; "
                    "✓ reached the MAS's own φ_j, ⚠ saturated, ✗ did not", fontsize=FONT_SIZE + 2)
    return figure


@plain_text
def plot_attribute_overview(
    overview: AttributeOverview, relevance: ClassAttributeRelevance, class_names: Sequence[str],
    value_range: tuple[float, float], threshold: float, pairs: Sequence[ClassAttributePair] | None = None,
) -> Figure:
    """Every attribute's top activating samples (any class), with the classes it is relevant for.

    An attribute relevant to a selected pair through φ_j < 0 is shown by its *most negative* samples, in a
    row labelled so (and by its largest too when it is relevant through both signs). With ``pairs`` (the
    selected pairs) each row lists the classes of the pairs of its direction; without, every class with
    ``r_{j,c} > threshold``.
    """
    num_attributes, k = overview.indices.shape
    rows = [(j, direction) for j in range(num_attributes) for direction in overview.shown_directions(j)]
    long_names = max((len(n) for n in class_names), default=0) > 3
    figure = new_figure(3.4 + 1.05 * k, 0.45 + (1.45 if long_names else 1.15) * len(rows))
    grid = figure.add_gridspec(len(rows), k + 1, width_ratios=[1.0] * k + [2.4], wspace=0.05, hspace=0.35)
    values = relevance.relevance
    for row, (j, direction) in enumerate(rows):
        _, activations, labels, images = overview.samples(j, direction)
        for i in range(k):
            ax = figure.add_subplot(grid[row, i])
            separator = "\n" if long_names else " "
            show_image(ax, images[i], "input", value_range)
            ax.set_title(f"{class_names[int(labels[i])]}{separator}φ={float(activations[i]):.2f}", fontsize=FONT_SIZE, pad=2)
            if i == 0:
                ax.set_ylabel(f"φ{j}" + ("" if direction > 0 else "\nmost\nnegative"), fontsize=FONT_SIZE + 1, rotation=0,
                              ha="right", va="center", labelpad=10, color="black" if direction > 0 else ACCENT_COLOR)
        text_ax = figure.add_subplot(grid[row, k])
        text_ax.axis("off")
        column = values[:, j]
        if pairs is None:
            relevant = [(c, float(column[c])) for c in range(len(class_names)) if float(column[c]) > threshold and relevance.counts[c] > 0]
        else:
            relevant = [(p.class_index, p.relevance) for p in pairs if p.attribute == j and (p.direction < 0) == (direction < 0)]
        relevant.sort(key=lambda item: -item[1])
        title = "most negative φ_j: relevant\nthrough φ_j < 0 for:" if direction < 0 else "largest φ_j; relevant for:"
        text = title + "\n" + ("\n".join(f"{class_names[c]} ({r:.2f})" for c, r in relevant[:4]) if relevant else "no class")
        text_ax.text(0.02, 0.5, text, fontsize=FONT_SIZE, va="center", ha="left", color="black" if direction > 0 else ACCENT_COLOR)
    figure.suptitle("attribute overview: the pool's samples with the largest φ_j (the most negative for attributes "
                    "relevant through φ_j < 0)", fontsize=FONT_SIZE + 2)
    return figure
