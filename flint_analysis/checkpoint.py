"""The versioned checkpoint format: one ``.pt`` file holding a FLINT model and how it was made.

Layout (format ``flint-analysis-checkpoint``, version 1), all plain containers and tensors so that
``torch.load(..., weights_only=True)`` reads it without executing code:

- ``format``, ``format_version``
- ``architecture``: ``{"name": str, "kwargs": dict}`` (every default filled in)
- ``state_dicts``: ``{"predictor", "attributes", "interpreter", "decoder"}`` → state dicts
- ``dataset``: :class:`~flint_analysis.datasets.DatasetSpec` as a dict (with the data ``fingerprint`` since it is recorded)
- ``training``: hyper-parameters, the per-epoch loss-weight schedule, seed, epochs, preset, and the compute
  ``environments`` the epochs ran in (torch build, CPU capability, threads, device); read as a
  :class:`~flint_analysis.records.TrainingRecord`
- ``history``: one dict per finished epoch (mean training losses, test accuracy of f and g, fidelity); read as
  :class:`~flint_analysis.records.EpochRecord` records
- ``versions``: library versions of the run that wrote the file
- ``resume``: optimizer and random-generator states for ``flint-train --resume`` (or ``None``)

Checkpoints are untrusted input: :func:`load_checkpoint` only uses ``weights_only=True``, checks the type
of every entry above, compares the sizes the architecture kwargs declare with the tensors in the file
before building anything, refuses non-finite weights, and turns each way a file can be wrong into a
one-line :class:`~flint_analysis.errors.CheckpointError`.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from flint_analysis.datasets import DatasetSpec
from flint_analysis.errors import ArchitectureError, CheckpointError, InputError, short_repr
from flint_analysis.atomic_output import atomic_write_bytes
from flint_analysis.models import ARCHITECTURES, Builder, FlintModel, build_model, resolve_architecture_kwargs
from flint_analysis.records import EpochRecord, TrainingRecord
from flint_analysis.runtime import library_versions, sha256_file

FORMAT_TAG = "flint-analysis-checkpoint"
FORMAT_VERSION = 1
MODULES = ("predictor", "attributes", "interpreter", "decoder")
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass
class Checkpoint:
    """A FLINT model with its provenance.

    Attributes:
        model: the rebuilt :class:`FlintModel` (eval mode after loading).
        architecture: registry name of the architecture.
        architecture_kwargs: the builder's keyword arguments, defaults included.
        dataset: the data the model was trained on.
        training: preset, hyper-parameters, seed, schedule and compute environments of the training.
        history: per-epoch metrics, oldest first.
        versions: library versions of the run that wrote the file.
        resume: optimizer/generator state for resuming training, or ``None``.
        path: where it was loaded from, if it was.
        sha256: SHA-256 of the loaded file, if it was loaded.
    """

    model: FlintModel
    architecture: str
    architecture_kwargs: dict[str, Any]
    dataset: DatasetSpec
    training: TrainingRecord = field(default_factory=TrainingRecord)
    history: list[EpochRecord] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=library_versions)
    resume: dict[str, Any] | None = None
    path: Path | None = None
    sha256: str | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        # ``training`` and ``history`` may also be given (or assigned) as the plain dicts of the file format
        if name == "training" and not isinstance(value, TrainingRecord):
            value = TrainingRecord.from_dict(value)
        elif name == "history":
            value = [record if isinstance(record, EpochRecord) else EpochRecord.from_dict(record) for record in value]
        super().__setattr__(name, value)

    @property
    def epochs_completed(self) -> int:
        return len(self.history)

    def to_payload(self) -> dict[str, Any]:
        """The plain-container dict that is written to disk."""
        return {
            "format": FORMAT_TAG,
            "format_version": FORMAT_VERSION,
            "architecture": {"name": self.architecture, "kwargs": dict(self.architecture_kwargs)},
            "state_dicts": {name: _cpu_state_dict(getattr(self.model, name)) for name in MODULES},
            "dataset": self.dataset.to_dict(),
            "training": self.training.to_dict(),
            "history": [record.to_dict() for record in self.history],
            "versions": self.versions,
            "resume": self.resume,
        }

    def save(self, path: str | Path) -> None:
        """Write the checkpoint atomically (temporary file + rename)."""
        buffer = io.BytesIO()
        torch.save(self.to_payload(), buffer)
        atomic_write_bytes(path, buffer.getvalue())


def _cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}


# ------------------------------------------------------------------------------------------- reading
# Limits on the metadata of a checkpoint. The weights are bounded by the file itself: the model is first
# built on the meta device (no memory), its shapes are compared with the tensors in the file, and only a
# model whose every tensor is in the file is built for real.
MAX_HISTORY = 100_000
"""Most epochs a history (and a training config's ``epochs``) may hold."""
MAX_ENTRIES = 1_000
"""Most entries of ``versions``, a history record's dicts, an environment record or dataset options."""
MAX_TEXT = 1_000
"""Longest string accepted in metadata (class names, versions, ...)."""
MAX_CLASS_NAMES = 10_000
SEED_RANGE = (-(2**63), 2**64 - 1)
"""Seeds ``torch.Generator.manual_seed`` accepts."""
SPLIT_SEED_LIMIT = 2**32
"""Split seeds are NumPy ``RandomState`` seeds: ``0 ≤ seed < 2**32``."""
MAX_DATASET_SIZE = 10**9
_FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")
_HISTORY_NUMBERS = ("test_accuracy_f", "test_accuracy_g", "test_fidelity", "seconds")
_HISTORY_DICTS = ("train_losses", "weights")
# TrainingConfig's fields and their types (flint_analysis.training.config is not imported here: the training
# package imports this module, and the records import it only to build a loaded file's config;
# tests/test_hostile_checkpoints.py keeps this table equal to the dataclass).
TRAINING_CONFIG_FIELDS: Mapping[str, type] = MappingProxyType({
    "epochs": int, "batch_size": int, "learning_rate": float, "beta": float, "gamma": float, "delta": float,
    "zeta": float, "mu": float, "eta": float, "interpretability_start_epoch": int, "entropy_start_epoch": int,
    "l1_reduction": str, "baseline": bool, "interpreter_input_dropout": float,
})
TRAINING_CONFIG_ADDED_LATER = frozenset({"interpreter_input_dropout"})
"""Fields of :data:`TRAINING_CONFIG_FIELDS` that older checkpoints lack (their dataclass default applies)."""
MAX_BATCH_SIZE = 10**7


def _damaged(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} has {what}; it is damaged or was not written by flint-train, retrain or re-save it")



def _kind(value: Any) -> str:
    return type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)


def _os_error(path: Path, error: OSError) -> CheckpointError:
    if isinstance(error, PermissionError):
        return CheckpointError(
            f"cannot read checkpoint {path}: permission denied; make it readable (chmod u+r) or run as a user who may read it"
        )
    reason = error.strerror or str(error) or type(error).__name__
    return CheckpointError(f"cannot read checkpoint {path}: {reason}")


def _read_payload(path: Path) -> dict[str, Any]:
    try:
        if not path.exists():
            raise CheckpointError(f"checkpoint {path} does not exist; check the path")
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} is not a file; give the path of a .pt file")
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as error:
        raise _os_error(path, error) from None
    if not head:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); the run that wrote it never saved, retrain it")
    is_zip = head == _ZIP_MAGIC
    if not is_zip and head[:1] == b"\x80":
        # torch's pre-1.6 format allocates every storage at the size the file declares before reading it
        raise CheckpointError(
            f"checkpoint {path} is in torch's legacy (pre-1.6) format, which flint-train never writes and which is not "
            "read safely; re-save it with torch.save (zip format) or retrain"
        )
    if not is_zip:
        raise CheckpointError(f"{path} is not a torch file (it starts with {head!r}); give a checkpoint written by flint-train")
    try:
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"checkpoint {path} is truncated or corrupted (its zip directory is missing); copy it again or retrain")
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error).lower():
            raise CheckpointError(
                f"{path} contains pickled Python objects that would need code execution to load; "
                "refusing it (only plain checkpoints written by flint-train are accepted)"
            ) from None
        raise CheckpointError(f"checkpoint {path} is corrupted ({error}); copy it again or retrain") from None
    except PermissionError as error:
        raise _os_error(path, error) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, MemoryError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupted ({reason}); copy it again or retrain") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_TAG:
        raise CheckpointError(f"{path} is a torch file but not a flint-analysis checkpoint (no {FORMAT_TAG!r} tag)")
    return payload


def _require(payload: Mapping[str, Any], key: str, kind: type, path: Path) -> Any:
    if key not in payload:
        raise _damaged(path, f"no {key!r} entry")
    value = payload[key]
    if not isinstance(value, kind):
        raise _damaged(path, f"a {key!r} entry of type {_kind(value)} (expected {kind.__name__})")
    return value


def _check_str_keys(mapping: Mapping[Any, Any], where: str, path: Path, limit: int = MAX_ENTRIES) -> None:
    if len(mapping) > limit:
        raise _damaged(path, f"{len(mapping)} entries in {where} (at most {limit} are accepted)")
    for key in mapping:
        if not isinstance(key, str) or len(key) > MAX_TEXT:
            raise _damaged(path, f"a key {short_repr(key)} in {where} that is not a short string")


def _check_text(value: Any, where: str, path: Path) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _damaged(path, f"a {where} of {short_repr(value)} (expected a string of at most {MAX_TEXT} characters)")
    return value


def _architecture(payload: Mapping[str, Any], path: Path, architectures: Mapping[str, Builder]) -> tuple[str, dict[str, Any]]:
    architecture = _require(payload, "architecture", dict, path)
    if "name" not in architecture:
        raise _damaged(path, "no architecture name")
    name = architecture["name"]
    if not isinstance(name, str):
        raise _damaged(path, f"an architecture name of type {_kind(name)} (expected a string)")
    if name not in architectures:
        raise CheckpointError(
            f"checkpoint {path} uses unknown architecture {short_repr(name)}; known: {', '.join(sorted(architectures))}"
        )
    raw = architecture.get("kwargs")
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise _damaged(path, f"architecture kwargs of type {_kind(raw)} (expected a dict)")
    _check_str_keys(raw, "the architecture kwargs", path)
    try:
        return name, resolve_architecture_kwargs(name, raw, architectures)
    except ArchitectureError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from None


def _state_dicts(payload: Mapping[str, Any], path: Path) -> dict[str, Mapping[str, Any]]:
    state_dicts = _require(payload, "state_dicts", dict, path)
    found = {}
    for module_name in MODULES:
        state = state_dicts.get(module_name)
        if not isinstance(state, Mapping):
            raise CheckpointError(f"checkpoint {path} has no weights for {module_name!r}; it is damaged, retrain it")
        found[module_name] = state
    return found


def _blueprint(name: str, kwargs: dict[str, Any], architectures: Mapping[str, Builder], path: Path) -> tuple[FlintModel, bool]:
    """The model built from ``kwargs`` without memory (meta device); ``(model, True)``.

    A custom builder that cannot build on the meta device is built for real: ``(model, False)`` (custom
    builders are the caller's code, and only the built-in architectures' kwargs have known limits).
    """
    try:
        with torch.device("meta"):
            model = build_model(name, kwargs, architectures)
        on_meta = True
    except ArchitectureError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from None
    except Exception:  # noqa: BLE001 - a custom builder doing real computation while building
        if architectures.get(name) is ARCHITECTURES.get(name):
            raise
        try:
            model, on_meta = build_model(name, kwargs, architectures), False
        except ArchitectureError as error:
            raise CheckpointError(f"checkpoint {path}: {error}") from None
        except (TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"checkpoint {path}: architecture {name!r} cannot be built from its kwargs ({error})") from None
    if not isinstance(model, FlintModel):
        raise CheckpointError(f"checkpoint {path}: architecture {name!r} built a {_kind(model)}, not a FlintModel")
    return model, on_meta


def _state_dict_problems(module: torch.nn.Module, state: Mapping[str, Any]) -> str:
    """A one-line description of how ``state`` does not fit ``module`` ('' if it fits).

    ``module`` may live on the meta device: only its tensors' shapes and dtypes are read. A tensor must
    be a dense CPU tensor of the expected shape and kind whose storage really holds its elements (a
    stride-0 view declaring more elements than the file holds is refused).
    """
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        return f"missing {missing[0]!r}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
    unexpected = [key for key in state if key not in expected]
    if unexpected:
        return f"unexpected {short_repr(unexpected[0])}" + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else "")
    for key, tensor in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            return f"{key!r} is not a tensor"
        if value.shape != tensor.shape:
            return f"{key!r} has shape {tuple(value.shape)}, expected {tuple(tensor.shape)}"
        if value.layout != torch.strided or value.device.type != "cpu" or value.is_quantized:
            return f"{key!r} is not a plain CPU tensor ({value.layout}, {value.device})"
        if value.dtype.is_floating_point != tensor.dtype.is_floating_point or value.dtype.is_complex:
            return f"{key!r} has dtype {value.dtype}, expected {tensor.dtype}"
        needed = value.numel() * value.element_size()
        if needed and value.untyped_storage().nbytes() < needed:
            return f"{key!r} declares {value.numel()} elements but the file holds {value.untyped_storage().nbytes()} bytes for it"
    return ""


def _non_finite(state_dicts: Mapping[str, Mapping[str, torch.Tensor]], path: Path) -> None:
    bad = []
    for module_name, state in state_dicts.items():
        for key, value in state.items():
            if value.dtype.is_floating_point:
                count = int(value.numel() - torch.isfinite(value).sum())
                if count:
                    bad.append((f"{module_name}.{key}", count))
    if bad:
        (name, count), others = bad[0], len(bad) - 1
        raise CheckpointError(
            f"checkpoint {path}: weight {name} holds {count} NaN/Inf value{'s' if count != 1 else ''}"
            + (f" (and {others} other weight tensor{'s' if others != 1 else ''} too)" if others else "")
            + "; the training diverged, retrain (e.g. with a lower --lr)"
        )


def _dataset(payload: Mapping[str, Any], path: Path, kwargs: Mapping[str, Any], model: FlintModel) -> DatasetSpec:
    data = _require(payload, "dataset", dict, path)
    _check_str_keys(data, "the dataset entry", path)

    def invalid(field_name: str, expected: str) -> CheckpointError:
        return _damaged(path, f"an invalid dataset {field_name} {short_repr(data.get(field_name))} (expected {expected})")

    for required in ("name", "class_names", "input_shape", "value_range"):
        if required not in data:
            raise _damaged(path, f"no dataset {required}")
    if not isinstance(data["name"], str) or not 0 < len(data["name"]) <= MAX_TEXT:
        raise invalid("name", "a non-empty string")
    names = data["class_names"]
    if (not isinstance(names, (list, tuple)) or not 0 < len(names) <= MAX_CLASS_NAMES
            or not all(isinstance(n, str) and len(n) <= MAX_TEXT for n in names)):
        raise invalid("class_names", f"a list of 1 to {MAX_CLASS_NAMES} strings")
    shape = data["input_shape"]
    if not isinstance(shape, (list, tuple)) or len(shape) != 3 or not all(_is_int(s) and 1 <= s <= 4096 for s in shape):
        raise invalid("input_shape", "[channels, height, width], integers from 1 to 4096")
    low_high = data["value_range"]
    if (not isinstance(low_high, (list, tuple)) or len(low_high) != 2 or not all(_is_finite_number(v) for v in low_high)
            or not low_high[0] < low_high[1]):
        raise invalid("value_range", "[low, high] with finite low < high")
    normalization = data.get("normalization")
    if normalization is not None and not (
        isinstance(normalization, dict) and set(normalization) <= {"mean", "std"}
        and all(isinstance(v, (list, tuple)) and len(v) <= 16 and all(_is_finite_number(x) for x in v) for v in normalization.values())
    ):
        raise invalid("normalization", 'null or {"mean": [...], "std": [...]} of finite numbers')
    split_seed = data.get("split_seed")
    if split_seed is not None and not (_is_int(split_seed) and 0 <= split_seed < SPLIT_SEED_LIMIT):
        raise invalid("split_seed", "null or an integer with 0 ≤ seed < 2**32")
    for size_field in ("train_size", "test_size"):
        if size_field in data and not (_is_int(data[size_field]) and 0 <= data[size_field] <= MAX_DATASET_SIZE):
            raise invalid(size_field, f"an integer from 0 to {MAX_DATASET_SIZE}")
    options = data.get("options")
    if options is not None:
        if not isinstance(options, dict):
            raise invalid("options", "a dict")
        _check_str_keys(options, "the dataset options", path)
        for key, value in options.items():
            plain = value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= MAX_TEXT)
            listed = isinstance(value, (list, tuple)) and len(value) <= MAX_CLASS_NAMES and all(
                isinstance(v, str) and len(v) <= MAX_TEXT for v in value)
            if not (plain or listed):
                raise _damaged(path, f"an invalid dataset option {key} {short_repr(value)}")
    fingerprint = data.get("fingerprint")
    if fingerprint is not None and not (isinstance(fingerprint, str) and _FINGERPRINT.fullmatch(fingerprint)):
        raise invalid("fingerprint", "null or 'sha256:' and 64 hex digits")
    spec = DatasetSpec.from_dict(data)
    if spec.num_classes != model.num_classes:
        raise CheckpointError(
            f"checkpoint {path} lists {spec.num_classes} classes but its model has {model.num_classes}; it is inconsistent"
        )
    if _is_int(kwargs.get("in_channels")) and _is_int(kwargs.get("input_size")):
        takes = (kwargs["in_channels"], kwargs["input_size"], kwargs["input_size"])
        if spec.input_shape != takes:
            raise CheckpointError(
                f"checkpoint {path}: its dataset has inputs of shape {'×'.join(map(str, spec.input_shape))} but its model "
                f"takes {'×'.join(map(str, takes))}; it is inconsistent"
            )
    return spec


def _number_dict(value: Any, where: str, path: Path, finite: bool) -> None:
    if not isinstance(value, dict):
        raise _damaged(path, f"{where} of type {_kind(value)} (expected a dict of numbers)")
    _check_str_keys(value, where, path)
    for key, number in value.items():
        if not (_is_finite_number(number) if finite else _is_number(number)):
            raise _damaged(path, f"{where}[{key!r}] = {short_repr(number)} (expected a {'finite ' if finite else ''}number)")


_CONFIG_TYPES = {
    int: (_is_int, "an integer"),
    float: (_is_finite_number, "a finite number"),
    bool: (lambda value: isinstance(value, bool), "true or false"),
    str: (lambda value: isinstance(value, str), "a string"),
}


def _training_config(config: Any, path: Path) -> None:
    if not isinstance(config, dict):
        raise _damaged(path, f"a training config of type {_kind(config)} (expected a dict)")
    _check_str_keys(config, "the training config", path)
    for key, kind in TRAINING_CONFIG_FIELDS.items():
        if key not in config:
            if key in TRAINING_CONFIG_ADDED_LATER:
                continue
            raise _damaged(path, f"no {key!r} in its training config")
        value = config[key]
        check, expected = _CONFIG_TYPES[kind]
        if not check(value):
            raise _damaged(path, f"training config {key} = {short_repr(value)} (expected {expected})")
    limits = [
        ("epochs", 1 <= config["epochs"] <= MAX_HISTORY, f"from 1 to {MAX_HISTORY}"),
        ("batch_size", 1 <= config["batch_size"] <= MAX_BATCH_SIZE, f"from 1 to {MAX_BATCH_SIZE}"),
        ("learning_rate", config["learning_rate"] > 0, "positive"),
        ("l1_reduction", config["l1_reduction"] in ("sum", "mean"), "'sum' or 'mean'"),
        *((name, config[name] >= 0, "non-negative") for name in ("beta", "gamma", "delta", "zeta", "mu", "eta")),
        *((name, abs(config[name]) <= MAX_HISTORY, f"within ±{MAX_HISTORY}")
          for name in ("interpretability_start_epoch", "entropy_start_epoch")),
        ("interpreter_input_dropout", 0 <= config.get("interpreter_input_dropout", 0.0) <= 1, "from 0 to 1"),
    ]
    for name, ok, expected in limits:
        if not ok:
            raise _damaged(path, f"training config {name} = {short_repr(config[name])} (expected {expected})")


def _environments(value: Any, path: Path) -> None:
    if not isinstance(value, list) or len(value) > MAX_HISTORY:
        raise _damaged(path, f"training environments of type {_kind(value)} (expected a list of dicts)")
    for index, record in enumerate(value):
        if not isinstance(record, dict):
            raise _damaged(path, f"training environment {index} of type {_kind(record)} (expected a dict)")
        _check_str_keys(record, f"training environment {index}", path)
        for key, item in record.items():
            if not (item is None or isinstance(item, (bool, int, float)) or (isinstance(item, str) and len(item) <= MAX_TEXT)):
                raise _damaged(path, f"training environment {index} {key} = {short_repr(item)} (expected a string, number or null)")
        if "first_epoch" in record and not (_is_int(record["first_epoch"]) and 0 <= record["first_epoch"] <= MAX_HISTORY):
            raise _damaged(path, f"training environment {index} first_epoch = {short_repr(record['first_epoch'])}")


def _training(payload: Mapping[str, Any], path: Path) -> dict[str, Any]:
    training = _require(payload, "training", dict, path)
    _check_str_keys(training, "the training record", path)
    if training.get("preset") is not None:
        _check_text(training["preset"], "training preset", path)
    if "seed" in training:
        seed = training["seed"]
        if not (_is_int(seed) and SEED_RANGE[0] <= seed <= SEED_RANGE[1]):
            raise _damaged(path, f"a training seed {short_repr(seed)} (expected an integer from -2**63 to 2**64-1)")
    if "config" in training:
        _training_config(training["config"], path)
    if "schedule" in training:
        schedule = training["schedule"]
        if not isinstance(schedule, list) or len(schedule) > MAX_HISTORY:
            raise _damaged(path, f"a training schedule of type {_kind(schedule)} (expected a list of at most {MAX_HISTORY} dicts)")
        for index, weights in enumerate(schedule):
            _number_dict(weights, f"training schedule[{index}]", path, finite=True)
    if "environments" in training:
        _environments(training["environments"], path)
    if "imported" in training:
        if not isinstance(training["imported"], dict):
            raise _damaged(path, f"an import record of type {_kind(training['imported'])} (expected a dict)")
        _plain_record(training["imported"], "the import record", path)
    return dict(training)


def _plain_record(value: Any, where: str, path: Path, depth: int = 0) -> None:
    """A record of plain data only (what ``import-official`` writes and ``info`` prints): dicts with short string
    keys, lists, short strings, finite numbers, booleans and nulls, nested at most three deep."""
    if value is None or isinstance(value, bool) or _is_finite_number(value):
        return
    if isinstance(value, str):
        _check_text(value, where, path)
        return
    if depth < 3 and isinstance(value, list):
        if len(value) > MAX_ENTRIES:
            raise _damaged(path, f"{len(value)} entries in {where} (at most {MAX_ENTRIES} are accepted)")
        for index, item in enumerate(value):
            _plain_record(item, f"{where}[{index}]", path, depth + 1)
        return
    if depth < 3 and isinstance(value, dict):
        _check_str_keys(value, where, path)
        for key, item in value.items():
            _plain_record(item, f"{where}.{key}", path, depth + 1)
        return
    raise _damaged(path, f"{where} = {short_repr(value)} (expected plain text, numbers, lists or dicts)")


def _history(payload: Mapping[str, Any], path: Path) -> list[dict[str, Any]]:
    history = _require(payload, "history", list, path)
    if len(history) > MAX_HISTORY:
        raise _damaged(path, f"a history of {len(history)} epochs (at most {MAX_HISTORY} are accepted)")
    for index, record in enumerate(history):
        if not isinstance(record, dict):
            raise _damaged(path, f"history entry {index} of type {_kind(record)} (expected a dict)")
        _check_str_keys(record, f"history entry {index}", path)
        if record.get("epoch") != index or not _is_int(record.get("epoch")):
            raise _damaged(path, f"history entry {index} with epoch {short_repr(record.get('epoch'))} (expected {index})")
        for key in _HISTORY_NUMBERS:
            if key in record and not _is_finite_number(record[key]):
                raise _damaged(path, f"history entry {index} {key} = {short_repr(record[key])} (expected a finite number)")
        for key in _HISTORY_DICTS:
            if key in record:
                # a diverged epoch may have recorded NaN or infinite losses: only the type is checked there
                _number_dict(record[key], f"history entry {index} {key}", path, finite=key != "train_losses")
    return list(history)


def _versions(payload: Mapping[str, Any], path: Path) -> dict[str, str]:
    versions = _require(payload, "versions", dict, path)
    _check_str_keys(versions, "the versions entry", path)
    for key, value in versions.items():
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise _damaged(path, f"a version of {key} = {short_repr(value)} (expected a string)")
    return dict(versions)


def _generator_state(value: Any, where: str, path: Path, size: int | None) -> None:
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.ndim != 1 or value.layout != torch.strided:
        raise _damaged(path, f"resume state {where} that is not a 1-D uint8 tensor")
    if size is not None and value.numel() != size:
        raise _damaged(path, f"resume state {where} of {value.numel()} bytes (expected {size})")
    if value.numel() > (1 << 20) or value.untyped_storage().nbytes() < value.numel():
        raise _damaged(path, f"resume state {where} of an impossible size")


def _resume(payload: Mapping[str, Any], path: Path, training: Mapping[str, Any], model: FlintModel) -> dict[str, Any] | None:
    """``None``, or optimizer and generator states that fit ``model`` (what ``flint-train --resume`` reads)."""
    resume = payload.get("resume")
    if resume is None:
        return None
    if not isinstance(resume, dict):
        raise _damaged(path, f"a resume entry of type {_kind(resume)} (expected a dict or None)")
    for key in ("config", "seed"):
        if key not in training:
            raise _damaged(path, f"training state to resume but no training {key}")
    for key in ("optimizer", "shuffle_generator", "torch_rng"):
        if key not in resume:
            raise _damaged(path, f"no {key!r} in its resume state")
    cpu_state_size = torch.Generator().get_state().numel()
    _generator_state(resume["shuffle_generator"], "shuffle_generator", path, cpu_state_size)
    _generator_state(resume["torch_rng"], "torch_rng", path, cpu_state_size)
    if resume.get("cuda_rng") is not None:
        _generator_state(resume["cuda_rng"], "cuda_rng", path, None)
    for key, size in (("torch_rng_per_rank", cpu_state_size), ("cuda_rng_per_rank", None)):  # DDP runs: one state per rank
        states = resume.get(key)
        if states is None:
            continue
        if not isinstance(states, list) or not 1 <= len(states) <= 65536:
            raise _damaged(path, f"a resume {key} that is not a list of generator states")
        for rank, state in enumerate(states):
            if state is not None or key == "torch_rng_per_rank":
                _generator_state(state, f"{key}[{rank}]", path, size)
    optimizer = resume["optimizer"]
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict) or not isinstance(optimizer.get("param_groups"), list):
        raise _damaged(path, "a resume optimizer state that is not {'state': dict, 'param_groups': list}")
    shapes = [p.shape for p in model.parameters()]
    listed: list[Any] = []
    for index, group in enumerate(optimizer["param_groups"]):
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise _damaged(path, f"resume optimizer param group {index} without a 'params' list")
        _check_str_keys(group, f"resume optimizer param group {index}", path)
        listed += group["params"]
        for key, value in group.items():
            if key == "params":
                continue
            scalar = value is None or isinstance(value, (bool, int, float, str)) or (
                isinstance(value, torch.Tensor) and value.numel() == 1)
            pair = isinstance(value, (list, tuple)) and len(value) <= 4 and all(
                _is_number(v) or (isinstance(v, torch.Tensor) and v.numel() == 1) for v in value)
            if not (scalar or pair):
                raise _damaged(path, f"resume optimizer setting {key} = {short_repr(value)}")
        for key in ("lr", "eps", "weight_decay"):
            if key in group and not (_is_finite_number(group[key]) or isinstance(group[key], torch.Tensor)):
                raise _damaged(path, f"resume optimizer {key} = {short_repr(group[key])} (expected a finite number)")
    if sorted(p for p in listed if _is_int(p)) != list(range(len(shapes))) or len(listed) != len(shapes):
        raise _damaged(path, f"a resume optimizer state over {len(listed)} parameters for a model of {len(shapes)}")
    for key, state in optimizer["state"].items():
        if not _is_int(key) or not 0 <= key < len(shapes) or not isinstance(state, dict):
            raise _damaged(path, f"resume optimizer state for parameter {short_repr(key)}")
        for name, value in state.items():
            if not isinstance(name, str):
                raise _damaged(path, f"resume optimizer state key {short_repr(name)} of parameter {key}")
            if isinstance(value, torch.Tensor):
                if value.numel() != 1 and value.shape != shapes[key]:
                    raise _damaged(path, f"resume optimizer {name} of parameter {key} with shape {tuple(value.shape)}, "
                                   f"expected {tuple(shapes[key])}")
                if value.layout != torch.strided or value.untyped_storage().nbytes() < value.numel() * value.element_size():
                    raise _damaged(path, f"resume optimizer {name} of parameter {key} that is not a plain tensor")
            elif not _is_number(value):
                raise _damaged(path, f"resume optimizer {name} of parameter {key} = {short_repr(value)}")
    return resume


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", architectures: Mapping[str, Builder] = ARCHITECTURES
) -> Checkpoint:
    """Read, validate and rebuild a checkpoint (``torch.load(weights_only=True)`` only).

    Everything is checked before the model is built: the type of every entry the package reads
    (architecture, state dicts, dataset, training, history, versions, resume), the architecture's kwargs
    (types and ranges, :data:`~flint_analysis.models.KWARG_RULES`), and the shapes the kwargs imply
    (computed on the meta device, without memory) against the tensors actually in the file; weights must
    be finite.

    Args:
        path: the ``.pt`` file.
        device: where to put the model.
        architectures: name → builder mapping used to rebuild the model (add yours for custom predictors).

    Raises:
        CheckpointError: with a one-line reason (missing, unreadable, empty, truncated, not torch, unsafe
            pickle, wrong format or version, unknown architecture, invalid kwargs or metadata, missing,
            mis-shaped or non-finite weights).
    """
    path = Path(path)
    payload = _read_payload(path)
    version = payload.get("format_version")
    if not _is_int(version) or version < 1:
        raise CheckpointError(f"checkpoint {path} has an invalid format version {short_repr(version)}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}, newer than this flint-analysis reads ({FORMAT_VERSION}); upgrade flint-analysis"
        )
    name, kwargs = _architecture(payload, path, architectures)
    state_dicts = _state_dicts(payload, path)
    blueprint, on_meta = _blueprint(name, kwargs, architectures, path)
    for module_name in MODULES:
        problems = _state_dict_problems(getattr(blueprint, module_name), state_dicts[module_name])
        if problems:
            raise CheckpointError(f"checkpoint {path} has missing or mis-shaped weights in {module_name}: {problems}")
    _non_finite(state_dicts, path)
    dataset = _dataset(payload, path, kwargs, blueprint)
    training_dict = _training(payload, path)
    history = [EpochRecord.from_dict(record) for record in _history(payload, path)]
    versions = _versions(payload, path)
    resume = _resume(payload, path, training_dict, blueprint)
    try:
        training = TrainingRecord.from_dict(training_dict)
    except InputError as error:  # a training config the checks above let through but TrainingConfig refuses
        raise _damaged(path, f"an invalid training config ({error})") from None
    # every tensor the model needs is in the file with the right shape: building it costs what the file holds
    model = build_model(name, kwargs, architectures) if on_meta else blueprint
    for module_name in MODULES:
        getattr(model, module_name).load_state_dict(state_dicts[module_name], strict=True)
    model.to(device).eval()
    try:
        digest = sha256_file(path)
    except OSError as error:
        raise _os_error(path, error) from None
    return Checkpoint(
        model=model,
        architecture=name,
        architecture_kwargs=kwargs,
        dataset=dataset,
        training=training,
        history=history,
        versions=versions,
        resume=resume,
        path=path,
        sha256=digest,
    )
