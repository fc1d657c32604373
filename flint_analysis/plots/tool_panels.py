"""The panels of the attribute tools (AM+PI, attribution, decoder ablation), laid out once for every figure.

Both the global class grids and the local report show, for one run (a sample and an attribute), the same
panels in the same order; :func:`tool_panels` lists them and :func:`draw_panels` draws them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from torch import Tensor

from flint_analysis.am_pi import AmPiOutcome, AmPiResult
from flint_analysis.attribute_tools import AttributeToolResults
from flint_analysis.plots.style import FAILURE_COLOR, SATURATED_COLOR, show_image


@dataclass(frozen=True)
class Panel:
    """One image panel: what to draw (``kind`` as in :func:`~flint_analysis.plots.style.show_image`) and its title."""

    kind: str
    image: Tensor
    title: str | None
    title_color: str = "black"


OUTCOME_COLORS = {AmPiOutcome.ACTIVATED: "black", AmPiOutcome.SATURATED: SATURATED_COLOR, AmPiOutcome.NOT_ACTIVATED: FAILURE_COLOR}
"""Text colour of each AM+PI outcome in figures."""


def am_pi_caption(result: AmPiResult, run: int) -> tuple[str, str]:
    """Two short lines on AM+PI run ``run`` and their colour: ``"✓ 1.1×\nφ 1.23→1.35"`` (outcome mark, the ratio
    ``direction·φ_final / direction·φ_reference`` or ``"–"`` when undefined, then φ_j of the reference sample
    at full intensity → φ_j at the end)."""
    outcome = result.outcomes[run]
    ratio = float(result.ratio[run])
    ratio_text = "–" if math.isnan(ratio) else f"{ratio:.1f}×"
    reference, final = float(result.reference_activation[run]), float(result.final_activation[run])
    weak = " weak" if bool(result.weak_reference[run]) else ""  # the sample barely activates φ_j: see AmPiResult.weak_reference
    return f"{outcome.symbol} {ratio_text}{weak}\nφ {reference:.2f}→{final:.2f}", OUTCOME_COLORS[outcome]


def tool_panel_names(tools: AttributeToolResults, attribution_name: str | None, difference: bool) -> list[str]:
    """Column titles of the panels :func:`tool_panels` returns for ``tools``."""
    names = ["AM+PI"]
    if tools.attribution is not None:
        names.append(attribution_name or tools.attribution.method)
    if tools.decoder is not None:
        names += ["d(Φ)", "ablation (φ_j=0)"] + (["difference"] if difference else [])
    return names


def tool_panels(
    tools: AttributeToolResults, run: int, attribute: int | None, attribution_name: str | None, difference: bool = False,
    titles: bool = True,
) -> list[Panel]:
    """The panels of run ``run`` of ``tools``: AM+PI (its outcome mark, the ratio of its final φ_j to the
    reference sample's own φ_j, and reference → final), the attribution map, the decoder's drawing with and
    without φ_j and, with ``difference``, their difference.

    ``titles=False`` leaves every title but AM+PI's (which carries the run's numbers) to a column header;
    ``attribute=None`` names the ablated attribute φ_j (for a header over runs of different attributes).
    """
    name = "φ_j" if attribute is None else f"φ{attribute}"
    text, colour = am_pi_caption(tools.am_pi, run)
    panels = [Panel("am_pi", tools.am_pi.images[run], f"AM+PI {text}", colour)]
    if tools.attribution is not None:
        panels.append(Panel("attribution", tools.attribution.maps[run], (attribution_name or tools.attribution.method) if titles else None))
    if tools.decoder is not None:
        panels.append(Panel("decoder", tools.decoder.with_attribute[run], "d(Φ)" if titles else None))
        panels.append(Panel("decoder", tools.decoder.without_attribute[run], f"ablation {name}=0" if titles else None))
        if difference:
            panels.append(Panel("difference", tools.decoder.difference[run], "difference" if titles else None))
    return panels


def draw_panels(axes: Sequence[Axes], panels: Sequence[Panel], value_range: tuple[float, float]) -> None:
    """Draw ``panels`` into ``axes``, one each."""
    for ax, panel in zip(axes, panels):
        show_image(ax, panel.image, panel.kind, value_range, panel.title, panel.title_color)
