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
    config = checkpoint.training.get("config", {})
    return {
        "path": str(checkpoint.path) if checkpoint.path else None,
        "sha256": checkpoint.sha256,
        "format": {"tag": FORMAT_TAG, "version": FORMAT_VERSION},
        "architecture": {"name": checkpoint.architecture, "kwargs": checkpoint.architecture_kwargs,
                         "taps": list(model.tap_names), "num_attributes": model.num_attributes,
                         "num_classes": model.num_classes, "parameters": parameters},
        "dataset": checkpoint.dataset.to_dict(),
        "training": {"preset": checkpoint.training.get("preset"), "seed": checkpoint.training.get("seed"),
                     "epochs_completed": checkpoint.epochs_completed, "config": config,
                     "environments": checkpoint.training.get("environments")},
        "final_metrics": None if last is None else {
            "epoch": last["epoch"] + 1,
            **{key: last[key] for key in ("test_accuracy_f", "test_accuracy_g", "test_fidelity") if key in last},
            "train_losses": last.get("train_losses", {}),
        },
        "versions": checkpoint.versions,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The multi-line text ``flint-analyze info`` prints."""
    arch, data, training = summary["architecture"], summary["dataset"], summary["training"]
    kwargs = " ".join(f"{key}={value}" for key, value in arch["kwargs"].items())
    params = arch["parameters"]
    names = data["class_names"]
    classes = ", ".join(names) if len(names) <= 12 else ", ".join(names[:10]) + f", … ({len(names)} in all)"
    low, high = data["value_range"]
    seed = "official split" if data["split_seed"] is None else f"split seed {data['split_seed']}"
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
            f"{config['interpretability_start_epoch'] + 1}, ζ, μ from epoch {config['entropy_start_epoch'] + 1})",
        ]
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
    else:
        lines.append("environment   not recorded (written before flint-analysis recorded it)")
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
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}%"


def _loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
