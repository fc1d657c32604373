"""Training throughput of flint-train's machinery against a bare PyTorch loop, in one process.

All runs train the same lenet on the same mnist5k images with the same batch size, loss terms, loss
weights and Adam, from the same initial weights. `flint-train` (the project's `train()`) also evaluates
f and g on the 1,000 test images after every epoch (the per-epoch summary the issue asks for), writes
the checkpoint and drives a progress bar. Two bare loops: "bare, same work" also evaluates on the test
split after each epoch, with plain code; "bare, train only" does only the optimisation. The first ratio
is the cost of the project's machinery; the second also counts the evaluation. Runs alternate and the
best of each is kept, so background load hits them alike.

    python benchmarks/train_throughput.py [--epochs 2] [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from flint_analysis.checkpoint import Checkpoint
from flint_analysis.datasets import load_dataset
from flint_analysis.models import build_model, resolve_architecture_kwargs
from flint_analysis.training.config import PRESETS
from flint_analysis.training.trainer import train


def bare_evaluation(model, test_images_uint8, test_labels) -> tuple[float, float, float]:
    """Accuracy of f and g and fidelity on the test split, with plain code."""
    model.eval()
    with torch.no_grad():
        out = model(test_images_uint8.float().div_(255.0))
    model.train()
    f, g = out.f_logits.argmax(1), out.g_logits.argmax(1)
    return float((f == test_labels).float().mean()), float((g == test_labels).float().mean()), float((f == g).float().mean())


def bare_loop(model, images_uint8, labels, config, epochs: int, seed: int, test=None) -> None:
    """The same optimisation written as a plain loop: no checkpoint, no progress bar; evaluation if ``test``."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    n = images_uint8.shape[0]
    for epoch in range(epochs):
        w = config.weights_for_epoch(epoch)
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.batch_size):
            index = order[start : start + config.batch_size]
            x = images_uint8[index].float().div_(255.0)
            y = labels[index]
            out = model(x, reconstruct=True)
            phi = out.attributes.abs()
            p_phi = torch.softmax(phi, dim=1)
            p_mean = torch.softmax(phi.mean(0), dim=0)
            conciseness = -(p_phi * torch.log_softmax(phi, dim=1)).sum(1).mean()
            diversity = -(p_mean * torch.log_softmax(phi.mean(0), dim=0)).sum()
            l1 = phi.sum(1).mean() if config.l1_reduction == "sum" else phi.mean(1).mean()
            loss = (F.cross_entropy(out.f_logits, y)
                    + w.beta * F.cross_entropy(out.g_logits, torch.softmax(out.f_logits.detach(), 1))
                    + w.gamma * F.mse_loss(out.reconstruction, x)
                    + w.delta * (w.zeta * (conciseness - w.mu * diversity) + w.eta * l1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if test is not None:
            bare_evaluation(model, *test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = load_dataset("mnist5k")
    architecture, preset = PRESETS["demo"]
    config = copy.replace(preset, epochs=args.epochs) if hasattr(copy, "replace") else preset.__class__(**{**preset.__dict__, "epochs": args.epochs})
    kwargs = resolve_architecture_kwargs(architecture, {})
    torch.manual_seed(0)
    initial = build_model(architecture, kwargs)
    images = args.epochs * len(bundle.train)
    device = torch.device("cpu")
    best = {"flint-train": float("inf"), "bare, same work": float("inf"), "bare, train only": float("inf")}
    test = (bundle.test.images, bundle.test.labels)
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            model = copy.deepcopy(initial)
            checkpoint = Checkpoint(model, architecture, kwargs, bundle.spec)
            started = time.perf_counter()
            train(checkpoint, bundle, config, Path(folder) / "ckpt.pt", 0, device, progress=True, log=lambda line: None)
            best["flint-train"] = min(best["flint-train"], time.perf_counter() - started)
            for name, evaluation in (("bare, same work", test), ("bare, train only", None)):
                model = copy.deepcopy(initial)
                started = time.perf_counter()
                bare_loop(model, bundle.train.images, bundle.train.labels, config, args.epochs, 0, evaluation)
                best[name] = min(best[name], time.perf_counter() - started)
    print(f"lenet (J={kwargs['num_attributes']}), mnist5k train split ({len(bundle.train)} images), batch {config.batch_size}, "
          f"{args.epochs} epochs, best of {args.repeats}, {torch.get_num_threads()} torch thread(s)")
    for name, seconds in best.items():
        print(f"{name:<17}: {seconds:7.2f} s  {images / seconds:8.1f} training images/s")
    print(f"flint-train / bare, same work : {100 * best['bare, same work'] / best['flint-train']:.1f} % (the machinery's cost)")
    print(f"flint-train / bare, train only: {100 * best['bare, train only'] / best['flint-train']:.1f} % "
          "(also counts the per-epoch test evaluation)")


if __name__ == "__main__":
    main()
