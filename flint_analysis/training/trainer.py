"""The training loop of Algorithm 1: one Adam over f, Φ, h and d, per-epoch schedule, checkpoint each epoch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from flint_analysis.checkpoint import Checkpoint
from flint_analysis.datasets import DatasetBundle, ImageDataset, data_fingerprint, iterate_uint8_batches
from flint_analysis.distributed import SINGLE_PROCESS, ProcessGroup, shard, shard_sizes
from flint_analysis.errors import CheckpointError, DatasetError
from flint_analysis.inference import forward_pass
from flint_analysis.models import FlintModel
from flint_analysis.runtime import compute_environment
from flint_analysis.progress import progress_bar
from flint_analysis.records import EnvironmentRecord, EpochRecord
from flint_analysis.training.config import TrainingConfig
from flint_analysis.training.losses import LossTerms, distributed_flint_loss, flint_loss


def evaluate(model: FlintModel, bundle: DatasetBundle, device: torch.device, batch_size: int = 1000,
             group: ProcessGroup = SINGLE_PROCESS, workers: int | None = None) -> dict[str, float]:
    """Test-split accuracy of f and g and fidelity (share of samples where g's class equals f's), in %.

    In a DDP run each rank predicts its contiguous share of the test split and the counts are summed.
    """
    # imported here, not at the top: loading a checkpoint with a training config imports this package (for
    # TrainingConfig), and ``flint-analyze info`` need not wait for scikit-learn
    from sklearn.metrics import accuracy_score

    if group.distributed:
        result = forward_pass(model, bundle.test, indices=shard(range(len(bundle.test)), group), batch_size=batch_size, device=device,
                              workers=workers)
        correct = torch.tensor([(result.f_predictions == result.labels).sum(), (result.g_predictions == result.labels).sum(),
                                (result.f_predictions == result.g_predictions).sum()], dtype=torch.float64, device=device)
        f_right, g_right, agree = (100.0 * group.sum(correct) / len(bundle.test)).tolist()
        return {"test_accuracy_f": f_right, "test_accuracy_g": g_right, "test_fidelity": agree}
    result = forward_pass(model, bundle.test, batch_size=batch_size, device=device, workers=workers)
    labels, f_pred, g_pred = result.labels.numpy(), result.f_predictions.numpy(), result.g_predictions.numpy()
    return {
        "test_accuracy_f": 100.0 * accuracy_score(labels, f_pred),
        "test_accuracy_g": 100.0 * accuracy_score(labels, g_pred),
        "test_fidelity": 100.0 * accuracy_score(f_pred, g_pred),
    }


def rank_seed(seed: int, rank: int) -> int:
    """The dropout seed of ``rank`` in a DDP run of ``seed`` (each rank draws its own dropout masks)."""
    return (seed * 1_000_003 + rank + 1) % 2**63


def format_epoch(record: EpochRecord, epochs: int) -> str:
    """The one-line summary printed after each epoch (of a record the training loop wrote: every field is set)."""
    losses = record.train_losses
    return (
        f"epoch {record.epoch + 1:>2}/{epochs}  L_pred {losses['prediction']:.4f}  L_of {losses['output_fidelity']:.4f}  "
        f"L_if {losses['input_fidelity']:.4f}  L_cd {losses['conciseness_diversity']:.4f}  |  test acc f "
        f"{record.test_accuracy_f:.2f}%  acc g {record.test_accuracy_g:.2f}%  fidelity {record.test_fidelity:.2f}%  "
        f"({record.seconds:.1f} s)"
    )


def train(
    checkpoint: Checkpoint,
    bundle: DatasetBundle,
    config: TrainingConfig,
    output: str | Path,
    seed: int,
    device: torch.device,
    progress: bool = True,
    log: Callable[[str], None] = print,
    group: ProcessGroup = SINGLE_PROCESS,
    workers: int | None = None,
) -> Checkpoint:
    """Train ``checkpoint.model`` on ``bundle.train`` until ``config.epochs`` epochs are done.

    Starts from ``checkpoint.resume`` when it holds optimizer and generator states (``--resume``), so an
    interrupted run continues bit-identically on CPU. After every epoch the model is evaluated on the
    test split, the epoch is appended to ``checkpoint.history`` and the checkpoint is written atomically
    to ``output``. Global torch RNG state (dropout) and the shuffling generator are saved with it.

    With ``config.freeze_predictor`` (post-hoc FLINT) f's parameters get ``requires_grad=False``, are left out
    of Adam and f runs in eval mode throughout, so f is bit-identical before and after; Φ, h and d train.

    Also recorded: the data's :func:`~flint_analysis.datasets.data_fingerprint` in ``checkpoint.dataset``
    (a checkpoint that has one must be trained further on the same data), and, in
    ``checkpoint.training.environments``, one :func:`~flint_analysis.runtime.compute_environment` record
    per run with the ``first_epoch`` it trained (a resumed run adds one): bit-identical results hold
    only within one torch build, CPU capability, thread count and device.

    Under ``torchrun`` (``group`` of ``W > 1`` processes, see :mod:`flint_analysis.distributed`) the model is
    wrapped in DistributedDataParallel. ``config.batch_size`` stays the *global* batch: every rank draws the
    same shuffled order (the generator is seeded from ``seed`` on every rank), takes its contiguous share of
    each global batch, and :func:`~flint_analysis.training.losses.distributed_flint_loss` makes the averaged
    gradient that of the whole global batch, so W processes take the same steps as one (up to float rounding;
    with dropout each rank draws its own masks from :func:`rank_seed`). Epoch losses and test metrics are
    summed over the ranks; rank 0 alone writes the checkpoint, which records every rank's RNG state, and
    the run's ``world_size`` and ``backend`` in its environment record. A DDP checkpoint resumes only with
    the same number of processes.

    A streamed ImageFolder split (no ``.images``) is decoded through a ``DataLoader`` with ``workers`` processes
    (``None``: the dataset's own, ``--workers``) whose batches are the same shuffled index slices as in memory,
    so both paths take the same steps; the loader draws nothing from torch's RNG.
    """
    fingerprint = data_fingerprint(bundle)
    if checkpoint.dataset.fingerprint is None:
        checkpoint.dataset = replace(checkpoint.dataset, fingerprint=fingerprint)
    elif checkpoint.dataset.fingerprint != fingerprint:
        raise DatasetError(
            f"the {checkpoint.dataset.name} data given has other images or labels than the checkpoint was trained on "
            f"(data fingerprint {fingerprint.removeprefix('sha256:')[:12]}…, trained on "
            f"{checkpoint.dataset.fingerprint.removeprefix('sha256:')[:12]}…); train it further on the same data"
        )
    model = checkpoint.model.to(device)
    if config.freeze_predictor:  # post-hoc FLINT: f is neither in Adam nor in the graph; it stays in eval mode below
        model.predictor.requires_grad_(False)
    optimizer = torch.optim.Adam(model.training_parameters(config.freeze_predictor), lr=config.learning_rate)
    shuffle = torch.Generator().manual_seed(seed)
    if checkpoint.resume:
        trained_with = (list(checkpoint.training.environments or ()) or [None])[-1]
        previous = int(trained_with.environment.get("world_size", 1)) if trained_with is not None else 1
        if previous != group.world_size:
            raise CheckpointError(
                f"{checkpoint.path or 'the checkpoint'} was trained by {previous} process{'es' if previous > 1 else ''} and "
                f"this run has {group.world_size}; resume it with the same number ("
                + (f"torchrun --nproc-per-node {previous} ...)" if previous > 1 else "without torchrun)")
            )
        try:
            optimizer.load_state_dict(checkpoint.resume["optimizer"])
            shuffle.set_state(checkpoint.resume["shuffle_generator"])
            torch.set_rng_state(checkpoint.resume["torch_rng_per_rank"][group.rank] if group.distributed
                                else checkpoint.resume["torch_rng"])
            cuda_state = (checkpoint.resume.get("cuda_rng_per_rank") or [None] * group.world_size)[group.rank] if group.distributed \
                else checkpoint.resume.get("cuda_rng")
            if device.type == "cuda" and cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, device)
        except (ValueError, RuntimeError, KeyError, TypeError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CheckpointError(
                f"the resume state of checkpoint {checkpoint.path or '(in memory)'} does not fit its model ({reason}); "
                "resume from another checkpoint or retrain"
            ) from None
    elif group.distributed:
        torch.manual_seed(rank_seed(seed, group.rank))
    environments = list(checkpoint.training.environments or ())
    if checkpoint.epochs_completed < config.epochs:
        environment = compute_environment(device) | (group.record() if group.distributed else {})
        environments.append(EnvironmentRecord(first_epoch=checkpoint.epochs_completed, environment=environment))
    checkpoint.training = replace(checkpoint.training, config=config, seed=seed,
                                  schedule=tuple(asdict(w) for w in config.schedule()), environments=tuple(environments))
    import sklearn.metrics  # noqa: F401 -- evaluate's import, done before the first epoch's clock starts

    images_all = bundle.train.images if isinstance(bundle.train, ImageDataset) else None  # None: streamed from disk
    labels_all = bundle.train.labels
    num_samples = labels_all.shape[0]
    if group.distributed:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        forward = model
    for epoch in range(checkpoint.epochs_completed, config.epochs):
        weights = config.weights_for_epoch(epoch)
        model.train()
        if config.freeze_predictor:
            model.predictor.eval()  # f's batch-norm statistics and dropout untouched: its outputs stay bit-identical
        started = time.perf_counter()
        order = torch.randperm(num_samples, generator=shuffle)
        sums = torch.zeros(len(LossTerms.names()), dtype=torch.float64, device=device)
        batches = range(0, num_samples, config.batch_size)
        bar = progress_bar(batches, f"epoch {epoch + 1}/{config.epochs}", unit="batch", enabled=progress, summary=False)  # log() writes the epoch line
        streamed = None if images_all is not None else iterate_uint8_batches(
            bundle.train, [shard(order[start : start + config.batch_size], group) if group.distributed
                           else order[start : start + config.batch_size] for start in batches], workers)
        for step, start in enumerate(bar):
            index = order[start : start + config.batch_size]
            if group.distributed:
                local_sizes = shard_sizes(len(index), group.world_size)
                index = shard(index, group)
            if streamed is None:
                images = images_all[index].to(device).float().div_(255.0)
                labels = labels_all[index].to(device)
            else:
                pixels, labels = next(streamed)
                images = pixels.to(device).float().div_(255.0)
                labels = labels.to(device)
            outputs = forward(images, reconstruct=True)
            if config.interpreter_input_dropout > 0:
                dropped = F.dropout(outputs.attributes, config.interpreter_input_dropout, training=True)
                outputs = outputs._replace(g_logits=model.interpreter(dropped))
            if group.distributed:
                terms, objective = distributed_flint_loss(outputs, images, labels, weights, config.l1_reduction,
                                                          local_sizes=local_sizes, rank=group.rank)
            else:
                terms = flint_loss(outputs, images, labels, weights, config.l1_reduction)
                objective = terms.total
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            sums += terms.as_tensor() * index.shape[0]  # stays a tensor: no per-step conversion to Python
            if progress and step % 25 == 0:
                bar.set_postfix(loss=f"{float(terms.total.detach()):.3f}")
        train_losses = dict(zip(LossTerms.names(), (group.sum(sums) / num_samples).tolist()))
        metrics = evaluate(model, bundle, device, group=group, workers=workers)
        record = EpochRecord(epoch=epoch, weights=asdict(weights), train_losses=train_losses, **metrics,
                             seconds=time.perf_counter() - started)
        checkpoint.history.append(record)
        checkpoint.resume = {
            "optimizer": optimizer.state_dict(),
            "shuffle_generator": shuffle.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }
        if group.distributed:
            checkpoint.resume["torch_rng_per_rank"] = group.all_gather_objects(torch.get_rng_state())
            if device.type == "cuda":
                checkpoint.resume["cuda_rng_per_rank"] = group.all_gather_objects(torch.cuda.get_rng_state(device).cpu())
        if group.is_main:
            checkpoint.save(output)
            log(format_epoch(record, config.epochs))
        group.barrier()
    model.eval()
    return checkpoint
