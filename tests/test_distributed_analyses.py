"""Sharded analyses under torchrun (gloo, 2 CPU processes): the reports equal one process's.

The work is shared out in pieces that do not depend on the number of processes (forward-pass batches, batches of
attribute-tool runs, classes of the projection depth), so the JSON is equal bit for bit, float32 included; the
single-process runs here use one thread, like each torchrun process (OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flint_analysis import cli
from flint_analysis.distributed import ProcessGroup, concatenate, shard_batches
from flint_analysis.inference import ForwardPass
from tests.test_distributed import free_port

ROOT = Path(__file__).resolve().parent.parent
# A small global run: every pair with r > 0 (the untrained model predicts one class), 2 MAS each, 12 AM+PI steps, tool
# batches of 5 runs (so the batches and their remainder are split over the two ranks). torchrun's own parser would take
# "--mas" for its --master-addr, hence --mas-per-pair.
GLOBAL = ["--subset-size", "150", "--threshold", "0", "--mas-per-pair", "2", "--am-pi-steps", "12",
          "--tool-batch-size", "5", "--batch-size", "64", "--quiet"]


def analyze_torchrun(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), "-m", "flint_analysis.cli", *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def one_thread():
    """One thread for torch and for NumPy's BLAS (PCA, projection depth), as OMP_NUM_THREADS=1 gives each torchrun process."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)


def report(folder: Path, name: str) -> tuple[dict, dict]:
    """The report's JSON without its ``environment``, and the environment."""
    data = json.loads((folder / name).read_text())
    return {k: v for k, v in data.items() if k != "environment"}, data["environment"]


def test_batches_are_shared_whole_and_in_order():
    for total in range(0, 30):
        for batch_size in (1, 4, 7):
            for world_size in (1, 2, 3):
                shares = [shard_batches(total, batch_size, ProcessGroup(world_size=world_size, rank=r)) for r in range(world_size)]
                assert [i for share in shares for i in share] == list(range(total))
                assert all(share.start % batch_size == 0 for share in shares if len(share))
                sizes = [-(-len(share) // batch_size) for share in shares]  # whole batches per rank, as even as possible
                assert max(sizes) - min(sizes) <= 1


def test_concatenate_joins_results_field_by_field():
    parts = [ForwardPass(torch.arange(a, b), torch.arange(a, b) % 3, torch.full((b - a, 2), float(a)),
                         torch.zeros(b - a, 4), torch.ones(b - a, 2)) for a, b in ((0, 3), (3, 3), (3, 7))]
    whole = concatenate(parts)
    assert torch.equal(whole.indices, torch.arange(7)) and whole.f_logits.shape == (7, 2)
    assert whole.f_logits[:, 0].tolist() == [0, 0, 0, 3, 3, 3, 3]
    assert concatenate([[1, 2], [], [3]]) == [1, 2, 3]
    assert concatenate([{"a": torch.ones(1)}, {"a": torch.zeros(2)}])["a"].tolist() == [1, 0, 0]


def test_sharded_global_and_metrics_equal_one_process(mnist5k_checkpoint, tmp_path, one_thread):
    checkpoint = str(mnist5k_checkpoint)
    assert cli.main(["global", checkpoint, "-o", str(tmp_path / "g1"), *GLOBAL]) == 0
    run = analyze_torchrun(["global", checkpoint, "-o", str(tmp_path / "g2"), *GLOBAL], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote ") == 1  # rank 0 alone writes and prints
    single, single_env = report(tmp_path / "g1", "global.json")
    sharded, sharded_env = report(tmp_path / "g2", "global.json")
    assert sum(len(p["mas"]) for p in single["pairs"]) > 5  # at least two tool batches
    assert sharded == single
    assert (single_env["world_size"], single_env["backend"]) == (1, None)
    assert (sharded_env["world_size"], sharded_env["backend"]) == (2, "gloo")
    with np.load(tmp_path / "g1" / "arrays.npz") as a, np.load(tmp_path / "g2" / "arrays.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert np.array_equal(a[key], b[key], equal_nan=True), key
    # the figures, drawn by both ranks and written by rank 0, are the same files byte for byte
    files = sorted(p.relative_to(tmp_path / "g1") for p in (tmp_path / "g1").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "g2") for p in (tmp_path / "g2").rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".png"]) > 20
    for file in files:
        if file.name != "global.json":
            assert (tmp_path / "g1" / file).read_bytes() == (tmp_path / "g2" / file).read_bytes(), file

    metrics = ["metrics", checkpoint, "--batch-size", "100", "--quiet"]
    assert cli.main([*metrics, "-o", str(tmp_path / "m1")]) == 0
    run = analyze_torchrun([*metrics, "-o", str(tmp_path / "m2")], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    (single, _), (sharded, sharded_env) = report(tmp_path / "m1", "metrics.json"), report(tmp_path / "m2", "metrics.json")
    assert sharded == single and sharded_env["world_size"] == 2


def test_sharded_float64_local_and_disagreement_equal_one_process(mnist5k_checkpoint, tmp_path, one_thread):
    """``--float64`` through local (several samples) and disagreement (projection depth shared out by class)."""
    checkpoint = str(mnist5k_checkpoint)
    local = ["local", checkpoint, "--index", "0", "1", "2", "3", "4", "--am-pi-steps", "10", "--tool-batch-size", "4",
             "--relevance-threshold", "0", "--float64", "--quiet"]
    disagreement = ["disagreement", checkpoint, "--agreeing", "5", "--depth-directions", "20", "--depth-rounds", "0",
                    "--pca-components", "2", "--float64", "--quiet"]
    for arguments, name, json_name in ((local, "l", "local.json"), (disagreement, "d", "disagreement.json")):
        assert cli.main([*arguments, "-o", str(tmp_path / f"{name}1")]) == 0
        run = analyze_torchrun([*arguments, "-o", str(tmp_path / f"{name}2")], tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        (single, single_env), (sharded, sharded_env) = report(tmp_path / f"{name}1", json_name), report(tmp_path / f"{name}2", json_name)
        assert sharded == single, name
        assert single_env["dtype"] == sharded_env["dtype"] == "float64"
        assert sharded_env["world_size"] == 2
    samples = sorted(p.name for p in (tmp_path / "l1").iterdir() if p.is_dir())
    assert len(samples) == 5
    for sample in samples:
        (single, _), (sharded, _) = report(tmp_path / "l1" / sample, "report.json"), report(tmp_path / "l2" / sample, "report.json")
        assert sharded == single and single["top"], sample
    depth = json.loads((tmp_path / "d1" / "disagreement.json").read_text())["depth"]
    assert len(depth["classes"]) >= 2  # the classes were shared out over the two ranks


def test_an_error_found_by_rank_0_stops_every_rank_and_is_printed_once(mnist5k_checkpoint, tmp_path):
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "notes.txt").write_text("a user's file")
    run = analyze_torchrun(["metrics", str(mnist5k_checkpoint), "-o", str(folder), "--quiet"], tmp_path)
    assert run.returncode != 0
    assert run.stderr.count("flint-analyze: error:") == 1, run.stderr[-3000:]
    assert (folder / "notes.txt").read_text() == "a user's file" and sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def _option_strings(parser) -> set[str]:
    import argparse

    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _option_strings(sub)
        else:
            found |= {s for s in action.option_strings if s not in ("-h", "--help", "--version")}
    return found


def test_every_option_but_mas_passes_through_torchruns_own_parser():
    """torchrun parses its own options first and takes an abbreviation of one of them for it (argparse prefix
    matching), even after the script's name: every option of both commands must reach the command, except ``--mas``,
    whose spelling under torchrun is ``--mas-per-pair`` (README)."""
    from torch.distributed.run import get_args_parser

    from flint_analysis.training.cli import build_parser as train_parser

    launcher = get_args_parser()
    options = _option_strings(cli.build_parser()) | _option_strings(train_parser())
    assert {"--mas", "--mas-per-pair", "--float64", "--tool-batch-size", "--workers"} <= options
    refused = set()
    for option in sorted(options):
        try:
            parsed = launcher.parse_args(["--nproc-per-node", "2", "-m", "flint_analysis.cli", "global", "x.pt", option, "1"])
        except SystemExit:
            refused.add(option)
            continue
        assert parsed.training_script_args == ["global", "x.pt", option, "1"], option
    assert refused == {"--mas"}
