"""The FLINT model: a predictor ``f`` and an interpreter ``g = h ∘ Φ`` read from ``f``'s hidden layers.

Paper: Parekh, Mozharovskyi, d'Alché-Buc, "A Framework to Learn with Interpretation", section
"Learning with interpretation" (Fig. 1): ``Φ`` takes the outputs ``x^I`` of selected hidden layers of
``f`` and returns ``J`` attribute activations, ``h`` is a linear classifier on them (the paper's
``g(x) = h ∘ Φ(x^I)``), and a decoder ``d`` reconstructs the input from ``Φ(x^I)`` (section
"Fidelity to Input").

The predictor's hidden layers ("taps") are read by module name through forward hooks that exist
only for the duration of one forward pass, so any ``nn.Module`` can be wrapped without changing it
and without ``Φ`` knowing its architecture.

Input normalisation: every dataset serves images in [0, 1]; a per-channel ``(x − mean) / std`` that ``f``
expects (e.g. ImageNet statistics for a torchvision predictor) is applied by the model itself, in front of
``f`` only (:meth:`FlintModel.set_input_normalization`). The decoder still reconstructs ``x`` in [0, 1],
so losses, AM+PI's box and figures stay in pixel space.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from flint_analysis.errors import ArchitectureError, short_repr


class FlintOutput(NamedTuple):
    """What :meth:`FlintModel.forward` returns.

    Attributes:
        f_logits: ``(B, C)`` logits of the predictor ``f``.
        attributes: ``(B, J)`` attribute activations ``Φ(x^I)``.
        g_logits: ``(B, C)`` logits of the interpreter ``g = h ∘ Φ``.
        reconstruction: ``(B, *input_shape)`` decoder output ``d(Φ(x^I))``, or ``None`` when not asked for.
    """

    f_logits: Tensor
    attributes: Tensor
    g_logits: Tensor
    reconstruction: Tensor | None = None


class _TapsCollected(Exception):
    """Raised inside a hook to stop the predictor once every tap has been read."""


class FlintModel(nn.Module):
    """A predictor ``f`` together with its interpreter ``g = h ∘ Φ`` and decoder ``d``.

    Args:
        predictor: any module mapping inputs ``(B, *input_shape)`` to logits ``(B, C)``.
        tap_names: names (as in ``predictor.named_modules()``) of the hidden layers whose outputs feed
            ``Φ``, in the order ``Φ`` expects them. Each must be a module that runs once per forward pass
            and returns a tensor.
        attributes: ``Φ``, a module called with a list of tap outputs that returns ``(B, J)``.
        interpreter: ``h``, a linear layer ``J -> C`` (its weight ``(C, J)`` defines relevances).
        decoder: ``d``, a module mapping ``(B, J)`` to ``(B, *input_shape)``.
    """

    def __init__(
        self,
        predictor: nn.Module,
        tap_names: Sequence[str],
        attributes: nn.Module,
        interpreter: nn.Linear,
        decoder: nn.Module,
    ) -> None:
        super().__init__()
        if not isinstance(interpreter, nn.Linear):
            raise ArchitectureError(
                f"the interpreter h must be an nn.Linear (the paper's linear classifier), got {type(interpreter).__name__}"
            )
        if not tap_names:
            raise ArchitectureError("tap_names is empty: name at least one hidden layer of the predictor for Φ to read")
        known = dict(predictor.named_modules())
        missing = [name for name in tap_names if name not in known or name == ""]
        if missing:
            candidates = ", ".join(name for name in known if name)[:300]
            raise ArchitectureError(f"predictor has no module named {missing[0]!r}; its modules are: {candidates}")
        self.predictor = predictor
        self.attributes = attributes
        self.interpreter = interpreter
        self.decoder = decoder
        self.tap_names: tuple[str, ...] = tuple(tap_names)
        self.architecture_name: str | None = None  # the registry name, set by build_model
        # (x − mean) / std in front of f; non-persistent buffers, so state dicts keep their keys
        self.register_buffer("input_mean", None, persistent=False)
        self.register_buffer("input_std", None, persistent=False)

    def set_input_normalization(self, normalization: Mapping[str, Sequence[float]] | None) -> None:
        """Feed ``f`` with ``(x − mean) / std`` per channel (``None``: ``x`` itself).

        Args:
            normalization: ``{"mean": [m_1, ..., m_C], "std": [s_1, ..., s_C]}`` (a
                :class:`~flint_analysis.datasets.DatasetSpec`'s ``normalization``), C finite numbers each,
                every ``s_c > 0``; or ``None``.

        The constants are non-persistent buffers: they follow ``.to(device)`` but are not in the state
        dict (a checkpoint records them in its dataset spec, :func:`~flint_analysis.checkpoint.load_checkpoint`
        sets them again). Only ``f`` (and so ``Φ``'s taps) sees normalised inputs; the decoder's target is ``x``.

        Raises:
            ArchitectureError: a malformed mapping, non-finite values or a non-positive std.
        """
        if normalization is None:
            self.input_mean = None
            self.input_std = None
            return
        mean, std = normalization_constants(normalization)
        device = next((p.device for p in self.parameters()), torch.device("cpu"))
        if device.type == "meta":
            device = torch.device("cpu")  # constants, not weights: a meta blueprint keeps them real
        self.input_mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.input_std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    @property
    def input_normalization(self) -> dict[str, list[float]] | None:
        """The normalisation set by :meth:`set_input_normalization` (``None`` for none), as plain lists."""
        if self.input_mean is None or self.input_std is None:
            return None
        return {"mean": self.input_mean.flatten().tolist(), "std": self.input_std.flatten().tolist()}

    def normalize_input(self, x: Tensor) -> Tensor:
        """What ``f`` is fed: ``(x − mean) / std`` per channel, or ``x`` when no normalisation is set."""
        if self.input_mean is None or self.input_std is None:
            return x
        if x.ndim < 2 or x.shape[1] != self.input_mean.shape[1]:
            raise ArchitectureError(
                f"the input normalisation is for {self.input_mean.shape[1]} channels, got inputs of shape {tuple(x.shape)}"
            )
        mean, std = self.input_mean.to(x.dtype), self.input_std.to(x.dtype)
        return (x - mean.view(1, -1, *([1] * (x.ndim - 2)))) / std.view(1, -1, *([1] * (x.ndim - 2)))

    def training_parameters(self, freeze_predictor: bool = False) -> list[nn.Parameter]:
        """The parameters the optimizer updates, in :meth:`parameters` order: all of them, or only those of
        ``Φ``, ``h`` and ``d`` when the predictor is frozen (post-hoc FLINT)."""
        if not freeze_predictor:
            return list(self.parameters())
        frozen = {id(p) for p in self.predictor.parameters()}
        return [p for p in self.parameters() if id(p) not in frozen]

    @property
    def num_attributes(self) -> int:
        """``J``, the number of attribute functions."""
        return self.interpreter.in_features

    @property
    def num_classes(self) -> int:
        """``C``, the number of classes of ``h`` (and of ``f``)."""
        return self.interpreter.out_features

    def run_predictor(self, x: Tensor, stop_after_taps: bool = False) -> tuple[list[Tensor], Tensor | None]:
        """Run ``f`` on ``x`` and read its taps.

        Args:
            x: ``(B, *input_shape)`` inputs (in [0, 1]; the input normalisation, if set, is applied here).
            stop_after_taps: stop ``f`` as soon as the last tap has been read (the logits are then
                ``None``); used where only ``Φ`` is needed, e.g. activation maximisation.

        Returns:
            The tap outputs in the order of ``tap_names``, and the ``(B, C)`` logits of ``f``.
        """
        captured: dict[str, Tensor] = {}
        modules = dict(self.predictor.named_modules())

        def make_hook(name: str):
            def hook(module: nn.Module, inputs: object, output: object) -> None:
                if name in captured:
                    raise ArchitectureError(
                        f"tap {name!r} ran twice in one forward pass; name a module that runs once per forward"
                    )
                if not isinstance(output, Tensor):
                    raise ArchitectureError(
                        f"tap {name!r} returned {type(output).__name__}, not a tensor; name a module that returns a tensor"
                    )
                captured[name] = output
                if stop_after_taps and len(captured) == len(self.tap_names):
                    raise _TapsCollected

            return hook

        handles = [modules[name].register_forward_hook(make_hook(name)) for name in self.tap_names]
        try:
            try:
                logits: Tensor | None = self.predictor(self.normalize_input(x))
            except _TapsCollected:
                logits = None
        finally:
            for handle in handles:
                handle.remove()
        not_run = [name for name in self.tap_names if name not in captured]
        if not_run:
            raise ArchitectureError(f"tap {not_run[0]!r} did not run during the predictor's forward pass")
        return [captured[name] for name in self.tap_names], logits

    def attribute_activations(self, x: Tensor) -> Tensor:
        """``Φ(x^I)``, shape ``(B, J)``; runs ``f`` only up to its last tap."""
        taps, _ = self.run_predictor(x, stop_after_taps=True)
        return self.attributes(taps)

    def forward(self, x: Tensor, reconstruct: bool = False) -> FlintOutput:
        """Run ``f``, ``Φ``, ``h`` and, if ``reconstruct``, ``d`` on ``x`` of shape ``(B, *input_shape)``."""
        taps, f_logits = self.run_predictor(x)
        assert f_logits is not None
        phi = self.attributes(taps)
        g_logits = self.interpreter(phi)
        reconstruction = self.decoder(phi) if reconstruct else None
        return FlintOutput(f_logits, phi, g_logits, reconstruction)


class AttributeHead(nn.Module):
    """``x ↦ Φ(x^I)`` as a module returning a tensor ``(B, J)``.

    Captum's attribution classes need a module whose output is one tensor; ``target=j`` then selects
    attribute ``φ_j``. The wrapped model is shared, not copied.
    """

    def __init__(self, model: FlintModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.attribute_activations(x)


def normalization_constants(normalization: Any) -> tuple[list[float], list[float]]:
    """``(mean, std)`` of a ``{"mean": [...], "std": [...]}`` mapping, checked: the same number (1 to 16) of finite
    numbers in each, every std ``> 0``; otherwise an :class:`ArchitectureError` naming the problem."""
    if not isinstance(normalization, Mapping) or set(normalization) != {"mean", "std"}:
        raise ArchitectureError('an input normalisation must be {"mean": [...], "std": [...]} (one number per channel) or None')
    values = {}
    for key in ("mean", "std"):
        numbers = normalization[key]
        if isinstance(numbers, Tensor):
            numbers = numbers.flatten().tolist()
        if (not isinstance(numbers, (list, tuple)) or not 1 <= len(numbers) <= 16
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers)):
            raise ArchitectureError(f"input normalisation {key} must be 1 to 16 finite numbers (one per channel), got {short_repr(numbers, 80)}")
        values[key] = [float(v) for v in numbers]
    if len(values["mean"]) != len(values["std"]):
        raise ArchitectureError(
            f"input normalisation has {len(values['mean'])} means but {len(values['std'])} stds; give one of each per channel"
        )
    if not all(v > 0 for v in values["std"]):
        raise ArchitectureError(f"input normalisation std must be positive, got {values['std']}")
    return values["mean"], values["std"]


def activation_module(name: str) -> nn.Module:
    """The module for an activation name: ``"leaky_relu"`` (slope 0.01) or ``"relu"``."""
    if name == "leaky_relu":
        return nn.LeakyReLU(0.01)
    if name == "relu":
        return nn.ReLU()
    raise ArchitectureError(f"unknown attribute activation {name!r}; use 'leaky_relu' or 'relu'")


class SignedAttributeHead(nn.Module):
    """``x ↦ [Φ(x^I), −Φ(x^I)]``, shape ``(B, 2J)``: target ``j`` is φ_j, target ``J + j`` is −φ_j.

    Lets Captum explain ``−φ_j`` (an attribute relevant through negative values) with every method,
    guided backpropagation included, where negating a map afterwards would not be the same.
    """

    def __init__(self, model: FlintModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        phi = self.model.attribute_activations(x)
        return torch.cat([phi, -phi], dim=1)


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` and all its submodules in eval mode, then restore each one's own mode.

    ``module.train(was_training)`` would not do: it sets every submodule to the wrapper's mode, e.g.
    switching a model shared by a fresh (training-mode) wrapper such as :class:`AttributeHead`.
    """
    modes = [(sub, sub.training) for sub in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for sub, training in modes:
            sub.training = training
