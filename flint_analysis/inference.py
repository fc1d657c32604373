"""One batched forward pass over a dataset, shared by every analysis step that needs it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flint_analysis.datasets import ImageDataset
from flint_analysis.models import FlintModel, eval_mode
from flint_analysis.progress import progress_bar


DEFAULT_BATCH_SIZE = 256
"""Samples per forward pass (``--batch-size``); any value gives the same numbers up to float rounding."""

@dataclass(frozen=True)
class ForwardPass:
    """Outputs of a FLINT model on ``N`` samples (CPU tensors).

    Attributes:
        indices: ``(N,)`` positions of the samples in their dataset.
        labels: ``(N,)`` true labels.
        f_logits: ``(N, C)`` predictor logits.
        attributes: ``(N, J)`` attribute activations ``Φ(x)``.
        g_logits: ``(N, C)`` interpreter logits ``h(Φ(x))``.
    """

    indices: Tensor
    labels: Tensor
    f_logits: Tensor
    attributes: Tensor
    g_logits: Tensor

    def __len__(self) -> int:
        return self.indices.shape[0]

    @property
    def f_predictions(self) -> Tensor:
        """``(N,)`` classes predicted by ``f``."""
        return self.f_logits.argmax(dim=1)

    @property
    def g_predictions(self) -> Tensor:
        """``(N,)`` classes predicted by ``g`` (the paper's ĉ)."""
        return self.g_logits.argmax(dim=1)

    def select(self, rows: Tensor) -> ForwardPass:
        """The rows ``rows`` (indices into this pass, or a boolean mask)."""
        return ForwardPass(
            self.indices[rows], self.labels[rows], self.f_logits[rows], self.attributes[rows], self.g_logits[rows]
        )


@torch.no_grad()
def forward_pass(
    model: FlintModel,
    dataset: ImageDataset,
    indices: Tensor | Sequence[int] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: torch.device | str = "cpu",
    progress: bool = False,
    description: str = "forward pass",
) -> ForwardPass:
    """Run ``model`` (in eval mode) on ``dataset[indices]`` (all samples if ``None``) in batches.

    The model's train/eval mode is restored afterwards.
    """
    index = torch.arange(len(dataset)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    outputs: list[tuple[Tensor, Tensor, Tensor]] = []
    with eval_mode(model):
        starts = range(0, index.shape[0], batch_size)
        for start in progress_bar(starts, description, unit="batch", enabled=progress):
            images, _ = dataset.batch(index[start : start + batch_size])
            result = model(images.to(device))
            outputs.append((result.f_logits.cpu(), result.attributes.cpu(), result.g_logits.cpu()))
    num_classes, num_attributes = model.num_classes, model.num_attributes
    f_logits = torch.cat([o[0] for o in outputs]) if outputs else torch.empty(0, num_classes)
    attributes = torch.cat([o[1] for o in outputs]) if outputs else torch.empty(0, num_attributes)
    g_logits = torch.cat([o[2] for o in outputs]) if outputs else torch.empty(0, num_classes)
    return ForwardPass(index, dataset.labels[index], f_logits, attributes, g_logits)
