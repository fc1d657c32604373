"""Shared styling: a light, consistent look and image panels for inputs, attributions and reconstructions.

Texts are plain text, never matplotlib mathtext: class names, checkpoint names and file names reach titles,
tick labels and legends, and a name such as ``$\\frac{$`` must be drawn as written, not parsed (it would
crash the figure). Every figure function is wrapped in :func:`plain_text` and :func:`save_figure` draws
under the same setting, so texts created late (ticks made while drawing) are plain as well.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text
from torch import Tensor

DPI = 110
FONT_SIZE = 8
POSITIVE_IMAGE_KINDS = ("input", "am_pi", "decoder")
SIGNED_IMAGE_KINDS = ("attribution", "difference")
FAILURE_COLOR = "#b2182b"
ACCENT_COLOR = "#2166ac"


PLAIN_TEXT = {"text.parse_math": False}
"""Matplotlib settings under which figures are built and drawn: ``$`` is a dollar sign, not mathtext."""

_F = TypeVar("_F", bound=Callable[..., Figure])


def plain_text(function: _F) -> _F:
    """Build the figure of ``function`` with every text plain (see the module docstring)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        with mpl.rc_context(PLAIN_TEXT):
            figure = function(*args, **kwargs)
        for text in figure.findobj(Text):
            text.set_parse_math(False)
        return figure

    return wrapper  # type: ignore[return-value]


def new_figure(width: float, height: float) -> Figure:
    """A blank figure of ``width × height`` inches with the project's base font size."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    figure.set_facecolor("white")
    return figure


def _as_display(image: Tensor) -> np.ndarray:
    array = image.detach().cpu().float().numpy()
    if array.ndim == 3 and array.shape[0] == 1:
        return array[0]
    if array.ndim == 3:
        return np.transpose(array, (1, 2, 0))
    return array


def show_image(ax: Axes, image: Tensor, kind: str = "input", value_range: tuple[float, float] = (0.0, 1.0), title: str | None = None,
               title_color: str = "black") -> None:
    """Draw a ``(C, H, W)`` image in ``ax``.

    ``input``/``decoder`` images use gray (or RGB) scaled to the data's value range; ``am_pi`` outputs,
    which the optimisation drives outside that range, are scaled to their own minimum and maximum;
    ``attribution``/``difference`` maps are summed over channels and drawn with a diverging colour map
    centred on 0, symmetric around the largest magnitude.
    """
    if kind in SIGNED_IMAGE_KINDS:
        data = image.detach().cpu().float().sum(dim=0).numpy() if image.ndim == 3 else image.detach().cpu().float().numpy()
        limit = float(np.abs(data).max()) or 1.0
        ax.imshow(data, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    else:
        low, high = value_range
        data = _as_display(image)
        if kind == "am_pi":
            low, high = float(data.min()), float(data.max())
            high = high if high > low else low + 1.0
        if data.ndim == 3:
            ax.imshow(np.clip((data - low) / (high - low), 0, 1), interpolation="nearest")
        else:
            ax.imshow(data, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("#bbbbbb")
        spine.set_linewidth(0.5)
    if title:
        ax.set_title(title, fontsize=FONT_SIZE - 1, color=title_color, pad=2)


def save_figure(figure: Figure, path: str | Path) -> None:
    """Save ``figure`` as PNG at the project's resolution, texts drawn as plain text."""
    with mpl.rc_context(PLAIN_TEXT):
        for text in figure.findobj(Text):
            text.set_parse_math(False)
        figure.savefig(path, dpi=DPI, facecolor="white")
