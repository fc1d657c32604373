"""Figures of the global interpretation: relevance heat map, per-sample relevances, class grids, overview."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import seaborn as sns
from matplotlib.patches import Rectangle
from matplotlib.figure import Figure

from flint_analysis.global_interpretation import AttributeOverview, PairAnalysis
from flint_analysis.relevance import ClassAttributePair, ClassAttributeRelevance
from flint_analysis.plots.style import ACCENT_COLOR, FONT_SIZE, new_figure, plain_text, show_image
from flint_analysis.plots.tool_panels import draw_panels, tool_panel_names, tool_panels
from torch import Tensor


@plain_text
def plot_relevance_heatmap(
    relevance: ClassAttributeRelevance, pairs: Sequence[ClassAttributePair], class_names: Sequence[str], threshold: float
) -> Figure:
    """``r_{j,c}`` as attributes × classes (the paper's Fig. 20), selected pairs boxed and labelled.

    Classes g never predicted are left blank and marked as such.
    """
    values = relevance.relevance.numpy().T  # (J, C)
    num_attributes, num_classes = values.shape
    never = set(relevance.never_predicted)
    mask = np.zeros_like(values, dtype=bool)
    mask[:, sorted(never)] = True
    labels = np.full(values.shape, "", dtype=object)
    for pair in pairs:
        labels[pair.attribute, pair.class_index] = f"{pair.relevance:.2f}"
    figure = new_figure(1.4 + 0.55 * num_classes, 1.2 + 0.28 * num_attributes)
    ax = figure.add_subplot()
    sns.heatmap(values, mask=mask, ax=ax, cmap="RdBu_r", center=0.0, vmin=-1.0, vmax=1.0, annot=labels, fmt="",
                annot_kws={"fontsize": FONT_SIZE - 2}, linewidths=0.3, linecolor="#eeeeee",
                cbar_kws={"label": "r(j,c)", "shrink": 0.6})
    for pair in pairs:
        ax.add_patch(Rectangle((pair.class_index, pair.attribute), 1, 1, fill=False, edgecolor="black", linewidth=1.2))
    ax.set_xticks(np.arange(num_classes) + 0.5)
    ax.set_xticklabels([f"{name}\n(never predicted)" if c in never else name for c, name in enumerate(class_names)],
                       rotation=45 if max(len(n) for n in class_names) > 3 else 0, ha="right" if max(len(n) for n in class_names) > 3 else "center",
                       fontsize=FONT_SIZE)
    ax.set_yticks(np.arange(num_attributes) + 0.5)
    ax.set_yticklabels([f"φ{j}" for j in range(num_attributes)], rotation=0, fontsize=FONT_SIZE - 1)
    ax.set_xlabel("class c (g's prediction)", fontsize=FONT_SIZE)
    ax.set_ylabel("attribute j", fontsize=FONT_SIZE)
    ax.set_title(f"class-attribute relevance r(j,c); boxed: r(j,c) > {threshold:g} ({len(pairs)} pairs)", fontsize=FONT_SIZE + 1)
    return figure


@plain_text
def plot_sample_relevance(values: Tensor, labels: Tensor, class_names: Sequence[str]) -> Figure:
    """``r_{j,ĉ,x}`` for samples grouped by true class (the paper's Fig. 21): attributes × samples."""
    data = values.numpy().T
    num_attributes, num_samples = data.shape
    figure = new_figure(2.0 + 0.09 * num_samples, 1.2 + 0.25 * num_attributes)
    ax = figure.add_subplot()
    sns.heatmap(data, ax=ax, cmap="RdBu_r", center=0.0, vmin=-1.0, vmax=1.0, xticklabels=False,
                cbar_kws={"label": "r(j,ĉ,x)", "shrink": 0.6})
    label_list = labels.tolist()
    boundaries = [i for i in range(1, num_samples) if label_list[i] != label_list[i - 1]]
    for x in boundaries:
        ax.axvline(x, color="black", linewidth=0.8)
    starts = [0] + boundaries
    ends = boundaries + [num_samples]
    ax.set_xticks([(s + e) / 2 for s, e in zip(starts, ends)])
    ax.set_xticklabels([class_names[label_list[s]] for s in starts], fontsize=FONT_SIZE - 1, rotation=0)
    ax.set_yticks(np.arange(num_attributes) + 0.5)
    ax.set_yticklabels([f"φ{j}" for j in range(num_attributes)], rotation=0, fontsize=FONT_SIZE - 1)
    ax.set_xlabel("samples of S_rnd, grouped by true class", fontsize=FONT_SIZE)
    ax.set_title(f"relevance of each attribute for g's prediction, {num_samples} random samples", fontsize=FONT_SIZE + 1)
    return figure


@plain_text
def plot_class_grid(
    analyses: Sequence[PairAnalysis], class_names: Sequence[str], value_range: tuple[float, float], attribution_name: str | None
) -> Figure:
    """One row per class-attribute pair of a class; per MAS: input, AM+PI, attribution, decoder pair."""
    per_mas = ["input"] + tool_panel_names(analyses[0].tools, attribution_name, difference=False)
    n_mas = max(len(a.mas.indices) for a in analyses)
    columns = n_mas * len(per_mas)
    figure = new_figure(0.9 + 1.05 * columns, 0.35 + 1.3 * len(analyses))
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
            note = "" if label == pair.class_index else f" (label {class_names[label]})"
            show_image(axes[0], analysis.images[k], "input", value_range, f"#{int(analysis.mas.indices[k])} φ={phi:.2f}{note}")
            draw_panels(axes[1:], tool_panels(analysis.tools, k, None, attribution_name, titles=row == 0), value_range)
            if k == 0:
                sign = "" if pair.direction > 0 else "\n(via φ<0)"
                axes[0].set_ylabel(f"φ{pair.attribute}\nr={pair.relevance:.2f}{sign}", fontsize=FONT_SIZE + 1, rotation=0,
                                   ha="right", va="center", labelpad=12, color=ACCENT_COLOR)
    name = class_names[analyses[0].pair.class_index]
    figure.suptitle(f"class {name}: {len(analyses)} relevant attribute(s), {n_mas} maximum activating samples each "
                    "(AM+PI outputs scaled to their own range; ✗: AM+PI did not raise the attribute)", fontsize=FONT_SIZE + 2)
    return figure


@plain_text
def plot_attribute_overview(
    overview: AttributeOverview, relevance: ClassAttributeRelevance, class_names: Sequence[str],
    value_range: tuple[float, float], threshold: float,
) -> Figure:
    """Every attribute's top activating samples (any class), with the classes it is relevant for."""
    num_attributes, k = overview.indices.shape
    figure = new_figure(2.6 + 1.0 * k, 0.3 + 1.15 * num_attributes)
    grid = figure.add_gridspec(num_attributes, k + 1, width_ratios=[1.0] * k + [1.8], wspace=0.05, hspace=0.25)
    for j in range(num_attributes):
        for i in range(k):
            ax = figure.add_subplot(grid[j, i])
            show_image(ax, overview.images[j, i], "input", value_range,
                       f"{class_names[int(overview.labels[j, i])]} φ={float(overview.activations[j, i]):.2f}")
            if i == 0:
                ax.set_ylabel(f"φ{j}", fontsize=FONT_SIZE + 1, rotation=0, ha="right", va="center", labelpad=10)
        text_ax = figure.add_subplot(grid[j, k])
        text_ax.axis("off")
        column = relevance.relevance[:, j]
        relevant = [(c, float(column[c])) for c in range(len(class_names)) if float(column[c]) > threshold and relevance.counts[c] > 0]
        relevant.sort(key=lambda item: -item[1])
        text = "relevant for:\n" + ("\n".join(f"{class_names[c]} ({r:.2f})" for c, r in relevant[:4]) if relevant else "no class")
        text_ax.text(0.02, 0.5, text, fontsize=FONT_SIZE - 1, va="center", ha="left")
    figure.suptitle("attribute overview: most activating samples of S_rnd for each attribute", fontsize=FONT_SIZE + 2)
    return figure
