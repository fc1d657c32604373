"""DDP training under torch.distributed (gloo, 2 CPU processes) against single-process training."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from flint_analysis.checkpoint import Checkpoint, load_checkpoint
from flint_analysis.distributed import SINGLE_PROCESS, join_process_group, leave_process_group, shard, shard_sizes
from flint_analysis.models import build_model, resolve_architecture_kwargs
from flint_analysis.training.config import TrainingConfig
from flint_analysis.training.trainer import train
from tests.conftest import tiny_bundle

ROOT = Path(__file__).resolve().parent.parent
# 67 training images in global batches of 16: the last batch has 3, split 2/1 over the two ranks.
NUM_TRAIN = 67
CONFIG = TrainingConfig(epochs=2, batch_size=16, learning_rate=1e-3, eta=0.02, interpretability_start_epoch=0, entropy_start_epoch=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_checkpoint(bundle, seed: int) -> Checkpoint:
    torch.manual_seed(seed)
    # no dropout in f: the ranks draw their own dropout masks, so only a dropout-free run can match one process
    kwargs = resolve_architecture_kwargs("lenet", {"num_attributes": 6, "dropout": 0.0})
    return Checkpoint(build_model("lenet", kwargs), "lenet", kwargs, bundle.spec)


def _ddp_worker(rank: int, world_size: int, port: int, output: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    group, device = join_process_group(torch.device("cpu"))
    try:
        bundle = tiny_bundle(num_train=NUM_TRAIN, num_test=21)
        train(fresh_checkpoint(bundle, 7), bundle, CONFIG, output, 7, device, progress=False, log=lambda s: None, group=group)
    finally:
        leave_process_group(group)


def test_shards_cover_every_item_once_in_order():
    for total in range(0, 12):
        for world_size in (1, 2, 3, 5):
            sizes = shard_sizes(total, world_size)
            assert sum(sizes) == total and max(sizes) - min(sizes) <= 1
            groups = [SINGLE_PROCESS.__class__(world_size=world_size, rank=r) for r in range(world_size)]
            assert [x for g in groups for x in shard(list(range(total)), g)] == list(range(total))


def test_ddp_training_takes_the_steps_of_one_process_on_the_same_global_batches(tmp_path):
    """Two gloo processes, each with half of every global batch (the last one split 2/1), end with the weights of
    one process training on the whole batches: the entropy of the batch-mean attributes is computed on the gathered
    global batch and the per-rank means are weighted by their share. Float32 on CPU: equal up to summation order
    (measured differences about 1e-7; the bound below is 1e-5 relative to each tensor's scale)."""
    output = tmp_path / "ddp.pt"
    mp.start_processes(_ddp_worker, args=(2, free_port(), str(output)), nprocs=2, start_method="spawn")
    ddp = load_checkpoint(output)
    torch.set_num_threads(1)
    bundle = tiny_bundle(num_train=NUM_TRAIN, num_test=21)
    single = train(fresh_checkpoint(bundle, 7), bundle, CONFIG, tmp_path / "one.pt", 7, torch.device("cpu"), progress=False, log=lambda s: None)
    start = fresh_checkpoint(bundle, 7).model.state_dict()
    ddp_state, single_state = ddp.model.state_dict(), single.model.state_dict()
    for name, reference in single_state.items():
        moved = (reference - start[name]).abs().max().item()
        assert moved > 0, name  # every tensor trained
        difference = (ddp_state[name] - reference).abs().max().item()
        assert difference <= 1e-5 * max(1.0, reference.abs().max().item()), (name, difference, moved)
    # the epoch records: the same test metrics (counts summed over the ranks) and losses (within rounding)
    for a, b in zip(ddp.history, single.history):
        assert (a.test_accuracy_f, a.test_accuracy_g, a.test_fidelity) == (b.test_accuracy_f, b.test_accuracy_g, b.test_fidelity)
        for key, value in b.train_losses.items():
            assert a.train_losses[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    record = ddp.training.environments[-1].environment
    assert (record["world_size"], record["backend"]) == (2, "gloo")
    assert "world_size" not in single.training.environments[-1].environment


def write_quickdraw(folder: Path, classes: list[str], rows: int = 30) -> None:
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        bitmaps = rng.integers(0, 40, (rows, 784), dtype=np.uint8)
        bitmaps[:, k * 70 : k * 70 + 60] = 255
        np.save(folder / f"full_numpy_bitmap_{name}.npy", bitmaps)


def torchrun(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), "-m", "flint_analysis.training.cli", *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def test_flint_train_under_torchrun_resumes_exactly_and_refuses_another_world_size(tmp_path):
    classes = ["apple", "cat", "key"]
    write_quickdraw(tmp_path, classes)
    common = ["--dataset", "quickdraw", "--data-root", str(tmp_path), "--classes", *classes, "--architecture", "lenet",
              "--samples-per-class", "30", "--batch-size", "16", "--lr", "1e-3", "--quiet"]
    straight = torchrun([*common, "--epochs", "2", "-o", "straight.pt"], tmp_path)
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert "2 processes (gloo), global batch 16" in straight.stdout
    assert straight.stdout.count("wrote straight.pt") == 1  # rank 0 alone prints and writes
    first = torchrun([*common, "--epochs", "1", "-o", "resumed.pt"], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = torchrun(["--resume", "resumed.pt", "--epochs", "2", "--data-root", str(tmp_path), "--quiet"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = load_checkpoint(tmp_path / "straight.pt"), load_checkpoint(tmp_path / "resumed.pt")
    # f keeps its dropout here: each rank's dropout stream is saved and restored, so the resumed run is exact
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    info = subprocess.run([sys.executable, "-m", "flint_analysis.cli", "info", "resumed.pt"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "2 processes (gloo)" in info.stdout
    alone = subprocess.run([sys.executable, "-m", "flint_analysis.training.cli", "--resume", "resumed.pt", "--epochs", "3",
                            "--data-root", str(tmp_path), "--quiet"],
                           cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert alone.returncode == 2
    assert alone.stderr.strip().splitlines()[-1].startswith("flint-train: error:") and "torchrun --nproc-per-node 2" in alone.stderr
    assert len(alone.stderr.strip().splitlines()) == 1
