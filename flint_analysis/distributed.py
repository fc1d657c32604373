"""torch.distributed for flint-analysis: the process group a command runs in, and how work is split over it.

A command started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``) joins the process group with :func:`join_process_group`: the ``gloo`` backend on CPU, ``nccl``
on CUDA, each process on ``cuda:LOCAL_RANK``. A command started any other way runs as the single process
:data:`SINGLE_PROCESS`, exactly as before, and never touches torch.distributed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from flint_analysis.errors import DistributedError, InputError

_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class ProcessGroup:
    """Where this process stands among the processes of one run.

    Attributes:
        world_size: number of processes (1: not distributed).
        rank: this process's index, 0 to ``world_size − 1``; rank 0 alone writes files and prints.
        local_rank: its index on this machine (selects ``cuda:local_rank``).
        backend: ``"gloo"``, ``"nccl"``, or ``None`` for a single process.
    """

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that writes files and prints."""
        return self.rank == 0

    def record(self) -> dict[str, Any]:
        """What a checkpoint or report records about the run: ``world_size`` and ``backend``."""
        return {"world_size": self.world_size, "backend": self.backend}

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def all_gather_objects(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order (``[value]`` for a single process). For the package's own
        small records only (the objects travel pickled between the run's processes)."""
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, value)
        return gathered

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``tensor`` over the ranks (a new tensor; ``tensor`` itself for one process)."""
        if not self.distributed:
            return tensor
        total = tensor.clone()
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
        return total


SINGLE_PROCESS = ProcessGroup()


def launched_by_torchrun() -> bool:
    """Whether ``torchrun`` (or another launcher setting its variables) started this process."""
    return all(name in os.environ for name in _TORCHRUN_VARIABLES)


def join_process_group(device: torch.device) -> tuple[ProcessGroup, torch.device]:
    """Join the run's process group when launched by ``torchrun``; else :data:`SINGLE_PROCESS`.

    Returns:
        The group and the device this process computes on: ``device`` on CPU; ``cuda:LOCAL_RANK`` when
        ``device`` is CUDA (one GPU per process).

    Raises:
        InputError: an incomplete or inconsistent torchrun environment, or more processes on this machine
            than GPUs.
    """
    if not launched_by_torchrun():
        return SINGLE_PROCESS, device
    try:
        rank, world_size, local_rank = (int(os.environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except ValueError:
        raise InputError("RANK, WORLD_SIZE and LOCAL_RANK must be integers; start the command with torchrun") from None
    if not 0 <= rank < world_size:
        raise InputError(f"RANK {rank} is outside 0..WORLD_SIZE-1 ({world_size}); start the command with torchrun")
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise InputError(f"process {local_rank} on this machine has no GPU ({torch.cuda.device_count()} visible); "
                             "start at most one process per GPU (--nproc-per-node) or use --device cpu")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not torch.distributed.is_initialized():
        try:
            torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world_size)
        except (RuntimeError, ValueError) as error:
            raise peer_failure(error) from None
    return ProcessGroup(world_size=world_size, rank=rank, local_rank=local_rank, backend=backend), device


def peer_failure(error: BaseException) -> DistributedError:
    """The one-line error of a process whose process group broke (mostly because another process stopped first)."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return DistributedError(f"the torch.distributed process group failed ({first}); if another process of this run "
                            "printed an error, fix that and start the run again")


def leave_process_group(group: ProcessGroup) -> None:
    """Destroy the default process group this process joined (nothing for a single process)."""
    if group.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class _GatherWithGradient(torch.autograd.Function):
    """``all_gather`` with the gradient of the gathered tensor: every rank's gradients of its own copy,
    summed (all-reduce) and sliced back to each rank's rows."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        ctx.rank = rank
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        torch.distributed.all_gather(parts, tensor.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx: Any, gradient: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        total = gradient.contiguous().clone()
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
        return total[ctx.rank], None, None


def all_gather_with_gradient(tensor: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """``(W, *tensor.shape)``: ``tensor`` of every rank, in rank order, differentiable: the gradient reaching this
    rank's ``tensor`` is the sum over ranks of the gradients of its copy. Every rank must pass the same shape."""
    if not group.distributed:
        return tensor.unsqueeze(0)
    return _GatherWithGradient.apply(tensor, group.rank, group.world_size)


def shard_sizes(total: int, world_size: int) -> list[int]:
    """How ``total`` consecutive items split over ``world_size`` ranks: as even as possible, the first
    ``total % world_size`` ranks one more (``torch.tensor_split``'s rule)."""
    base, extra = divmod(total, world_size)
    return [base + (1 if rank < extra else 0) for rank in range(world_size)]


def shard(items: torch.Tensor | Sequence[int], group: ProcessGroup) -> Any:
    """This rank's contiguous share of ``items`` (by :func:`shard_sizes`)."""
    sizes = shard_sizes(len(items), group.world_size)
    start = sum(sizes[: group.rank])
    return items[start : start + sizes[group.rank]]
