"""The versioned checkpoint format: one ``.pt`` file holding a FLINT model and how it was made.

Layout (format ``flint-analysis-checkpoint``, version 1), all plain containers and tensors so that
``torch.load(..., weights_only=True)`` reads it without executing code:

- ``format``, ``format_version``
- ``architecture``: ``{"name": str, "kwargs": dict}`` (every default filled in)
- ``state_dicts``: ``{"predictor", "attributes", "interpreter", "decoder"}`` → state dicts
- ``dataset``: :class:`~flint_analysis.datasets.DatasetSpec` as a dict (with the data ``fingerprint`` since it is recorded)
- ``training``: hyper-parameters, the per-epoch loss-weight schedule, seed, epochs, preset, and the compute
  ``environments`` the epochs ran in (torch build, CPU capability, threads, device); for post-hoc runs
  (``flint-train --predictor-weights``) also ``predictor_weights`` ``{"path", "sha256"}``, the file f started
  from (``config.freeze_predictor`` says whether f stayed frozen); read as a
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
from flint_analysis.models import (
    KNOWN_ARCHITECTURES,
    Architecture,
    Builder,
    FlintModel,
    build_model,
    resolve_architecture_kwargs,
)
from flint_analysis.models.flint_model import normalization_constants
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

    def __post_init__(self) -> None:
        self._sync_input_normalization()

    def _sync_input_normalization(self) -> None:
        """The model normalises its inputs as the dataset spec records (decision: normalisation lives in the
        spec and is applied inside the model); a model without one gets the spec's."""
        recorded = self.dataset.normalization
        current = self.model.input_normalization
        if current is None and recorded is not None:
            self.model.set_input_normalization(recorded)
        elif current is not None and not _same_normalization(current, recorded):
            raise ArchitectureError(
                f"the model normalises its inputs with {current} but the dataset spec records {recorded}; "
                "record the model's in the spec (dataclasses.replace(spec, normalization=model.input_normalization)) "
                "or call model.set_input_normalization(spec.normalization)"
            )

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

    def save(self, path: str | Path, architectures: Mapping[str, Architecture | Builder] | None = None) -> None:
        """Write the checkpoint atomically (temporary file + rename), after checking that it can be loaded.

        Args:
            path: the ``.pt`` file to write.
            architectures: ``name → builder`` (or record) for a custom model (any ``nn.Module`` predictor
                wrapped in :class:`FlintModel`), added to the known architectures; load the file with the
                same mapping, ``load_checkpoint(path, architectures=...)``.

        Raises:
            ArchitectureError: the architecture is unknown (pass its builder in ``architectures``), or its
                builder, called with :attr:`architecture_kwargs`, builds other modules or shapes than the
                model's, or the model's input normalisation is not the dataset spec's; nothing is written.
        """
        self._sync_input_normalization()
        payload = self.to_payload()
        known: Mapping[str, Architecture | Builder] = {**KNOWN_ARCHITECTURES, **(architectures or {})}
        if self.architecture not in known:
            raise ArchitectureError(
                f"architecture {self.architecture!r} is not known, so the checkpoint could not be loaded; pass its "
                f"builder: checkpoint.save(path, architectures={{{self.architecture!r}: builder}}) and load it with "
                "load_checkpoint(path, architectures=<the same mapping>)"
            )
        try:
            blueprint, _ = _blueprint(self.architecture, dict(self.architecture_kwargs), known, Path(path))
        except CheckpointError as error:
            raise ArchitectureError(f"cannot save: {error}") from None
        for module_name in MODULES:
            problems = _state_dict_problems(getattr(blueprint, module_name), payload["state_dicts"][module_name])
            if problems:
                raise ArchitectureError(
                    f"cannot save: architecture {self.architecture!r} built from the recorded kwargs does not match the "
                    f"model's {module_name} ({problems}); record the kwargs (or builder) that build this model"
                )
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(path, buffer.getvalue())


def _same_normalization(current: Mapping[str, list[float]], recorded: Any) -> bool:
    if not isinstance(recorded, Mapping) or set(recorded) != {"mean", "std"}:
        return False
    for key in ("mean", "std"):
        ours, theirs = list(current[key]), list(recorded[key])
        if len(ours) != len(theirs) or any(abs(a - float(b)) > 1e-6 * max(1.0, abs(float(b))) for a, b in zip(ours, theirs)):
            return False
    return True


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
    "l1_reduction": str, "baseline": bool, "interpreter_input_dropout": float, "freeze_predictor": bool,
})
TRAINING_CONFIG_ADDED_LATER = frozenset({"interpreter_input_dropout", "freeze_predictor"})
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


def _os_error(path: Path, error: OSError, what: str = "checkpoint") -> CheckpointError:
    if isinstance(error, PermissionError):
        return CheckpointError(
            f"cannot read {what} {path}: permission denied; make it readable (chmod u+r) or run as a user who may read it"
        )
    reason = error.strerror or str(error) or type(error).__name__
    return CheckpointError(f"cannot read {what} {path}: {reason}")


def _load_torch_file(path: Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, every way the file can be wrong a one-line
    :class:`CheckpointError` (``what`` names the file: a checkpoint, or predictor weights)."""
    checkpoint = what == "checkpoint"
    remake = "retrain" if checkpoint else "save them again"
    try:
        if not path.exists():
            raise CheckpointError(f"{what} {path} does not exist; check the path")
        if not path.is_file():
            raise CheckpointError(f"{what} {path} is not a file; give the path of a .pt file")
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as error:
        raise _os_error(path, error, what) from None
    if not head:
        raise CheckpointError(f"{what} {path} is empty (0 bytes); " + (
            "the run that wrote it never saved, retrain it" if checkpoint else "save them again"))
    is_zip = head == _ZIP_MAGIC
    if not is_zip and head[:1] == b"\x80":
        # torch's pre-1.6 format allocates every storage at the size the file declares before reading it
        raise CheckpointError(
            f"{what} {path} is in torch's legacy (pre-1.6) format, which flint-train never writes and which is not "
            f"read safely; re-save it with torch.save (zip format){' or retrain' if checkpoint else ''}"
        )
    if not is_zip:
        raise CheckpointError(f"{path} is not a torch file (it starts with {head!r}); " + (
            "give a checkpoint written by flint-train" if checkpoint else "give a state dict saved with torch.save"))
    try:
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{what} {path} is truncated or corrupted (its zip directory is missing); copy it again or {remake}")
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error).lower():
            raise CheckpointError(
                f"{path} contains pickled Python objects that would need code execution to load; " + (
                    "refusing it (only plain checkpoints written by flint-train are accepted)" if checkpoint else
                    "refusing it (save the weights as a plain state dict: torch.save(model.state_dict(), FILE))")
            ) from None
        raise CheckpointError(f"{what} {path} is corrupted ({error}); copy it again or {remake}") from None
    except PermissionError as error:
        raise _os_error(path, error, what) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, MemoryError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{what} {path} is truncated or corrupted ({reason}); copy it again or {remake}") from None
    return payload


def _read_payload(path: Path) -> dict[str, Any]:
    payload = _load_torch_file(path)
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


def _architecture(payload: Mapping[str, Any], path: Path, architectures: Mapping[str, Architecture | Builder]) -> tuple[str, dict[str, Any]]:
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


def _blueprint(name: str, kwargs: dict[str, Any], architectures: Mapping[str, Architecture | Builder], path: Path) -> tuple[FlintModel, bool]:
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
        if architectures.get(name) is KNOWN_ARCHITECTURES.get(name):
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
    if spec.normalization is not None:
        try:
            mean, _ = normalization_constants(spec.normalization)
        except ArchitectureError as error:
            raise _damaged(path, f"an invalid dataset normalization ({error})") from None
        if len(mean) != spec.input_shape[0]:
            raise _damaged(path, f"a dataset normalization for {len(mean)} channels but inputs of {spec.input_shape[0]}")
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
    if "predictor_weights" in training:
        _predictor_weights_record(training["predictor_weights"], path)
    if "imported" in training:
        if not isinstance(training["imported"], dict):
            raise _damaged(path, f"an import record of type {_kind(training['imported'])} (expected a dict)")
        _plain_record(training["imported"], "the import record", path)
    return dict(training)


def _predictor_weights_record(value: Any, path: Path) -> None:
    """``training.predictor_weights``: ``{"path": str, "sha256": 64 hex digits}`` (post-hoc runs only)."""
    if not isinstance(value, dict) or set(value) != {"path", "sha256"}:
        raise _damaged(path, f"a predictor_weights record {short_repr(value)} (expected {{'path': ..., 'sha256': ...}})")
    _check_text(value["path"], "predictor weights path", path)
    if not (isinstance(value["sha256"], str) and re.fullmatch(r"[0-9a-f]{64}", value["sha256"])):
        raise _damaged(path, f"a predictor weights sha256 {short_repr(value['sha256'])} (expected 64 hex digits)")


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
    frozen = isinstance(training["config"], dict) and training["config"].get("freeze_predictor") is True
    shapes = [p.shape for p in model.training_parameters(freeze_predictor=frozen)]
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
    path: str | Path, device: str | torch.device = "cpu", architectures: Mapping[str, Architecture | Builder] | None = None
) -> Checkpoint:
    """Read, validate and rebuild a checkpoint (``torch.load(weights_only=True)`` only).

    Everything is checked before the model is built: the type of every entry the package reads
    (architecture, state dicts, dataset, training, history, versions, resume), the architecture's kwargs
    (types and ranges, :data:`~flint_analysis.models.KWARG_RULES`), and the shapes the kwargs imply
    (computed on the meta device, without memory) against the tensors actually in the file; weights must
    be finite. The dataset spec's input normalisation is set on the model
    (:meth:`~flint_analysis.models.FlintModel.set_input_normalization`).

    Args:
        path: the ``.pt`` file.
        device: where to put the model.
        architectures: ``name → builder`` (or record) of custom predictors, added to the known architectures
            (:data:`~flint_analysis.models.KNOWN_ARCHITECTURES`: the built-in and ``torchvision:NAME`` ones), as
            given to :meth:`Checkpoint.save`.

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
    architectures = {**KNOWN_ARCHITECTURES, **(architectures or {})}
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
    model.set_input_normalization(dataset.normalization)
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


# ------------------------------------------------------------------------------- predictor weights
@dataclass(frozen=True)
class PredictorWeights:
    """Where a predictor's starting weights came from (``flint-train --predictor-weights``).

    Attributes:
        path: the file as given.
        sha256: SHA-256 of its bytes.
        kind: ``"state dict"`` or ``"flint-analysis checkpoint"`` (whose ``f`` was taken).
    """

    path: str
    sha256: str
    kind: str

    def to_dict(self) -> dict[str, str]:
        """The checkpoint's ``training.predictor_weights`` record."""
        return {"path": self.path, "sha256": self.sha256}


def _weights_state_dict(content: Any, path: Path) -> dict[str, Any]:
    """The state dict inside a loaded weights file: the file itself, or its ``state_dict`` / ``model`` entry;
    a ``module.`` prefix on every key (a DataParallel save) is dropped."""
    for key in ("state_dict", "model"):
        if isinstance(content, dict) and isinstance(content.get(key), dict):
            content = content[key]
            break
    if not isinstance(content, dict) or not content or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in content.items()):
        raise CheckpointError(
            f"predictor weights {path} hold no state dict (a dict of parameter names to tensors, or one under "
            "'state_dict' or 'model'); save them with torch.save(model.state_dict(), FILE)"
        )
    if all(key.startswith("module.") for key in content):
        content = {key.removeprefix("module."): value for key, value in content.items()}
    return content


def load_predictor_weights(model: FlintModel, path: str | Path) -> PredictorWeights:
    """Load trained weights into ``model.predictor`` (``f``), e.g. for post-hoc FLINT.

    Accepted (read with ``torch.load(weights_only=True)`` only): a state dict of ``f`` (a torchvision model's
    ``state_dict()`` for ``torchvision:NAME``), or a dict holding one under ``"state_dict"`` or ``"model"``,
    keys optionally prefixed ``module.``; or a flint-analysis checkpoint (loaded and checked by
    :func:`load_checkpoint`), whose ``f`` is taken, e.g. a BASE-f run.

    Raises:
        CheckpointError: one line: the file is missing, unreadable or unsafe, holds no state dict, or a key
            is missing, unexpected or mis-shaped (the first one named), or a weight is not finite.
    """
    given, path = str(path), Path(path)
    content = _load_torch_file(path, "predictor weights")
    if isinstance(content, dict) and content.get("format") == FORMAT_TAG:
        state: Mapping[str, Any] = load_checkpoint(path).model.predictor.state_dict()
        kind = "flint-analysis checkpoint"
    else:
        state = _weights_state_dict(content, path)
        kind = "state dict"
    problems = _state_dict_problems(model.predictor, state)
    if problems:
        network = model.architecture_name or "the model"
        raise CheckpointError(
            f"predictor weights {path} do not fit the predictor f of {network}: {problems}; give weights of the same "
            "network trained for the same number of classes and input channels"
        )
    for key, value in state.items():
        if value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"predictor weights {path}: {key!r} holds NaN/Inf values; give weights of a run that did not diverge")
    model.predictor.load_state_dict(state, strict=True)
    try:
        digest = sha256_file(path)
    except OSError as error:
        raise _os_error(path, error, "predictor weights") from None
    return PredictorWeights(path=given, sha256=digest, kind=kind)
