"""Device selection, seeding and provenance (library versions, the compute environment, file hashes)."""

from __future__ import annotations

import hashlib
import platform
import random
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flint_analysis.errors import InputError

_PROVENANCE_PACKAGES = ("flint-analysis", "torch", "torchvision", "captum", "numpy", "scipy", "scikit-learn")


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; otherwise the named device, checked to exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for but CUDA is not available here; use --device cpu")
    return resolved


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries whose behaviour a result depends on."""
    versions = {"python": platform.python_version()}
    for package in _PROVENANCE_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def compute_environment(device: str | torch.device | None = None) -> dict[str, Any]:
    """What besides the library versions decides a run's floating-point results: the torch build, the CPU
    kernels it dispatches to, its thread counts, the machine and the device.

    The same seed gives bit-identical results only within one such environment: torch's CPU kernels
    split reductions by thread count and pick vector code by CPU capability, and CUDA kernels differ by
    GPU and library version. Recorded in checkpoints (``training.environments``) and reports (``environment``).

    Returns:
        ``torch`` (version), ``torch_git_version``, ``torch_debug``, ``torch_cuda`` (CUDA version the build
        targets, ``None`` for CPU builds), ``cpu_capability`` (e.g. ``AVX2``, ``AVX512``, ``DEFAULT``),
        ``num_threads``, ``num_interop_threads``, ``machine`` (e.g. ``x86_64``), ``device``, and for a CUDA
        device ``device_name`` and ``cudnn`` (else ``None``).
    """
    resolved = torch.device(device) if device is not None else torch.device("cpu")
    on_cuda = resolved.type == "cuda" and torch.cuda.is_available()
    try:
        capability: str | None = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        capability = None
    return {
        "torch": str(torch.__version__),  # a TorchVersion, which weights_only loading refuses
        "torch_git_version": getattr(torch.version, "git_version", None),
        "torch_debug": bool(getattr(torch.version, "debug", False)),
        "torch_cuda": getattr(torch.version, "cuda", None),
        "cpu_capability": capability,
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "machine": platform.machine(),
        "device": str(resolved),
        "device_name": torch.cuda.get_device_name(resolved) if on_cuda else None,
        "cudnn": torch.backends.cudnn.version() if on_cuda else None,
    }


def format_environment(environment: dict[str, Any]) -> str:
    """One line: ``torch 2.5.1 (git 1a2b3c4d) for CUDA 12.4, CPU capability AVX2, 4 threads, x86_64, device cpu``."""
    git = environment.get("torch_git_version")
    parts = [f"torch {environment.get('torch')}" + (f" (git {str(git)[:8]})" if git else "")
             + (" debug build" if environment.get("torch_debug") else "")]
    if environment.get("torch_cuda"):
        parts[0] += f" for CUDA {environment['torch_cuda']}"
    parts += [f"CPU capability {environment.get('cpu_capability')}", f"{environment.get('num_threads')} threads",
              str(environment.get("machine")), f"device {environment.get('device')}"]
    if environment.get("device_name"):
        parts[-1] += f" ({environment['device_name']}, cuDNN {environment.get('cudnn')})"
    if (environment.get("world_size") or 1) > 1:
        parts.append(f"{environment['world_size']} processes ({environment.get('backend')}) under torch.distributed")
    return ", ".join(parts)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
