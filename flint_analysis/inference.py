"""One batched forward pass over a dataset, shared by every analysis step that needs it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flint_analysis.datasets import DataSplit, ImageDataset, iterate_uint8_batches
from flint_analysis.distributed import SINGLE_PROCESS, ProcessGroup, gather_concatenated, shard_batches
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
    dataset: DataSplit,
    indices: Tensor | Sequence[int] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: torch.device | str = "cpu",
    progress: bool = False,
    description: str = "forward pass",
    group: ProcessGroup = SINGLE_PROCESS,
    workers: int | None = None,
) -> ForwardPass:
    """Run ``model`` (in eval mode) on ``dataset[indices]`` (all samples if ``None``) in batches.

    The model's train/eval mode is restored afterwards. Images are cast to the model's floating dtype
    (``flint-analyze --float64``). Under ``torchrun`` (``group`` of W processes) each rank runs its share of
    the batches (:func:`~flint_analysis.distributed.shard_batches`) and every rank returns the whole pass,
    the same as one process computes. A streamed ImageFolder split is decoded through a DataLoader with
    ``workers`` processes (``None``: the dataset's own, set by ``--workers``); in-memory splits ignore it.
    """
    index = torch.arange(len(dataset)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    dtype = model_dtype(model)
    outputs: list[tuple[Tensor, Tensor, Tensor]] = []
    with eval_mode(model):
        mine = shard_batches(index.shape[0], batch_size, group)
        starts = range(mine.start, mine.stop, batch_size)
        streamed = None if isinstance(dataset, ImageDataset) else iterate_uint8_batches(
            dataset, [index[start : min(start + batch_size, mine.stop)] for start in starts], workers)
        for start in progress_bar(starts, description, unit="batch", enabled=progress and group.is_main):
            if streamed is None:
                images, _ = dataset.batch(index[start : min(start + batch_size, mine.stop)])
            else:
                images = next(streamed)[0].float().div_(255.0)
            result = model(images.to(device=device, dtype=dtype))
            outputs.append((result.f_logits.cpu(), result.attributes.cpu(), result.g_logits.cpu()))
    num_classes, num_attributes = model.num_classes, model.num_attributes
    f_logits = torch.cat([o[0] for o in outputs]) if outputs else torch.empty(0, num_classes, dtype=dtype)
    attributes = torch.cat([o[1] for o in outputs]) if outputs else torch.empty(0, num_attributes, dtype=dtype)
    g_logits = torch.cat([o[2] for o in outputs]) if outputs else torch.empty(0, num_classes, dtype=dtype)
    if group.distributed:
        f_logits, attributes, g_logits = gather_concatenated((f_logits, attributes, g_logits), group)
    return ForwardPass(index, dataset.labels[index], f_logits, attributes, g_logits)


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype of ``model``'s parameters (``torch.float32`` unless converted, e.g. by ``--float64``)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
