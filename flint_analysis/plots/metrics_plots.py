"""Figures of ``flint-analyze metrics``: confusion matrix, CNS and top-k curves, per-class fidelity."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure

from flint_analysis.metrics import ModelMetrics
from flint_analysis.plots.style import ACCENT_COLOR, FONT_SIZE, new_figure, plain_text

_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


@plain_text
def plot_confusion(metrics: ModelMetrics, class_names: Sequence[str], title: str) -> Figure:
    """The f-versus-g confusion matrix (rows f's class, columns g's), counts annotated."""
    size = len(class_names)
    figure = new_figure(2.2 + 0.55 * size, 1.8 + 0.5 * size)
    ax = figure.add_subplot()
    sns.heatmap(metrics.confusion, ax=ax, annot=True, fmt="d", cmap="Blues", cbar=False, square=True,
                annot_kws={"fontsize": FONT_SIZE}, xticklabels=class_names, yticklabels=class_names, linewidths=0.3)
    ax.set_xlabel("g's class", fontsize=FONT_SIZE + 1)
    ax.set_ylabel("f's class", fontsize=FONT_SIZE + 1)
    ax.tick_params(labelsize=FONT_SIZE)
    ax.set_title(f"{title}: f vs g (fidelity {metrics.fidelity:.2f}%)", fontsize=FONT_SIZE + 1)
    return figure


def _curves(curves: Mapping[str, Mapping[float, float]], xlabel: str, ylabel: str, title: str, integer_x: bool = False,
            labels: Mapping[str, str] | None = None, greyed: Collection[str] = (), reference: float | None = None,
            reference_label: str = "") -> Figure:
    """One line per model on shared axes; models in ``greyed`` are drawn grey and dashed, ``labels`` name the legend entries."""
    figure = new_figure(5.6, 3.6)
    ax = figure.add_subplot()
    for (name, curve), marker in zip(curves.items(), _MARKERS * 10):
        xs = sorted(curve)
        style = {"color": "#9a9a9a", "linestyle": "--", "alpha": 0.9} if name in greyed else {}
        ax.plot(xs, [curve[x] for x in xs], marker=marker, label=(labels or {}).get(name, name), **style)
    if reference is not None:
        ax.axhline(reference, color="#555555", linewidth=0.8, linestyle=":", label=reference_label)
    if integer_x:
        ax.set_xticks(sorted({x for curve in curves.values() for x in curve}))
    ax.set_xlabel(xlabel, fontsize=FONT_SIZE + 1)
    ax.set_ylabel(ylabel, fontsize=FONT_SIZE + 1)
    ax.tick_params(labelsize=FONT_SIZE)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=FONT_SIZE)
    ax.set_title(title, fontsize=FONT_SIZE + 1)
    return figure


@plain_text
def plot_conciseness(curves: Mapping[str, Mapping[float, float]], labels: Mapping[str, str] | None = None,
                     greyed: Collection[str] = ()) -> Figure:
    """``CNS_g(τ)`` against τ for one or more models on one figure (paper Fig. 3–4).

    Args:
        curves: model name → {τ: CNS_g(τ)}; only the models to draw.
        labels: model name → legend text (e.g. with g's accuracy).
        greyed: models drawn grey and dashed (g at chance, drawn on request only).
    """
    return _curves(curves, "τ (an attribute counts when r > 1/τ)", "CNS_g: mean relevant attributes",
                   "conciseness of g's interpretations (lower is more concise;\nbelow 1: samples with no relevant attribute)",
                   labels=labels, greyed=greyed, reference=1.0, reference_label="1 attribute per sample")


@plain_text
def plot_topk(curves: Mapping[str, Mapping[int, float]], labels: Mapping[str, str] | None = None, greyed: Collection[str] = ()) -> Figure:
    """Top-k fidelity (share of samples whose f-class is in g's top k) against k; arguments as :func:`plot_conciseness`."""
    return _curves(curves, "k", "top-k fidelity (%)", "f's class within g's top-k classes", integer_x=True,
                   labels=labels, greyed=greyed)


@plain_text
def plot_per_class_fidelity(metrics: ModelMetrics, class_names: Sequence[str], title: str) -> Figure:
    """Fidelity among the samples f assigns to each class."""
    figure = new_figure(1.5 + 0.45 * len(class_names), 2.8)
    ax = figure.add_subplot()
    values = np.nan_to_num(metrics.per_class_fidelity, nan=0.0)
    ax.bar(np.arange(len(class_names)), values, color=ACCENT_COLOR)
    for x, (value, count) in enumerate(zip(metrics.per_class_fidelity, metrics.per_class_counts)):
        ax.text(x, (0.0 if count == 0 else float(value)) + 1.5, "n/a" if count == 0 else f"{value:.0f}", ha="center", va="bottom",
                fontsize=FONT_SIZE)
    ax.set_xticks(np.arange(len(class_names)))
    ax.set_xticklabels(class_names, rotation=45 if max(map(len, class_names)) > 3 else 0, ha="right" if max(map(len, class_names)) > 3 else "center",
                       fontsize=FONT_SIZE)
    ax.set_ylim(0, 112)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("fidelity (%)", fontsize=FONT_SIZE + 1)
    ax.set_title(f"{title}: fidelity per f-class", fontsize=FONT_SIZE + 1)
    return figure
