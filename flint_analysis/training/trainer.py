"""The training loop of Algorithm 1: one Adam over f, Φ, h and d, per-epoch schedule, checkpoint each epoch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from flint_analysis.checkpoint import Checkpoint
from flint_analysis.datasets import DatasetBundle, data_fingerprint
from flint_analysis.errors import CheckpointError, DatasetError
from flint_analysis.inference import forward_pass
from flint_analysis.models import FlintModel
from flint_analysis.runtime import compute_environment
from flint_analysis.progress import progress_bar
from flint_analysis.records import EnvironmentRecord, EpochRecord
from flint_analysis.training.config import TrainingConfig
from flint_analysis.training.losses import LossTerms, flint_loss


def evaluate(model: FlintModel, bundle: DatasetBundle, device: torch.device, batch_size: int = 1000) -> dict[str, float]:
    """Test-split accuracy of f and g and fidelity (share of samples where g's class equals f's), in %."""
    # imported here, not at the top: loading a checkpoint with a training config imports this package (for
    # TrainingConfig), and ``flint-analyze info`` need not wait for scikit-learn
    from sklearn.metrics import accuracy_score

    result = forward_pass(model, bundle.test, batch_size=batch_size, device=device)
    labels, f_pred, g_pred = result.labels.numpy(), result.f_predictions.numpy(), result.g_predictions.numpy()
    return {
        "test_accuracy_f": 100.0 * accuracy_score(labels, f_pred),
        "test_accuracy_g": 100.0 * accuracy_score(labels, g_pred),
        "test_fidelity": 100.0 * accuracy_score(f_pred, g_pred),
    }


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
) -> Checkpoint:
    """Train ``checkpoint.model`` on ``bundle.train`` until ``config.epochs`` epochs are done.

    Starts from ``checkpoint.resume`` when it holds optimizer and generator states (``--resume``), so an
    interrupted run continues bit-identically on CPU. After every epoch the model is evaluated on the
    test split, the epoch is appended to ``checkpoint.history`` and the checkpoint is written atomically
    to ``output``. Global torch RNG state (dropout) and the shuffling generator are saved with it.

    Also recorded: the data's :func:`~flint_analysis.datasets.data_fingerprint` in ``checkpoint.dataset``
    (a checkpoint that has one must be trained further on the same data), and, in
    ``checkpoint.training.environments``, one :func:`~flint_analysis.runtime.compute_environment` record
    per run with the ``first_epoch`` it trained (a resumed run adds one): bit-identical results hold
    only within one torch build, CPU capability, thread count and device.
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
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    shuffle = torch.Generator().manual_seed(seed)
    if checkpoint.resume:
        try:
            optimizer.load_state_dict(checkpoint.resume["optimizer"])
            shuffle.set_state(checkpoint.resume["shuffle_generator"])
            torch.set_rng_state(checkpoint.resume["torch_rng"])
            if device.type == "cuda" and checkpoint.resume.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(checkpoint.resume["cuda_rng"], device)
        except (ValueError, RuntimeError, KeyError, TypeError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CheckpointError(
                f"the resume state of checkpoint {checkpoint.path or '(in memory)'} does not fit its model ({reason}); "
                "resume from another checkpoint or retrain"
            ) from None
    environments = list(checkpoint.training.environments or ())
    if checkpoint.epochs_completed < config.epochs:
        environments.append(EnvironmentRecord(first_epoch=checkpoint.epochs_completed, environment=compute_environment(device)))
    checkpoint.training = replace(checkpoint.training, config=config, seed=seed,
                                  schedule=tuple(asdict(w) for w in config.schedule()), environments=tuple(environments))
    import sklearn.metrics  # noqa: F401 -- evaluate's import, done before the first epoch's clock starts

    images_all, labels_all = bundle.train.images, bundle.train.labels
    num_samples = images_all.shape[0]
    for epoch in range(checkpoint.epochs_completed, config.epochs):
        weights = config.weights_for_epoch(epoch)
        model.train()
        started = time.perf_counter()
        order = torch.randperm(num_samples, generator=shuffle)
        sums = torch.zeros(len(LossTerms.names()), dtype=torch.float64, device=device)
        batches = range(0, num_samples, config.batch_size)
        bar = progress_bar(batches, f"epoch {epoch + 1}/{config.epochs}", unit="batch", enabled=progress, summary=False)  # log() writes the epoch line
        for step, start in enumerate(bar):
            index = order[start : start + config.batch_size]
            images = images_all[index].to(device).float().div_(255.0)
            labels = labels_all[index].to(device)
            outputs = model(images, reconstruct=True)
            if config.interpreter_input_dropout > 0:
                dropped = F.dropout(outputs.attributes, config.interpreter_input_dropout, training=True)
                outputs = outputs._replace(g_logits=model.interpreter(dropped))
            terms = flint_loss(outputs, images, labels, weights, config.l1_reduction)
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            optimizer.step()
            sums += terms.as_tensor() * index.shape[0]  # stays a tensor: no per-step conversion to Python
            if progress and step % 25 == 0:
                bar.set_postfix(loss=f"{float(terms.total.detach()):.3f}")
        train_losses = dict(zip(LossTerms.names(), (sums / num_samples).tolist()))
        metrics = evaluate(model, bundle, device)
        record = EpochRecord(epoch=epoch, weights=asdict(weights), train_losses=train_losses, **metrics,
                             seconds=time.perf_counter() - started)
        checkpoint.history.append(record)
        checkpoint.resume = {
            "optimizer": optimizer.state_dict(),
            "shuffle_generator": shuffle.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }
        checkpoint.save(output)
        log(format_epoch(record, config.epochs))
    model.eval()
    return checkpoint
