"""torch.distributed for flint-analysis: the process group a command runs in, and how work is split over it.

A command started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``) joins the process group with :func:`join_process_group`: the ``gloo`` backend on CPU, ``nccl``
on CUDA, each process on ``cuda:LOCAL_RANK``. A command started any other way runs as the single process
:data:`SINGLE_PROCESS`, exactly as before, and never touches torch.distributed.

How the analyses split their work (``flint-analyze`` under ``torchrun``): every rank runs the same command on
the same data, takes its contiguous share of a list of *fixed* pieces of work, and the pieces' results are
gathered in rank order (:func:`gather_concatenated`), so every rank ends with the whole result and rank 0 writes
the report. The pieces do not depend on the number of processes: the forward passes' batches
(``--batch-size``, :func:`shard_batches`), the attribute tools' chunks of runs (``--tool-batch-size``), and the
classes of the projection depth. Each piece is computed exactly as one process computes it, so W processes give
the same bits as one (same machine, torch build and thread count per process).
"""

from __future__ import annotations

import os
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from flint_analysis.errors import DistributedError, FlintError, InputError, PeerStopped

T = TypeVar("T")

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


def current_run_record() -> dict[str, Any]:
    """``{"world_size", "backend"}`` of the process group this process has joined (1 and ``None`` when it has
    joined none): what every report records about the run, read like the thread count, from the process itself."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return {"world_size": torch.distributed.get_world_size(), "backend": str(torch.distributed.get_backend())}
    return SINGLE_PROCESS.record()


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


def leave_process_group(group: ProcessGroup, completed: bool = False) -> None:
    """Destroy the default process group this process joined (nothing for a single process).

    ``completed``: the command finished without error on this rank; it then first waits for every rank
    (:func:`wait_for_every_rank`). Not after an error: the other ranks may never arrive.
    """
    if group.distributed and torch.distributed.is_initialized():
        if completed:
            wait_for_every_rank(group)
        torch.distributed.destroy_process_group()


def wait_for_every_rank(group: ProcessGroup, timeout_s: float = 600.0) -> None:
    """Count this rank as finished in the run's key-value store and wait until every rank has (or ``timeout_s``).

    Not a collective: the store is torchrun's (its agent's TCPStore), outside the gloo/NCCL connections, so when
    it returns every rank has finished every collective and no rank can close a connection another still reads
    (a rank that did so made the other abort: gloo's "Connection closed by peer", or "terminate called without an
    active exception", about once in eight 2-process runs). Call it only where every rank arrives (after a
    successful command, or an error every rank agreed on, :func:`on_main`).
    """
    import time
    from torch.distributed.distributed_c10d import _get_default_store  # the store init_process_group connected to

    key = "flint-analysis/finished"
    try:
        store = _get_default_store()
        store.add(key, 1)
        deadline = time.monotonic() + timeout_s
        while store.add(key, 0) < group.world_size and time.monotonic() < deadline:
            time.sleep(0.01)
    except (RuntimeError, ValueError):  # the store went away: its host (rank 0 outside torchrun) saw every rank finish
        pass


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


def shard_batches(total: int, batch_size: int, group: ProcessGroup) -> range:
    """The rows ``[a, b)`` of this rank's share of the batches ``[0, s), [s, 2s), …`` of ``total`` rows.

    Whole batches only (by :func:`shard_sizes` over the batches), so each rank computes exactly the batches one
    process computes, and ``a`` is a multiple of ``batch_size``: batching ``range(a, b)`` from ``a`` gives the
    same batches.
    """
    batches = -(-total // batch_size) if total else 0
    sizes = shard_sizes(batches, group.world_size)
    first = sum(sizes[: group.rank])
    return range(min(total, first * batch_size), min(total, (first + sizes[group.rank]) * batch_size))


def concatenate(parts: Sequence[Any]) -> Any:
    """Concatenate per-row results along their first dimension, in order.

    Tensors are concatenated; dataclasses (e.g. :class:`~flint_analysis.inference.ForwardPass`,
    :class:`~flint_analysis.am_pi.AmPiResult`) field by field; dicts whose values are all tensors key by key;
    lists are joined; tuples position by position; anything else (settings, ranges, ``None``) is taken from the first part.
    """
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(parts))
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        values = {f.name: concatenate([getattr(part, f.name) for part in parts])
                  for f in dataclasses.fields(first) if f.init}
        return dataclasses.replace(first, **values)
    if isinstance(first, dict) and first and all(isinstance(v, torch.Tensor) for v in first.values()):
        return {key: torch.cat([part[key] for part in parts]) for key in first}
    if isinstance(first, list):
        return [item for part in parts for item in part]
    if isinstance(first, tuple):  # each position concatenated (a NamedTuple keeps its type)
        values = [concatenate(list(items)) for items in zip(*parts)]
        return type(first)(*values) if hasattr(first, "_fields") else tuple(values)
    return first


def gather_concatenated(value: T, group: ProcessGroup) -> T:
    """Every rank's ``value`` (its rows of a result) concatenated in rank order (:func:`concatenate`); every rank
    gets the whole. ``value`` itself for a single process. Tensors travel as CPU tensors."""
    if not group.distributed:
        return value
    return concatenate(group.all_gather_objects(value))


def on_main(action: Callable[[], T], group: ProcessGroup) -> T | None:
    """Run ``action`` on rank 0 only (e.g. checking or preparing the output folder) and wait for it.

    A :class:`~flint_analysis.errors.FlintError` raised there is raised again on rank 0 and as
    :class:`~flint_analysis.errors.PeerStopped` (silent) on the other ranks, so every process stops with the same
    status and the error is printed once. Returns ``action``'s result on rank 0, ``None`` on the others.
    """
    if not group.distributed:
        return action()
    result, failure = None, None
    if group.is_main:
        try:
            result = action()
        except FlintError as error:
            failure = error
    stopped = group.all_gather_objects(None if failure is None else str(failure))[0]
    if stopped is not None:
        wait_for_every_rank(group)  # every rank is here: none leaves while another still reads the gather
    if failure is not None:
        raise failure
    if stopped is not None:
        raise PeerStopped(stopped)
    return result
