"""The FLINT model: a predictor ``f`` and an interpreter ``g = h ∘ Φ`` read from ``f``'s hidden layers.

Paper: Parekh, Mozharovskyi, d'Alché-Buc, "A Framework to Learn with Interpretation", section
"Learning with interpretation" (Fig. 1): ``Φ`` takes the outputs ``x^I`` of selected hidden layers of
``f`` and returns ``J`` attribute activations, ``h`` is a linear classifier on them (the paper's
``g(x) = h ∘ Φ(x^I)``), and a decoder ``d`` reconstructs the input from ``Φ(x^I)`` (section
"Fidelity to Input").

The predictor's hidden layers ("taps") are read by module name through forward hooks that exist
only for the duration of one forward pass, so any ``nn.Module`` can be wrapped without changing it
and without ``Φ`` knowing its architecture.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn

from flint_analysis.errors import ArchitectureError


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
            x: ``(B, *input_shape)`` inputs.
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
                logits: Tensor | None = self.predictor(x)
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
