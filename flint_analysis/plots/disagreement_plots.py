"""Figures of ``flint-analyze disagreement``: worst cases per class and projection depths (paper Fig. 13–15)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from torch import Tensor

from flint_analysis.disagreement import ClassDepth, DisagreementCategory
from flint_analysis.plots.style import FAILURE_COLOR, FONT_SIZE, new_figure, plain_text, show_image


@plain_text
def plot_worst_cases(rows: Sequence[tuple[int, Tensor, Sequence[str]]], class_names: Sequence[str], value_range: tuple[float, float],
                     k: int) -> Figure:
    """One row per class: its disagreement samples whose f-class is outside g's top-k while f is right.

    Args:
        rows: ``(class, images (n, C, H, W), titles)`` per class.
    """
    columns = max(len(titles) for _, _, titles in rows)
    figure = new_figure(max(5.0, 1.2 + 1.05 * columns), 0.7 + 1.25 * len(rows))
    grid = figure.add_gridspec(len(rows), columns + 1, width_ratios=[0.6] + [1.0] * columns)
    for r, (c, images, titles) in enumerate(rows):
        label = figure.add_subplot(grid[r, 0])
        label.axis("off")
        label.text(1.0, 0.5, class_names[c], ha="right", va="center", fontsize=FONT_SIZE + 1)
        for i, title in enumerate(titles):
            show_image(figure.add_subplot(grid[r, i + 1]), images[i], "input", value_range, title)
    figure.suptitle(f"worst disagreements: f right (row = label = f's class),\nf's class not in g's top-{k}; titles give g's class",
                    fontsize=FONT_SIZE + 1)
    return figure


@plain_text
def plot_depths(depths: Sequence[ClassDepth], class_names: Sequence[str], space: str) -> Figure:
    """Per class: depth of random agreeing samples, then of the disagreement samples (paper Fig. 14)."""
    columns = min(3, len(depths))
    rows = -(-len(depths) // columns)
    figure = new_figure(3.4 * columns, 2.4 * rows + 0.4)
    for panel, depth in enumerate(depths):
        ax = figure.add_subplot(rows, columns, panel + 1)
        a = len(depth.agreeing_depth)
        ax.scatter(np.arange(1, a + 1), depth.agreeing_depth, s=9, color="#888888", label="agreeing")
        worst = depth.disagreeing_category == DisagreementCategory.OUTSIDE_TOP_K_F_CORRECT.code
        x = np.arange(a + 1, a + 1 + len(depth.disagreeing_depth))
        ax.scatter(x[~worst], depth.disagreeing_depth[~worst], s=22, color=FAILURE_COLOR, marker="o", label="disagreeing")
        ax.scatter(x[worst], depth.disagreeing_depth[worst], s=30, color=FAILURE_COLOR, marker="x", label="disagreeing, f right, outside top-k")
        ax.set_title(f"{class_names[depth.class_index]} (n={depth.reference_size}, d={depth.dimension})", fontsize=FONT_SIZE)
        ax.tick_params(labelsize=FONT_SIZE - 1)
        ax.set_xlabel("observation", fontsize=FONT_SIZE - 1)
        ax.set_ylabel("projection depth", fontsize=FONT_SIZE - 1)
        ax.grid(alpha=0.3)
        if panel == 0:
            ax.legend(fontsize=FONT_SIZE - 2, loc="upper right")
    figure.suptitle(f"projection depth w.r.t. the class's training samples ({space} space)", fontsize=FONT_SIZE + 2)
    return figure


@plain_text
def plot_depth_summary(depths: Sequence[ClassDepth], space: str, auc: float | None) -> Figure:
    """All classes pooled: distribution of depth for agreeing and disagreeing samples."""
    agreeing = np.concatenate([d.agreeing_depth for d in depths]) if depths else np.zeros(0)
    disagreeing = np.concatenate([d.disagreeing_depth for d in depths]) if depths else np.zeros(0)
    figure = new_figure(4.2, 3.2)
    ax = figure.add_subplot()
    values = np.r_[agreeing, disagreeing]
    groups = ["agreeing"] * len(agreeing) + ["disagreeing"] * len(disagreeing)
    sns.boxplot(x=groups, y=values, ax=ax, hue=groups, palette={"agreeing": "#bbbbbb", "disagreeing": FAILURE_COLOR},
                legend=False, fliersize=0, width=0.5)
    sns.stripplot(x=groups, y=values, ax=ax, color="black", size=2, alpha=0.5, jitter=0.2)
    ax.set_ylabel("projection depth", fontsize=FONT_SIZE + 1)
    ax.tick_params(labelsize=FONT_SIZE)
    ax.set_title(f"{space} space; AUC (low depth ⇒ disagreement) = {'n/a' if auc is None else f'{auc:.2f}'}", fontsize=FONT_SIZE + 1)
    return figure
