"""A readable summary of a checkpoint (``flint-analyze info``)."""

from __future__ import annotations

from typing import Any

from flint_analysis.checkpoint import FORMAT_TAG, FORMAT_VERSION, MODULES, Checkpoint

_WEIGHT_SYMBOLS = (("beta", "β"), ("gamma", "γ"), ("delta", "δ"), ("zeta", "ζ"), ("mu", "μ"), ("eta", "η"))


def checkpoint_summary(checkpoint: Checkpoint) -> dict[str, Any]:
    """Everything ``info`` shows, as plain data (also what ``info --json`` prints)."""
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
                     "epochs_completed": checkpoint.epochs_completed, "config": config},
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
        f"{data['train_size']} train / {data['test_size']} test",
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
    final = summary["final_metrics"]
    if final:
        losses = final["train_losses"]
        lines.append(
            f"final metrics epoch {final['epoch']}: test accuracy f {final['test_accuracy_f']:.2f}%, "
            f"g {final['test_accuracy_g']:.2f}%, fidelity {final['test_fidelity']:.2f}%"
        )
        if losses:
            lines.append(
                f"              train losses: L_pred {losses['prediction']:.4f}, L_of {losses['output_fidelity']:.4f}, "
                f"L_if {losses['input_fidelity']:.4f}, L_cd {losses['conciseness_diversity']:.4f}"
            )
    else:
        lines.append("final metrics none (no finished epoch)")
    return "\n".join(lines)
