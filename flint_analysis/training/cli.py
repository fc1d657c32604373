"""``flint-train``: train a FLINT model (or the BASE-f baseline) and write a checkpoint after every epoch."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch

from flint_analysis.checkpoint import Checkpoint, load_checkpoint
from flint_analysis.distributed import ProcessGroup, join_process_group, leave_process_group, peer_failure
from flint_analysis.datasets import DATASETS, load_dataset, load_dataset_for_spec
from flint_analysis.cli_common import EXIT_INTERRUPTED, OneLineErrorParser, add_version, device_type, integer, run_command
from flint_analysis.errors import InputError
from flint_analysis.options import POSITIVE_INT, SEED, add_option
from flint_analysis.models import ARCHITECTURES, KWARG_RULES, build_model, resolve_architecture_kwargs
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
    data.add_argument("--dataset", choices=list(DATASETS), help="dataset to train on (required unless --resume)")
    data.add_argument("--data-root", help="folder holding the dataset files (default: $FLINT_DATA, then known locations)")
    data.add_argument("--download", action="store_true", help="let torchvision download MNIST/FashionMNIST if missing")
    data.add_argument("--samples-per-class", type=integer(minimum=2), help="quickdraw: drawings per class, ≥ 2 (default 10000, split 80/20)")
    data.add_argument("--classes", nargs="+", help="quickdraw: class names (default: the paper's 10)")
    model = parser.add_argument_group("model")
    model.add_argument("--preset", choices=list(PRESETS), help="hyper-parameter preset (default: the dataset's: " + ", ".join(f"{d.default_preset} for {d.name}" for d in DATASETS.values())
                       + "; with an --architecture the dataset's preset is not for, that architecture's)")
    model.add_argument("--architecture", choices=list(ARCHITECTURES), help="architecture (default: the preset's)")
    model.add_argument("--num-attributes", type=integer(_J_LOW, _J_HIGH),
                       help=f"J, the number of attributes, {_J_LOW} to {_J_HIGH} (default: the architecture's)")
    model.add_argument("--attribute-activation", choices=["leaky_relu", "relu"], help="Φ's output non-linearity (default: the architecture's)")
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


def _config_from_args(args: argparse.Namespace, base: TrainingConfig) -> TrainingConfig:
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainingConfig) if getattr(args, f.name, None) is not None}
    if args.baseline:
        overrides["baseline"] = True
    return replace(base, **overrides)


def _new_checkpoint(args: argparse.Namespace) -> tuple[Checkpoint, TrainingConfig, object]:
    if args.dataset is None:
        raise InputError("give --dataset NAME (or --resume CKPT)")
    options = {}
    if args.samples_per_class is not None:
        options["samples_per_class"] = args.samples_per_class
    if args.classes:
        options["classes"] = args.classes
    entry = DATASETS[args.dataset]
    refused = [name for name in options if name not in entry.options]
    if refused:
        takers = ", ".join(d.name for d in DATASETS.values() if refused[0] in d.options) or "no dataset"
        raise InputError(f"--{refused[0].replace('_', '-')} does not apply to --dataset {args.dataset} (only to {takers})")
    bundle = load_dataset(args.dataset, data_root=args.data_root, download=args.download, **options)
    preset = args.preset or preset_for_dataset(args.dataset)
    if args.preset is None and args.architecture is not None and PRESETS[preset][0] != args.architecture:
        preset = ARCHITECTURES[args.architecture].default_preset  # the dataset's preset is for another network
    preset_architecture, preset_config = PRESETS[preset]
    config = _config_from_args(args, preset_config)
    architecture = args.architecture or preset_architecture
    channels, height, _ = bundle.spec.input_shape
    kwargs = {"num_classes": bundle.spec.num_classes, "in_channels": channels, "input_size": height}
    if args.num_attributes is not None:
        kwargs["num_attributes"] = args.num_attributes
    if args.attribute_activation is not None:
        kwargs["attribute_activation"] = args.attribute_activation
    kwargs = resolve_architecture_kwargs(architecture, kwargs)
    seed_everything(args.seed)
    checkpoint = Checkpoint(
        model=build_model(architecture, kwargs),
        architecture=architecture,
        architecture_kwargs=kwargs,
        dataset=bundle.spec,
        training={"preset": preset},
    )
    return checkpoint, config, bundle


def _checked_output(args: argparse.Namespace) -> Path:
    """The checkpoint path to write, refused before anything is loaded when it cannot or must not be written."""
    if args.resume is None and args.dataset is None:
        raise InputError("give --dataset NAME (or --resume CKPT)")
    output = Path(args.output or args.resume or f"runs/{args.dataset}/ckpt.pt")
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


def _run(args: argparse.Namespace, state: dict[str, Any]) -> int:
    group, device = join_process_group(resolve_device(args.device))
    try:
        return _train(args, state, group, device)
    except torch.distributed.DistBackendError as error:
        raise peer_failure(error) from None
    finally:
        leave_process_group(group)


def _train(args: argparse.Namespace, state: dict[str, Any], group: ProcessGroup, device: torch.device) -> int:
    say = print if group.is_main else (lambda *a, **k: None)
    if args.batch_per_process is not None:
        if not group.distributed:
            raise InputError("--batch-per-process applies to runs under torchrun; give --batch-size for one process")
        if args.batch_size is not None:
            raise InputError("give --batch-size (the global batch) or --batch-per-process, not both")
        args.batch_size = args.batch_per_process * group.world_size
    output = _checked_output(args)
    if args.resume:
        checkpoint = load_checkpoint(args.resume, device="cpu")
        if not checkpoint.resume:
            raise InputError(f"{args.resume} holds no training state to resume (it was not written by flint-train)")
        config = _config_from_args(args, checkpoint.training.config)
        seed = int(checkpoint.training.seed)
        bundle = load_dataset_for_spec(checkpoint.dataset, data_root=args.data_root, download=args.download)
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
        f"{', BASE-f' if config.baseline else ''}, seed {seed}, device {device}{processes} -> {output}"
    )
    state["output"] = output
    state["before"] = output.stat().st_mtime_ns if output.exists() else None
    train(checkpoint, bundle, config, output, seed, device, progress=not args.quiet and group.is_main, log=say, group=group)
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
