"""Import checkpoints written by the authors' FLINT code (``flint-analyze import-official``).

The authors' training script (its ``save_model``) saves one ``torch.save`` dict:
``f_state_dict`` (the predictor), ``g_state_dict`` (Φ: their ``g`` is the attribute network, not h∘Φ),
``h_state_dict``, ``d_state_dict``, plus ``last_weights`` (a text), ``test_info`` and ``train_info`` (NumPy
arrays of per-epoch numbers), ``extra_info`` (a text) and ``concise`` (a list of NumPy floats).
:func:`import_official` turns such a file into a normal flint-analysis checkpoint of
:mod:`~flint_analysis.models.official`'s architectures, with the provenance recorded in the checkpoint's
training record (``training.imported``, shown by ``flint-analyze info``).

The file is untrusted. It is read into memory once (its SHA-256 is that of the bytes loaded) and unpickled
with ``torch.load(weights_only=True)``, the NumPy reconstruction functions and *numeric* dtypes allowed for
that one call only (``torch.serialization.safe_globals``): tensors, plain containers, NumPy numeric arrays and
scalars load; anything else (a class to build, a function to call: code) is refused in one line before it
is called. Then every entry is checked before a model is built: the four state dicts against the authors'
networks for ``--dataset`` (the family, the input channels and the class count name a mislabelled file;
every key is mapped, known-unused ones are dropped and listed, anything else is refused; shapes are compared
on the meta device; weights must be finite floats), and the informational entries by type.

Key mappings (authors' key → ours; ``lenet``, which computes exactly the authors' MNIST network, and
``official-resnet18``):

- ``f``: MNIST ``features.{0,2}`` unchanged, ``classifier.{0,3}`` → ``classifier.{1,4}``; ResNet ``convnet.conv1.weight`` → ``stem.weight``,
  ``convnet.layerL.B.*`` → ``layerL.B.*`` (``conv1``, ``conv2``; ``shortcut.0.weight`` → ``shortcut.weight``),
  ``convnet.fc.*`` → ``fc1.*``, ``fc2.*`` → ``fc2.*``; dropped: ``convnet.bn1.*`` (weight, bias, running_mean,
  running_var, num_batches_tracked).
- ``Φ`` (``g_state_dict``): MNIST ``conv1`` → ``conv``, ``fc1`` → ``fc``; ResNet ``conv1``, ``conv2``, ``conv3``,
  ``fc1`` → ``branch3``, ``branch4``, ``merge``, ``fc``; dropped: MNIST ``conv2.*`` and ``bn1.*``, ResNet ``bn1.*``.
- ``h``: ``fc1.weight`` → ``weight``, ``fc1.bias`` → ``bias`` (its input ``Dropout(0.01)`` has no weights and acts
  in training only: dropped, and recorded).
- ``d``: MNIST ``fc1``, ``trconv1``, ``trconv2`` → ``layers.{0,2,4}``; QuickDraw and CIFAR-10 unchanged (also ``fc2``).
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from flint_analysis.checkpoint import Checkpoint, load_checkpoint
from flint_analysis.datasets import CIFAR10_CLASSES, FASHION_MNIST_CLASSES, MNIST_CLASSES, QUICKDRAW_PAPER_CLASSES, DatasetSpec
from flint_analysis.errors import ArchitectureError, CheckpointError, InputError, OutputError, short_repr
from flint_analysis.models import build_model, resolve_architecture_kwargs
from flint_analysis.models.official import CIFAR10_MEAN, CIFAR10_STD
from flint_analysis.runtime import library_versions

LAYOUT = "authors-flint-v1"
"""The name recorded for the authors' checkpoint layout (their ``save_model``, code of 2021)."""
LAYOUT_DESCRIPTION = (
    "the authors' FLINT code (github.com/jayneelparekh/FLINT, save_model): one torch.save dict with f_state_dict, "
    "g_state_dict (Φ), h_state_dict, d_state_dict, last_weights, test_info, train_info, extra_info, concise"
)
STATE_DICTS = MappingProxyType({"f_state_dict": "predictor", "g_state_dict": "attributes", "h_state_dict": "interpreter",
                                "d_state_dict": "decoder"})
"""The authors' state-dict entries and the :class:`FlintModel` part each one becomes."""
INFO_ENTRIES = ("last_weights", "test_info", "train_info", "extra_info", "concise")
"""The authors' other entries: read (type-checked) and recorded, never used to build anything."""
TEST_INFO_COLUMNS = ("accuracy_f_percent", "prediction_loss", "input_fidelity_loss", "output_fidelity_loss",
                     "conciseness_diversity_loss", "fidelity_percent")
"""The columns of the authors' ``test_info`` rows (their ``test()``: accuracy of f, losses, agreement of g with f)."""
MAX_SOURCE_BYTES = 1 << 30
"""Largest source file read (the authors' CIFAR-10 networks take about 150 MB)."""
MAX_INFO_ROWS = 10_000
_ZIP_MAGIC = b"PK\x03\x04"
_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _numpy_safe_globals() -> list[tuple[Any, str]]:
    """What unpickling the authors' NumPy entries needs, and nothing more: the array and scalar
    reconstruction functions (under NumPy 1's and 2's module names), ``ndarray``, ``dtype`` and the numeric
    dtype classes (object, string and structured dtypes are not allowed to be built)."""
    multiarray = getattr(np, "_core", None)
    multiarray = multiarray.multiarray if multiarray is not None else np.core.multiarray  # NumPy < 2
    allowed: list[tuple[Any, str]] = []
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    allowed += [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for code in "?bhilqBHILQefd":
        kind = type(np.dtype(code))
        if kind is not np.dtype:  # NumPy ≥ 1.20: one class per dtype, built by the pickle's BUILD step
            allowed.append((kind, f"{kind.__module__}.{kind.__qualname__}"))
    return allowed


# ------------------------------------------------------------------------------------------ layouts
@dataclass(frozen=True)
class OfficialDataset:
    """What ``--dataset NAME`` means for an import: the authors' networks and the data they were trained on.

    Attributes:
        name: the flint-analysis dataset (``flint_analysis.datasets.DATASETS``).
        family: ``"lenet"`` (the authors' MNIST networks) or ``"resnet"`` (their QuickDraw/CIFAR-10 ResNet).
        architecture: the registry name of the converted model.
        kwargs: its fixed keyword arguments (J and C are read from the file).
        networks: the authors' class names of f, Φ, h and d.
        class_names, input_shape, split_seed, options: the :class:`DatasetSpec` facts.
        notes: what the checkpoint's reader should know (recorded in the provenance).
    """

    name: str
    family: str
    architecture: str
    kwargs: Mapping[str, Any]
    networks: Mapping[str, str]
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    split_seed: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


_LENET_NETWORKS = MappingProxyType({"f": "Net2_MNIST_old", "phi": "attr_MNIST", "h": "explainer", "d": "decode_MNIST"})
_RESNET_NETWORK = "MyResNet(version='34', bn=False) (ResNet_34 of BasicBlock3)"
_H_DROPOUT = "h: its input Dropout(p=0.01), active in training only and without weights, is not part of the model"
_SHARED_RELUS = "each nn.ReLU the authors reuse within a forward pass is one module per use here (no weights, same values)"

OFFICIAL_DATASETS: Mapping[str, OfficialDataset] = MappingProxyType({
    "mnist": OfficialDataset(
        "mnist", "lenet", "lenet", {"in_channels": 1, "input_size": 28, "attribute_activation": "leaky_relu"},
        _LENET_NETWORKS, MNIST_CLASSES, (1, 28, 28), notes=(_H_DROPOUT,)),
    "fashion-mnist": OfficialDataset(
        "fashion-mnist", "lenet", "lenet", {"in_channels": 1, "input_size": 28, "attribute_activation": "leaky_relu"},
        _LENET_NETWORKS, FASHION_MNIST_CLASSES, (1, 28, 28), notes=(_H_DROPOUT,)),
    "quickdraw": OfficialDataset(
        "quickdraw", "resnet", "official-resnet18",
        {"in_channels": 1, "input_size": 28, "attribute_activation": "relu", "decoder": "quickdraw", "input_normalization": "none"},
        {"f": _RESNET_NETWORK, "phi": "attr_RN18_multi", "h": "explainer", "d": "decode2_MNIST"},
        QUICKDRAW_PAPER_CLASSES, (1, 28, 28), options={"samples_per_class": 10_000, "train_fraction": 0.8, "split": "rows"},
        notes=(_H_DROPOUT, _SHARED_RELUS,
               "data: the authors' split, rows 0-7999 of each class file for training and 8000-9999 for testing, in file "
               "order; point --data-root at their <class>_small.npy files (the first rows of a full numpy_bitmap file "
               "are other drawings)")),
    "cifar10": OfficialDataset(
        "cifar10", "resnet", "official-resnet18",
        {"in_channels": 3, "input_size": 32, "attribute_activation": "relu", "decoder": "cifar10", "input_normalization": "cifar10"},
        {"f": _RESNET_NETWORK + " with in_maps=3", "phi": "attr_RN18_multi", "h": "explainer", "d": "decode_CIFAR"},
        CIFAR10_CLASSES, (3, 32, 32),
        notes=(_H_DROPOUT, _SHARED_RELUS,
               "input: the authors' Normalize(mean (" + ", ".join(map(str, CIFAR10_MEAN)) + "), std ("
               + ", ".join(map(str, CIFAR10_STD)) + ")) is f's first layer and d's output is mapped back "
               "(d(Φ)·std + mean): the model takes and draws images in [0, 1]")),
})
"""The ``--dataset`` choices of ``import-official``."""

SPLIT_SIZES: dict[str, tuple[int, int]] = {"mnist": (60_000, 10_000), "fashion-mnist": (60_000, 10_000),
                                           "quickdraw": (80_000, 20_000), "cifar10": (50_000, 10_000)}
"""Train/test sizes recorded in the spec: the splits flint-analysis's loaders read for each dataset."""

UNUSED_KEYS: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "lenet": {"g_state_dict": ("conv2.weight", "conv2.bias", *(f"bn1.{k}" for k in _BN_KEYS))},
    "resnet": {"f_state_dict": tuple(f"convnet.bn1.{k}" for k in _BN_KEYS), "g_state_dict": tuple(f"bn1.{k}" for k in _BN_KEYS)},
})
"""Keys of modules the authors define but never use (dropped when present; a strict load of theirs needs them)."""


def _identity(key: str) -> str:
    return key


def _resnet_f_key(key: str) -> str:
    """Our ``official-resnet18`` predictor key → the authors' ``f_state_dict`` key."""
    if key == "stem.weight":
        return "convnet.conv1.weight"
    if key.startswith("fc1."):
        return "convnet.fc." + key[len("fc1."):]
    if key.startswith("fc2."):
        return key
    if key.endswith(".shortcut.weight"):  # the authors' 1×1 shortcut is nn.Sequential(conv)
        key = key[: -len("weight")] + "0.weight"
    return "convnet." + key


def _h_key(key: str) -> str:
    return "fc1." + key


_LENET_F = {"classifier.1": "classifier.0", "classifier.4": "classifier.3"}  # ours has its Flatten inside classifier
_LENET_PHI = {"conv": "conv1", "fc": "fc1"}
_LENET_D = {"layers.0": "fc1", "layers.2": "trconv1", "layers.4": "trconv2"}
_RESNET_PHI = {"branch3": "conv1", "branch4": "conv2", "merge": "conv3", "fc": "fc1"}


def _renamer(prefixes: Mapping[str, str]) -> Callable[[str], str]:
    """Our key → the authors' key by replacing the module-path prefix (``module.param``)."""

    def rename(key: str) -> str:
        module, _, parameter = key.rpartition(".")
        return f"{prefixes.get(module, module)}.{parameter}"

    return rename


SOURCE_KEY: Mapping[str, Mapping[str, Callable[[str], str]]] = MappingProxyType({
    "lenet": {"f_state_dict": _renamer(_LENET_F), "g_state_dict": _renamer(_LENET_PHI), "h_state_dict": _h_key,
              "d_state_dict": _renamer(_LENET_D)},
    "resnet": {"f_state_dict": _resnet_f_key, "g_state_dict": _renamer(_RESNET_PHI), "h_state_dict": _h_key, "d_state_dict": _identity},
})
"""Per family and state dict: our key → the authors' key."""

_FAMILY_TEXT = {
    "lenet": "the authors' MNIST/FashionMNIST network (keys features.*, classifier.*); use --dataset mnist or fashion-mnist",
    "resnet": "the authors' ResNet (keys convnet.*) of QuickDraw or CIFAR-10; use --dataset quickdraw or cifar10",
}


# ------------------------------------------------------------------------------------------ reading
def _error(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"authors' checkpoint {path}: {what}")



def _shape(value: Any) -> str:
    return "×".join(str(s) for s in value.shape) if value.shape else "scalar"


def read_official_file(path: str | Path) -> tuple[dict[str, Any], str, int]:
    """Load an authors' ``.pt`` file safely: ``(payload, sha256 of the bytes loaded, size)``.

    Raises:
        CheckpointError: one line for a missing, unreadable, empty, oversized, non-torch, legacy-format,
            truncated or corrupted file, for one that needs anything beyond tensors, plain containers and NumPy
            numeric arrays/scalars to load (code), and for a payload that is not a dict.
    """
    path = Path(path)
    if torch.torch_version.TorchVersion(torch.__version__) < (2, 6):  # scoped allow-lists of (function, name) pairs
        raise InputError(f"import-official needs torch 2.6 or newer to load files with NumPy entries safely; this is torch "
                         f"{torch.__version__}: upgrade torch")
    try:
        if not path.exists():
            raise _error(path, "does not exist; check the path")
        if not path.is_file():
            raise _error(path, "is not a file; give the .pt file the authors' code saved")
        size = path.stat().st_size
        if size > MAX_SOURCE_BYTES:
            raise _error(path, f"is {size:,} bytes, more than the {MAX_SOURCE_BYTES:,} an authors' checkpoint can take; it is not one")
        with open(path, "rb") as handle:
            data = handle.read(MAX_SOURCE_BYTES + 1)
    except PermissionError:
        raise _error(path, "cannot be read (permission denied); make it readable (chmod u+r)") from None
    except OSError as error:
        raise _error(path, f"cannot be read ({error.strerror or error})") from None
    if not data:
        raise _error(path, "is empty (0 bytes)")
    if len(data) > MAX_SOURCE_BYTES:
        raise _error(path, "grew while it was read; read it again when it is complete")
    if not data.startswith(_ZIP_MAGIC):
        if data[:1] == b"\x80":
            raise _error(path, "is in torch's legacy (pre-1.6) format, which is not read safely; re-save it with torch ≥ 1.6 "
                         "(torch.save(torch.load(file), new_file) in the authors' environment, torch 1.7)")
        raise _error(path, f"is not a torch file (it starts with {data[:4]!r})")
    buffer = io.BytesIO(data)
    if not zipfile.is_zipfile(buffer):
        raise _error(path, "is truncated or corrupted (its zip directory is missing); copy it again")
    buffer.seek(0)
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            payload = torch.load(buffer, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error)
        found = re.search(r"GLOBAL (\S+)", message) or re.search(r"(?:got|function) <?(?:class )?'?([\w.<>]+)", message)
        if found or "weights only" in message.lower() or "weights_only" in message.lower():
            needs = f" ({found.group(1).rstrip(':.')})" if found else ""
            raise _error(path, f"needs Python objects beyond tensors, plain containers and NumPy numbers to load{needs}, which "
                         "could run code; refusing it (re-save it from the authors' environment with only their entries)") from None
        raise _error(path, f"is corrupted ({message.splitlines()[0] if message else 'unpickling failed'}); copy it again") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, OSError, MemoryError, TypeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise _error(path, f"is truncated or corrupted ({reason[:200]}); copy it again") from None
    if not isinstance(payload, dict):
        raise _error(path, f"holds a {type(payload).__name__}, not the authors' dict of f_state_dict, g_state_dict, h_state_dict, d_state_dict")
    return payload, hashlib.sha256(data).hexdigest(), len(data)


def _layout_problem(payload: Mapping[Any, Any]) -> str | None:
    if payload.get("format") == "flint-analysis-checkpoint":
        return "is already a flint-analysis checkpoint; analyse it directly (flint-analyze info FILE)"
    missing = [name for name in STATE_DICTS if name not in payload]
    if not missing:
        bad = next((name for name in STATE_DICTS if not isinstance(payload[name], Mapping)), None)
        return None if bad is None else f"has a {bad} of type {type(payload[bad]).__name__}, not a state dict"
    keys = [key for key in payload if isinstance(key, str)]
    if keys and all(isinstance(payload[k], torch.Tensor) for k in keys):
        return ("holds one bare state dict, not the authors' layout (a dict of f_state_dict, g_state_dict, h_state_dict, "
                "d_state_dict)")
    listed = ", ".join(short_repr(k, 50) for k in list(payload)[:6]) or "nothing"
    return (f"is not in the authors' layout: no {missing[0]!r} (it holds {listed}); expected a dict of f_state_dict, "
            "g_state_dict, h_state_dict, d_state_dict from their save_model")


def _family(state: Mapping[str, Any]) -> str | None:
    if "features.0.weight" in state:
        return "lenet"
    if "convnet.conv1.weight" in state:
        return "resnet"
    return None


def _tensor(state: Mapping[str, Any], key: str, where: str, path: Path, ndim: int) -> torch.Tensor:
    value = state.get(key)
    if not isinstance(value, torch.Tensor) or value.ndim != ndim:
        raise _error(path, f"{where} has no {ndim}-D tensor {key!r}; it is incomplete or not the authors' layout")
    return value


def _kwargs(payload: Mapping[str, Any], target: OfficialDataset, path: Path) -> dict[str, Any]:
    """The architecture kwargs: the dataset's, plus J and C read from the file (mislabelled files refused here)."""
    f_state = payload["f_state_dict"]
    family = _family(f_state)
    if family is None:
        keys = ", ".join(short_repr(k, 50) for k in list(f_state)[:4]) or "nothing"
        raise _error(path, f"f_state_dict holds neither the authors' MNIST network (features.*) nor their ResNet (convnet.*) "
                     f"but {keys}; it is not a network of the authors' code")
    if family != target.family:
        raise _error(path, f"its f is {_FAMILY_TEXT[family]}, not for --dataset {target.name}")
    channels = target.input_shape[0]
    if family == "resnet":
        stem = _tensor(f_state, "convnet.conv1.weight", "f_state_dict", path, 4)
        if stem.shape[1] != channels:
            found = int(stem.shape[1])
            which = {1: "QuickDraw network (1 channel)", 3: "CIFAR-10 network (3 channels)"}.get(found, f"{found}-channel ResNet")
            hint = {1: "quickdraw", 3: "cifar10"}.get(found)
            plural = "s" if channels != 1 else ""
            raise _error(path, f"its f takes {found}-channel images (convnet.conv1.weight {_shape(stem)}): it is the "
                         f"authors' {which}, not {target.name}'s ({channels} channel{plural})"
                         + (f"; use --dataset {hint}" if hint else ""))
        logits = _tensor(f_state, "fc2.weight", "f_state_dict", path, 2)
    else:
        logits = _tensor(f_state, "classifier.3.weight", "f_state_dict", path, 2)
    if logits.shape[0] != len(target.class_names):
        raise _error(path, f"its f has {logits.shape[0]} outputs but --dataset {target.name} has {len(target.class_names)} classes; "
                     "it was trained on other data")
    attributes = _tensor(payload["g_state_dict"], "fc1.weight", "g_state_dict", path, 2)
    kwargs = {**target.kwargs, "num_classes": int(logits.shape[0]), "num_attributes": int(attributes.shape[0])}
    try:
        return resolve_architecture_kwargs(target.architecture, kwargs)
    except ArchitectureError as error:
        raise _error(path, f"its networks do not fit {target.architecture}: {error}") from None


def _convert_state(
    name: str, state: Mapping[Any, Any], expected: Mapping[str, torch.Tensor], source_key: Callable[[str], str],
    unused: tuple[str, ...], path: Path,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Our state dict from the authors' ``state`` (checked key by key), and the unused keys it dropped."""
    wanted = {source_key(key): key for key in expected}
    missing = [key for key in wanted if key not in state]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise _error(path, f"{name} has no {missing[0]!r}{more}; it is incomplete or not the authors' layout")
    unexpected = [key for key in state if key not in wanted and key not in unused]
    if unexpected:
        more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
        raise _error(path, f"{name} has the unexpected key {short_repr(unexpected[0], 50)}{more}, which the authors' networks for this "
                     "dataset do not have; it is another network or a modified one")
    converted = {}
    for source, ours in wanted.items():
        value, blueprint = state[source], expected[ours]
        where = f"{name}[{source!r}]"
        if not isinstance(value, torch.Tensor):
            raise _error(path, f"{where} is a {type(value).__name__}, not a tensor")
        if value.layout != torch.strided or value.is_quantized or not value.dtype.is_floating_point:
            raise _error(path, f"{where} is not a plain floating-point tensor ({value.layout}, {value.dtype})")
        if value.shape != blueprint.shape:
            raise _error(path, f"{where} has shape {_shape(value)}, the authors' network expects {_shape(blueprint)}")
        needed = value.numel() * value.element_size()
        if needed and value.untyped_storage().nbytes() < needed:
            raise _error(path, f"{where} declares {value.numel()} elements but the file holds fewer")
        bad = int(value.numel() - torch.isfinite(value).sum())
        if bad:
            raise _error(path, f"{where} holds {bad} NaN/Inf value{'s' if bad != 1 else ''}; the authors' training diverged")
        converted[ours] = value.detach().to(torch.float32).contiguous().clone()
    dropped = [f"{name}.{key}" for key in unused if key in state]
    for key in unused:
        if key in state and not isinstance(state[key], torch.Tensor):
            raise _error(path, f"{name}[{key!r}] is a {type(state[key]).__name__}, not a tensor")
    return converted, dropped


def _finite_or_none(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _info_entries(payload: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The authors' informational entries, type-checked, as plain data for the provenance."""
    info: dict[str, Any] = {}
    for key in ("last_weights", "extra_info"):
        if key in payload:
            value = payload[key]
            if not isinstance(value, str):
                raise _error(path, f"its {key} is a {type(value).__name__}, not the text the authors' code writes")
            info[key] = value if len(value) <= 500 else value[:497] + "..."
    for key in ("test_info", "train_info"):
        if key not in payload:
            continue
        value = payload[key]
        if (not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf" or value.ndim != 2
                or not 0 < value.shape[0] <= MAX_INFO_ROWS or not 0 < value.shape[1] <= 16):
            shown = f"{value.dtype} array of shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
            raise _error(path, f"its {key} is a {shown}, not the authors' numeric array of one row per epoch")
        info[f"{key}_rows"] = int(value.shape[0])
        if key == "test_info":
            last = [_finite_or_none(v) for v in value[-1]]
            info["test_info_last"] = dict(zip(TEST_INFO_COLUMNS, last)) if len(last) == len(TEST_INFO_COLUMNS) else last
    if "concise" in payload:
        value = payload["concise"]
        if (not isinstance(value, (list, tuple)) or len(value) > 100
                or not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in value)):
            raise _error(path, "its concise entry is not the authors' list of conciseness values (numbers)")
        info["concise"] = [_finite_or_none(v) for v in value]
    return info


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_official` wrote: the checkpoint as loaded back and its provenance record."""

    checkpoint: Checkpoint
    provenance: dict[str, Any]


def convert_official(payload: Mapping[str, Any], dataset: str, source: Path, sha256: str, size: int) -> Checkpoint:
    """A :class:`Checkpoint` from a loaded authors' payload (see the module docstring for the checks)."""
    if dataset not in OFFICIAL_DATASETS:
        raise InputError(f"unknown --dataset {dataset!r}; the authors' code trained {', '.join(OFFICIAL_DATASETS)}")
    target = OFFICIAL_DATASETS[dataset]
    problem = _layout_problem(payload)
    if problem:
        raise _error(source, problem)
    for name in STATE_DICTS:
        if not all(isinstance(key, str) for key in payload[name]):
            raise _error(source, f"{name} has a key that is not a string; it is not a state dict")
    kwargs = _kwargs(payload, target, source)
    with torch.device("meta"):
        blueprint = build_model(target.architecture, kwargs)
    family = target.family
    state_dicts, dropped = {}, []
    for name, part in STATE_DICTS.items():
        state, gone = _convert_state(name, payload[name], getattr(blueprint, part).state_dict(), SOURCE_KEY[family][name],
                                     UNUSED_KEYS[family].get(name, ()), source)
        state_dicts[part] = state
        dropped += gone
    info = _info_entries(payload, source)
    ignored = sorted(str(key) for key in payload if key not in STATE_DICTS and key not in INFO_ENTRIES)
    provenance = {
        "layout": LAYOUT,
        "layout_description": LAYOUT_DESCRIPTION,
        "source": str(source.resolve())[:1000],
        "source_sha256": sha256,
        "source_bytes": size,
        "dataset": dataset,
        "authors_networks": dict(target.networks),
        "key_mapping": {
            "f": "features.* unchanged, classifier.0 → classifier.1, classifier.3 → classifier.4" if family == "lenet" else
            "convnet.conv1 → stem, convnet.layerL.B.* → layerL.B.* (shortcut.0 → shortcut), convnet.fc → fc1, fc2 → fc2",
            "phi": "conv1 → conv, fc1 → fc" if family == "lenet" else "conv1 → branch3, conv2 → branch4, conv3 → merge, fc1 → fc",
            "h": "fc1.weight → weight, fc1.bias → bias",
            "d": "fc1 → layers.0, trconv1 → layers.2, trconv2 → layers.4" if family == "lenet" else "unchanged",
        },
        "dropped_keys": dropped,
        "notes": list(target.notes),
        "authors_entries": info,
        "ignored_entries": [short_repr(key, 50) for key in ignored[:50]],
        "converted_by": library_versions().get("flint-analysis", "unknown"),
    }
    model = build_model(target.architecture, kwargs)
    for part, state in state_dicts.items():
        getattr(model, part).load_state_dict(state, strict=True)
    model.eval()
    train_size, test_size = SPLIT_SIZES[dataset]
    spec = DatasetSpec(name=dataset, class_names=target.class_names, input_shape=target.input_shape, split_seed=target.split_seed,
                       train_size=train_size, test_size=test_size, options=dict(target.options))
    return Checkpoint(model=model, architecture=target.architecture, architecture_kwargs=kwargs, dataset=spec,
                      training={"imported": provenance})


def check_output(output: str | Path, source: str | Path, overwrite: bool) -> Path:
    """The checkpoint path to write, refused before the source is read when it cannot or must not be written."""
    output = Path(output)
    if output.is_dir():
        raise InputError(f"output {output} is a directory; give a file path such as {output / 'ckpt.pt'}")
    blocking = next((parent for parent in output.parents if parent.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise InputError(f"output {output} cannot be written: {blocking} is a file, not a folder")
    if Path(source).exists() and output.exists() and output.resolve() == Path(source).resolve():
        raise InputError(f"-o {output} is the source file; write the converted checkpoint to another file")
    if output.exists() and not overwrite:
        raise InputError(f"{output} exists; replace it with --overwrite or choose another -o")
    return output


def import_official(source: str | Path, dataset: str, output: str | Path, overwrite: bool = False) -> ImportResult:
    """Convert the authors' checkpoint ``source`` trained on ``dataset`` and write it to ``output``.

    The written file is loaded back with :func:`~flint_analysis.checkpoint.load_checkpoint` (the checks every
    analysis makes); nothing is left at ``output`` when any step fails.

    Raises:
        InputError: an unknown dataset or an output that cannot or must not be written.
        CheckpointError: one line naming what is wrong with the source (see :func:`read_official_file`).
    """
    if dataset not in OFFICIAL_DATASETS:
        raise InputError(f"unknown --dataset {dataset!r}; the authors' code trained {', '.join(OFFICIAL_DATASETS)}")
    source = Path(source)
    output = check_output(output, source, overwrite)
    payload, sha256, size = read_official_file(source)
    checkpoint = convert_official(payload, dataset, source, sha256, size)
    checkpoint.save(output)
    try:
        loaded = load_checkpoint(output)
    except CheckpointError:
        output.unlink(missing_ok=True)
        raise
    except OSError as error:
        raise OutputError(f"cannot read back {output}: {error.strerror or error}") from None
    return ImportResult(loaded, dict(loaded.training.extra["imported"]))
