"""Samples that are not in a dataset: image files converted to a checkpoint's input format.

``.png`` (or any format Pillow reads) and ``.npy`` files are converted to the checkpoint's input shape
``(C, H, W)`` and value range. Nothing is guessed silently: a wrong size needs ``resize=True``, colour
channels for a one-channel model are refused unless they are equal (a gray image saved as RGB), and
values outside the range are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flint_analysis.datasets import DatasetSpec
from flint_analysis.errors import InputError


def _from_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("P", "LA", "RGBA", "I;16", "1"):
                image = image.convert("RGBA" if "A" in image.mode or image.mode == "P" else "L")
            if image.mode == "RGBA":
                image = image.convert("RGB")
            array = np.asarray(image)
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(f"cannot read image {path}: {error}") from None
    return array if array.ndim == 3 else array[:, :, None]  # (H, W, C)


def _to_chw(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 2:
        return array[None]
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise InputError(f"{path} has shape {array.shape}; give (H, W), (C, H, W) or (H, W, C)")
    if array.shape[0] in (1, 3) and array.shape[0] <= array.shape[-1]:
        return array
    return np.transpose(array, (2, 0, 1))


def load_image_file(path: str | Path, spec: DatasetSpec, resize: bool = False, invert: bool = False) -> Tensor:
    """Read ``path`` as one input ``(C, H, W)`` of the checkpoint described by ``spec``.

    Args:
        path: a ``.npy`` file (``(H, W)``, ``(C, H, W)`` or ``(H, W, C)``; uint8 in ``[0, 255]`` or floats
            already in the value range) or an image file Pillow reads (8-bit, scaled to the value range).
        spec: the checkpoint's dataset spec (input shape and value range).
        resize: resize to the input size (bilinear) instead of refusing another size.
        invert: map ``v`` to ``low + high − v`` (dark strokes on light paper → the datasets' light on dark).

    Raises:
        InputError: unreadable file, wrong channels, wrong size without ``resize``, values out of range.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {path} does not exist")
    channels, height, width = spec.input_shape
    low, high = spec.value_range
    if path.suffix.lower() == ".npy":
        try:
            raw = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InputError(f"cannot read {path} as a numpy array: {error}") from None
        array = _to_chw(raw, path)
        if array.dtype == np.uint8:
            values = low + (high - low) * array.astype(np.float32) / 255.0
        elif np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer):
            values = array.astype(np.float32)
        else:
            raise InputError(f"{path} holds {array.dtype} values; give uint8 or floats")
    else:
        array = np.transpose(_from_png(path), (2, 0, 1))
        values = low + (high - low) * array.astype(np.float32) / 255.0
    if not np.isfinite(values).all():
        raise InputError(f"{path} contains NaN or infinite values")
    if values.shape[0] != channels:
        if channels == 1 and values.shape[0] == 3 and np.array_equal(values[0], values[1]) and np.array_equal(values[0], values[2]):
            values = values[:1]
        else:
            raise InputError(f"{path} has {values.shape[0]} channel(s), the model expects {channels}; convert it first")
    tensor = torch.from_numpy(np.ascontiguousarray(values))
    if tuple(tensor.shape[1:]) != (height, width):
        if not resize:
            raise InputError(f"{path} is {tensor.shape[2]}×{tensor.shape[1]} pixels, the model expects {width}×{height}; pass --resize to resize it")
        tensor = torch.nn.functional.interpolate(tensor[None], size=(height, width), mode="bilinear", align_corners=False, antialias=True)[0]
    tolerance = 1e-6 * (high - low)
    if float(tensor.min()) < low - tolerance or float(tensor.max()) > high + tolerance:
        raise InputError(
            f"{path} has values in [{float(tensor.min()):g}, {float(tensor.max()):g}], outside the model's range [{low:g}, {high:g}]; rescale it"
        )
    if invert:
        tensor = low + high - tensor
    return tensor.clamp(low, high)


def looks_inverted(image: Tensor, value_range: tuple[float, float]) -> bool:
    """Whether most of the image is bright, unlike the light-on-dark training data of MNIST-like sets."""
    low, high = value_range
    return float(image.mean()) > low + 0.5 * (high - low)
