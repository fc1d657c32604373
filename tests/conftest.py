"""Shared fixtures: tiny models, tiny data and checkpoints built in temporary folders (no internet)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from flint_analysis.checkpoint import Checkpoint
from flint_analysis.datasets import DatasetBundle, DatasetSpec, ImageDataset
from flint_analysis.models import build_model, resolve_architecture_kwargs


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in the IDX format: magic 0x0000 0x08 ndim, big-endian int32 sizes, data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def synthetic_images(num: int, seed: int, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable uint8 images: class k lights up a 6×6 block at a class-specific place, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(num) % num_classes
    images = torch.randint(0, 60, (num, 1, 28, 28), generator=generator, dtype=torch.uint8)
    for k in range(num_classes):
        row, col = 2 + 8 * (k // 3), 2 + 8 * (k % 3)
        images[labels == k, :, row : row + 6, col : col + 6] = 220
    return images, labels


def tiny_bundle(num_train: int = 120, num_test: int = 60, seed: int = 0) -> DatasetBundle:
    train_images, train_labels = synthetic_images(num_train, seed)
    test_images, test_labels = synthetic_images(num_test, seed + 1)
    spec = DatasetSpec(
        name="mnist5k",
        class_names=tuple(str(k) for k in range(10)),
        input_shape=(1, 28, 28),
        split_seed=0,
        train_size=num_train,
        test_size=num_test,
    )
    return DatasetBundle(spec, ImageDataset(train_images, train_labels), ImageDataset(test_images, test_labels))


def tiny_checkpoint(seed: int = 0, num_attributes: int = 6) -> Checkpoint:
    kwargs = resolve_architecture_kwargs("lenet", {"num_attributes": num_attributes})
    torch.manual_seed(seed)
    model = build_model("lenet", kwargs).eval()
    return Checkpoint(
        model=model,
        architecture="lenet",
        architecture_kwargs=kwargs,
        dataset=tiny_bundle().spec,
        training={"preset": "test", "seed": seed},
    )


@pytest.fixture(scope="session")
def mnist5k() -> DatasetBundle:
    from flint_analysis.datasets import load_dataset

    return load_dataset("mnist5k")


@pytest.fixture(scope="session")
def mnist5k_checkpoint(tmp_path_factory, mnist5k) -> Path:
    """An untrained lenet (J = 6) saved with the real mnist5k spec, so every command can load its data."""
    torch.manual_seed(0)
    kwargs = resolve_architecture_kwargs("lenet", {"num_attributes": 6})
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    Checkpoint(build_model("lenet", kwargs), "lenet", kwargs, mnist5k.spec, training={"seed": 0}).save(path)
    return path


@pytest.fixture
def bundle() -> DatasetBundle:
    return tiny_bundle()


@pytest.fixture
def checkpoint() -> Checkpoint:
    return tiny_checkpoint()


@pytest.fixture(autouse=True)
def _isolated_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a developer's $FLINT_DATA."""
    monkeypatch.delenv("FLINT_DATA", raising=False)
