"""The versioned checkpoint format: one ``.pt`` file holding a FLINT model and how it was made.

Layout (format ``flint-analysis-checkpoint``, version 1), all plain containers and tensors so that
``torch.load(..., weights_only=True)`` reads it without executing code:

- ``format``, ``format_version``
- ``architecture``: ``{"name": str, "kwargs": dict}`` (every default filled in)
- ``state_dicts``: ``{"predictor", "attributes", "interpreter", "decoder"}`` → state dicts
- ``dataset``: :class:`~flint_analysis.datasets.DatasetSpec` as a dict
- ``training``: hyper-parameters, the per-epoch loss-weight schedule, seed, epochs, preset
- ``history``: one dict per finished epoch (mean training losses, test accuracy of f and g, fidelity)
- ``versions``: library versions of the run that wrote the file
- ``resume``: optimizer and random-generator states for ``flint-train --resume`` (or ``None``)

Checkpoints are untrusted input: :func:`load_checkpoint` only uses ``weights_only=True`` and turns each
way a file can be wrong into a one-line :class:`~flint_analysis.errors.CheckpointError`.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flint_analysis.datasets import DatasetSpec
from flint_analysis.errors import ArchitectureError, CheckpointError
from flint_analysis.atomic_output import atomic_write_bytes
from flint_analysis.models import ARCHITECTURES, Builder, FlintModel, build_model, resolve_architecture_kwargs
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
        training: hyper-parameters and schedule (see ``train.config``).
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
    training: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=library_versions)
    resume: dict[str, Any] | None = None
    path: Path | None = None
    sha256: str | None = None

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
            "training": self.training,
            "history": self.history,
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


def _read_payload(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file; give the path of a .pt file")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); the run that wrote it never saved, retrain it")
    is_zip = head == _ZIP_MAGIC
    if not is_zip and head[:1] != b"\x80":
        raise CheckpointError(f"{path} is not a torch file (it starts with {head!r}); give a checkpoint written by flint-train")
    if is_zip and not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is truncated or corrupted (its zip directory is missing); copy it again or retrain")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error).lower():
            raise CheckpointError(
                f"{path} contains pickled Python objects that would need code execution to load; "
                "refusing it (only plain checkpoints written by flint-train are accepted)"
            ) from None
        raise CheckpointError(f"checkpoint {path} is corrupted ({error}); copy it again or retrain") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupted ({reason}); copy it again or retrain") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_TAG:
        raise CheckpointError(f"{path} is a torch file but not a flint-analysis checkpoint (no {FORMAT_TAG!r} tag)")
    return payload


def _require(payload: Mapping[str, Any], key: str, kind: type, path: Path) -> Any:
    value = payload.get(key)
    if not isinstance(value, kind):
        raise CheckpointError(f"checkpoint {path} has no valid {key!r} entry; it is damaged, retrain or re-save it")
    return value


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", architectures: Mapping[str, Builder] = ARCHITECTURES
) -> Checkpoint:
    """Read, validate and rebuild a checkpoint (``torch.load(weights_only=True)`` only).

    Args:
        path: the ``.pt`` file.
        device: where to put the model.
        architectures: name → builder mapping used to rebuild the model (add yours for custom predictors).

    Raises:
        CheckpointError: with a one-line reason (missing, empty, truncated, not torch, unsafe pickle,
            wrong format or version, unknown architecture, missing or mis-shaped weights).
    """
    path = Path(path)
    payload = _read_payload(path)
    version = payload.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"checkpoint {path} has an invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}, newer than this flint-analysis reads ({FORMAT_VERSION}); upgrade flint-analysis"
        )
    architecture = _require(payload, "architecture", dict, path)
    name = architecture.get("name")
    if name not in architectures:
        raise CheckpointError(
            f"checkpoint {path} uses unknown architecture {name!r}; known: {', '.join(sorted(architectures))}"
        )
    try:
        kwargs = resolve_architecture_kwargs(name, architecture.get("kwargs") or {}, architectures)
        model = build_model(name, kwargs, architectures)
    except ArchitectureError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from None
    state_dicts = _require(payload, "state_dicts", dict, path)
    for module_name in MODULES:
        state = state_dicts.get(module_name)
        if not isinstance(state, Mapping):
            raise CheckpointError(f"checkpoint {path} has no weights for {module_name!r}; it is damaged, retrain it")
        problems = _state_dict_problems(getattr(model, module_name), state)
        if problems:
            raise CheckpointError(f"checkpoint {path} has missing or mis-shaped weights in {module_name}: {problems}")
        getattr(model, module_name).load_state_dict(state, strict=True)
    try:
        dataset = DatasetSpec.from_dict(_require(payload, "dataset", dict, path))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} has an invalid dataset entry ({error!r})") from None
    if dataset.num_classes != model.num_classes:
        raise CheckpointError(
            f"checkpoint {path} lists {dataset.num_classes} classes but its model has {model.num_classes}; it is inconsistent"
        )
    model.to(device).eval()
    return Checkpoint(
        model=model,
        architecture=name,
        architecture_kwargs=kwargs,
        dataset=dataset,
        training=dict(payload.get("training") or {}),
        history=list(payload.get("history") or []),
        versions=dict(payload.get("versions") or {}),
        resume=payload.get("resume"),
        path=path,
        sha256=sha256_file(path),
    )


def _state_dict_problems(module: torch.nn.Module, state: Mapping[str, Any]) -> str:
    """A one-line description of how ``state`` does not fit ``module`` ('' if it fits)."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        return f"missing {missing[0]!r}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
    unexpected = [key for key in state if key not in expected]
    if unexpected:
        return f"unexpected {unexpected[0]!r}" + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else "")
    for key, tensor in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            return f"{key!r} is not a tensor"
        if value.shape != tensor.shape:
            return f"{key!r} has shape {tuple(value.shape)}, expected {tuple(tensor.shape)}"
    return ""
