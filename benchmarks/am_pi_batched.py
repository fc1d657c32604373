"""AM+PI batched over all (pair, MAS) runs versus one image at a time, in one process.

The authors' code optimises each (pair, MAS) alone with batch 1; flint-analysis runs them as one batch
(TV and Bo are per image, Adam is element-wise, so the results are the same). This script selects the
pairs and MAS of a checkpoint exactly as `flint-analyze global` does, times both ways on the same runs,
checks that they agree, and prints both wall times and their ratio.

    python benchmarks/am_pi_batched.py runs/demo/ckpt.pt [--steps 300] [--limit N]
"""

from __future__ import annotations

import argparse
import time

import torch

from flint_analysis.am_pi import AmPiConfig, am_pi
from flint_analysis.checkpoint import load_checkpoint
from flint_analysis.datasets import load_dataset_for_spec
from flint_analysis.global_interpretation import random_subset
from flint_analysis.inference import forward_pass
from flint_analysis.mas import max_activating_samples
from flint_analysis.models import AttributeHead
from flint_analysis.relevance import class_attribute_relevance, sample_relevance, select_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default="runs/demo/ckpt.pt")
    parser.add_argument("--steps", type=int, default=300, help="AM+PI steps (default: the paper's 300)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N runs")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--float64-runs", type=int, default=4, help="also compare this many runs in float64 (default 4)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(args.checkpoint)
    model = checkpoint.model
    train = load_dataset_for_spec(checkpoint.dataset).train
    subset = forward_pass(model, train, random_subset(len(train), 1000, 0))
    weight = model.interpreter.weight.detach()
    relevance = class_attribute_relevance(sample_relevance(subset.attributes, weight, subset.g_predictions),
                                          subset.g_predictions, model.num_classes)
    mas = max_activating_samples(subset, select_pairs(relevance, weight, 0.1), 3)
    indices = torch.cat([m.indices for m in mas])
    attributes = torch.cat([torch.full((len(m.indices),), m.pair.attribute) for m in mas]).long()
    directions = torch.cat([torch.full((len(m.indices),), float(m.pair.direction)) for m in mas])
    if args.limit:
        indices, attributes, directions = indices[: args.limit], attributes[: args.limit], directions[: args.limit]
    images, _ = train.batch(indices)
    config = AmPiConfig(steps=args.steps, value_range=checkpoint.dataset.value_range)
    head = AttributeHead(model)
    print(f"{checkpoint.path}: {len(mas)} pairs, {len(indices)} AM+PI runs of {args.steps} steps, "
          f"{torch.get_num_threads()} torch threads")

    started = time.perf_counter()
    batched = am_pi(head, images, attributes, directions, config=config)
    batched_seconds = time.perf_counter() - started

    started = time.perf_counter()
    singles = [am_pi(head, images[b : b + 1], attributes[b : b + 1], directions[b : b + 1], config=config) for b in range(len(indices))]
    single_seconds = time.perf_counter() - started

    single_images = torch.cat([s.images for s in singles])
    single_final = torch.cat([s.final_activation for s in singles])
    print(f"batched (one batch of {len(indices)}): {batched_seconds:8.2f} s")
    print(f"one image at a time             : {single_seconds:8.2f} s")
    print(f"speed-up batched vs single       : {single_seconds / batched_seconds:8.2f}x")
    print(f"largest |difference| of outputs  : {float((single_images - batched.images).abs().max()):.2e} (float32)")
    print(f"runs that raised their attribute : batched {int(batched.raised.sum())}/{len(indices)}, "
          f"single {int(sum(bool(s.raised[0]) for s in singles))}/{len(indices)}; "
          f"max |Δ final φ_j| {float((single_final - batched.final_activation).abs().max()):.2e}")


    # The same computation in float64: the batch must not change a single run at all. In float32 the
    # convolutions round differently for a batch of 1 and of B, and Adam's normalisation turns
    # rounding-level gradients of background pixels into full ±lr steps, so trajectories drift apart.
    n = min(args.float64_runs, len(indices))
    if n:
        model64 = load_checkpoint(args.checkpoint).model.double()
        head64 = AttributeHead(model64)
        x64 = images[:n].double()
        together = am_pi(head64, x64, attributes[:n], directions[:n].double(), config=config)
        alone = torch.cat([am_pi(head64, x64[b : b + 1], attributes[b : b + 1], directions[b : b + 1].double(), config=config).images
                           for b in range(n)])
        print(f"float64, first {n} runs          : largest |difference| batched vs single {float((alone - together.images).abs().max()):.2e}")


if __name__ == "__main__":
    main()
