"""The paper's analysis tools for one attribute, run together: AM+PI, input attribution, decoder ablation.

Paper, "Analysis tools for interpretability": for a sample ``x`` and an attribute ``φ_j`` (a maximum
activating sample of a class-attribute pair in the global pipeline, a top attribute of a sample in the
local one) the interpretation shows AM+PI started from ``x``, the input attribution of ``φ_j`` and the
decoder's drawing with and without ``φ_j``. Every tool has one call shape,
``tool(model, images, attribute_indices, directions, **settings)``, and a result with ``.select(rows)``;
:func:`run_attribute_tools` runs the chosen tools over all ``B`` (sample, attribute) runs in fixed batches, so both
pipelines batch the same way and slice the results the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from flint_analysis.am_pi import AmPiConfig, AmPiResult, am_pi
from flint_analysis.attribution import AttributionMaps, attribute_inputs, attribution_method
from flint_analysis.decoder_ablation import DecoderAblation, decoder_ablation
from flint_analysis.distributed import SINGLE_PROCESS, ProcessGroup, concatenate, gather_concatenated, shard_batches
from flint_analysis.inference import model_dtype
from flint_analysis.models import FlintModel, default_attribution

AUTO = "auto"
"""``attribution=AUTO``: the paper's method for the model's architecture (its registry record's
``default_attribution``; the gradient for models built outside the registry)."""


def resolve_attribution(attribution: str | None, architecture: str | None) -> str | None:
    """``attribution`` with :data:`AUTO` replaced by the architecture's default method."""
    return default_attribution(architecture or "") if attribution == AUTO else attribution


@dataclass(frozen=True)
class AttributeToolsConfig:
    """Which tools run and with which settings.

    Attributes:
        attribution: a method of :data:`~flint_analysis.attribution.ATTRIBUTION_METHODS`, :data:`AUTO`, or ``None``.
        attribution_settings: the method's settings (e.g. ``{"n_steps": 100}`` for integrated gradients).
        decoder: run the decoder ablation.
        am_pi: AM+PI hyper-parameters.
    """

    attribution: str | None = AUTO
    attribution_settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    decoder: bool = True
    am_pi: AmPiConfig = field(default_factory=AmPiConfig)

    def __post_init__(self) -> None:
        if self.attribution not in (None, AUTO):
            attribution_method(self.attribution).resolve_settings(self.attribution_settings)

    def attribution_record(self) -> dict[str, Any] | None:
        """What reports record about the attribution method (``None`` when none ran)."""
        if self.attribution == AUTO:
            raise ValueError("resolve attribution='auto' for the model (resolve_attribution) before recording it")
        return None if self.attribution is None else attribution_method(self.attribution).to_dict(self.attribution_settings)


@dataclass(frozen=True)
class AttributeToolResults:
    """The tools' outputs for ``B`` runs (row ``b``: sample ``b``, attribute ``j_b``, direction ``s_b``).

    Attributes:
        am_pi: AM+PI outputs.
        attribution: attribution maps, or ``None`` when no method ran.
        decoder: decoder ablation, or ``None`` when it did not run.
    """

    am_pi: AmPiResult
    attribution: AttributionMaps | None
    decoder: DecoderAblation | None

    def select(self, rows: slice | Tensor) -> AttributeToolResults:
        """The runs ``rows`` of every tool, on the CPU."""
        return AttributeToolResults(
            self.am_pi.select(rows),
            None if self.attribution is None else self.attribution.select(rows),
            None if self.decoder is None else self.decoder.select(rows),
        )

    def __len__(self) -> int:
        return int(self.am_pi.final_activation.shape[0])


DEFAULT_TOOL_BATCH_SIZE = 8
"""Runs per batch of the attribute tools (``--tool-batch-size``). The batches are the pieces a ``torchrun`` run
shares out, so they are the same for any number of processes (and the results too); any value gives the same
numbers up to float rounding."""


def run_attribute_tools(
    model: FlintModel,
    images: Tensor,
    attribute_indices: Tensor,
    directions: Tensor,
    config: AttributeToolsConfig,
    attributes: Tensor | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
    batch_size: int = DEFAULT_TOOL_BATCH_SIZE,
    group: ProcessGroup = SINGLE_PROCESS,
) -> AttributeToolResults:
    """Run AM+PI, the attribution method and the decoder ablation over ``B`` runs, in batches of ``batch_size`` runs.

    Args:
        model: the FLINT model (on ``device``).
        images: ``(B, C, H, W)`` the samples (AM+PI starts from ``init_scale ·`` each).
        attribute_indices: ``(B,)`` the attribute of each run.
        directions: ``(B,)`` ±1: the tools work on ``directions[b] · φ_{j_b}``.
        config: which tools, with which settings.
        attributes: ``(B, J)`` ``Φ(images)`` when already computed (saves the decoder a forward pass).
        device: where to compute.
        progress: show AM+PI's progress bar.
        batch_size: runs per batch of every tool (each batch is computed independently).
        group: under ``torchrun``, each rank runs its share of the batches
            (:func:`~flint_analysis.distributed.shard_batches`) and every rank returns all ``B`` results.

    Returns:
        The results, on the CPU, in the model's dtype.
    """
    device = torch.device(device)
    if config.attribution == AUTO:
        config = replace(config, attribution=resolve_attribution(AUTO, model.architecture_name))
    dtype = model_dtype(model)
    mine = shard_batches(images.shape[0], batch_size, group)
    rows = slice(mine.start, mine.stop)
    x = images[rows].to(device=device, dtype=dtype)
    j = attribute_indices[rows].to(device)
    s = directions[rows].to(device=device, dtype=dtype)
    ampi = am_pi(model, x, j, s, config=config.am_pi, batch_size=batch_size, progress=progress and group.is_main)
    batches = [slice(start, min(start + batch_size, x.shape[0])) for start in range(0, x.shape[0], batch_size)]
    batches = batches or [slice(0, 0)]  # a rank without runs still returns empty results of every tool
    maps = None
    if config.attribution is not None:
        maps = concatenate([attribute_inputs(model, x[b], j[b], directions[rows][b].cpu(), method=config.attribution,
                                             **config.attribution_settings) for b in batches])
    ablation = None
    if config.decoder:
        phi = None if attributes is None else attributes[rows].to(device=device, dtype=dtype)
        ablation = concatenate([decoder_ablation(model, None if phi is not None else x[b], j[b],
                                                 attributes=None if phi is None else phi[b]) for b in batches])
    return gather_concatenated(AttributeToolResults(ampi, maps, ablation).select(slice(None)), group)
