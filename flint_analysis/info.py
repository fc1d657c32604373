"""A readable summary of a checkpoint (``flint-analyze info``)."""

from __future__ import annotations

from typing import Any

from flint_analysis.checkpoint import FORMAT_TAG, FORMAT_VERSION, MODULES, Checkpoint
from flint_analysis.runtime import format_environment

_WEIGHT_SYMBOLS = (("beta", "β"), ("gamma", "γ"), ("delta", "δ"), ("zeta", "ζ"), ("mu", "μ"), ("eta", "η"))


def checkpoint_summary(checkpoint: Checkpoint) -> dict[str, Any]:
    """Everything ``info`` shows, as plain data (also what ``info --json`` prints).

    Every entry read here was type-checked by :func:`~flint_analysis.checkpoint.load_checkpoint`;
    ``training.environments`` is ``None`` for checkpoints written before it was recorded.
    """
    model = checkpoint.model
    parameters = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in MODULES}
    last = checkpoint.history[-1] if checkpoint.history else None
    record = checkpoint.training
    environments = None if record.environments is None else [environment.to_dict() for environment in record.environments]
    return {
        "path": str(checkpoint.path) if checkpoint.path else None,
        "sha256": checkpoint.sha256,
        "format": {"tag": FORMAT_TAG, "version": FORMAT_VERSION},
        "architecture": {"name": checkpoint.architecture, "kwargs": checkpoint.architecture_kwargs,
                         "taps": list(model.tap_names), "num_attributes": model.num_attributes,
                         "num_classes": model.num_classes, "parameters": parameters},
        "dataset": checkpoint.dataset.to_dict(),
        "training": {"preset": record.preset, "seed": record.seed, "epochs_completed": checkpoint.epochs_completed,
                     "config": {} if record.config is None else record.config.to_dict(), "environments": environments},
        "final_metrics": None if last is None else {
            "epoch": last.epoch + 1,
            **last.test_metrics(),
            "train_losses": dict(last.train_losses or {}),
        },
        "versions": checkpoint.versions,
        "imported": record.extra.get("imported"),
        "predictor": _predictor_summary(checkpoint),
    }


def _predictor_summary(checkpoint: Checkpoint) -> dict[str, Any]:
    """Whether f was frozen (post-hoc FLINT) and the file its weights came from (``None``: trained from scratch)."""
    record = checkpoint.training
    weights = record.extra.get("predictor_weights")
    return {
        "frozen": bool(record.config is not None and record.config.freeze_predictor),
        "weights": None if weights is None else {"path": weights["path"], "sha256": weights["sha256"]},
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The multi-line text ``flint-analyze info`` prints."""
    arch, data, training = summary["architecture"], summary["dataset"], summary["training"]
    kwargs = " ".join(f"{key}={value}" for key, value in arch["kwargs"].items())
    params = arch["parameters"]
    names = data["class_names"]
    classes = ", ".join(names) if len(names) <= 12 else ", ".join(names[:10]) + f", … ({len(names)} in all)"
    low, high = data["value_range"]
    options = data.get("options") or {}
    if data["split_seed"] is not None:
        seed = f"split seed {data['split_seed']}"
    elif options.get("layout") == "train-test":
        seed = "the folder's train/ and test/"
    else:
        seed = "official split"
    if "path" in options:  # an imagefolder: where its images are and how they were served
        seed += (f", from {options['path']}" + (f" at {options['image_size']} px" if options.get("image_size") else "")
                 + (", streamed" if options.get("streaming") else ""))
    lines = [
        f"checkpoint    {summary['path']}",
        f"sha256        {summary['sha256']}",
        f"format        {summary['format']['tag']} v{summary['format']['version']}, written with "
        + ", ".join(f"{k} {v}" for k, v in summary["versions"].items() if k in ("flint-analysis", "torch", "python")),
        f"architecture  {arch['name']}  {kwargs}",
        f"              J = {arch['num_attributes']} attributes read from {', '.join(arch['taps'])}; "
        f"{sum(params.values()):,} parameters (f {params['predictor']:,}, Φ {params['attributes']:,}, "
        f"h {params['interpreter']:,}, d {params['decoder']:,})",
        f"dataset       {data['name']}: {len(names)} classes ({classes})",
        f"              input {'×'.join(str(s) for s in data['input_shape'])} in [{low:g}, {high:g}], {seed}, "
        f"{data['train_size']} train / {data['test_size']} test"
        + (f", data fingerprint {data['fingerprint'].removeprefix('sha256:')[:12]}…" if data.get("fingerprint") else ""),
    ]
    config = training["config"]
    if config:
        weights = "  ".join(f"{symbol} {config[name]:g}" for name, symbol in _WEIGHT_SYMBOLS)
        lines += [
            f"training      preset {training['preset']}, seed {training['seed']}, "
            f"{training['epochs_completed']}/{config['epochs']} epochs, Adam lr {config['learning_rate']:g}, batch {config['batch_size']}"
            + (", BASE-f (f alone)" if config.get("baseline") else ""),
            f"              {weights}  (ℓ1 {config['l1_reduction']} over attributes; β, δ, η from epoch "
            f"{config['interpretability_start_epoch'] + 1}, ζ, μ from epoch {config['entropy_start_epoch'] + 1}"
            + (f"; dropout {config['interpreter_input_dropout']:g} on Φ before h while training" if config.get("interpreter_input_dropout") else "")
            + ")",
        ]
    elif summary.get("imported"):
        lines.append("training      by the authors' code (no flint-train record)")
    else:
        lines.append("training      no training record")
    environments = training.get("environments")
    if environments:
        for index, environment in enumerate(environments):
            first = environment.get("first_epoch")
            last = environments[index + 1].get("first_epoch") if index + 1 < len(environments) else training["epochs_completed"]
            epochs = ""
            if len(environments) > 1 and isinstance(first, int) and isinstance(last, int):
                epochs = f"epoch {last}: " if last == first + 1 else f"epochs {first + 1}-{last}: "
            lines.append(f"{'environment' if index == 0 else '':<14}{epochs}{format_environment(environment)}")
    elif summary.get("imported"):
        lines.append("environment   not recorded (trained by the authors' code)")
    else:
        lines.append("environment   not recorded (written before flint-analysis recorded it)")
    predictor = summary.get("predictor") or {}
    weights = predictor.get("weights")
    if predictor.get("frozen") or weights:
        source = f"{weights['path']} (sha256 {weights['sha256'][:12]}…)" if weights else "a file not recorded"
        lines.append(f"predictor     frozen, weights from {source}" if predictor.get("frozen")
                     else f"predictor     trained on from the weights in {source}")
    normalization = data.get("normalization")
    if normalization:
        lines.append("input         f sees (x − mean) / std, mean " + ", ".join(f"{v:.4g}" for v in normalization["mean"])
                     + "; std " + ", ".join(f"{v:.4g}" for v in normalization["std"]))
    final = summary["final_metrics"]
    if final:
        losses = final["train_losses"]
        lines.append(
            f"final metrics epoch {final['epoch']}: test accuracy f {_percent(final.get('test_accuracy_f'))}, "
            f"g {_percent(final.get('test_accuracy_g'))}, fidelity {_percent(final.get('test_fidelity'))}"
        )
        if losses:
            lines.append(
                f"              train losses: L_pred {_loss(losses.get('prediction'))}, L_of {_loss(losses.get('output_fidelity'))}, "
                f"L_if {_loss(losses.get('input_fidelity'))}, L_cd {_loss(losses.get('conciseness_diversity'))}"
            )
    else:
        lines.append("final metrics none (no finished epoch)")
    imported = summary.get("imported")
    if imported:
        lines += _import_lines(imported)
    return "\n".join(lines)


def _import_lines(record: dict[str, Any]) -> list[str]:
    """``info``'s lines for a checkpoint converted by ``import-official`` (its type-checked ``training.imported``)."""
    def text(value: Any) -> str:
        return value if isinstance(value, str) else "?" if value is None else str(value)

    def percent(value: Any) -> str:
        return _percent(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"

    networks = record.get("authors_networks") or {}
    symbols = (("f", "f"), ("phi", "Φ"), ("h", "h"), ("d", "d"))
    lines = [
        f"imported      from {text(record.get('source'))} (sha256 {text(record.get('source_sha256'))}), "
        f"layout {text(record.get('layout'))}, --dataset {text(record.get('dataset'))}, "
        f"converted by flint-analysis {text(record.get('converted_by'))}",
    ]
    if isinstance(networks, dict) and networks:
        lines.append("              the authors' networks: " + ", ".join(
            f"{symbol} {text(networks[key])}" for key, symbol in symbols if key in networks))
    dropped = record.get("dropped_keys") or []
    lines.append(f"              dropped (unused by the authors' networks): {', '.join(map(text, dropped)) if dropped else 'nothing'}")
    for note in record.get("notes") or []:
        lines.append(f"              note: {text(note)}")
    entries = record.get("authors_entries") or {}
    last = entries.get("test_info_last") if isinstance(entries, dict) else None
    if isinstance(last, dict):
        lines.append(f"              the authors' last test: accuracy f {percent(last.get('accuracy_f_percent'))}, "
                     f"fidelity {percent(last.get('fidelity_percent'))} (test_info, {text(entries.get('test_info_rows'))} rows)")
    if isinstance(entries, dict) and isinstance(entries.get("concise"), list):
        lines.append("              the authors' conciseness (concise): " + ", ".join(
            f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "n/a" for v in entries["concise"]))
    ignored = record.get("ignored_entries") or []
    if ignored:
        lines.append(f"              other entries of the file (not read): {', '.join(map(text, ignored))}")
    return lines


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}%"


def _loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
