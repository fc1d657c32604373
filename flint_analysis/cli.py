"""``flint-analyze``: interpret a trained FLINT checkpoint.

Sub-commands: ``info``, ``global``, ``local``, ``metrics``, ``disagreement``. The CLI only wires: it parses
options (every numeric option is checked when parsed, see :mod:`flint_analysis.cli_common`), calls the
computing functions, then the report writers. Every user error is one line on stderr and exit status 2;
a report that was written but is empty (``global`` with no pair above ``--threshold``) exits with 3. Modules only one sub-command needs are imported by its handler, so ``info`` and
``--help`` start quickly.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from flint_analysis.am_pi import AmPiConfig
from flint_analysis.attribute_tools import AUTO, resolve_attribution
from flint_analysis.attribution import ATTRIBUTION_METHODS
from flint_analysis.models import ARCHITECTURES
from flint_analysis.checkpoint import Checkpoint, load_checkpoint
from flint_analysis.datasets import DatasetBundle, load_dataset_for_spec
from flint_analysis.cli_common import (
    EXIT_EMPTY_RESULT, EXIT_STATUS_HELP, OneLineErrorParser, add_version, attribution_setting, class_name_or_index, device_type,
    non_negative_int, positive_int, run_command, sample_index,
)
from flint_analysis.errors import InputError
from flint_analysis.local_interpretation import LocalConfig
from flint_analysis.options import add_option
from flint_analysis.global_interpretation import GlobalConfig, global_interpretation
from flint_analysis.info import checkpoint_summary, format_summary
from flint_analysis.atomic_output import dumps_json
from flint_analysis.distributed import ProcessGroup, join_process_group, launched_by_torchrun, leave_process_group, on_main, peer_failure
from flint_analysis.runtime import resolve_device, seed_everything


def _info(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    summary = checkpoint_summary(checkpoint)
    print(dumps_json(summary) if args.json else format_summary(summary), end="\n" if not args.json else "")
    return 0


def _load(args: argparse.Namespace, device: torch.device) -> tuple[Checkpoint, DatasetBundle]:
    """The checkpoint on ``device`` (in float64 with ``--float64``) and the data it was trained on."""
    checkpoint = _load_checkpoint(args, args.checkpoint, device)
    bundle = load_dataset_for_spec(checkpoint.dataset, data_root=args.data_root, download=args.download,
                                   allow_other_data=args.allow_other_data, workers=args.workers)
    return checkpoint, bundle


def _load_checkpoint(args: argparse.Namespace, path: str, device: torch.device) -> Checkpoint:
    checkpoint = load_checkpoint(path, device=device)
    if args.float64:
        checkpoint.model.double()
    return checkpoint


def _printer(group: ProcessGroup):
    """``print`` on rank 0, nothing on the other ranks of a torchrun run."""
    return print if group.is_main else (lambda *a, **k: None)


def _output_dir(args: argparse.Namespace, kind: str) -> Path:
    if args.output:
        return Path(args.output)
    checkpoint = Path(args.checkpoint)
    return checkpoint.parent / f"{checkpoint.stem}-{kind}"


def _am_pi_config(args: argparse.Namespace, value_range: tuple[float, float]) -> AmPiConfig:
    return AmPiConfig(
        lambda_phi=args.lambda_phi, lambda_tv=args.lambda_tv, lambda_bo=args.lambda_bo, init_scale=args.am_pi_init,
        learning_rate=args.am_pi_lr, steps=args.am_pi_steps, halve_every=args.am_pi_halve_every, value_range=value_range,
        mode=args.am_pi_mode, target_ratio=args.am_pi_target, saturation_ratio=args.am_pi_saturation,
    )


def _attribution_choice(args: argparse.Namespace, architecture: str) -> str | None:
    return None if args.attribution == "none" else resolve_attribution(args.attribution, architecture)


def _global(args: argparse.Namespace, group: ProcessGroup, device: torch.device) -> int:
    from flint_analysis.report_writers.common import check_output_folder
    from flint_analysis.report_writers.global_report import JSON_NAME as GLOBAL_JSON
    from flint_analysis.report_writers.global_report import write_global_report

    started = time.perf_counter()
    say = _printer(group)
    seed_everything(args.seed)
    checkpoint, bundle = _load(args, device)
    output = _output_dir(args, "global")
    classes = tuple(checkpoint.dataset.class_index(c) for c in args.classes) if args.classes else None  # indices: ASCII, checked when parsed
    config = GlobalConfig(
        subset_size=args.subset_size, threshold=args.threshold, mas_per_pair=args.mas_per_pair, mas_pool=args.mas_pool,
        mas_class_by=args.mas_class_by, attribution=_attribution_choice(args, checkpoint.architecture),
        attribution_settings=dict(args.attribution_settings), decoder=not args.no_decoder, am_pi=_am_pi_config(args, checkpoint.dataset.value_range), classes=classes,
        seed=args.seed, batch_size=args.batch_size, tool_batch_size=args.tool_batch_size,
    )
    on_main(lambda: check_output_folder(output, GLOBAL_JSON, checkpoint.sha256, args.force), group)  # fail before the long computation
    computing = time.perf_counter()
    result = global_interpretation(checkpoint.model, bundle.train, config, device, progress=not args.quiet, group=group)
    writing = time.perf_counter()
    write_global_report(result, checkpoint, output, force=args.force, group=group)  # every rank draws figures, rank 0 writes
    if not group.is_main:
        return 0
    summary = result.am_pi_summary()
    done = time.perf_counter()
    on = f" on {group.world_size} processes" if group.distributed else ""
    say(f"wrote {output / 'index.html'} ({done - started:.1f} s: analysis {writing - computing:.1f} s{on}, "
        f"figures and files {done - writing:.1f} s{on})")
    never = result.relevance.never_predicted
    if never:
        names = ", ".join(checkpoint.dataset.class_names[c] for c in never)
        say(f"note: g never predicted {names} in S_rnd; those classes have no relevance and no pairs")
    if not result.analyses:  # the report is written and valid, only empty: not a user error (status 3, see --help)
        print(
            f"flint-analyze: note: no class-attribute pair has r_(j,c) > {args.threshold:g} (the largest is "
            f"{result.largest_relevance:.3f}); wrote the heat map and global.json to {output}; lower --threshold",
            file=sys.stderr,
        )
        return EXIT_EMPTY_RESULT
    print(
        f"{len(result.analyses)} class-attribute pairs with r_(j,c) > {args.threshold:g} over "
        f"{len(result.classes_with_pairs)} classes; {summary.headline()}"
    )
    return 0


def _read_indices_file(path: str) -> list[int]:
    """The indices of ``--indices-file``: ASCII-digit integers ≥ 0, separated by whitespace or commas."""
    try:
        words = Path(path).read_text().replace(",", " ").split()
    except OSError as error:
        raise InputError(f"--indices-file: cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"--indices-file {path} is not a text file; write one integer index per line") from None
    for number_, word in enumerate(words, 1):
        if re.fullmatch(r"-[0-9]+", word):
            raise InputError(f"--indices-file {path} contains the negative index {word} (index {number_}); indices start at 0")
        if not re.fullmatch(r"\+?[0-9]+", word):  # not str.isdigit: it accepts '²', which int() refuses
            raise InputError(f"--indices-file {path} contains {word!r} (index {number_}); write one integer index ≥ 0 per line, digits 0-9")
    return [int(word) for word in words]


def _local(args: argparse.Namespace, group: ProcessGroup, device: torch.device) -> int:
    from flint_analysis.report_writers.common import check_output_folder
    from flint_analysis.report_writers.local_report import INDEX_NAME as LOCAL_INDEX
    from flint_analysis.report_writers.local_report import SampleSource, find_global_report, summary_lines, write_local_reports
    from flint_analysis.inference import forward_pass
    from flint_analysis.inputs import load_image_file, looks_inverted
    from flint_analysis.local_interpretation import LocalConfig, SampleBatch, explain_samples

    started = time.perf_counter()
    seed_everything(args.seed)
    indices = list(args.index or [])
    if args.indices_file:
        indices += _read_indices_file(args.indices_file)
    if not indices and not args.image:
        raise InputError("say which samples to explain: --index I [I ...], --indices-file FILE or --image FILE")
    checkpoint, bundle = _load(args, device)
    if args.global_dir:  # named explicitly: refuse a missing or malformed one now, not after the computation
        on_main(lambda: find_global_report(checkpoint, args.global_dir), group)
    spec = checkpoint.dataset
    split = bundle.split(args.split)
    bad = [i for i in indices if not 0 <= i < len(split)]
    if bad:
        raise InputError(f"index {bad[0]} is out of range for the {args.split} split of {spec.name} (0-{len(split) - 1})")
    explained = spec.class_index(args.class_) if args.class_ is not None else None
    parts = []
    if indices:
        x, y = split.batch(indices)
        parts.append(SampleBatch(x, tuple(int(v) for v in y), tuple(SampleSource(split=args.split, index=i) for i in indices)))
    for path in args.image or []:
        notes: list[str] = []
        image = load_image_file(path, spec, resize=args.resize, invert=args.invert, notes=notes)
        for note in notes if group.is_main else []:
            print(f"note: {note}", file=sys.stderr)
        if looks_inverted(image, spec.value_range) and not args.invert and group.is_main:
            print(f"note: {path} is mostly bright; {spec.name} has light strokes on a dark background, try --invert", file=sys.stderr)
        parts.append(SampleBatch(image[None], (None,), (SampleSource(path=str(path)),)))
    samples = SampleBatch.concatenate(parts)
    output = _output_dir(args, "local")
    on_main(lambda: check_output_folder(output, LOCAL_INDEX, checkpoint.sha256, args.force), group)
    config = LocalConfig(top=args.top, relevance_threshold=args.relevance_threshold, explained_class=explained,
                         attribution=_attribution_choice(args, checkpoint.architecture),
                         attribution_settings=dict(args.attribution_settings), decoder=not args.no_decoder, am_pi=_am_pi_config(args, spec.value_range), rank_class_by=args.rank_class_by,
                         tool_batch_size=args.tool_batch_size)
    reference = forward_pass(checkpoint.model, bundle.train, batch_size=args.batch_size, device=device,
                             progress=not args.quiet, description="forward pass (training split, for ranks)", group=group)
    explanations = explain_samples(checkpoint.model, samples.images, list(samples.labels), reference, config, device,
                                   progress=not args.quiet, group=group)
    if not group.is_main:
        return 0
    written = write_local_reports(explanations, list(samples.sources), checkpoint, config, args.seed, output, args.global_dir,
                                  force=args.force, training=bundle.train)
    for explanation, source, (folder, data) in zip(explanations, samples.sources, written.samples):
        print("\n".join(summary_lines(explanation, source, spec.class_names)))
        for warning in data["warnings"]:
            if warning["kind"] != "unusual_input":  # already said above, before the computation
                print(f"  note: {warning['message']}")
        print(f"  -> {folder / 'report.html'}")
    if written.samples and written.global_report is None:
        print("note: no global report of this checkpoint was found (run flint-analyze global, or pass --global-dir) ; reports have no global links")
    print(f"wrote {output / 'index.html'} ({time.perf_counter() - started:.1f} s)")
    return 0


def _metrics_output(args: argparse.Namespace) -> Path:
    return Path(args.output) if args.output else Path(args.checkpoint[0]).parent / f"{Path(args.checkpoint[0]).stem}-metrics"


def _metrics(args: argparse.Namespace, group: ProcessGroup, device: torch.device) -> int:
    from flint_analysis.inference import forward_pass
    from flint_analysis.metrics import DEFAULT_KS, evaluate
    from flint_analysis.report_writers.metrics_report import format_table, write_metrics_report

    started = time.perf_counter()
    names = args.names or [Path(path).stem for path in args.checkpoint]
    if len(names) != len(args.checkpoint):
        raise InputError(f"--names gives {len(names)} names for {len(args.checkpoint)} checkpoints")
    if len(set(names)) != len(names):
        raise InputError("two checkpoints have the same name; tell them apart with --names")
    if not all(name.strip() for name in names):
        raise InputError("--names: a name is empty; give each checkpoint a visible name")
    models, spec = [], None
    for name, path in zip(names, args.checkpoint):
        checkpoint = _load_checkpoint(args, path, device)
        if spec is not None and checkpoint.dataset.class_names != spec.class_names:
            raise InputError(f"{path} was trained on other classes than {args.checkpoint[0]}; compare checkpoints of one dataset")
        spec = checkpoint.dataset
        bundle = load_dataset_for_spec(checkpoint.dataset, data_root=args.data_root, download=args.download,
                                   allow_other_data=args.allow_other_data, workers=args.workers)
        forward = forward_pass(checkpoint.model, bundle.split(args.split), batch_size=args.batch_size, device=device,
                               progress=not args.quiet, description=f"forward pass ({name}, {args.split})", group=group)
        ks = args.ks if args.ks is not None else [k for k in DEFAULT_KS if k < checkpoint.model.num_classes]
        metrics = evaluate(forward, checkpoint.model.interpreter.weight.detach().cpu().numpy(), ks=ks, taus=args.taus)
        models.append((name, checkpoint, metrics))
    output = _metrics_output(args)
    if not group.is_main:
        return 0
    write_metrics_report(models, args.split, output, force=args.force, include_chance_models=args.include_chance_models)
    print(format_table(models, args.split))
    print(f"wrote {output / 'index.html'} ({time.perf_counter() - started:.1f} s)")
    return 0


if TYPE_CHECKING:
    import torch

    from flint_analysis.datasets import ImageDataset
    from flint_analysis.disagreement import DisagreementAnalysis
    from flint_analysis.inference import ForwardPass
    from flint_analysis.report_writers.disagreement_report import WorstExplanations


def _worst_explanations(args: argparse.Namespace, checkpoint: Checkpoint, analysis: DisagreementAnalysis, split: ImageDataset,
                        train: ForwardPass, device: torch.device, group: ProcessGroup) -> WorstExplanations:
    """Local explanations of the ``--explain-worst`` worst disagreements, by the ``local`` command's own functions."""
    from flint_analysis.local_interpretation import explain_samples
    from flint_analysis.report_writers.disagreement_report import WorstExplanations
    from flint_analysis.report_writers.local_report import SampleSource, write_local_reports

    positions = analysis.worst_first(args.explain_worst)
    indices = [int(analysis.indices[i]) for i in positions]
    sources = [SampleSource(split=args.split, index=i) for i in indices]
    config = LocalConfig(am_pi=_am_pi_config(args, checkpoint.dataset.value_range), tool_batch_size=args.tool_batch_size)
    images, labels = split.batch(indices)
    explanations = explain_samples(checkpoint.model, images, [int(v) for v in labels], train, config, device, progress=not args.quiet,
                                   group=group)

    def write(folder: Path) -> None:
        write_local_reports(explanations, sources, checkpoint, config, args.seed, folder, args.global_dir)

    return WorstExplanations(positions=positions, folders=[source.identifier(None) for source in sources], write=write)


def _disagreement(args: argparse.Namespace, group: ProcessGroup, device: torch.device) -> int:
    from flint_analysis.disagreement import (
        DEFAULT_TOP_K, DepthConfig, analyse_disagreement, check_top_k, disagreement_depth, summarise_depths,
    )
    from flint_analysis.inference import forward_pass
    from flint_analysis.report_writers.common import check_output_folder
    from flint_analysis.report_writers.disagreement_report import JSON_NAME, format_counts, write_disagreement_report

    started = time.perf_counter()
    checkpoint, bundle = _load(args, device)
    split = bundle.split(args.split)
    if args.k is None:
        args.k = min(DEFAULT_TOP_K, checkpoint.model.num_classes - 1)
    check_top_k(args.k, checkpoint.model.num_classes)  # before the forward passes
    depth_config = None if args.no_depth else DepthConfig(
        space=args.depth_space, pca_components=args.pca_components, agreeing_per_class=args.agreeing,
        n_directions=args.depth_directions, refinement_rounds=args.depth_rounds, seed=args.seed)
    output = _output_dir(args, "disagreement")
    on_main(lambda: check_output_folder(output, JSON_NAME, checkpoint.sha256, args.force), group)
    if args.explain_worst and args.global_dir:  # named explicitly: refuse a missing or malformed one before the computation
        from flint_analysis.report_writers.local_report import find_global_report

        on_main(lambda: find_global_report(checkpoint, args.global_dir), group)
    forward = forward_pass(checkpoint.model, split, batch_size=args.batch_size, device=device, progress=not args.quiet,
                           description=f"forward pass ({args.split})", group=group)
    analysis = analyse_disagreement(forward, args.k)
    depths, explained, train = None, None, None
    if depth_config is not None or args.explain_worst:  # the references of the depths and of the local reports' ranks
        train = forward if args.split == "train" else forward_pass(
            checkpoint.model, bundle.train, batch_size=args.batch_size, device=device, progress=not args.quiet,
            description="forward pass (train)", group=group)
    if depth_config is not None:
        depths = disagreement_depth(analysis, forward, split, train, bundle.train, depth_config, progress=not args.quiet, group=group)
    if args.explain_worst:
        explained = _worst_explanations(args, checkpoint, analysis, split, train, device, group)
    if not group.is_main:
        return 0
    write_disagreement_report(analysis, checkpoint, args.split, split, depths, depth_config, output,
                              worst_per_class=args.worst_per_class, force=args.force, explained=explained)
    names = checkpoint.dataset.class_names
    depth_summary = None if depths is None or depth_config is None else summarise_depths(depths)
    print(format_counts(analysis, args.split, names, None if depth_config is None else depth_config.space, depth_summary))
    for depth in depths or []:
        if depth.note:
            print(f"note: {names[depth.class_index]}: {depth.note}")
    print(f"wrote {output / 'index.html'} ({time.perf_counter() - started:.1f} s)")
    return 0


def _import_official(args: argparse.Namespace) -> int:
    from flint_analysis.official_import import import_official

    result = import_official(args.source, args.dataset, args.output, overwrite=args.overwrite)
    checkpoint, record = result.checkpoint, result.provenance
    print(f"wrote {checkpoint.path}: {checkpoint.architecture}, J = {checkpoint.model.num_attributes}, "
          f"{checkpoint.model.num_classes} classes ({args.dataset}), from {args.source} (sha256 {record['source_sha256'][:12]}…)")
    dropped = record["dropped_keys"]
    print(f"dropped {len(dropped)} key{'s' if len(dropped) != 1 else ''} of modules the authors' networks never use"
          + (f": {', '.join(dropped)}" if dropped else ""))
    for note in record["notes"]:
        print(f"note: {note}")
    print(f"next: flint-analyze info {checkpoint.path}")
    return 0


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options every analysis command shares: output safety, device, data location, batching, progress."""
    parser.add_argument("--force", action="store_true", help="replace a report of another checkpoint in the output folder")
    parser.add_argument("--device", type=device_type, default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--data-root", help="folder of the checkpoint's dataset (default: $FLINT_DATA, then known locations)")
    parser.add_argument("--download", action="store_true", help="let torchvision download MNIST/FashionMNIST if missing")
    parser.add_argument("--allow-other-data", action="store_true",
                        help="evaluate on data whose fingerprint differs from the one the checkpoint was trained on")
    parser.add_argument("--workers", type=non_negative_int, default=0, metavar="N",
                        help="imagefolder data: DataLoader worker processes that decode the images (default 0: this process)")
    add_option(parser, "--batch-size", GlobalConfig, "batch_size")
    parser.add_argument("--float64", action="store_true",
                        help="compute in float64 (model and inputs): slower, and the same bits under torchrun on any machine "
                        "that rounds float64 alike; the report's environment records the dtype")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_common(parser: argparse.ArgumentParser, output_help: str) -> None:
    parser.add_argument("checkpoint", help="a .pt file written by flint-train")
    parser.add_argument("-o", "--output", help=output_help)
    add_option(parser, "--seed", GlobalConfig, "seed", help="seed of every random choice; same seed, same JSON")
    _add_run_options(parser)


def _add_am_pi(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("AM+PI (defaults: the paper's, in the bounded mode)")
    for flag, name in (("--am-pi-mode", "mode"), ("--am-pi-target", "target_ratio"), ("--am-pi-saturation", "saturation_ratio"),
                       ("--am-pi-steps", "steps"), ("--am-pi-lr", "learning_rate"), ("--am-pi-halve-every", "halve_every"),
                       ("--am-pi-init", "init_scale"), ("--lambda-phi", "lambda_phi"), ("--lambda-tv", "lambda_tv"),
                       ("--lambda-bo", "lambda_bo")):
        add_option(group, flag, AmPiConfig, name, dest=flag.lstrip("-").replace("-", "_"))
    add_option(group, "--tool-batch-size", GlobalConfig, "tool_batch_size",
               help="runs per batch of AM+PI, attribution and decoder ablation; under torchrun the batches are shared out "
               "over the processes, so the report does not depend on their number")


def _add_attribution(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--attribution", choices=[AUTO, *ATTRIBUTION_METHODS, "none"], default=AUTO,
                        help="input attribution of φ_j through Captum (default auto: the architecture's, as in the paper: "
                        + ", ".join(f"{name} for {a.name}" for name, a in ((a.default_attribution, a) for a in ARCHITECTURES.values()))
                        + "; guided-backprop for torchvision ResNets and VGG, gradient for the other torchvision networks)")
    parser.add_argument("--attribution-setting", dest="attribution_settings", action="append", type=attribution_setting,
                        default=[], metavar="NAME=VALUE",
                        help="a setting of the attribution method, repeatable: " + "; ".join(
                            f"{name}: " + ", ".join(f"{k} (default {v})" for k, v in method.settings.items())
                            for name, method in ATTRIBUTION_METHODS.items() if method.settings))
    parser.add_argument("--no-decoder", action="store_true", help="skip the decoder ablation d(Φ) vs d(Φ with φ_j = 0)")


def _in_process_group(handler):
    """``handler(args, group, device)`` run in the torchrun run's process group (or as the single process)."""
    def run(args: argparse.Namespace) -> int:
        import torch

        group, device = join_process_group(resolve_device(args.device))
        completed = False
        try:
            status = handler(args, group, device)
            completed = True
            return status
        except torch.distributed.DistBackendError as error:
            raise peer_failure(error) from None
        finally:
            leave_process_group(group, completed)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="flint-analyze", description="Interpret trained FLINT checkpoints.", epilog=EXIT_STATUS_HELP)
    add_version(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineErrorParser)
    info = commands.add_parser("info", help="print what a checkpoint holds", description="Print what a checkpoint holds: architecture, J, classes, dataset, hyper-parameters, final metrics.")
    info.add_argument("checkpoint", help="a .pt file written by flint-train")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    info.set_defaults(handler=_info)

    global_ = commands.add_parser(
        "global", help="global interpretation: relevances, pairs, MAS, AM+PI, attribution, decoder; per-class grids",
        description="The paper's global interpretation pipeline on the training split: r_(j,c) on a random subset, "
        "class-attribute pairs above a threshold, their maximum activating samples (MAS), AM+PI, input attribution "
        "and decoder ablation, written as per-class PNG grids, heat maps, global.json and index.html.",
    )
    _add_common(global_, "output folder (default: <checkpoint dir>/<checkpoint name>-global)")
    add_option(global_, "--subset-size", GlobalConfig, "subset_size")
    add_option(global_, "--threshold", GlobalConfig, "threshold",
               help="select pairs with r_(j,c) above this; none above it: the report is written and the exit status is 3")
    # torchrun reads "--mas" as an abbreviation of its own --master-addr/--master-port: under torchrun, say --mas-per-pair
    add_option(global_, "--mas", GlobalConfig, "mas_per_pair", aliases=("--mas-per-pair",),
               help="maximum activating samples per pair (--mas-per-pair: the same, and the spelling torchrun lets through)")
    add_option(global_, "--mas-pool", GlobalConfig, "mas_pool")
    add_option(global_, "--mas-class", GlobalConfig, "mas_class_by")
    global_.add_argument("--classes", nargs="+", type=class_name_or_index, metavar="CLASS", help="analyse only these classes (names or indices)")
    _add_attribution(global_)
    _add_am_pi(global_)
    global_.set_defaults(handler=_in_process_group(_global))

    local = commands.add_parser(
        "local", help="local interpretation of single samples: relevances, top attributes, f vs g",
        description="Explain why f and g predicted what they did for single samples (paper, local interpretability): "
        "r_(j,ĉ,x) of every attribute, g's logit split into the bias and the contributions α_j = φ_j w_(j,ĉ) (logit units) "
        "with the contrast to the runner-up class (or to g's prediction with --class), and for the top attributes (r above "
        "--relevance-threshold, at most --top) AM+PI on the sample, input attribution, decoder ablation, their maximum "
        "activating samples and the percentile of φ_j among the training samples of class ĉ. One folder per sample with "
        "report.png, report.json, report.html and arrays.npz.",
    )
    _add_common(local, "output folder (default: <checkpoint dir>/<checkpoint name>-local)")
    samples = local.add_argument_group("samples (at least one)")
    samples.add_argument("--index", type=sample_index, nargs="+", metavar="I", help="indices (≥ 0) into --split")
    samples.add_argument("--indices-file", metavar="FILE", help="a file of indices (≥ 0) into --split, whitespace or comma separated")
    samples.add_argument("--split", default="test", help="split of --index: test (default) or train")
    samples.add_argument("--image", nargs="+", metavar="FILE", help="image files (.png, .npy) that are not in the dataset")
    samples.add_argument("--resize", action="store_true", help="resize --image files to the model's input size (the shorter "
                         "side, then a centre crop, as the imagefolder loader; colour files for a one-channel model are "
                         "converted to gray without it, and a note says so)")
    samples.add_argument("--invert", action="store_true", help="invert --image files (dark strokes on light paper)")
    local.add_argument("--class", dest="class_", type=class_name_or_index, metavar="C", help="explain class C (name or index) instead of g's prediction: why (not) C")
    add_option(local, "--top", LocalConfig, "top")
    add_option(local, "--relevance-threshold", LocalConfig, "relevance_threshold")
    add_option(local, "--rank-class", LocalConfig, "rank_class_by")
    local.add_argument("--global-dir", help="global report of the same checkpoint to link to (default: found next to the checkpoint)")
    _add_attribution(local)
    _add_am_pi(local)
    local.set_defaults(handler=_in_process_group(_local))

    from flint_analysis.conciseness import PAPER_TAUS, TAU
    from flint_analysis.disagreement import DEFAULT_TOP_K, WORST_PER_CLASS, DepthConfig
    from flint_analysis.metrics import DEFAULT_KS

    metrics = commands.add_parser(
        "metrics", help="accuracy of f and g, fidelity, top-k fidelity, conciseness (CNS), f-vs-g confusion",
        description="The paper's evaluation of trained models on a split: accuracy of f and g, fidelity, fidelity per "
        "f-class, the f-vs-g confusion matrix, top-k fidelity and the conciseness curve CNS_g(τ). Several checkpoints "
        "are compared on one figure.",
    )
    metrics.add_argument("checkpoint", nargs="+", help="one or more .pt files of the same dataset")
    metrics.add_argument("-o", "--output", help="output folder (default: <first checkpoint dir>/<its name>-metrics)")
    metrics.add_argument("--names", nargs="+", help="names of the checkpoints in tables and figures (default: file names)")
    metrics.add_argument("--split", default="test", help="split to evaluate: test (default) or train")
    metrics.add_argument("--ks", type=positive_int, nargs="+", help=f"k of the top-k fidelity, 1 ≤ k < classes (default "
                         f"{' '.join(map(str, DEFAULT_KS))}, those below the number of classes)")
    metrics.add_argument("--taus", type=TAU.argparse_type(), nargs="+", default=list(PAPER_TAUS),
                         help=f"τ of CNS_g(τ), {TAU.describe()} (default {' '.join(f'{t:g}' for t in PAPER_TAUS)})")
    _add_run_options(metrics)
    metrics.add_argument("--include-chance-models", action="store_true",
                         help="draw models whose g is at chance (accuracy within 5 points of the majority class, e.g. BASE-f) "
                         "on the CNS and top-k curves, greyed out; by default they are left out")
    metrics.set_defaults(handler=_in_process_group(_metrics))

    disagreement = commands.add_parser(
        "disagreement", help="samples where f and g disagree: top-k categories, worst cases, projection depth",
        description="Every sample where g's class differs from f's, sorted into: f's class within g's top-k, outside it, "
        "and outside it while f is right (the worst kind); counts overall and per class, a grid of the worst cases, and the "
        "projection depth (supplement Eq. 1) of disagreements and of random agreeing samples w.r.t. their class's training samples.",
    )
    _add_common(disagreement, "output folder (default: <checkpoint dir>/<checkpoint name>-disagreement)")
    disagreement.add_argument("-k", type=positive_int,
                              help=f"top-k of g that counts as acceptable, 1 ≤ k < classes (default {DEFAULT_TOP_K}, "
                              "or classes − 1 when there are fewer)")
    disagreement.add_argument("--split", default="test", help="split to analyse: test (default) or train")
    disagreement.add_argument("--worst-per-class", type=non_negative_int, default=WORST_PER_CLASS,
                              help=f"worst cases shown per class, ≥ 0 (default {WORST_PER_CLASS})")
    depth = disagreement.add_argument_group("projection depth")
    depth.add_argument("--no-depth", action="store_true", help="skip the projection-depth analysis")
    for flag, name, dest in (("--depth-space", "space", "depth_space"), ("--pca-components", "pca_components", "pca_components"),
                             ("--agreeing", "agreeing_per_class", "agreeing"), ("--depth-directions", "n_directions", "depth_directions"),
                             ("--depth-rounds", "refinement_rounds", "depth_rounds")):
        add_option(depth, flag, DepthConfig, name, dest=dest)
    disagreement.add_argument("--explain-worst", type=non_negative_int, default=0, metavar="N",
                              help="explain the N worst disagreements (the worst kind first) with local reports in the "
                              "report's worst/ folder, linked from its page (default 0: none)")
    disagreement.add_argument("--global-dir", help="global report the --explain-worst local reports link to "
                              "(default: found next to the checkpoint)")
    _add_am_pi(disagreement)
    disagreement.set_defaults(handler=_in_process_group(_disagreement))

    from flint_analysis.official_import import OFFICIAL_DATASETS

    import_official = commands.add_parser(
        "import-official", help="convert a checkpoint of the authors' FLINT code into a flint-analysis checkpoint",
        description="Convert a .pt file written by the authors' FLINT code (a dict of f_state_dict, g_state_dict (Φ), "
        "h_state_dict, d_state_dict, last_weights, test_info, ...) into a flint-analysis checkpoint of their networks "
        "(lenet for MNIST/FashionMNIST, which computes exactly their network, official-resnet18 for QuickDraw and CIFAR-10) that every analysis "
        "reads. The file is loaded without running code (weights only; NumPy numbers allowed); its layout, dataset "
        "and every weight's shape are checked first, keys of modules the authors never use are dropped and listed, "
        "and the source's SHA-256 and what was dropped are recorded (flint-analyze info shows them).",
        epilog=EXIT_STATUS_HELP,
    )
    import_official.add_argument("source", metavar="SRC", help="the .pt file the authors' code saved")
    import_official.add_argument("--dataset", required=True, choices=list(OFFICIAL_DATASETS),
                                 help="what the file was trained on (picks the authors' networks and the class names)")
    import_official.add_argument("-o", "--output", required=True, help="the flint-analysis checkpoint to write (.pt)")
    import_official.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    import_official.set_defaults(handler=_import_official)
    for command in (info, global_, local, metrics, disagreement):
        command.epilog = EXIT_STATUS_HELP
    return parser


def _refresh_run_index(args: argparse.Namespace) -> None:
    """After a report command: update the run index in the report folder's parent (never fails the command)."""
    from flint_analysis.report_writers.run_index import refresh_run_index

    folder = _metrics_output(args) if args.command == "metrics" else _output_dir(args, args.command)
    parent = folder.absolute().parent
    if parent.resolve() == Path.cwd().resolve():  # reports written straight into the working folder: no index.html there
        return
    outcome = refresh_run_index(parent)
    if outcome.status == "written":
        print(f"updated {outcome.path} (links {len(outcome.reports)} reports)")
    elif outcome.status == "failed":
        print(f"flint-analyze: warning: could not write the run index {outcome.path}: {outcome.message}; the report itself "
              "is complete", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status = run_command("flint-analyze", lambda: args.handler(args))
    main_process = not launched_by_torchrun() or os.environ.get("RANK") == "0"
    if status in (0, EXIT_EMPTY_RESULT) and args.command in ("global", "local", "metrics", "disagreement") and main_process:
        _refresh_run_index(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
