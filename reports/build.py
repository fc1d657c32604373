"""Rebuild a committed reproduction report from nothing, with the project's own commands.

    python reports/build.py fashion-mnist [--force] [--data-root DIR]
    python reports/build.py mnist5k [--force]

    python reports/build.py mnist5k|fashion-mnist --readme-only   # only the README, from the committed JSON

Each report trains its checkpoints with `flint-train` (skipped when a finished checkpoint is already in
runs/reports/<report>/, finished with --resume when one was interrupted; `--jobs 2` trains two at once, one
thread each; checkpoints are not committed, their SHA-256 is), runs the `flint-analyze`
commands into reports/<report>/, and writes reports/<report>/README.md and report.json from what
those commands wrote; each conclusion in the README is either chosen by its numbers or checked, and a
check that fails stops the build (reports/claims.py). It refuses to overwrite a report made from different checkpoints unless --force.
The exact commands are recorded in report.json and printed in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flint_analysis.checkpoint import load_checkpoint  # noqa: E402
from flint_analysis.progress import ProgressBar, progress_bar  # noqa: E402
from flint_analysis.atomic_output import atomic_write_bytes, dumps_json  # noqa: E402
from reports.readme import fashion_mnist_readme, mnist5k_readme  # noqa: E402

RUNS = ROOT / "runs" / "reports"

SEEDS = (0, 1, 2)
# name -> (flint-train arguments besides --dataset, --seed and -o; the training seeds)
FASHION_MNIST_RUNS = {
    "flint": ([], SEEDS),
    "flint-code": (["--preset", "authors-mnist"], SEEDS),
    "base-f": (["--baseline"], SEEDS),
}
MNIST5K_RUNS = {
    "demo": (["--preset", "demo"], (0,)),
    "demo-base-f": (["--preset", "demo", "--baseline"], (0,)),
    "demo-j4": (["--preset", "demo", "--num-attributes", "4"], (0,)),
    "demo-j8": (["--preset", "demo", "--num-attributes", "8"], (0,)),
    "paper": (["--preset", "paper-mnist"], (0,)),
    "paper-base-f": (["--preset", "paper-mnist", "--baseline"], (0,)),
    "paper-l1mean": (["--preset", "paper-mnist", "--l1-reduction", "mean"], (0,)),
}


def run_key(name: str, seed: int) -> str:
    """The run's name in report.json and its checkpoint's stem: ``name`` for seed 0, ``name-seed{seed}`` otherwise."""
    return name if seed == 0 else f"{name}-seed{seed}"


def command_line(arguments: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in arguments)


def run(arguments: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    """Run a project command, its output to ``log``; stop the build with its last lines if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as stream:
        result = subprocess.run(arguments, cwd=ROOT, stdout=stream, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        tail = log.read_text().strip().splitlines()[-3:]
        sys.exit(f"build: {command_line(arguments)} failed (exit {result.returncode}):\n" + "\n".join(tail))


def train_all(dataset: str, runs: dict[str, tuple[list[str], tuple[int, ...]]], data_root: str | None, jobs: int,
              bar: ProgressBar) -> dict[str, tuple[Path, list[str]]]:
    """Every run's checkpoint and recorded command, training what is missing (``jobs`` at a time) and
    finishing interrupted runs with ``--resume``. Runs are keyed by :func:`run_key`."""
    planned: dict[str, tuple[Path, list[str]]] = {}
    work: list[tuple[str, list[str], Path]] = []
    for name, (extra, seeds) in runs.items():
        for seed in seeds:
            key = run_key(name, seed)
            path = RUNS / report_name(dataset) / f"{key}.pt"
            arguments = ["flint-train", "--dataset", dataset, "--seed", str(seed), "-o", str(path.relative_to(ROOT)), *extra, "--quiet"]
            if data_root:
                arguments += ["--data-root", data_root]
            planned[key] = (path, arguments)
            if not path.exists():
                work.append((key, [sys.executable, "-m", "flint_analysis.training.cli", *arguments[1:]], path.with_suffix(".log")))
            else:
                checkpoint = load_checkpoint(path)
                if checkpoint.epochs_completed < checkpoint.training.config.epochs:
                    work.append((key, [sys.executable, "-m", "flint_analysis.training.cli", "--resume", str(path), "--quiet"],
                                 path.with_suffix(".resume.log")))
    # One thread per process when several train at once (two processes on two cores beat one with two threads).
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))} if jobs > 1 else None
    bar.set_postfix_str(f"training {len(work)} of {len(planned)} runs" if work else "all runs trained")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for _ in pool.map(lambda item: run(item[1], item[2], env), work):
            bar.update(1)
    bar.update(len(planned) - len(work))
    return planned


def report_name(dataset: str) -> str:
    return "fashion-mnist" if dataset == "fashion-mnist" else "mnist5k"


def summarise(path: Path, arguments: list[str]) -> dict[str, Any]:
    checkpoint = load_checkpoint(path)
    last = checkpoint.history[-1]
    return {
        "checkpoint": str(path.relative_to(ROOT)),
        "sha256": checkpoint.sha256,
        "command": command_line(arguments),
        "config": checkpoint.training.config.to_dict(),
        "seed": checkpoint.training.seed,
        "epochs": checkpoint.epochs_completed,
        "num_attributes": checkpoint.model.num_attributes,
        "train_seconds": sum(record.seconds for record in checkpoint.history),
        "test_accuracy_f": last.test_accuracy_f,
        "test_accuracy_g": last.test_accuracy_g,
        "test_fidelity": last.test_fidelity,
        "train_losses": dict(last.train_losses),
        "history": [{"epoch": r.epoch, "test_accuracy_f": r.test_accuracy_f, "test_accuracy_g": r.test_accuracy_g,
                     "test_fidelity": r.test_fidelity, "seconds": r.seconds} for r in checkpoint.history],
    }


def check_previous(folder: Path, runs: dict[str, dict[str, Any]], force: bool, bar: ProgressBar) -> None:
    previous = folder / "report.json"
    if not previous.is_file() or force:
        return
    recorded = {name: entry["sha256"] for name, entry in json.loads(previous.read_text())["runs"].items()}
    current = {name: entry["sha256"] for name, entry in runs.items()}
    changed = sorted(name for name in current if recorded.get(name) != current[name])
    if changed:
        bar.close(summary=False)
        sys.exit(f"build: {folder} was made from other checkpoints ({', '.join(changed)} differ); pass --force to rebuild it")


def analyse(arguments: list[str], folder: Path, name: str, bar: ProgressBar, force: bool) -> str:
    bar.set_postfix_str(f"flint-analyze {arguments[0]}")
    full = ["flint-analyze", *arguments, "--quiet"] + (["--force"] if force else [])
    run([sys.executable, "-m", "flint_analysis.cli", *full[1:]], RUNS / folder.name / f"{name}.log")
    bar.update(1)
    return command_line(full)


def build_fashion_mnist(seed: int, data_root: str | None, force: bool, jobs: int) -> Path:
    folder = ROOT / "reports" / "fashion-mnist"
    total_runs = sum(len(seeds) for _, seeds in FASHION_MNIST_RUNS.values())
    bar = progress_bar(desc="fashion-mnist report", total=total_runs + 8, unit="step", leave=True, stages=True)
    runs = {key: summarise(path, arguments) for key, (path, arguments) in train_all("fashion-mnist", FASHION_MNIST_RUNS, data_root, jobs, bar).items()}
    bar.update(1)
    check_previous(folder, runs, force, bar)
    root = ["--data-root", data_root] if data_root else []
    flint, code = runs["flint"]["checkpoint"], runs["flint-code"]["checkpoint"]
    seeded = [run_key(name, s) for name in ("flint", "flint-code") for s in SEEDS]
    commands = {
        "metrics": analyse(["metrics", flint, code, runs["base-f"]["checkpoint"],
                            "--names", "FLINT", "FLINT (authors' code)", "BASE-f",
                            "-o", "reports/fashion-mnist/metrics", *root], folder, "metrics", bar, force),
        "metrics-seeds": analyse(["metrics", *(runs[k]["checkpoint"] for k in seeded), "--names", *seeded,
                                  "-o", "reports/fashion-mnist/metrics-seeds", *root], folder, "metrics-seeds", bar, force),
        "global": analyse(["global", flint, "-o", "reports/fashion-mnist/global", "--seed", str(seed), *root], folder, "global", bar, force),
    }
    commands["disagreement"] = analyse(["disagreement", flint, "-o", "reports/fashion-mnist/disagreement", "--seed", str(seed),
                                        "--explain-worst", "3", "--global-dir", "reports/fashion-mnist/global", *root],
                                       folder, "disagreement", bar, force)
    disagreement = json.loads((folder / "disagreement" / "disagreement.json").read_text())
    worst = [s for s in disagreement["samples"] if s["category"] == "outside_top_k_f_correct"]
    chosen_disagreement = (worst or disagreement["samples"])[0]["index"]
    agreements = first_agreements(ROOT / flint, data_root, 2)
    commands["local"] = analyse(["local", flint, "--index", *map(str, agreements + [chosen_disagreement]),
                                 "-o", "reports/fashion-mnist/local", "--global-dir", "reports/fashion-mnist/global", "--seed", str(seed), *root],
                                folder, "local", bar, force)
    commands["global-code"] = analyse(["global", code, "-o", "reports/fashion-mnist/global-code", "--seed", str(seed), *root],
                                      folder, "global-code", bar, force)
    data = {"report": "fashion-mnist", "build_command": "python reports/build.py fashion-mnist", "seed": seed, "training_seeds": list(SEEDS),
            "runs": runs, "analysis_commands": commands, "local_samples": {"agreements": agreements, "disagreement": chosen_disagreement}}
    atomic_write_bytes(folder / "report.json", dumps_json(data).encode())
    atomic_write_bytes(folder / "README.md", fashion_mnist_readme(data, folder).encode())
    bar.update(1)
    bar.close()
    return folder


def first_agreements(checkpoint_path: Path, data_root: str | None, count: int) -> list[int]:
    """The first test samples (by index) of distinct classes where f is right and g agrees."""
    from flint_analysis.datasets import load_dataset_for_spec
    from flint_analysis.inference import forward_pass

    checkpoint = load_checkpoint(checkpoint_path)
    test = load_dataset_for_spec(checkpoint.dataset, data_root=data_root).test
    forward = forward_pass(checkpoint.model, test, indices=range(min(200, len(test))))
    chosen, classes = [], set()
    for i, y, f, g in zip(forward.indices.tolist(), forward.labels.tolist(), forward.f_predictions.tolist(), forward.g_predictions.tolist()):
        if f == g == y and y not in classes:
            chosen.append(i)
            classes.add(y)
        if len(chosen) == count:
            break
    return chosen


def build_mnist5k(seed: int, force: bool, jobs: int) -> Path:
    folder = ROOT / "reports" / "mnist5k"
    bar = progress_bar(desc="mnist5k report", total=len(MNIST5K_RUNS) + 2, unit="step", leave=True, stages=True)
    runs = {key: summarise(path, arguments) for key, (path, arguments) in train_all("mnist5k", MNIST5K_RUNS, None, jobs, bar).items()}
    check_previous(folder, runs, force, bar)
    commands = {"metrics": analyse(["metrics", *(runs[n]["checkpoint"] for n in MNIST5K_RUNS), "--names", *MNIST5K_RUNS,
                                    "-o", "reports/mnist5k/metrics"], folder, "metrics", bar, force)}
    data = {"report": "mnist5k", "build_command": "python reports/build.py mnist5k", "seed": seed, "runs": runs,
            "analysis_commands": commands}
    atomic_write_bytes(folder / "report.json", dumps_json(data).encode())
    atomic_write_bytes(folder / "README.md", mnist5k_readme(data, folder).encode())
    bar.update(1)
    bar.close()
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", choices=["fashion-mnist", "mnist5k"])
    parser.add_argument("--force", action="store_true", help="rebuild a report made from other checkpoints")
    parser.add_argument("--seed", type=int, default=0, help="seed of the analyses (the training seeds are fixed per run)")
    parser.add_argument("--jobs", type=int, default=1, help="train this many checkpoints at once, one thread each when > 1 (default 1)")
    parser.add_argument("--data-root", help="FashionMNIST folder (default: $FLINT_DATA, then /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--readme-only", action="store_true",
                        help="only rewrite README.md from the committed report.json and analysis JSON (no training, no analysis)")
    args = parser.parse_args()
    os.chdir(ROOT)
    if args.readme_only:
        folder = ROOT / "reports" / args.report
        data = json.loads((folder / "report.json").read_text())
        writer = fashion_mnist_readme if args.report == "fashion-mnist" else mnist5k_readme
        atomic_write_bytes(folder / "README.md", writer(data, folder).encode())
        print(f"wrote {folder.relative_to(ROOT) / 'README.md'}")
        return
    folder = build_fashion_mnist(args.seed, args.data_root, args.force, args.jobs) if args.report == "fashion-mnist" else build_mnist5k(args.seed, args.force, args.jobs)
    print(f"wrote {folder.relative_to(ROOT) / 'README.md'}")


if __name__ == "__main__":
    main()
