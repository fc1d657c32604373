"""Samples that are not in a dataset: image files converted to a checkpoint's input format.

``.npy`` files and image files Pillow reads (``.png``, ...) are converted to the checkpoint's input shape
``(C, H, W)`` and value range ``[low, high]``. Files come from users, so they are validated at this
boundary and nothing a file merely *declares* is allocated before it is checked:

- **Limits.** An input may have at most :data:`MAX_PIXELS` pixels (4096×4096) and a ``.npy`` file at most
  :data:`MAX_NPY_BYTES` (256 MiB) of data. A ``.npy`` header is read (``numpy.lib.format``) and its dtype
  (numbers only, never objects or pickles), shape and byte size are checked against these limits and
  against the size of the file before any data is read; an image's size is checked before it is
  decoded (Pillow's decompression-bomb guard is turned into the same one-line error).
- **Pixel values.** 8-bit channels are divided by 255, 16-bit ones (``I;16``, ``I;16B``, and ``I`` as
  Pillow opens 16-bit PNG/PGM) by 65535, 1-bit images give 0/1; the fraction ``v`` becomes
  ``low + (high − low)·v``. ``.npy`` arrays: ``uint8`` is scaled the same way, other numbers (and 32-bit
  float images) are taken as values and must lie in ``[low, high]``.
- **Transparency** (``RGBA``, ``LA``, palette images with a transparent colour). When the visible pixels
  (alpha > 0) all have one colour and alpha varies, the drawing *is* the alpha channel (black ink on a
  transparent canvas): the image becomes ``alpha``, strokes bright on dark like the datasets. Otherwise
  the image is composited over black, the datasets' background (``colour · alpha``).
- **Channels.** Gray images are repeated for a three-channel model; colour images given to a one-channel
  model become their luma ``0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601, Pillow's ``"L"`` conversion), and a
  note says so (none for a gray image saved as RGB, whose channels are equal). Nothing else is guessed: a
  wrong size needs ``resize=True`` (the ImageFolder loader's rule: the shorter side to the model's size, then
  a centre crop; a note says so) and values outside the range are refused.

Every problem is an :class:`~flint_analysis.errors.InputError` whose message is one line.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flint_analysis.datasets import DatasetSpec
from flint_analysis.errors import InputError

MAX_PIXELS = 4096 * 4096
"""Largest accepted height × width of an input file (any format)."""
MAX_NPY_BYTES = 256 * 2**20
"""Largest accepted data size of a ``.npy`` input file."""

_PIXEL_LIMIT = f"inputs are limited to 4096×4096 = {MAX_PIXELS:,} pixels"
_NPY_LIMIT = f"{_PIXEL_LIMIT} and {MAX_NPY_BYTES // 2**20} MiB of .npy data"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float: no objects, strings, records, complex or dates
_TO_RGB = ("RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_SIXTEEN_BIT_AS_I = ("PNG", "PPM")  # formats Pillow opens as mode "I" while their samples are 16-bit


def _one_line(error: object) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _size_text(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover


# --------------------------------------------------------------------------------------- .npy
def _chw_layout(shape: tuple[int, ...], path: Path) -> tuple[tuple[int, int, int], bool]:
    """``(C, H, W)`` of an array of ``shape`` and whether it is stored ``(H, W, C)``."""
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 2:
        return (1, shape[0], shape[1]), False
    if len(shape) != 3:
        raise InputError(f"{path} has shape {shape}; give (H, W), (C, H, W) or (H, W, C)")
    if shape[0] in (1, 3) and shape[0] <= shape[-1]:
        return (shape[0], shape[1], shape[2]), False
    return (shape[2], shape[0], shape[1]), True


def _read_npy(path: Path) -> np.ndarray:
    """The array of a ``.npy`` file as ``(C, H, W)``, its header checked before any data is read."""
    from numpy.lib import format as npy

    with open(path, "rb") as stream:
        head = stream.read(8)
        if not head:
            raise InputError(f"{path} is empty, not a .npy array; write the image with numpy.save")
        if head.startswith(_ZIP_MAGICS):
            raise InputError(f"{path} is a .npz archive, not a .npy array; save one of its arrays with numpy.save(file, archive[name])")
        if not head.startswith(_NPY_MAGIC):
            raise InputError(f"{path} is not a .npy file (no numpy header); write the image with numpy.save, or name it after its real format")
        stream.seek(0)
        try:
            version = npy.read_magic(stream)
            readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
            if version not in readers:
                raise InputError(f"{path} is a .npy file of format version {version[0]}.{version[1]}, which holds no plain numbers; save a numeric array with numpy.save")
            shape, fortran_order, dtype = readers[version](stream)
        except InputError:
            raise
        except Exception as error:  # numpy's header parser raises ValueError, SyntaxError, tokenize errors, ...
            raise InputError(f"{path} has a damaged .npy header ({_one_line(error)}); write the image again with numpy.save") from None
        if dtype.kind not in _NUMERIC_KINDS or dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            raise InputError(f"{path} holds {dtype} values; give an array of numbers (uint8, or floats in the model's range)")
        shape = tuple(int(size) for size in shape)
        if any(size < 0 for size in shape):
            raise InputError(f"{path} has a damaged .npy header (shape {shape}); write the image again with numpy.save")
        (channels, height, width), channels_last = _chw_layout(shape, path)
        if 0 in shape:
            raise InputError(f"{path} holds an empty array of shape {shape}; give an image")
        nbytes = math.prod(shape) * dtype.itemsize
        if height * width > MAX_PIXELS or nbytes > MAX_NPY_BYTES:
            raise InputError(
                f"{path} declares a {'×'.join(map(str, shape))} {dtype} array ({_size_text(nbytes)}); {_NPY_LIMIT}; shrink it first"
            )
        available = os.fstat(stream.fileno()).st_size - stream.tell()
        if available < nbytes:
            raise InputError(
                f"{path} is truncated: its header declares {nbytes:,} bytes of data, the file holds {max(available, 0):,}; write it again with numpy.save"
            )
        data = stream.read(nbytes)
    if len(data) < nbytes:  # the file shrank while it was read
        raise InputError(f"{path} is truncated; write it again with numpy.save")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")
    array = array.reshape(shape[1:]) if len(shape) == 4 else array
    if array.ndim == 2:
        return array[None]
    return np.transpose(array, (2, 0, 1)) if channels_last else array


def _npy_values(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """``uint8`` scaled from ``[0, 255]`` to the range; other numbers are taken as values."""
    if array.dtype == np.uint8:
        return (low + (high - low) * array.astype(np.float32) / 255.0).astype(np.float32)
    return array.astype(np.float32)


# --------------------------------------------------------------------------------------- images
def _transparent(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``(H, W, K)`` uint8 colour with ``(H, W)`` uint8 alpha → fractions ``(H, W, K')`` (see the module docstring)."""
    opacity = alpha.astype(np.float32) / 255.0
    visible = alpha > 0
    if alpha.min() != alpha.max() and visible.any():
        shown = colour[visible]
        if (shown == shown[0]).all():
            return opacity[:, :, None]  # the strokes are in the alpha channel only
    return colour.astype(np.float32) / 255.0 * opacity[:, :, None]  # over the datasets' black background


def _image_fractions(image, path: Path) -> tuple[np.ndarray, bool]:
    """A decoded Pillow image as ``(H, W, C)`` float32 and whether it holds fractions of full scale (else values)."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode == "La":
        image = image.convert("LA")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    elif mode in _TO_RGB and mode != "RGB":
        image = image.convert("RGB")
    mode = image.mode
    array = np.asarray(image)
    if mode == "1":
        return array.astype(np.float32)[:, :, None], True
    if mode in ("L", "RGB"):
        fractions = array.astype(np.float32) / 255.0
        return (fractions if fractions.ndim == 3 else fractions[:, :, None]), True
    if mode in ("LA", "RGBA"):
        return _transparent(array[:, :, :-1], array[:, :, -1]), True
    if mode in _SIXTEEN_BIT:
        return array.astype(np.float32)[:, :, None] / 65535.0, True
    if mode == "I" and image.format in _SIXTEEN_BIT_AS_I:
        if array.min() < 0 or array.max() > 65535:
            raise InputError(f"{path} has 16-bit samples outside 0-65535; save it again as a 16-bit or 8-bit PNG")
        return array.astype(np.float32)[:, :, None] / 65535.0, True
    if mode == "F":
        return array.astype(np.float32)[:, :, None], False
    raise InputError(
        f"{path} has pixel mode {mode} ({image.format or 'unknown'} format), which is not converted; save it as an 8- or 16-bit PNG, or as .npy"
    )


def _read_picture(path: Path) -> tuple[np.ndarray, bool]:
    """An image file as ``(C, H, W)`` float32, its size checked before decoding; see :func:`_image_fractions`."""
    from PIL import Image

    bomb = (Image.DecompressionBombError, Image.DecompressionBombWarning)
    try:
        with warnings.catch_warnings(record=True):  # Pillow's metadata warnings would be lines on stderr
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise InputError(f"{path} is {width}×{height} pixels; {_PIXEL_LIMIT}; shrink it first")
                image.load()
                array, fractions = _image_fractions(image, path)
    except InputError:
        raise
    except bomb as error:  # over Pillow's own limit (Image.MAX_IMAGE_PIXELS), found before ours
        declared = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(declared.group(1)):,} pixels" if declared else "an image too large"
        raise InputError(f"{path} declares {size}, too many to decode safely; {_PIXEL_LIMIT}; shrink it first") from None
    except MemoryError:
        raise InputError(f"{path} is too large to decode; {_PIXEL_LIMIT}; shrink it first") from None
    except Exception as error:  # Pillow's plugins raise many types (OSError, SyntaxError, ValueError, struct.error, ...)
        raise InputError(f"cannot read image {path}: {_one_line(error)}") from None
    return np.ascontiguousarray(np.transpose(array, (2, 0, 1))), fractions


LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights of red, green and blue: a colour input for a one-channel model (Pillow's ``"L"``)."""


def _match_channels(values: np.ndarray, channels: int, path: Path, notes: list[str]) -> np.ndarray:
    if values.shape[0] == channels:
        return values
    if channels == 1 and values.shape[0] == 3:
        if np.array_equal(values[0], values[1]) and np.array_equal(values[0], values[2]):
            return values[:1]
        notes.append(f"{path}: colour image converted to the model's one channel (luma 0.299 R + 0.587 G + 0.114 B)")
        return np.tensordot(np.asarray(LUMA_WEIGHTS, dtype=values.dtype), values, axes=1)[None]
    if values.shape[0] == 1:
        return np.repeat(values, channels, axis=0)
    raise InputError(f"{path} has {values.shape[0]} channel(s), the model expects {channels}; convert it first")


def _resized(tensor: Tensor, height: int, width: int) -> Tensor:
    """``(C, h, w)`` → ``(C, height, width)``: the shorter side to the target's, then a centre crop (torchvision's
    ``Resize`` + ``CenterCrop``, bilinear, antialiased), as the ImageFolder loader serves its images."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    scale = max(height / tensor.shape[1], width / tensor.shape[2])
    size = [max(height, round(tensor.shape[1] * scale)), max(width, round(tensor.shape[2] * scale))]
    resized = TF.resize(tensor, size, interpolation=InterpolationMode.BILINEAR, antialias=True)
    return TF.center_crop(resized, [height, width])


def load_image_file(path: str | Path, spec: DatasetSpec, resize: bool = False, invert: bool = False,
                    notes: list[str] | None = None) -> Tensor:
    """Read ``path`` as one input ``(C, H, W)`` of the checkpoint described by ``spec``.

    Args:
        path: a ``.npy`` file (``(H, W)``, ``(C, H, W)`` or ``(H, W, C)``; uint8 in ``[0, 255]`` or numbers
            already in the value range) or an image file Pillow reads (1-, 8- or 16-bit, gray, colour, palette,
            with or without alpha; see the module docstring for the conversions).
        spec: the checkpoint's dataset spec (input shape and value range).
        resize: resize to the input size (the shorter side, then a centre crop) instead of refusing another size.
        invert: map ``v`` to ``low + high − v`` (dark strokes on light paper → the datasets' light on dark).
        notes: if given, a line is appended for each conversion made (colour to one channel, resizing).

    Raises:
        InputError: unreadable or malformed file, over the size limits, unsupported pixel type, wrong channels,
            wrong size without ``resize``, values out of range; always before anything large is allocated.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {path} does not exist")
    channels, height, width = spec.input_shape
    low, high = spec.value_range
    try:
        with open(path, "rb") as stream:
            head = stream.read(8)
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or _one_line(error)}") from None
    if path.suffix.lower() == ".npy" or head.startswith(_NPY_MAGIC):
        values = _npy_values(_read_npy(path), low, high)
    elif path.suffix.lower() == ".npz" or head.startswith(_ZIP_MAGICS):
        raise InputError(f"{path} is a .npz archive; give one of its arrays as a .npy file (numpy.save(file, archive[name]))")
    else:
        array, fractions = _read_picture(path)
        values = (low + (high - low) * array).astype(np.float32) if fractions else array
    if not np.isfinite(values).all():
        raise InputError(f"{path} contains NaN or infinite values")
    notes = [] if notes is None else notes
    values = _match_channels(values, channels, path, notes)
    tensor = torch.from_numpy(np.ascontiguousarray(values))
    if tuple(tensor.shape[1:]) != (height, width):
        if not resize:
            raise InputError(f"{path} is {tensor.shape[2]}×{tensor.shape[1]} pixels, the model expects {width}×{height}; pass --resize to resize it")
        notes.append(f"{path}: resized from {tensor.shape[2]}×{tensor.shape[1]} to the model's {width}×{height} "
                     "(shorter side first, then a centre crop)")
        tensor = _resized(tensor, height, width)
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
