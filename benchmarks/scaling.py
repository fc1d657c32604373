"""Wall time of ``flint-analyze global`` and of one training epoch with 1 and with N processes under torchrun.

    python benchmarks/scaling.py runs/demo/ckpt.pt [--processes 2] [--repeats 1]

Every process computes with one thread (``OMP_NUM_THREADS=1``), so the ratio measures torch.distributed's sharding
and not the thread pool. ``global`` runs the checkpoint's default analysis; the epoch trains a fresh model with the
checkpoint's dataset, preset, architecture and J for one epoch (a DDP checkpoint cannot resume with another number
of processes, so the benchmark does not resume the checkpoint itself). Two times are printed per run:

- what the command itself reports: ``global``'s *total* (start to written report) and its *analysis* part (the
  sharded computation, without drawing and writing the report, which rank 0 does alone); training's *epoch*
  (which includes the per-epoch test evaluation), at the preset's batch and at ``--large-batch``;
- *process*: the wall time of the whole command, start-up and data loading included.

The ratio is 1-process time / N-process time (above 1: faster with N). Only ratios measured in one run of this script
compare: the machine's load changes absolute times. With N processes on a machine with fewer than N free cores the
ratio says nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(module: str, arguments: list[str], processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", module, *arguments]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-addr", "127.0.0.1",
            "--master-port", str(free_port()), "-m", module, *arguments]


def timed(module: str, arguments: list[str], processes: int, cwd: Path, inside: str) -> tuple[float, ...]:
    """Run the command; return the times it reports (the groups of the regex ``inside``) and the process's wall time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    run = subprocess.run(command(module, arguments, processes), cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if run.returncode != 0:
        sys.exit(f"scaling.py: {' '.join(arguments[:2])} with {processes} process(es) failed:\n{run.stderr[-2000:]}")
    found = re.search(inside, run.stdout)
    if not found:
        sys.exit(f"scaling.py: no time in the output of {' '.join(arguments[:2])}:\n{run.stdout[-1000:]}")
    return (*(float(group) for group in found.groups()), wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint written by flint-train (e.g. runs/demo/ckpt.pt from scripts/demo.sh)")
    parser.add_argument("--processes", type=int, default=2, help="N, the processes compared with one (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each measurement; the median is printed (default 1)")
    parser.add_argument("--large-batch", type=int, default=256,
                        help="the epoch is also timed with this global batch (default 256), besides the preset's")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda (one GPU per process)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from flint_analysis.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(args.checkpoint)
    spec, training = checkpoint.dataset, checkpoint.training
    if spec.name not in ("mnist5k", "mnist", "fashion-mnist", "cifar10"):
        sys.exit(f"scaling.py: the training epoch is measured on registered datasets without options; {spec.name} is not one")
    train_arguments = ["--dataset", spec.name, "--architecture", checkpoint.architecture,
                       "--num-attributes", str(checkpoint.model.num_attributes), "--epochs", "1", "--quiet",
                       "--device", args.device, "--overwrite"]
    if training.preset:
        train_arguments += ["--preset", str(training.preset)]
    batch = training.config.batch_size if training.config else None
    checkpoint_path = str(Path(args.checkpoint).resolve())
    epoch_time = r"epoch  ?1/1 .*\(([0-9.]+) s\)"
    cases = [
        ("global", "flint_analysis.cli", ["total", "analysis"],
         lambda out: ["global", checkpoint_path, "-o", str(out / "global"), "--quiet", "--device", args.device, "--force"],
         r"wrote \S+ \(([0-9.]+) s: analysis ([0-9.]+) s"),
        (f"epoch, batch {batch}", "flint_analysis.training.cli", ["epoch"],
         lambda out: [*train_arguments, "-o", str(out / "epoch.pt")], epoch_time),
        (f"epoch, batch {args.large_batch}", "flint_analysis.training.cli", ["epoch"],
         lambda out: [*train_arguments, "--batch-size", str(args.large_batch), "-o", str(out / "epoch.pt")], epoch_time),
    ]
    print(f"{args.checkpoint}: {checkpoint.architecture}, J = {checkpoint.model.num_attributes}, {spec.name}; "
          f"1 vs {args.processes} processes, 1 thread each, device {args.device}, {args.repeats} repeat(s), median shown")
    print("times in s; 'process' includes the interpreters' start-up and data loading; speed-up = 1-process time / "
          f"{args.processes}-process time")
    with tempfile.TemporaryDirectory(prefix="flint-scaling-") as scratch:
        folder = Path(scratch)
        for name, module, labels, arguments, inside in cases:
            labels = [*labels, "process"]
            results = {}
            for processes in (1, args.processes):
                runs = [timed(module, arguments(folder / f"{name}-{processes}-{r}".replace(" ", "").replace(",", "")),
                              processes, folder, inside) for r in range(args.repeats)]
                results[processes] = [statistics.median(run[i] for run in runs) for i in range(len(labels))]
                print(f"{name:<18} {processes} process{'es' if processes > 1 else '  '}: "
                      + ", ".join(f"{label} {value:6.1f}" for label, value in zip(labels, results[processes])))
            one, many = results[1], results[args.processes]
            print(f"{name:<18} speed-up         : " + ", ".join(f"{label} {a / b:.2f}" for label, a, b in zip(labels, one, many)))


if __name__ == "__main__":
    main()
