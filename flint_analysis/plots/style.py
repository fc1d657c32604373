"""Shared styling: a light, consistent look and image panels for inputs, attributions and reconstructions.

Texts are plain text, never matplotlib mathtext: class names, checkpoint names and file names reach titles,
tick labels and legends, and a name such as ``$\\frac{$`` must be drawn as written, not parsed (it would
crash the figure). Every figure function is wrapped in :func:`plain_text` and :func:`save_figure` draws
under the same setting, so texts created late (ticks made while drawing) are plain as well.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.text import Text
from torch import Tensor

DPI = 110
FONT_SIZE = 8
POSITIVE_IMAGE_KINDS = ("input", "am_pi", "decoder")
SIGNED_IMAGE_KINDS = ("attribution", "difference")
SIGNED_COLORMAP = "RdBu_r"
FAILURE_COLOR = "#b2182b"
SATURATED_COLOR = "#b35806"
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

    ``input``/``am_pi``/``decoder`` images use gray (or RGB) on the data's fixed value range: AM+PI outputs
    are *not* rescaled to their own minimum and maximum, so a faint output looks faint and pixels outside
    the range are drawn at its ends; ``attribution``/``difference`` maps are summed over channels and drawn
    with a diverging colour map centred on 0, symmetric around the largest magnitude (:func:`signed_limit`).
    """
    if kind in SIGNED_IMAGE_KINDS:
        data = _signed_data(image)
        limit = signed_limit(image)
        ax.imshow(data, cmap=SIGNED_COLORMAP, vmin=-limit, vmax=limit, interpolation="nearest")
    else:
        low, high = value_range
        data = _as_display(image)
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


def _signed_data(image: Tensor) -> np.ndarray:
    """A signed map summed over its channels: ``(C, H, W)`` → ``(H, W)``."""
    data = image.detach().cpu().float()
    return (data.sum(dim=0) if data.ndim == 3 else data).numpy()


def signed_limit(image: Tensor) -> float:
    """The colour scale of a signed map (attribution, difference): ``max |Σ_channels image|`` (1.0 for an all-zero map)."""
    return float(np.abs(_signed_data(image)).max()) or 1.0


def image_rgb(image: Tensor, kind: str, value_range: tuple[float, float] = (0.0, 1.0), limit: float | None = None) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 picture :func:`show_image` would draw for a ``(C, H, W)`` image, without matplotlib axes.

    Positive kinds (``input``, ``am_pi``, ``decoder``) are clipped to the fixed ``value_range``; signed kinds map
    ``[-limit, +limit]`` (default :func:`signed_limit`) through :data:`SIGNED_COLORMAP`.
    """
    if kind in SIGNED_IMAGE_KINDS:
        scale = signed_limit(image) if limit is None else float(limit)
        normalised = np.clip(_signed_data(image) / (2 * scale) + 0.5, 0.0, 1.0)
        rgba = mpl.colormaps[SIGNED_COLORMAP](normalised)
        return np.round(rgba[..., :3] * 255).astype(np.uint8)
    if kind not in POSITIVE_IMAGE_KINDS:
        raise ValueError(f"unknown image kind {kind!r}")
    low, high = value_range
    data = np.clip((_as_display(image) - low) / (high - low), 0.0, 1.0)
    if data.ndim == 2:
        data = np.repeat(data[..., None], 3, axis=2)
    return np.round(data * 255).astype(np.uint8)


@dataclass(frozen=True)
class ImageTile:
    """One small image saved as its own PNG (an HTML page lays the tiles out and labels them).

    Attributes:
        image: ``(C, H, W)``.
        kind: as in :func:`show_image`.
        value_range: the data's fixed range (positive kinds).
        limit: the colour scale of a signed kind (``None``: :func:`signed_limit`).
        pixels: the tile's longest side in pixels, reached by repeating pixels (nearest neighbour, no smoothing).
    """

    image: Tensor
    kind: str
    value_range: tuple[float, float] = (0.0, 1.0)
    limit: float | None = None
    pixels: int = 112

    def rgb(self) -> np.ndarray:
        """``(H·s, W·s, 3)`` uint8, ``s`` the integer factor that brings the longest side closest to ``pixels`` (at least 1)."""
        picture = image_rgb(self.image, self.kind, self.value_range, self.limit)
        factor = max(1, round(self.pixels / max(picture.shape[:2])))
        return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)

    def save(self, path: str | Path) -> None:
        """Write the tile as a PNG."""
        from PIL import Image

        Image.fromarray(self.rgb()).save(path, format="PNG")


def colormap_css(kind: str, stops: int = 11) -> str:
    """A CSS ``linear-gradient`` (left to right) of the colour map used for ``kind``: gray for positive kinds
    (low → high of the data range), :data:`SIGNED_COLORMAP` for signed ones (−limit → +limit)."""
    if kind in SIGNED_IMAGE_KINDS:
        colours = [to_hex(mpl.colormaps[SIGNED_COLORMAP](i / (stops - 1))) for i in range(stops)]
    else:
        colours = ["#000000", "#ffffff"]
    return f"linear-gradient(to right, {', '.join(colours)})"


def save_figure(figure: Figure, path: str | Path) -> None:
    """Save ``figure`` as PNG at the project's resolution, texts drawn as plain text."""
    with mpl.rc_context(PLAIN_TEXT):
        for text in figure.findobj(Text):
            text.set_parse_math(False)
        figure.savefig(path, dpi=DPI, facecolor="white")
