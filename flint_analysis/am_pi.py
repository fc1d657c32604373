"""Activation maximisation with partial initialisation (AM+PI).

Paper, "Analysis tools for interpretability — Activation maximization and partial initialization":
``argmax_x λ_φ φ_j(x^I) − λ_tv TV(x) − λ_bo Bo(x)``, started from a low-intensity copy of a maximum
activating sample. Defaults are the paper's ("Choices for interpretation phase"): λ_φ = 2, λ_tv = 6,
λ_bo = 10, initialisation 0.1·x, Adam with learning rate 0.05 for 300 iterations, halving the learning
rate every 50 iterations (one Adam, its state kept, as the paper describes; the authors' current code
restarts Adam every 50 steps and runs 600).

The paper defers TV and Bo to Mahendran & Vedaldi (2016) without formulas; its λ values were set with
the authors' forms, which are used here, computed **per image** (the authors averaged over the whole
batch of one):

- ``TV(x) = mean |x[..., i+1, :] − x[..., i, :]| + mean |x[..., :, i+1] − x[..., :, i]|`` (anisotropic, β = 1);
- ``Bo(x) = mean |x| · 1[x ∉ [low, high]]`` over the pixels, ``[low, high]`` the data's value range.

Two modes (:attr:`AmPiConfig.mode`):

- ``"soft"``: the paper's literal formula above, all ``steps`` Adam steps. Bo is a penalty, and with the
  paper's weights it does not keep x in the data range: on the demo checkpoint and on FashionMNIST most
  final pixels lie outside ``[0, 1]`` and φ_j ends at 10–100× the MAS's own value (``reports/am-pi/``).
- ``"bounded"`` (default): the same objective maximised over the data range itself, which is what the
  paper says Bo is for ("promotes boundedness of x in a range"): after every Adam step each pixel is
  projected back into ``[low, high]`` (projected gradient ascent; Bo is identically 0 on that set and
  is not evaluated). Each run stops individually as soon as ``direction · φ_j`` reaches
  ``target_ratio ×`` the sample's own ``direction · φ_j`` (its *reference*), so the output shows the
  attribute's pattern "adapted to the particular input" at the strength the sample itself has, instead
  of a saturated texture. A stopped run's image is frozen: the batch keeps optimising the others, and
  the stopped image is restored after each Adam step (masking its gradient would not be enough: Adam's
  momentum keeps moving a parameter whose gradient is zero). Projection was chosen over a sigmoid
  parameterisation by measurement (``reports/am-pi/README.md``): it keeps Adam's step size in pixel
  units, so the paper's learning rate and schedule still apply, and it costs one clamp per step.

Outcomes (:class:`AmPiOutcome`): a run *activated* the attribute when its final ``direction · φ_j``
reaches at least the reference (``ratio ≥ 1``), is *saturated* above ``saturation_ratio ×`` the reference,
and *did not activate* it otherwise; ``raised`` (φ_j moved in its direction from the initialisation) is
kept but is not success.

Because every term is per image, the stopping rule is per run and Adam is element-wise, optimising a
batch of (pair, MAS) runs with the summed objective gives each image exactly the trajectory it would
have alone; all runs of a report are therefore done as one batch. (Exactly in float64, checked by the
tests and ``benchmarks/am_pi_batched.py``. In float32 a batch of 1 and of B round differently inside the
convolutions, and Adam's normalisation turns rounding-level gradients into full ±lr steps, so the same
run inside different batches can end a few percent apart; a given command is still deterministic.)
``directions`` (±1 per run) maximises ``direction · φ_j``, for pairs relevant through negative φ_j (see
:mod:`flint_analysis.relevance`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from flint_analysis.errors import InputError
from flint_analysis.options import (
    FRACTION, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, Limit, check_options, option,
)
from flint_analysis.models import AttributeHead, FlintModel, eval_mode
from flint_analysis.progress import ProgressBar, progress_bar

BOUNDED = "bounded"
SOFT = "soft"
MODES = (BOUNDED, SOFT)

AT_LEAST_ONE = Limit(float, minimum=1.0)


@dataclass(frozen=True)
class AmPiConfig:
    """AM+PI hyper-parameters (paper defaults, "Choices for interpretation phase", plus the mode).

    Attributes:
        mode: ``"bounded"`` (pixels projected into ``value_range`` after every step, each run stopped at
            ``target_ratio``) or ``"soft"`` (the paper's literal penalty form, all ``steps``).
        target_ratio: bounded mode: a run stops once ``direction · φ_j ≥ target_ratio · direction · φ_j(sample)``
            (0: never stop early). Default 1.5: above the sample's own value (so every stopped run
            counts as activated) with a margin that makes the pattern visibly stronger than in the
            sample, and far below saturation.
        saturation_ratio: a run whose ratio to the reference exceeds this is *saturated* (default 3).
        snapshot_steps: keep the images after these numbers of Adam steps (0: the initialisation), each ≤ ``steps``.
        value_range: the data's fixed value range ``(low, high)``.
    """

    lambda_phi: float = option(2.0, NON_NEGATIVE, "weight λ_φ of φ_j")
    lambda_tv: float = option(6.0, NON_NEGATIVE, "weight λ_tv of total variation")
    lambda_bo: float = option(10.0, NON_NEGATIVE, "weight λ_bo of the boundedness penalty (soft mode)")
    init_scale: float = option(0.1, FRACTION, "initialise with this fraction of the sample")
    learning_rate: float = option(0.05, POSITIVE, "Adam's initial learning rate")
    steps: int = option(300, NON_NEGATIVE_INT, "Adam steps")
    halve_every: int = option(50, POSITIVE_INT, "halve the learning rate every this many steps")
    value_range: tuple[float, float] = (0.0, 1.0)
    mode: str = option(BOUNDED, choices=MODES,
                       help="bounded: keep every pixel in the data range and stop each run at its target; "
                            "soft: the paper's literal penalty form")
    target_ratio: float = option(1.5, NON_NEGATIVE,
                                 "bounded mode: stop a run once φ_j reaches this multiple of its sample's own φ_j (0: never)")
    saturation_ratio: float = option(3.0, AT_LEAST_ONE, "a run above this multiple of its sample's φ_j is saturated")
    snapshot_steps: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_options(self)
        if self.value_range[0] >= self.value_range[1]:
            raise InputError(f"AM+PI value range {self.value_range} is empty")
        bad = [s for s in self.snapshot_steps if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= self.steps]
        if bad:
            raise InputError(f"AM+PI snapshot steps must be integers from 0 to steps={self.steps}, got {bad}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["value_range"] = list(self.value_range)
        data["snapshot_steps"] = list(self.snapshot_steps)
        return data


WEAK_REFERENCE_FRACTION = 0.1
"""A run's reference is *weak* when ``|φ_j|`` of its sample is below this fraction of the attribute's scale (its
largest ``|φ_j|`` over the samples analysed, e.g. S_rnd): reaching such a value says little, so reports flag it."""


class AmPiOutcome(str, Enum):
    """What an AM+PI run achieved, judged against its reference (the sample's own ``direction · φ_j``)."""

    ACTIVATED = "activated"
    SATURATED = "saturated"
    NOT_ACTIVATED = "not_activated"

    @property
    def symbol(self) -> str:
        """A short mark for figures and tables."""
        return {"activated": "✓", "saturated": "⚠", "not_activated": "✗"}[self.value]

    @property
    def label(self) -> str:
        """A short human word."""
        return {"activated": "activated", "saturated": "saturated", "not_activated": "not activated"}[self.value]


def total_variation(images: Tensor) -> Tensor:
    """Anisotropic total variation of each image: mean vertical plus mean horizontal absolute difference.

    Args:
        images: ``(B, C, H, W)``.

    Returns:
        ``(B,)``.
    """
    vertical = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().flatten(1).mean(dim=1)
    horizontal = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().flatten(1).mean(dim=1)
    return vertical + horizontal


def boundedness(images: Tensor, low: float = 0.0, high: float = 1.0) -> Tensor:
    """Mean over each image's pixels of ``|x|`` where ``x`` is outside ``[low, high]`` (0 inside); ``(B, ...)`` → ``(B,)``."""
    outside = (images < low) | (images > high)
    return (images.abs() * outside).flatten(1).mean(dim=1)


def out_of_range_fraction(images: Tensor, low: float, high: float) -> Tensor:
    """Fraction of each image's values outside ``[low, high]``; ``(B, ...)`` → ``(B,)``."""
    outside = (images < low) | (images > high)
    return outside.flatten(1).to(images.dtype).mean(dim=1) if images.shape[0] else images.new_empty(0)


def _max_abs(images: Tensor) -> Tensor:
    return images.abs().flatten(1).amax(dim=1) if images.shape[0] else images.new_empty(0)


@dataclass(frozen=True)
class AmPiResult:
    """AM+PI outputs for ``B`` runs.

    Attributes:
        images: ``(B, C, H, W)`` optimised inputs.
        initial_activation: ``(B,)`` φ_j at the initialisation ``init_scale · x``.
        final_activation: ``(B,)`` φ_j of the optimised input.
        directions: ``(B,)`` ±1, the direction in which φ_j was pushed.
        reference_activation: ``(B,)`` φ_j of the sample itself at full intensity (the MAS in the global
            report, the explained sample in the local one); NaN when unknown.
        out_of_range_fraction: ``(B,)`` fraction of the output's values outside ``value_range``.
        max_abs_pixel: ``(B,)`` the largest ``|x|`` of the output, in the data's units.
        stop_step: ``(B,)`` int64, the number of Adam steps after which the run reached its target and
            stopped (bounded mode), −1 when it was not stopped early.
        snapshots: step → ``(B, C, H, W)`` the images after that many steps (empty unless asked for).
        saturation_ratio: ratio above which a run is :attr:`AmPiOutcome.SATURATED`.
        reference_scale: ``(B,)`` the attribute's scale, its largest ``|φ_j|`` over the samples the caller
            analysed (NaN: unknown); see :attr:`weak_reference`.
        value_range: the data's fixed range ``(low, high)``; figures draw the images on it.
    """

    images: Tensor
    initial_activation: Tensor
    final_activation: Tensor
    directions: Tensor
    reference_activation: Tensor | None = None
    out_of_range_fraction: Tensor | None = None
    max_abs_pixel: Tensor | None = None
    stop_step: Tensor | None = None
    snapshots: dict[int, Tensor] = field(default_factory=dict)
    saturation_ratio: float = 3.0
    value_range: tuple[float, float] = (0.0, 1.0)
    reference_scale: Tensor | None = None

    def __post_init__(self) -> None:
        count = self.final_activation.shape[0]
        defaults = {
            "reference_scale": lambda: torch.full((count,), math.nan, dtype=self.final_activation.dtype),
            "reference_activation": lambda: torch.full((count,), math.nan, dtype=self.final_activation.dtype),
            "out_of_range_fraction": lambda: out_of_range_fraction(self.images, *self.value_range),
            "max_abs_pixel": lambda: _max_abs(self.images),
            "stop_step": lambda: torch.full((count,), -1, dtype=torch.long),
        }
        for name, make in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, make())

    @property
    def gain(self) -> Tensor:
        """``(B,)`` how far φ_j moved in its direction (negative: the optimisation failed to move it)."""
        return self.directions * (self.final_activation - self.initial_activation)

    @property
    def raised(self) -> Tensor:
        """``(B,)`` whether AM+PI moved φ_j in its direction (raised it, for direction +1). Not success: see :attr:`outcomes`."""
        return self.gain > 0

    @property
    def ratio(self) -> Tensor:
        """``(B,)`` ``(direction · final) / (direction · reference)``; NaN where ``direction · reference ≤ 0``."""
        reference = self.directions * self.reference_activation
        ratio = self.directions * self.final_activation / reference
        return torch.where(reference > 0, ratio, torch.full_like(ratio, math.nan))

    @property
    def outcomes(self) -> list[AmPiOutcome]:
        """Each run's outcome: saturated (ratio > ``saturation_ratio``), activated (ratio ≥ 1), else not activated.

        Where the ratio is undefined (the sample does not activate φ_j in its direction), a run counts as
        activated when it raised φ_j and ended at least at the reference, as not activated otherwise.
        """
        ratio = self.ratio.tolist()
        reached = (self.directions * self.final_activation >= self.directions * self.reference_activation).tolist()
        raised = self.raised.tolist()
        result = []
        for r, at_reference, up in zip(ratio, reached, raised):
            if math.isnan(r):
                result.append(AmPiOutcome.ACTIVATED if up and at_reference else AmPiOutcome.NOT_ACTIVATED)
            elif r > self.saturation_ratio:
                result.append(AmPiOutcome.SATURATED)
            elif r >= 1.0:
                result.append(AmPiOutcome.ACTIVATED)
            else:
                result.append(AmPiOutcome.NOT_ACTIVATED)
        return result

    @property
    def weak_reference(self) -> Tensor:
        """``(B,)`` whether the sample's own ``|φ_j|`` is below :data:`WEAK_REFERENCE_FRACTION` of the attribute's
        scale: the attribute barely responds to this sample, so "activated" means little (False where the scale
        is unknown). Typical for pairs relevant through φ < 0 with a LeakyReLU Φ, whose negative values are small."""
        return self.reference_activation.abs() < WEAK_REFERENCE_FRACTION * self.reference_scale

    def with_reference_scale(self, scale: Tensor) -> AmPiResult:
        """The same runs with :attr:`reference_scale` set to ``scale`` ``(B,)``."""
        return replace(self, reference_scale=scale.to(self.final_activation.dtype).cpu())

    def run_record(self, k: int) -> dict[str, Any]:
        """The JSON-ready record of run ``k`` (``ratio`` and ``reference_scale`` are ``None`` when undefined)."""
        ratio = float(self.ratio[k])
        scale = float(self.reference_scale[k])
        return {
            "reference_scale": None if math.isnan(scale) else scale,
            "weak_reference": bool(self.weak_reference[k]),
            "reference_activation": float(self.reference_activation[k]),
            "initial_activation": float(self.initial_activation[k]),
            "final_activation": float(self.final_activation[k]),
            "ratio": None if math.isnan(ratio) else ratio,
            "gain": float(self.gain[k]),
            "raised": bool(self.raised[k]),
            "outcome": self.outcomes[k].value,
            "out_of_range_fraction": float(self.out_of_range_fraction[k]),
            "max_abs_pixel": float(self.max_abs_pixel[k]),
            "stop_step": int(self.stop_step[k]),
        }

    def select(self, rows: slice | Tensor) -> AmPiResult:
        """The runs ``rows``, on the CPU."""
        return AmPiResult(
            self.images[rows].cpu(), self.initial_activation[rows].cpu(), self.final_activation[rows].cpu(),
            self.directions[rows].cpu(), self.reference_activation[rows].cpu(), self.out_of_range_fraction[rows].cpu(),
            self.max_abs_pixel[rows].cpu(), self.stop_step[rows].cpu(),
            {step: images[rows].cpu() for step, images in self.snapshots.items()}, self.saturation_ratio, self.value_range,
            self.reference_scale[rows].cpu(),
        )


@dataclass(frozen=True)
class AmPiSummary:
    """The outcomes of a set of AM+PI runs (one per pair and MAS in the global report).

    Attributes:
        runs: AM+PI runs; activated, saturated, not_activated: runs per :class:`AmPiOutcome` (they sum to
            ``runs``); raised: runs that moved φ_j in its direction (not success).
        saturation_ratio: the ratio above which a run is saturated.
    """

    runs: int
    activated: int
    saturated: int
    not_activated: int
    raised: int
    saturation_ratio: float = 3.0
    weak: int = 0

    @property
    def not_raised(self) -> int:
        return self.runs - self.raised

    @classmethod
    def from_results(cls, results: Iterable[AmPiResult]) -> AmPiSummary:
        """Count the outcomes of every run of ``results``."""
        outcomes: list[AmPiOutcome] = []
        raised, weak, saturation = 0, 0, None
        for result in results:
            outcomes += result.outcomes
            raised += int(result.raised.sum())
            weak += int(result.weak_reference.sum())
            saturation = result.saturation_ratio if saturation is None else saturation
        return cls(len(outcomes), outcomes.count(AmPiOutcome.ACTIVATED), outcomes.count(AmPiOutcome.SATURATED),
                   outcomes.count(AmPiOutcome.NOT_ACTIVATED), raised, 3.0 if saturation is None else saturation, weak)

    def headline(self, reference: str = "its MAS's") -> str:
        """One sentence, e.g. "AM+PI activated the attribute (reached its MAS's own φ_j) in 60 of 72 runs; 5 saturated (> 3× the MAS value); 7 did not"."""
        value = "the MAS value" if reference == "its MAS's" else "the sample's value"
        weak = "MAS" if reference == "its MAS's" else "sample"
        return (f"AM+PI activated the attribute (reached {reference} own φ_j) in {self.activated} of {self.runs} runs; "
                f"{self.saturated} saturated (> {self.saturation_ratio:g}× {value}); {self.not_activated} did not"
                + (f"; {self.weak} started from a weak {weak} (|φ_j| under {WEAK_REFERENCE_FRACTION:.0%} of the attribute's "
                   "largest), where reaching it says little" if self.weak else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "activated": self.activated, "saturated": self.saturated,
                "not_activated": self.not_activated, "raised": self.raised, "not_raised": self.not_raised,
                "saturation_ratio": self.saturation_ratio, "weak": self.weak}


def _activation(attribute_fn: nn.Module, images: Tensor, attribute_indices: Tensor) -> Tensor:
    return attribute_fn(images)[torch.arange(images.shape[0]), attribute_indices]


def _optimise(
    attribute_fn: nn.Module, start: Tensor, attribute_indices: Tensor, directions: Tensor, references: Tensor,
    config: AmPiConfig, bar: ProgressBar,
) -> tuple[Tensor, Tensor, dict[int, Tensor]]:
    """Optimise one batch; returns the images ``(B, C, H, W)``, the stop steps ``(B,)`` and the snapshots."""
    x = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.halve_every, gamma=0.5)
    low, high = config.value_range
    bounded = config.mode == BOUNDED
    wanted = set(config.snapshot_steps)
    snapshots: dict[int, Tensor] = {}
    stop_step = torch.full((start.shape[0],), -1, dtype=torch.long, device=start.device)
    reference = directions * references
    can_stop = (reference > 0) if bounded and config.target_ratio > 0 else torch.zeros_like(stop_step, dtype=torch.bool)
    frozen = start.clone()  # the images of stopped runs, as they were when they stopped
    done = 0
    for step in range(config.steps):
        if step in wanted:
            snapshots[step] = x.detach().clone()
        phi = _activation(attribute_fn, x, attribute_indices)
        if bounded:
            with torch.no_grad():
                newly = can_stop & (stop_step < 0) & (directions * phi >= config.target_ratio * reference)
                if bool(newly.any()):
                    stop_step[newly] = step
                    frozen[newly] = x.detach()[newly]
                stopped = stop_step >= 0
                if bool(stopped.all()):
                    break
            objective = config.lambda_phi * directions * phi - config.lambda_tv * total_variation(x)
        else:
            objective = (
                config.lambda_phi * directions * phi
                - config.lambda_tv * total_variation(x)
                - config.lambda_bo * boundedness(x, low, high)
            )
        # autograd.grad, not backward(): no gradient reaches (or accumulates in) the model's parameters.
        (x.grad,) = torch.autograd.grad(-objective.sum(), [x])
        optimizer.step()
        schedule.step()
        if bounded:
            with torch.no_grad():
                x.clamp_(low, high)
                # Adam moves a parameter with zero gradient too (momentum): restore the stopped runs.
                x.copy_(torch.where(stopped.view(-1, *[1] * (x.ndim - 1)), frozen, x))
        bar.update(1)
        done += 1
    bar.update(config.steps - done)
    result = x.detach()
    for step in wanted - snapshots.keys():  # steps after the loop ended (at `steps`, or after every run stopped)
        snapshots[step] = result.clone()
    return result, stop_step, snapshots


def am_pi(
    model: nn.Module,
    samples: Tensor,
    attribute_indices: Tensor,
    directions: Tensor | None = None,
    *,
    config: AmPiConfig = AmPiConfig(),
    batch_size: int | None = None,
    progress: bool = False,
) -> AmPiResult:
    """Run AM+PI for ``B`` (sample, attribute) pairs, batched.

    Same call shape as the other attribute tools (:mod:`flint_analysis.attribute_tools`).

    Args:
        model: a :class:`~flint_analysis.models.FlintModel` (its attributes ``Φ(x^I)`` are used), or any
            module mapping ``(B, C, H, W)`` inputs to ``(B, J)`` attributes; evaluated in eval mode, its
            mode restored afterwards.
        samples: ``(B, C, H, W)`` the samples (maximum activating samples in the global report): the
            initialisation is ``init_scale · x`` (projected into the data range in bounded mode) and
            ``φ_j(x)`` at full intensity is each run's reference.
        attribute_indices: ``(B,)`` the attribute ``j_b`` to maximise for each sample.
        directions: ``(B,)`` of ±1, maximise ``directions[b] · φ_{j_b}`` (default all +1).
        config: hyper-parameters and mode.
        batch_size: runs optimised together (all at once if ``None``); any value gives the same result.
        progress: show a progress bar over the optimisation steps.
    """
    attribute_fn = AttributeHead(model) if isinstance(model, FlintModel) else model
    if samples.ndim != 4 or attribute_indices.shape != samples.shape[:1]:
        raise InputError(f"am_pi needs (B, C, H, W) samples and (B,) attribute indices, got {tuple(samples.shape)} and {tuple(attribute_indices.shape)}")
    total = samples.shape[0]
    if directions is None:
        directions = torch.ones(total, dtype=samples.dtype, device=samples.device)
    directions = directions.to(device=samples.device, dtype=samples.dtype)
    low, high = config.value_range
    chunk = total if batch_size is None else max(1, batch_size)
    images, initial, final, references, stops, snapshot_parts = [], [], [], [], [], []
    with eval_mode(attribute_fn):
        with progress_bar(desc="AM+PI", total=config.steps * -(-total // chunk) if total else 0, unit="step",
                          enabled=progress) as bar:
            for begin in range(0, total, chunk):
                sample = samples[begin : begin + chunk].detach()
                start = config.init_scale * sample
                if config.mode == BOUNDED:
                    start = start.clamp(low, high)
                indices = attribute_indices[begin : begin + chunk]
                with torch.no_grad():
                    reference = _activation(attribute_fn, sample, indices)
                result, stop_step, snapshots = _optimise(attribute_fn, start, indices, directions[begin : begin + chunk],
                                                         reference, config, bar)
                with torch.no_grad():
                    initial.append(_activation(attribute_fn, start, indices))
                    final.append(_activation(attribute_fn, result, indices))
                images.append(result)
                references.append(reference)
                stops.append(stop_step)
                snapshot_parts.append(snapshots)
    if not images:
        empty = samples.new_empty(0)
        return AmPiResult(samples.new_empty((0, *samples.shape[1:])), empty, empty, empty, empty, empty, empty,
                          torch.empty(0, dtype=torch.long), {s: samples.new_empty((0, *samples.shape[1:])) for s in config.snapshot_steps},
                          config.saturation_ratio, config.value_range)
    output = torch.cat(images)
    return AmPiResult(
        output, torch.cat(initial), torch.cat(final), directions, torch.cat(references),
        out_of_range_fraction(output, low, high), _max_abs(output), torch.cat(stops),
        {s: torch.cat([part[s] for part in snapshot_parts]) for s in config.snapshot_steps},
        config.saturation_ratio, config.value_range,
    )
