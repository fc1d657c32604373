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

Because every term is per image and Adam is element-wise, optimising a batch of (pair, MAS) runs with
the summed objective gives each image exactly the trajectory it would have alone; all runs of a report
are therefore done as one batch. (Exactly in float64, checked by the tests and
``benchmarks/am_pi_batched.py``. In float32 a batch of 1 and of B round differently inside the
convolutions, and Adam's normalisation turns rounding-level gradients into full ±lr steps, so the same
run inside different batches can end a few percent apart; a given command is still deterministic.) ``directions`` (±1 per run) maximises ``direction · φ_j``, for pairs
relevant through negative φ_j (see :mod:`flint_analysis.relevance`). The paper notes that AM+PI sometimes fails to activate the attribute:
:class:`AmPiResult` records φ_j before and after so reports can say so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from flint_analysis.errors import InputError
from flint_analysis.options import FRACTION, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, check_options, option
from flint_analysis.models import AttributeHead, FlintModel, eval_mode
from flint_analysis.progress import ProgressBar, progress_bar


@dataclass(frozen=True)
class AmPiConfig:
    """AM+PI hyper-parameters (paper defaults, "Choices for interpretation phase")."""

    lambda_phi: float = option(2.0, NON_NEGATIVE, "weight λ_φ of φ_j")
    lambda_tv: float = option(6.0, NON_NEGATIVE, "weight λ_tv of total variation")
    lambda_bo: float = option(10.0, NON_NEGATIVE, "weight λ_bo of the boundedness penalty")
    init_scale: float = option(0.1, FRACTION, "initialise with this fraction of the sample")
    learning_rate: float = option(0.05, POSITIVE, "Adam's initial learning rate")
    steps: int = option(300, NON_NEGATIVE_INT, "Adam steps")
    halve_every: int = option(50, POSITIVE_INT, "halve the learning rate every this many steps")
    value_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        check_options(self)
        if self.value_range[0] >= self.value_range[1]:
            raise InputError(f"AM+PI value range {self.value_range} is empty")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["value_range"] = list(self.value_range)
        return data


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


@dataclass(frozen=True)
class AmPiResult:
    """AM+PI outputs for ``B`` runs.

    Attributes:
        images: ``(B, C, H, W)`` optimised inputs.
        initial_activation: ``(B,)`` φ_j at the initialisation ``init_scale · x``.
        final_activation: ``(B,)`` φ_j of the optimised input.
        directions: ``(B,)`` ±1, the direction in which φ_j was pushed.
    """

    images: Tensor
    initial_activation: Tensor
    final_activation: Tensor
    directions: Tensor

    @property
    def gain(self) -> Tensor:
        """``(B,)`` how far φ_j moved in its direction (negative: the optimisation failed to move it)."""
        return self.directions * (self.final_activation - self.initial_activation)

    @property
    def raised(self) -> Tensor:
        """``(B,)`` whether AM+PI moved φ_j in its direction (raised it, for direction +1)."""
        return self.gain > 0

    def select(self, rows: slice | Tensor) -> AmPiResult:
        """The runs ``rows``, on the CPU."""
        return AmPiResult(self.images[rows].cpu(), self.initial_activation[rows].cpu(),
                          self.final_activation[rows].cpu(), self.directions[rows].cpu())


def _activation(attribute_fn: nn.Module, images: Tensor, attribute_indices: Tensor) -> Tensor:
    return attribute_fn(images)[torch.arange(images.shape[0]), attribute_indices]


def _optimise(
    attribute_fn: nn.Module, start: Tensor, attribute_indices: Tensor, directions: Tensor, config: AmPiConfig, bar: ProgressBar
) -> Tensor:
    x = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.halve_every, gamma=0.5)
    low, high = config.value_range
    for _ in range(config.steps):
        objective = (
            config.lambda_phi * directions * _activation(attribute_fn, x, attribute_indices)
            - config.lambda_tv * total_variation(x)
            - config.lambda_bo * boundedness(x, low, high)
        )
        # autograd.grad, not backward(): no gradient reaches (or accumulates in) the model's parameters.
        (x.grad,) = torch.autograd.grad(-objective.sum(), [x])
        optimizer.step()
        schedule.step()
        bar.update(1)
    return x.detach()


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
        samples: ``(B, C, H, W)`` the maximum activating samples (initialisation is ``init_scale · x``).
        attribute_indices: ``(B,)`` the attribute ``j_b`` to maximise for each sample.
        directions: ``(B,)`` of ±1, maximise ``directions[b] · φ_{j_b}`` (default all +1).
        config: hyper-parameters.
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
    chunk = total if batch_size is None else max(1, batch_size)
    images, initial, final = [], [], []
    with eval_mode(attribute_fn):
        with progress_bar(desc="AM+PI", total=config.steps * -(-total // chunk) if total else 0, unit="step",
                          enabled=progress) as bar:
            for begin in range(0, total, chunk):
                start = config.init_scale * samples[begin : begin + chunk].detach()
                indices = attribute_indices[begin : begin + chunk]
                result = _optimise(attribute_fn, start, indices, directions[begin : begin + chunk], config, bar)
                with torch.no_grad():
                    initial.append(_activation(attribute_fn, start, indices))
                    final.append(_activation(attribute_fn, result, indices))
                images.append(result)
    if not images:
        empty = samples.new_empty(0)
        return AmPiResult(samples.new_empty((0, *samples.shape[1:])), empty, empty, empty)
    return AmPiResult(torch.cat(images), torch.cat(initial), torch.cat(final), directions)
