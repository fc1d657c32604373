"""Figures. Every function takes computed results and returns a ``matplotlib.figure.Figure``.

Figures are built without pyplot (no global figure state, headless by construction) and saved by the
report writers with :func:`save_figure`.
"""

from flint_analysis.plots.style import save_figure

__all__ = ["save_figure"]
