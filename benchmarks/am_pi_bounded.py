"""AM+PI's bounded mode against the soft (paper's literal) mode: wall time on the same runs, in one process.

The bounded mode adds a clamp and a per-run stopping test to every Adam step and may end early once
every run has reached its target; it must not be more than 20 % slower than the soft mode. This script
selects the (pair, MAS) runs of a checkpoint exactly as `flint-analyze global` does, runs both modes on
them ``--repeats`` times in alternating order (after an untimed warm-up), and prints the median wall
times and their ratio.

    python benchmarks/am_pi_bounded.py runs/demo/ckpt.pt [--steps 300] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flint_analysis.am_pi import BOUNDED, SOFT, AmPiConfig, am_pi  # noqa: E402
from flint_analysis.models import AttributeHead  # noqa: E402
from reports.am_pi_modes import collect_runs  # noqa: E402

NO_STOP = "bounded, no early stop"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default="runs/demo/ckpt.pt")
    parser.add_argument("--steps", type=int, default=300, help="AM+PI steps (default: the paper's 300)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each mode, alternating (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = collect_runs(args.checkpoint, args.data_root)
    checkpoint = runs["checkpoint"]
    head = AttributeHead(checkpoint.model)
    images, attributes, directions = runs["images"], runs["attributes"], runs["directions"]
    configs = {mode: AmPiConfig(mode=mode, steps=args.steps, value_range=checkpoint.dataset.value_range) for mode in (SOFT, BOUNDED)}
    configs[NO_STOP] = AmPiConfig(mode=BOUNDED, target_ratio=0.0, steps=args.steps, value_range=checkpoint.dataset.value_range)
    print(f"{args.checkpoint}: {len(runs['pairs'])} pairs, {len(images)} AM+PI runs of {args.steps} steps, "
          f"{torch.get_num_threads()} torch threads, {args.repeats} repeats")
    am_pi(head, images, attributes, directions, config=AmPiConfig(steps=2))  # warm-up
    seconds: dict[str, list[float]] = {SOFT: [], BOUNDED: [], NO_STOP: []}
    results = {}
    for repeat in range(args.repeats):
        for mode in ((SOFT, BOUNDED, NO_STOP) if repeat % 2 == 0 else (NO_STOP, BOUNDED, SOFT)):
            started = time.perf_counter()
            results[mode] = am_pi(head, images, attributes, directions, config=configs[mode])
            seconds[mode].append(time.perf_counter() - started)
    soft, bounded = statistics.median(seconds[SOFT]), statistics.median(seconds[BOUNDED])
    for mode in (SOFT, BOUNDED, NO_STOP):
        stopped = results[mode].stop_step >= 0
        print(f"{mode:22s}: median {statistics.median(seconds[mode]):7.2f} s  (runs: "
              + ", ".join(f"{s:.2f}" for s in seconds[mode]) + f"); {int(stopped.sum())}/{len(images)} runs stopped early")
    ratio = bounded / soft
    print(f"bounded / soft wall time: {ratio:.2f} ({'within' if ratio <= 1.2 else 'OVER'} the 1.20 limit)")
    print(f"bounded without early stopping / soft (the per-step cost of the projection): "
          f"{statistics.median(seconds[NO_STOP]) / soft:.2f}")


if __name__ == "__main__":
    main()
