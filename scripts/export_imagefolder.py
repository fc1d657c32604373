#!/usr/bin/env python3
"""Export FashionMNIST (or MNIST) from its IDX files as an ImageFolder of lossless PNG files.

Writes ``OUT/train/<k>_<class>/<index>.png`` and ``OUT/test/<k>_<class>/<index>.png``: 8-bit grayscale PNGs
(``--rgb``: the gray value in all three channels) of the original 28×28 pixels, bit for bit. Class folders are
the label index and the class name made safe for file systems (``0_T-shirt_top`` … ``9_Ankle_boot``), so their
sorted order, which is how ``ImageFolder`` numbers classes, is the label order; files are named by their index
in the IDX split (zero-padded, so sorted order is index order). ``--per-class N`` keeps N seeded random images
per class of each split (``--seed``), in index order. Resizing is left to the loader: a 3×32×32 RGB set is
``--rgb`` here and ``flint-train --dataset imagefolder:OUT --image-size 32`` (or ``--channels 3`` on the gray
export). ``OUT/flint-export.json`` records what was exported.

Safety: OUT is written to a temporary folder next to it and renamed into place when complete, so an
interrupted export leaves nothing half-written. An existing empty OUT is replaced; a non-empty OUT is refused
unless it is an earlier export of this script (it holds ``flint-export.json``) and ``--overwrite`` is given.

    python scripts/export_imagefolder.py OUT [--dataset fashion-mnist] [--data-root DIR] [--per-class N] [--rgb]

Exit status 0 done, 2 a user error (one line on stderr, nothing written), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from flint_analysis.cli_common import EXIT_INTERRUPTED, EXIT_USER_ERROR, OneLineErrorParser, integer
from flint_analysis.datasets import SPLITS, DatasetBundle, load_dataset
from flint_analysis.errors import FlintError, InputError, OutputError

EXPORTABLE = ("fashion-mnist", "mnist")
MARKER = "flint-export.json"
"""The file an export writes at OUT's top: what was exported (and the sign that OUT is this script's)."""


def safe_folder_name(label: int, name: str, width: int) -> str:
    """``<label>_<name>``: the label zero-padded to ``width`` digits, other characters than letters, digits, ``.-_`` as ``_``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "class"
    return f"{label:0{width}d}_{cleaned}"


def chosen_indices(labels: np.ndarray, per_class: int | None, seed: int, split_number: int) -> np.ndarray:
    """All indices, or ``per_class`` of each class drawn by ``numpy.random.default_rng([seed, split_number, class])``, sorted."""
    if per_class is None:
        return np.arange(labels.shape[0])
    picked = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if members.shape[0] < per_class:
            raise InputError(f"--per-class {per_class}: class {int(label)} has only {members.shape[0]} images in this split; lower it")
        rng = np.random.default_rng([seed, split_number, int(label)])
        picked.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picked))


def write_imagefolder(bundle: DatasetBundle, folder: Path, per_class: int | None = None, seed: int = 0, rgb: bool = False) -> dict:
    """Write ``bundle``'s splits as PNG files under ``folder`` (which exists and is empty); returns the record written."""
    from PIL import Image

    names = bundle.spec.class_names
    width = len(str(len(names) - 1))
    class_folders = [safe_folder_name(label, name, width) for label, name in enumerate(names)]
    counts = {}
    for split_number, split in enumerate(SPLITS):
        data = bundle.split(split)
        images = data.images.numpy()  # (N, 1, H, W) uint8
        if images.shape[1] != 1:
            raise InputError(f"{bundle.spec.name} has {images.shape[1]} channels; this script exports gray IDX data")
        labels = data.labels.numpy()
        digits = len(str(max(labels.shape[0] - 1, 0)))
        for class_folder in class_folders:
            (folder / split / class_folder).mkdir(parents=True)
        indices = chosen_indices(labels, per_class, seed, split_number)
        for index in indices:
            pixels = images[index, 0]
            picture = Image.fromarray(np.repeat(pixels[:, :, None], 3, axis=2), "RGB") if rgb else Image.fromarray(pixels, "L")
            picture.save(folder / split / class_folders[labels[index]] / f"{index:0{digits}d}.png", format="PNG")
        counts[split] = int(indices.shape[0])
    record = {"dataset": bundle.spec.name, "classes": list(names), "class_folders": class_folders, "rgb": rgb,
              "per_class": per_class, "seed": seed if per_class is not None else None, "images": counts}
    (folder / MARKER).write_text(json.dumps(record, indent=2) + "\n")
    return record


def export(dataset: str, output: str | Path, data_root: str | Path | None = None, per_class: int | None = None, seed: int = 0,
           rgb: bool = False, overwrite: bool = False, download: bool = False) -> dict:
    """Export ``dataset`` to ``output`` atomically (see the module docstring); returns the record written."""
    if dataset not in EXPORTABLE:
        raise InputError(f"cannot export {dataset!r}; choose one of {', '.join(EXPORTABLE)}")
    output = Path(output).expanduser()
    replacing = _check_output(output, overwrite)
    bundle = load_dataset(dataset, data_root=data_root, download=download)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        temporary.chmod(0o777 & ~umask)  # mkdtemp makes it private; the export gets the permissions of a new folder
        record = write_imagefolder(bundle, temporary, per_class=per_class, seed=seed, rgb=rgb)
        if replacing:  # an earlier export: moved aside, then removed once the new one is in place
            old = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".old", dir=output.parent))
            os.replace(output, old / "export")
            try:
                os.replace(temporary, output)
            except BaseException:
                os.replace(old / "export", output)
                old.rmdir()
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, output)  # onto a missing or empty folder only
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return record


def _check_output(output: Path, overwrite: bool) -> bool:
    """Whether ``output`` is an earlier export to replace; refuses anything else that holds files."""
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output} is a file; give a folder path for the ImageFolder")
    blocking = next((parent for parent in output.parents if parent.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise OutputError(f"{output} cannot be created: {blocking} is a file, not a folder")
    if not output.is_dir() or not any(output.iterdir()):
        return False
    if not (output / MARKER).is_file():
        raise OutputError(f"{output} is not empty and was not written by this script; give a new or empty folder")
    if not overwrite:
        raise OutputError(f"{output} holds an earlier export; replace it with --overwrite or choose another folder")
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="export_imagefolder.py", description=__doc__.split("\n\n")[0],
                                epilog="exit status: 0 done; 2 bad input (one line on stderr, nothing written); 130 interrupted.")
    parser.add_argument("output", metavar="OUT", help="folder to create (new or empty)")
    parser.add_argument("--dataset", choices=EXPORTABLE, default="fashion-mnist", help="IDX dataset to export (default fashion-mnist)")
    parser.add_argument("--data-root", help="folder of the IDX files (default: $FLINT_DATA, then known locations)")
    parser.add_argument("--download", action="store_true", help="let torchvision download the IDX files if missing")
    parser.add_argument("--per-class", type=integer(minimum=1), metavar="N", help="N seeded random images per class of each split (default: all)")
    parser.add_argument("--seed", type=integer(0, 2**32 - 1), default=0, help="seed of --per-class (default 0)")
    parser.add_argument("--rgb", action="store_true", help="write RGB PNGs (the gray value in R, G and B)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export of this script at OUT")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        record = export(args.dataset, args.output, data_root=args.data_root, per_class=args.per_class, seed=args.seed,
                        rgb=args.rgb, overwrite=args.overwrite, download=args.download)
    except FlintError as error:
        print(f"export_imagefolder.py: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:
        print(f"export_imagefolder.py: error: cannot write {args.output}: {error.strerror or error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"\nexport_imagefolder.py: interrupted; {args.output} was not written", file=sys.stderr)
        return EXIT_INTERRUPTED
    counts = record["images"]
    print(f"wrote {args.output}: {counts['train']} training and {counts['test']} test images of {record['dataset']} "
          f"({'RGB' if record['rgb'] else 'gray'} PNG, {len(record['classes'])} classes)")
    print(f"train on it: flint-train --dataset imagefolder:{args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
