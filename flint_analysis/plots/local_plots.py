"""The figure of a local explanation: input, relevance bars, predictions, and the tools per top attribute."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from flint_analysis.local_interpretation import LocalExplanation
from flint_analysis.plots.style import ACCENT_COLOR, FAILURE_COLOR, FONT_SIZE, new_figure, plain_text, show_image
from flint_analysis.plots.tool_panels import draw_panels, tool_panel_names, tool_panels


@plain_text
def plot_local_explanation(
    explanation: LocalExplanation, class_names: Sequence[str], value_range: tuple[float, float], attribution_name: str | None
) -> Figure:
    """Input, ``r_{j,ĉ,x}`` bars (top attributes highlighted), f/g predictions; a row per top attribute."""
    top = explanation.top
    tools = tool_panel_names(top[0].tools, attribution_name, difference=True) if top else ["AM+PI"]
    columns = max(len(tools), 5)
    figure = new_figure(1.45 * columns + 1.0, 2.1 + 1.45 * len(top))
    grid = figure.add_gridspec(1 + len(top), columns + 1, width_ratios=[0.55] + [1.0] * columns, height_ratios=[1.35] + [1.0] * len(top))

    show_image(figure.add_subplot(grid[0, 1]), explanation.image, "input", value_range,
               "input" + ("" if explanation.label is None else f" (label {class_names[explanation.label]})"))
    bars = figure.add_subplot(grid[0, 2 : columns - 1])
    relevances = explanation.relevances.numpy()
    chosen = {item.attribute for item in top}
    colors = [ACCENT_COLOR if j in chosen else "#bbbbbb" for j in range(len(relevances))]
    bars.bar(np.arange(len(relevances)), relevances, color=colors, width=0.8)
    bars.axhline(0.0, color="black", linewidth=0.6)
    bars.set_xticks(np.arange(len(relevances)))
    bars.set_xticklabels([f"φ{j}" for j in range(len(relevances))], fontsize=FONT_SIZE - 2, rotation=90)
    bars.set_ylim(min(-0.1, float(relevances.min()) - 0.05), 1.08)
    bars.tick_params(axis="y", labelsize=FONT_SIZE - 1)
    bars.set_title(f"relevance r(j,ĉ,x) for ĉ = {class_names[explanation.explained_class]}", fontsize=FONT_SIZE + 1)
    for side in ("top", "right"):
        bars.spines[side].set_visible(False)

    text = figure.add_subplot(grid[0, columns - 1 :])
    text.axis("off")
    f_class, g_class = explanation.f_class, explanation.g_class
    lines = [
        f"f: {class_names[f_class]} ({100 * float(explanation.f_probabilities[f_class]):.1f}%)",
        f"g: {class_names[g_class]} ({100 * float(explanation.g_probabilities[g_class]):.1f}%)",
        "f and g agree" if explanation.agree else f"DISAGREE: f's class is g's #{explanation.f_rank_in_g}",
    ]
    if explanation.label is not None:
        lines.append(f"label: {class_names[explanation.label]}")
    text.text(0.0, 0.5, "\n".join(lines), fontsize=FONT_SIZE + 1, va="center", ha="left",
              color="black" if explanation.agree else FAILURE_COLOR)

    for row, item in enumerate(top, start=1):
        label_ax = figure.add_subplot(grid[row, 0])
        label_ax.axis("off")
        sign = "" if item.direction > 0 else "\n(via φ<0)"
        label_ax.text(1.0, 0.5, f"φ{item.attribute}{sign}\nr={item.relevance:.2f}\nφ={item.activation:.2f}\n"
                      f"rank {item.rank}/{item.class_size}", fontsize=FONT_SIZE, ha="right", va="center", color=ACCENT_COLOR)
        axes = [figure.add_subplot(grid[row, 1 + p]) for p in range(len(tools))]
        draw_panels(axes, tool_panels(item.tools, 0, item.attribute, attribution_name, difference=True), value_range)
    reason = "g's prediction" if explanation.explained_class == g_class else "the class asked about, not g's prediction"
    figure.suptitle(f"explaining ĉ = {class_names[explanation.explained_class]} ({reason}): top attributes with AM+PI, "
                    "attribution and decoder ablation", fontsize=FONT_SIZE + 2)
    return figure
