"""The figure of a local explanation and the thumbnails of its page.

The figure: the input, g's logit of ĉ split into the bias and the contributions ``α_j = φ_j w_{j,ĉ}`` (logit
units; ``r_{j,ĉ,x} = α_j / max|α|`` has the same bars on another scale), f's and g's predictions; then one row
per top attribute with the attribute tools under column titles, and a colour bar beside each signed map
(attribution, decoder difference: red adds to φ_j / to the drawing, blue removes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from flint_analysis.am_pi import AmPiOutcome
from flint_analysis.local_interpretation import AttributeExplanation, LocalExplanation
from flint_analysis.plots.style import (
    ACCENT_COLOR, FAILURE_COLOR, FONT_SIZE, SIGNED_IMAGE_KINDS, new_figure, plain_text, show_image,
)
from flint_analysis.plots.tool_panels import tool_panels


def column_titles(kinds: Sequence[str], attribution_name: str | None) -> list[str]:
    """Readable column titles for the panel kinds of :func:`~flint_analysis.plots.tool_panels.tool_panels`."""
    titles = {"am_pi": "AM+PI\n(started from x)", "attribution": f"attribution\n({attribution_name or 'input'} of φ_j)",
              "difference": "difference\nd(Φ) − ablation"}
    decoder = iter(["d(Φ)\n(decoder's drawing)", "ablation\nd(Φ) with φ_j = 0"])
    return [next(decoder) if kind == "decoder" else titles.get(kind, kind) for kind in kinds]


def _am_pi_caption(item: AttributeExplanation) -> tuple[str, str]:
    """AM+PI's numbers under its panel, and their colour (red unless it reached the sample's own φ_j without saturating)."""
    result = item.am_pi
    before, after = float(result.initial_activation[0]), float(result.final_activation[0])
    outcome = result.outcomes[0]
    return f"φ {before:.2f}→{after:.2f} {outcome.symbol}", "black" if outcome is AmPiOutcome.ACTIVATED else FAILURE_COLOR


def _attribute_label(item: AttributeExplanation) -> str:
    sign = "" if item.direction > 0 else "\nlow φ speaks\nfor ĉ (φ<0)"
    share = f"top {item.percentile:.0f} %" if item.percentile >= 10 else f"top {item.percentile:.1f} %"
    return f"φ{item.attribute}{sign}\nr = {item.relevance:.2f}\nα = {item.contribution:+.2f}\nφ = {item.activation:.2f}\n{share}"


@plain_text
def plot_local_explanation(
    explanation: LocalExplanation, class_names: Sequence[str], value_range: tuple[float, float], attribution_name: str | None
) -> Figure:
    """Input, g's logit of ĉ as bias + ``α_j`` bars (top attributes highlighted), f/g predictions; a row per top attribute."""
    top = explanation.top
    panels = [tool_panels(item.tools, 0, item.attribute, attribution_name, difference=True, titles=False) for item in top]
    kinds = [panel.kind for panel in panels[0]] if panels else ["am_pi"]
    columns = max(len(kinds), 5)
    figure = new_figure(1.6 * columns + 1.3, 2.4 + 1.55 * len(top))
    grid = figure.add_gridspec(1 + len(top), columns + 1, width_ratios=[0.8] + [1.0] * columns,
                               height_ratios=[1.5] + [1.0] * len(top))

    input_ax = figure.add_subplot(grid[0, 1])
    show_image(input_ax, explanation.image, "input", value_range, None)
    input_ax.set_title("input x" + ("" if explanation.label is None else f" (label {class_names[explanation.label]})"),
                       fontsize=FONT_SIZE)
    f_class, g_class = explanation.f_class, explanation.g_class
    lines = [f"f: {class_names[f_class]} ({100 * float(explanation.f_probabilities[f_class]):.1f} %)",
             f"g: {class_names[g_class]} ({100 * float(explanation.g_probabilities[g_class]):.1f} %)",
             "f and g agree" if explanation.agree else f"DISAGREE: f's class\nis g's #{explanation.f_rank_in_g}"]
    input_ax.set_xlabel("\n".join(lines), fontsize=FONT_SIZE, color="black" if explanation.agree else FAILURE_COLOR, labelpad=3)
    _contribution_bars(figure.add_subplot(grid[0, 2:]), explanation, class_names)

    titles = column_titles(kinds, attribution_name)
    for row, (item, row_panels) in enumerate(zip(top, panels), start=1):
        label_ax = figure.add_subplot(grid[row, 0])
        label_ax.axis("off")
        label_ax.text(1.0, 0.5, _attribute_label(item), fontsize=FONT_SIZE, ha="right", va="center", color=ACCENT_COLOR)
        for p, panel in enumerate(row_panels):
            ax = figure.add_subplot(grid[row, 1 + p])
            show_image(ax, panel.image, panel.kind, value_range, None)
            if row == 1:
                ax.set_title(titles[p], fontsize=FONT_SIZE)
            if panel.kind == "am_pi":
                caption, color = _am_pi_caption(item)
                ax.set_xlabel(caption, fontsize=FONT_SIZE, color=color, labelpad=2)
            if panel.kind in SIGNED_IMAGE_KINDS and ax.images:
                bar = figure.colorbar(ax.images[0], ax=ax, fraction=0.07, pad=0.03, shrink=0.9)
                bar.ax.tick_params(labelsize=FONT_SIZE - 0.5, length=2)
                bar.ax.yaxis.get_offset_text().set_fontsize(FONT_SIZE - 0.5)
    reason = "g's prediction" if explanation.explained_class == g_class else "the class asked about, not g's prediction"
    shown = (f"top {len(top)} of {explanation.qualifying} attributes with r > {explanation.relevance_threshold:g}"
             if top else f"no attribute has r > {explanation.relevance_threshold:g}")
    figure.suptitle(f"explaining ĉ = {class_names[explanation.explained_class]} ({reason}): {shown}", fontsize=FONT_SIZE + 2)
    return figure


def _contribution_bars(ax, explanation: LocalExplanation, class_names: Sequence[str]) -> None:  # type: ignore[no-untyped-def]
    """Bars of the bias ``b_ĉ`` and every ``α_j`` (logit units), the analysed attributes highlighted."""
    chosen = {item.attribute for item in explanation.top}
    if explanation.logits is None:
        values, bias = explanation.relevances.numpy(), None
    else:
        values, bias = explanation.logits.contributions[0].numpy(), float(explanation.logits.bias[0])
    count = len(values)
    positions = np.arange(count)
    colors = [ACCENT_COLOR if j in chosen else "#bbbbbb" for j in range(count)]
    ax.bar(positions, values, color=colors, width=0.8)
    labels = [str(j) for j in range(count)]
    if bias is not None:
        ax.bar([count + 0.6], [bias], color="#777777", width=0.8, hatch="//", edgecolor="white")
        positions = np.append(positions, count + 0.6)
        labels.append("bias")
    ax.axhline(0.0, color="black", linewidth=0.6)
    if explanation.logits is not None and len(values):
        limit = float(np.abs(values).max()) * explanation.relevance_threshold
        if limit > 0:
            ax.axhline(limit, color=ACCENT_COLOR, linewidth=0.7, linestyle="--",
                       label=f"threshold r = {explanation.relevance_threshold:g}")
            ax.legend(fontsize=FONT_SIZE, frameon=False, loc="best")
    step = 1 if count <= 30 else int(np.ceil(count / 30))
    shown = [k for k in range(len(positions)) if k % step == 0 or k == len(positions) - 1]
    ax.set_xticks(positions[shown])
    ax.set_xticklabels([labels[k] for k in shown], fontsize=FONT_SIZE)
    ax.set_xlabel("attribute j" + ("   (hatched: h's bias b_ĉ)" if bias is not None else ""), fontsize=FONT_SIZE)
    ax.tick_params(axis="y", labelsize=FONT_SIZE)
    name = class_names[explanation.explained_class]
    if explanation.logits is None:
        ax.set_title(f"relevance r(j,ĉ,x) for ĉ = {name}", fontsize=FONT_SIZE + 1)
    else:
        logit = float(explanation.logits.logit[0])
        ax.set_title(f"g's logit of {name} = {logit:.2f} = bias + Σ α_j,   α_j = φ_j · w_j,ĉ", fontsize=FONT_SIZE + 1)
        ax.set_ylabel("logit units", fontsize=FONT_SIZE)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def save_thumbnail(image: Tensor, value_range: tuple[float, float], path: str | Path, scale: int = 3) -> None:
    """Save a ``(C, H, W)`` image as a PNG of ``scale × `` its size (nearest neighbour), on the data's value range."""
    from PIL import Image

    low, high = value_range
    array = image.detach().cpu().float().numpy()
    array = np.clip((array - low) / (high - low), 0.0, 1.0)
    pixels = np.round(255.0 * (array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0)))).astype(np.uint8)
    picture = Image.fromarray(pixels)
    picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST).save(path, format="PNG")
