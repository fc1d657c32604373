"""Wall time of ``flint-analyze global`` and of one training epoch with 1 and with N processes under torchrun.

    python benchmarks/scaling.py runs/demo/ckpt.pt [--processes 2] [--repeats 1]

Every process computes with one thread (``OMP_NUM_THREADS=1``), so the ratio measures torch.distributed's sharding
and not the thread pool. ``global`` runs the checkpoint's default analysis; the epoch trains a fresh model with the
checkpoint's dataset, preset, architecture and J for one epoch (a DDP checkpoint cannot resume with another number
of processes, so the benchmark does not resume the checkpoint itself). Two times are printed per run:

- *inside*: what the command itself reports (``global``: from start to the written report; training: the epoch's
  time, which includes the per-epoch test evaluation), without the interpreters' start-up;
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


def timed(module: str, arguments: list[str], processes: int, cwd: Path, inside: str) -> tuple[float, float]:
    """Run the command; return (time it reports by the regex ``inside``, wall time of the process)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    run = subprocess.run(command(module, arguments, processes), cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if run.returncode != 0:
        sys.exit(f"scaling.py: {' '.join(arguments[:2])} with {processes} process(es) failed:\n{run.stderr[-2000:]}")
    found = re.findall(inside, run.stdout)
    if not found:
        sys.exit(f"scaling.py: no time in the output of {' '.join(arguments[:2])}:\n{run.stdout[-1000:]}")
    return float(found[-1]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint written by flint-train (e.g. runs/demo/ckpt.pt from scripts/demo.sh)")
    parser.add_argument("--processes", type=int, default=2, help="N, the processes compared with one (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each measurement; the median is printed (default 1)")
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
    checkpoint_path = str(Path(args.checkpoint).resolve())
    cases = {
        "global": ("flint_analysis.cli", lambda out: ["global", checkpoint_path, "-o", str(out / "global"), "--quiet",
                                                       "--device", args.device, "--force"],
                   r"wrote \S+ \(([0-9.]+) s\)"),
        "one training epoch": ("flint_analysis.training.cli", lambda out: [*train_arguments, "-o", str(out / "epoch.pt")],
                               r"epoch  ?1/1 .*\(([0-9.]+) s\)"),
    }
    print(f"{args.checkpoint}: {checkpoint.architecture}, J = {checkpoint.model.num_attributes}, {spec.name}; "
          f"1 vs {args.processes} processes, 1 thread each, device {args.device}, {args.repeats} repeat(s), median shown")
    with tempfile.TemporaryDirectory(prefix="flint-scaling-") as scratch:
        folder = Path(scratch)
        for name, (module, arguments, inside) in cases.items():
            results = {}
            for processes in (1, args.processes):
                runs = [timed(module, arguments(folder / f"{processes}-{r}"), processes, folder, inside) for r in range(args.repeats)]
                results[processes] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
                print(f"{name:<20} {processes} process{'es' if processes > 1 else '  '}: inside {results[processes][0]:7.1f} s, "
                      f"process {results[processes][1]:7.1f} s")
            one, many = results[1], results[args.processes]
            print(f"{name:<20} speed-up with {args.processes} processes (1-process time / {args.processes}-process time): "
                  f"inside {one[0] / many[0]:.2f}, process {one[1] / many[1]:.2f}")


if __name__ == "__main__":
    main()
