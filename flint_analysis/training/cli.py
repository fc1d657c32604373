"""``flint-train``: train a FLINT model (or the BASE-f baseline) and write a checkpoint after every epoch."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch

from flint_analysis.checkpoint import Checkpoint, load_checkpoint, load_predictor_weights
from flint_analysis.distributed import ProcessGroup, join_process_group, leave_process_group, peer_failure
from flint_analysis.datasets import (
    DATASETS, DEFAULT_IN_MEMORY_LIMIT, DEFAULT_TEST_FRACTION, FOLDER_DATASETS, dataset_entry, load_dataset, load_dataset_for_spec,
    parse_dataset_name,
)
from flint_analysis.cli_common import EXIT_INTERRUPTED, OneLineErrorParser, add_version, device_type, integer, number, run_command
from flint_analysis.errors import DatasetError, InputError
from flint_analysis.options import POSITIVE_INT, SEED, add_option
from flint_analysis.errors import ArchitectureError
from flint_analysis.models import (
    KNOWN_ARCHITECTURES, KWARG_RULES, TORCHVISION_NETWORKS, TORCHVISION_PREFIX, architecture_entry, build_model,
    resolve_architecture_kwargs,
)
from flint_analysis.runtime import resolve_device, seed_everything
from flint_analysis.training.config import PRESETS, TrainingConfig, preset_for_dataset
from flint_analysis.training.trainer import train



# J of any built-in architecture (models.KWARG_RULES is the place of truth; the architecture checks it again).
_J_LOW = min(rules["num_attributes"].low for rules in KWARG_RULES.values())
_J_HIGH = max(rules["num_attributes"].high for rules in KWARG_RULES.values())


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="flint-train",
        description="Train a FLINT predictor f with its interpreter g = h∘Φ and decoder d (Algorithm 1 of the paper).",
        epilog=f"exit status: 0 done (or nothing left to train); 2 bad input (one line on stderr, no checkpoint written); "
        f"{EXIT_INTERRUPTED} interrupted (Ctrl-C; the checkpoint holds the last finished epoch, if any).",
    )
    add_version(parser)
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", type=_dataset_argument, metavar="NAME",
                      help=f"dataset to train on: {', '.join(DATASETS)}, or imagefolder:PATH, a folder of images in "
                      "torchvision's ImageFolder layout (PATH/<class>/<image>, or PATH/train/... and PATH/test/...) "
                      "(required unless --resume)")
    data.add_argument("--data-root", help="folder holding the dataset files (default: $FLINT_DATA, then known locations)")
    data.add_argument("--download", action="store_true", help="let torchvision download MNIST/FashionMNIST if missing")
    data.add_argument("--samples-per-class", type=integer(minimum=2), help="quickdraw: drawings per class, ≥ 2 (default 10000, split 80/20)")
    data.add_argument("--classes", nargs="+", help="quickdraw: class names (default: the paper's 10)")
    data.add_argument("--image-size", type=integer(1, 4096), metavar="S",
                      help="imagefolder: serve S×S images: the shorter side resized to S (bilinear, antialiased), then the "
                      "centre S×S cut (default: the images' own size, when they all have one square size)")
    data.add_argument("--channels", choices=["auto", "1", "3"],
                      help="imagefolder: 1 (gray) or 3 (RGB: gray images repeated); auto (default): 1 if every image is gray")
    data.add_argument("--test-fraction", type=number(0, 1, min_open=True, max_open=True), metavar="F",
                      help=f"imagefolder without train/ and test/ folders: the share of each class held out for testing, "
                      f"split with a fixed seed (default {DEFAULT_TEST_FRACTION:g})")
    data.add_argument("--mean", nargs="+", type=number(), metavar="M",
                      help="imagefolder: per-channel mean of the normalisation (x − mean) / std the model applies "
                      "(default: computed on the training split)")
    data.add_argument("--std", nargs="+", type=number(0, min_open=True), metavar="S",
                      help="imagefolder: per-channel std of the normalisation (give it with --mean)")
    data.add_argument("--no-normalize", action="store_true", help="imagefolder: no normalisation (the model sees [0, 1])")
    data.add_argument("--stream", action="store_true",
                      help="imagefolder: read the images from disk batch by batch instead of decoding them into memory once "
                      "(default: only when they would take more than --in-memory-limit)")
    data.add_argument("--in-memory-limit", type=number(0, min_open=True), metavar="GIB",
                      help=f"imagefolder: stream when the decoded 8-bit images of both splits would take more than GIB GiB "
                      f"(default {DEFAULT_IN_MEMORY_LIMIT / 2**30:g})")
    data.add_argument("--workers", type=integer(0, 256), metavar="N",
                      help="imagefolder: DataLoader worker processes that decode the images (default 0: the main process)")
    model = parser.add_argument_group("model")
    model.add_argument("--preset", choices=list(PRESETS), help="hyper-parameter preset (default: the dataset's: " + ", ".join(f"{d.default_preset} for {d.name}" for d in DATASETS.values())
                       + "; with an --architecture the dataset's preset is not for, that architecture's)")
    model.add_argument("--architecture", type=_architecture_argument, metavar="NAME",
                       help=f"architecture: {', '.join(n for n in KNOWN_ARCHITECTURES if not n.startswith(TORCHVISION_PREFIX))}, "
                       f"or {TORCHVISION_PREFIX}NAME for a torchvision classifier as f ({', '.join(TORCHVISION_NETWORKS)}; "
                       "random weights, see --predictor-weights) (default: the preset's)")
    model.add_argument("--taps", nargs="+", metavar="LAYER",
                       help=f"{TORCHVISION_PREFIX}NAME only: the hidden layers Φ reads, by their named_modules() names "
                       "(default: the network's two late stages, e.g. layer3 layer4.0 for ResNets)")
    model.add_argument("--num-attributes", type=integer(_J_LOW, _J_HIGH),
                       help=f"J, the number of attributes, {_J_LOW} to {_J_HIGH} (default: the architecture's)")
    model.add_argument("--attribute-activation", choices=["leaky_relu", "relu"], help="Φ's output non-linearity (default: the architecture's)")
    post_hoc = parser.add_argument_group("post-hoc FLINT (interpret an already trained f)")
    post_hoc.add_argument("--predictor-weights", metavar="FILE",
                          help="start f from these weights: a state dict of f saved with torch.save (e.g. a torchvision "
                          "model's state_dict(); also under 'state_dict' or 'model', 'module.' prefixes dropped), or a "
                          "flint-train checkpoint (its f, e.g. a --baseline run); read with weights_only=True. The checkpoint "
                          "records the path and the file's sha256")
    post_hoc.add_argument("--freeze-predictor", action="store_true", default=None,
                          help="keep f frozen (not trained, eval mode: its outputs stay bit-identical) and train Φ, h and d "
                          "with L_of, L_if and L_cd; needs --predictor-weights; --resume keeps it frozen")
    hyper = parser.add_argument_group("training (defaults: the preset's)")
    for flag, name in (("--epochs", "epochs"), ("--batch-size", "batch_size"), ("--lr", "learning_rate"), ("--beta", "beta"),
                       ("--gamma", "gamma"), ("--delta", "delta"), ("--zeta", "zeta"), ("--mu", "mu"), ("--eta", "eta"),
                       ("--interpretability-start-epoch", "interpretability_start_epoch"),
                       ("--entropy-start-epoch", "entropy_start_epoch"), ("--l1-reduction", "l1_reduction"),
                       ("--interpreter-input-dropout", "interpreter_input_dropout")):
        add_option(hyper, flag, TrainingConfig, name, default=None, default_text="the preset's")
    hyper.add_argument("--baseline", action="store_true", help="train f alone (β = γ = δ = 0): the paper's BASE-f")
    hyper.add_argument("--batch-per-process", type=POSITIVE_INT.argparse_type(), metavar="N",
                       help="under torchrun: N samples per process, a global batch of N × processes (default: the "
                            "preset's --batch-size is the global batch, split over the processes)")
    run = parser.add_argument_group("run")
    run.add_argument("-o", "--output", help="checkpoint path to write (default: runs/<dataset>/ckpt.pt; with --resume, the resumed file)")
    run.add_argument("--resume", metavar="CKPT", help="continue the run saved in CKPT (its settings; --epochs may extend it)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint at --output")
    run.add_argument("--seed", type=SEED.argparse_type(), default=0, help=f"seed of initialisation, shuffling and dropout, {SEED.describe()} (default 0)")
    run.add_argument("--device", type=device_type, default="auto", help="auto (default), cpu, cuda or cuda:N")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _dataset_argument(text: str) -> str:
    """``--dataset``: a registered name or ``imagefolder:PATH`` (kept as written, see :func:`parse_dataset_name`)."""
    try:
        parse_dataset_name(text)
    except DatasetError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _dataset_options(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The loader options the data flags give, each refused (one line) for a dataset it does not apply to."""
    given = [
        ("--samples-per-class", "samples_per_class", args.samples_per_class),
        ("--classes", "classes", args.classes or None),
        ("--image-size", "image_size", args.image_size),
        ("--channels", "channels", None if args.channels is None else (args.channels if args.channels == "auto" else int(args.channels))),
        ("--test-fraction", "test_fraction", args.test_fraction),
        ("--mean", "mean", args.mean),
        ("--std", "std", args.std),
        ("--no-normalize", "normalize", False if args.no_normalize else None),
        ("--stream", "stream", True if args.stream else None),
        ("--in-memory-limit", "in_memory_limit", None if args.in_memory_limit is None else int(args.in_memory_limit * 2**30)),
        ("--workers", "workers", args.workers),
    ]
    entry = dataset_entry(name)
    for flag, key, value in given:
        if value is not None and key not in entry.options:
            takers = ", ".join(d.name for d in (*DATASETS.values(), *FOLDER_DATASETS.values()) if key in d.options) or "no dataset"
            raise InputError(f"{flag} does not apply to --dataset {name} (only to {takers})")
    return {key: value for _, key, value in given if value is not None}


def _architecture_argument(text: str) -> str:
    """``--architecture``: a known name (built-in or ``torchvision:NAME``), else one line listing the known ones."""
    try:
        return architecture_entry(text).name
    except ArchitectureError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _config_from_args(args: argparse.Namespace, base: TrainingConfig) -> TrainingConfig:
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainingConfig) if getattr(args, f.name, None) is not None}
    if args.baseline:
        overrides["baseline"] = True
    return replace(base, **overrides)


def _new_checkpoint(args: argparse.Namespace) -> tuple[Checkpoint, TrainingConfig, object]:
    if args.dataset is None:
        raise InputError("give --dataset NAME (or --resume CKPT)")
    name, folder = parse_dataset_name(args.dataset)
    options = _dataset_options(args, name)
    if folder is not None:
        if args.data_root is not None:
            raise InputError(f"--data-root does not apply to --dataset {name}:PATH; the folder is PATH ({folder})")
        options["path"] = folder
    bundle = load_dataset(name, data_root=args.data_root, download=args.download, **options)
    preset = args.preset or preset_for_dataset(name)
    if args.preset is None and args.architecture is not None and PRESETS[preset][0] != args.architecture:
        preset = architecture_entry(args.architecture).default_preset  # the dataset's preset is for another network
    preset_architecture, preset_config = PRESETS[preset]
    config = _config_from_args(args, preset_config)
    architecture = args.architecture or preset_architecture
    channels, height, width = bundle.spec.input_shape
    if height != width:
        raise InputError(f"{architecture} takes square images; the data is {height}×{width}, resize it to a square size")
    kwargs = {"num_classes": bundle.spec.num_classes, "in_channels": channels, "input_size": height}
    if args.num_attributes is not None:
        kwargs["num_attributes"] = args.num_attributes
    if args.attribute_activation is not None:
        kwargs["attribute_activation"] = args.attribute_activation
    if args.taps:
        if not architecture.startswith(TORCHVISION_PREFIX):
            raise InputError(f"--taps applies to {TORCHVISION_PREFIX}NAME architectures; {architecture} reads "
                             f"{', '.join(architecture_entry(architecture).taps)}")
        kwargs["taps"] = list(args.taps)
    kwargs = resolve_architecture_kwargs(architecture, kwargs)
    if kwargs.get("input_normalization", "none") != "none" and bundle.spec.normalization is not None:
        raise InputError(f"{architecture} with input_normalization={kwargs['input_normalization']!r} normalises its inputs "
                         "itself and the data's normalisation would be applied as well; add --no-normalize")
    seed_everything(args.seed)
    model = build_model(architecture, kwargs)
    training: dict[str, Any] = {"preset": preset}
    if args.predictor_weights is not None:
        training["predictor_weights"] = load_predictor_weights(model, args.predictor_weights).to_dict()
    checkpoint = Checkpoint(
        model=model,
        architecture=architecture,
        architecture_kwargs=kwargs,
        dataset=bundle.spec,
        training=training,
    )
    if bundle.spec.normalization is not None:  # an ImageFolder's statistics: the model normalises its [0, 1] input
        checkpoint.model.set_input_normalization(bundle.spec.normalization)
    return checkpoint, config, bundle


def _run_folder_name(dataset: str) -> str:
    """``runs/<this>/ckpt.pt``: the dataset's name, ``imagefolder-<folder name>`` for ``imagefolder:PATH``."""
    name, folder = parse_dataset_name(dataset)
    return name if folder is None else f"{name}-{Path(folder).expanduser().resolve().name or 'root'}"


def _checked_output(args: argparse.Namespace) -> Path:
    """The checkpoint path to write, refused before anything is loaded when it cannot or must not be written."""
    if args.resume is None and args.dataset is None:
        raise InputError("give --dataset NAME (or --resume CKPT)")
    output = Path(args.output or args.resume or f"runs/{_run_folder_name(args.dataset)}/ckpt.pt")
    if output.is_dir():
        raise InputError(f"output {output} is a directory; give a file path such as {output / 'ckpt.pt'}")
    blocking = next((parent for parent in output.parents if parent.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise InputError(f"output {output} cannot be written: {blocking} is a file, not a folder")
    resuming_in_place = args.resume is not None and output.resolve() == Path(args.resume).resolve()
    if output.exists() and not resuming_in_place and not args.overwrite:
        hint = f"continue it with --resume {output} or replace it with --overwrite" if not args.resume else "replace it with --overwrite or choose another -o"
        raise InputError(f"{output} exists; {hint}")
    return output


def _check_post_hoc_options(args: argparse.Namespace) -> None:
    """Refuse combinations of the post-hoc options that cannot mean anything (before anything is loaded)."""
    if args.resume and (args.predictor_weights is not None or args.taps):
        flag = "--predictor-weights" if args.predictor_weights is not None else "--taps"
        raise InputError(f"{flag} applies to new runs; --resume continues {args.resume} with its own model")
    if args.freeze_predictor and args.baseline:
        raise InputError("--baseline trains f alone and --freeze-predictor trains everything but f; choose one")
    if args.freeze_predictor and not args.resume and args.predictor_weights is None:
        raise InputError("--freeze-predictor needs --predictor-weights FILE (a frozen, randomly initialised f predicts nothing)")


def _run(args: argparse.Namespace, state: dict[str, Any]) -> int:
    group, device = join_process_group(resolve_device(args.device))
    completed = False
    try:
        status = _train(args, state, group, device)
        completed = True
        return status
    except torch.distributed.DistBackendError as error:
        raise peer_failure(error) from None
    finally:
        leave_process_group(group, completed)


def _train(args: argparse.Namespace, state: dict[str, Any], group: ProcessGroup, device: torch.device) -> int:
    say = print if group.is_main else (lambda *a, **k: None)
    if args.batch_per_process is not None:
        if not group.distributed:
            raise InputError("--batch-per-process applies to runs under torchrun; give --batch-size for one process")
        if args.batch_size is not None:
            raise InputError("give --batch-size (the global batch) or --batch-per-process, not both")
        args.batch_size = args.batch_per_process * group.world_size
    _check_post_hoc_options(args)
    output = _checked_output(args)
    if args.resume:
        checkpoint = load_checkpoint(args.resume, device="cpu")
        if not checkpoint.resume:
            raise InputError(f"{args.resume} holds no training state to resume (it was not written by flint-train)")
        config = _config_from_args(args, checkpoint.training.config)
        if config.freeze_predictor != checkpoint.training.config.freeze_predictor:
            raise InputError(f"{args.resume} was trained with f {'frozen' if not config.freeze_predictor else 'trained'}; "
                             "--resume continues it that way, drop --freeze-predictor")
        seed = int(checkpoint.training.seed)
        bundle = load_dataset_for_spec(checkpoint.dataset, data_root=args.data_root, download=args.download,
                                       workers=args.workers or 0)
        checkpoint.model.train()
    else:
        checkpoint, config, bundle = _new_checkpoint(args)
        seed = args.seed
    if checkpoint.epochs_completed >= config.epochs:
        say(f"{output}: all {config.epochs} epochs are done; raise --epochs to train further")
        return 0
    processes = f", {group.world_size} processes ({group.backend}), global batch {config.batch_size}" if group.distributed else ""
    say(
        f"training {checkpoint.architecture} (J={checkpoint.model.num_attributes}) on {checkpoint.dataset.name} "
        f"({checkpoint.dataset.train_size}/{checkpoint.dataset.test_size}), preset {checkpoint.training.preset}"
        f"{', BASE-f' if config.baseline else ''}{', f frozen (post-hoc)' if config.freeze_predictor else ''}, seed {seed}, device {device}{processes} -> {output}"
    )
    state["output"] = output
    state["before"] = output.stat().st_mtime_ns if output.exists() else None
    train(checkpoint, bundle, config, output, seed, device, progress=not args.quiet and group.is_main, log=say, group=group,
          workers=args.workers)
    last = checkpoint.history[-1]
    chance = 100.0 / checkpoint.dataset.num_classes
    if not config.baseline and last.test_accuracy_g < 2 * chance and group.is_main:
        print(
            f"warning: g is near chance ({last.test_accuracy_g:.1f}% test accuracy): the attributes collapsed or "
            "have not converged; with the paper's η the ℓ1 sum can drive them to zero (see README, Training presets)",
            file=sys.stderr,
        )
    say(f"wrote {output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    state: dict[str, Any] = {}

    def interrupted() -> str:
        output = state.get("output")
        if output is None:
            return "interrupted before training started; nothing was written"
        if output.is_file() and output.stat().st_mtime_ns != state["before"]:
            return f"interrupted; {output} holds the last finished epoch, continue with --resume {output}"
        if state["before"] is not None:
            return f"interrupted before an epoch finished; {output} is unchanged"
        return "interrupted before the first epoch finished; no checkpoint was written"

    return run_command("flint-train", lambda: _run(args, state), interrupted)


if __name__ == "__main__":
    sys.exit(main())
