"""Hostile and damaged checkpoints: every one ends in one line on stderr and exit status 2, nothing written.

Each bad file is a valid checkpoint's payload (``Checkpoint.to_payload()``) with one thing changed, saved
with ``torch.save`` as a plain dict, then given to ``flint-analyze`` through :func:`flint_analysis.cli.main`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import flint_analysis.checkpoint as checkpoint_module
from flint_analysis.checkpoint import TRAINING_CONFIG_FIELDS, Checkpoint, load_checkpoint
from flint_analysis.cli import main
from flint_analysis.datasets import MNIST_CLASSES, DatasetSpec, data_fingerprint, load_dataset
from flint_analysis.models import build_model, resolve_architecture_kwargs
from flint_analysis.report_writers.common import provenance
from flint_analysis.runtime import compute_environment
from flint_analysis.training.config import TrainingConfig
from flint_analysis.training.losses import LossTerms
from flint_analysis.training.trainer import train
from tests.conftest import tiny_bundle, tiny_checkpoint, write_idx

PROG = "flint-analyze: error: "


def full_checkpoint() -> Checkpoint:
    """A tiny checkpoint with every entry filled as flint-train fills it (training record, history, resume)."""
    checkpoint = tiny_checkpoint()
    config = TrainingConfig(epochs=2)
    model = checkpoint.model
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    sum(p.sum() for p in model.parameters()).backward()
    optimizer.step()
    checkpoint.training = {
        "preset": "demo", "seed": 0, "config": config.to_dict(), "schedule": [vars(w) for w in config.schedule()],
        "environments": [{"first_epoch": 0, **compute_environment("cpu")}],
    }
    checkpoint.history = [{
        "epoch": 0, "weights": vars(config.weights_for_epoch(0)),
        "train_losses": {name: 0.5 for name in LossTerms.names()},
        "test_accuracy_f": 50.0, "test_accuracy_g": 40.0, "test_fidelity": 60.0, "seconds": 1.5,
    }]
    checkpoint.resume = {"optimizer": optimizer.state_dict(), "shuffle_generator": torch.Generator().get_state(),
                         "torch_rng": torch.get_rng_state(), "cuda_rng": None}
    return checkpoint


@pytest.fixture(scope="module")
def payload() -> dict:
    return full_checkpoint().to_payload()


def fresh(payload: dict) -> dict:
    """A deep copy of the payload (tensors shared: edits replace them rather than write into them)."""
    def copy(value):
        if isinstance(value, dict):
            return {k: copy(v) for k, v in value.items()}
        if isinstance(value, list):
            return [copy(v) for v in value]
        return value

    return copy(payload)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_refusal(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    assert err.startswith(PROG) and err.endswith("\n") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, (text, err)


def set_in(path: tuple, value):
    def edit(p):
        target = p
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def delete(path: tuple):
    def edit(p):
        target = p
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return edit


HOSTILE = {
    # the training record (flint-train --resume reads training["config"] and ["seed"])
    "training is a list": (set_in(("training",), ["config"]), "'training' entry of type list"),
    "training missing": (delete(("training",)), "no 'training' entry"),
    "training seed is text": (set_in(("training", "seed"), "0"), "training seed '0'"),
    "training seed out of range": (set_in(("training", "seed"), 2**70), "from -2**63 to 2**64-1"),
    "training preset is a number": (set_in(("training", "preset"), 3), "training preset of 3"),
    "training config is text": (set_in(("training", "config"), "fast"), "training config of type str"),
    "training config lacks epochs": (delete(("training", "config", "epochs")), "no 'epochs' in its training config"),
    "training config epochs is text": (set_in(("training", "config", "epochs"), "12"), "training config epochs = '12'"),
    "training config epochs absurd": (set_in(("training", "config", "epochs"), 10**12), "epochs = 1000000000000 (expected from 1 to 100000)"),
    "training config lr negative": (set_in(("training", "config", "learning_rate"), -1.0), "learning_rate = -1.0 (expected positive)"),
    "training config lr NaN": (set_in(("training", "config", "learning_rate"), math.nan), "learning_rate = nan"),
    "training schedule of text": (set_in(("training", "schedule"), ["a"]), "training schedule[0] of type str"),
    "training environments not a list": (set_in(("training", "environments"), {"torch": "2"}), "training environments of type dict"),
    "resume without config": (delete(("training", "config")), "training state to resume but no training config"),
    # the history (info and flint-train read its last record)
    "history is a dict": (set_in(("history",), {"epoch": 0}), "'history' entry of type dict"),
    "history missing": (delete(("history",)), "no 'history' entry"),
    "history entry is text": (set_in(("history", 0), "epoch 0"), "history entry 0 of type str"),
    "history epoch is text": (set_in(("history", 0, "epoch"), "0"), "history entry 0 with epoch '0' (expected 0)"),
    "history epoch out of order": (set_in(("history", 0, "epoch"), 5), "history entry 0 with epoch 5"),
    "history accuracy is text": (set_in(("history", 0, "test_accuracy_g"), "40%"), "test_accuracy_g = '40%' (expected a finite number)"),
    "history losses are a list": (set_in(("history", 0, "train_losses"), [0.5]), "train_losses of type list"),
    "history loss is text": (set_in(("history", 0, "train_losses", "prediction"), "low"), "train_losses['prediction'] = 'low'"),
    # versions
    "versions is a list": (set_in(("versions",), ["torch 2"]), "'versions' entry of type list"),
    "versions missing": (delete(("versions",)), "no 'versions' entry"),
    "version is a number": (set_in(("versions", "torch"), 2.1), "a version of torch = 2.1"),
    # the architecture
    "architecture is text": (set_in(("architecture",), "lenet"), "'architecture' entry of type str"),
    "architecture name missing": (delete(("architecture", "name")), "no architecture name"),
    "architecture name not a string": (set_in(("architecture", "name"), 7), "architecture name of type int"),
    "architecture name unknown": (set_in(("architecture", "name"), "vgg16"), "unknown architecture 'vgg16'"),
    "kwargs is a list": (set_in(("architecture", "kwargs"), [6]), "architecture kwargs of type list"),
    "kwargs negative": (set_in(("architecture", "kwargs", "num_attributes"), -6), "num_attributes must be between 1 and 1024, got -6"),
    "kwargs zero": (set_in(("architecture", "kwargs", "num_classes"), 0), "num_classes must be between 2 and 10000, got 0"),
    "kwargs huge": (set_in(("architecture", "kwargs", "input_size"), 2**40), "input_size must be between 4 and 256"),
    "kwargs wrong type": (set_in(("architecture", "kwargs", "num_attributes"), "6"), "num_attributes must be an integer, got str '6'"),
    "kwargs float for int": (set_in(("architecture", "kwargs", "in_channels"), 1.0), "in_channels must be an integer, got float 1.0"),
    "kwargs bool for int": (set_in(("architecture", "kwargs", "in_channels"), True), "in_channels must be an integer, got bool"),
    "kwargs unknown key": (set_in(("architecture", "kwargs", "depth"), 3), "invalid arguments for architecture 'lenet'"),
    "kwargs unknown activation": (set_in(("architecture", "kwargs", "attribute_activation"), "tanh"), "unknown attribute activation 'tanh'; use one of leaky_relu, relu"),
    "kwargs dropout out of range": (set_in(("architecture", "kwargs", "dropout"), 1.5), "dropout must be at least 0 and below 1, got 1.5"),
    "kwargs size not a multiple of 4": (set_in(("architecture", "kwargs", "input_size"), 30), "input_size must be a multiple of 4, got 30"),
    # declared sizes against the tensors in the file (the model is never built from the kwargs alone)
    "kwargs larger than the tensors": (set_in(("architecture", "kwargs", "num_attributes"), 1000),
                                       "mis-shaped weights in attributes: 'fc.weight' has shape (6, 576), expected (1000, 576)"),
    "kwargs input size larger than the tensors": (lambda p: (p["architecture"]["kwargs"].update(input_size=256), p["dataset"].update(input_shape=[1, 256, 256])),
                                                  "mis-shaped weights in predictor: 'classifier.1.weight' has shape (128, 6272), expected (128, 524288)"),
    "stride-0 tensor declares more than the file holds": (set_in(("state_dicts", "predictor", "classifier.1.weight"), torch.zeros(1).expand(128, 6272)),
                                                          "'classifier.1.weight' declares 802816 elements but the file holds 4 bytes"),
    "integer weights": (set_in(("state_dicts", "interpreter", "bias"), torch.zeros(10, dtype=torch.long)), "'bias' has dtype torch.int64"),
    "weights not a dict": (set_in(("state_dicts", "decoder"), [1, 2]), "no weights for 'decoder'"),
    # the dataset
    "dataset classes disagree with the model": (set_in(("dataset", "class_names"), ["a", "b"]), "lists 2 classes but its model has 10"),
    "dataset class names not strings": (set_in(("dataset", "class_names"), list(range(10))), "invalid dataset class_names"),
    "dataset shape disagrees with the model": (set_in(("dataset", "input_shape"), [3, 28, 28]), "inputs of shape 3×28×28 but its model takes 1×28×28"),
    "dataset value range reversed": (set_in(("dataset", "value_range"), [1.0, 0.0]), "invalid dataset value_range"),
    "dataset split seed negative": (set_in(("dataset", "split_seed"), -1), "split_seed -1 (expected null or an integer with 0 ≤ seed < 2**32)"),
    "dataset fingerprint malformed": (set_in(("dataset", "fingerprint"), "md5:abc"), "invalid dataset fingerprint"),
    # the resume state flint-train --resume hands to Adam and the generators
    "resume is a list": (set_in(("resume",), [1]), "resume entry of type list"),
    "resume generator state is text": (set_in(("resume", "torch_rng"), "state"), "resume state torch_rng that is not a 1-D uint8 tensor"),
    "resume generator state too short": (set_in(("resume", "shuffle_generator"), torch.zeros(8, dtype=torch.uint8)), "shuffle_generator of 8 bytes"),
    "resume optimizer for another model": (lambda p: p["resume"]["optimizer"]["param_groups"][0].update(params=[0, 1]),
                                           "resume optimizer state over 2 parameters"),
    "resume optimizer lr is text": (lambda p: p["resume"]["optimizer"]["param_groups"][0].update(lr="fast"), "resume optimizer lr = 'fast'"),
    "resume optimizer moment mis-shaped": (lambda p: p["resume"]["optimizer"]["state"][0].update(exp_avg=torch.zeros(3)),
                                           "resume optimizer exp_avg of parameter 0 with shape (3,)"),
}


def test_the_unedited_payload_is_valid(payload, tmp_path, capsys):
    path = tmp_path / "ok.pt"
    torch.save(fresh(payload), path)
    code, out, err = run_cli(["info", str(path)], capsys)
    assert code == 0 and err == "", err
    assert "environment   torch " in out and f"{torch.get_num_threads()} threads" in out
    loaded = load_checkpoint(path)
    assert loaded.resume is not None and loaded.training.config.epochs == 2


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_metadata_is_one_line_and_exit_2(case, payload, tmp_path, capsys):
    edit, expected = HOSTILE[case]
    bad = fresh(payload)
    edit(bad)
    path = tmp_path / "bad.pt"
    torch.save(bad, path)
    code, out, err = run_cli(["info", str(path)], capsys)
    assert_one_line_refusal(code, err, str(path), expected)
    assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


def test_training_config_table_matches_the_dataclass():
    hints = {f.name: f.type for f in dataclasses.fields(TrainingConfig)}
    assert {name: kind.__name__ for name, kind in TRAINING_CONFIG_FIELDS.items()} == hints


def test_legacy_torch_format_is_refused(payload, tmp_path, capsys):
    path = tmp_path / "legacy.pt"
    torch.save(fresh(payload), path, _use_new_zipfile_serialization=False)
    code, _, err = run_cli(["info", str(path)], capsys)
    assert_one_line_refusal(code, err, "legacy (pre-1.6) format")


# ------------------------------------------------------------------------------ absurd declared sizes
_ADDRESS_SPACE_PROBE = textwrap.dedent("""
    import os, resource, sys
    import torch
    torch.set_num_threads(1)
    from flint_analysis.cli import main
    assert main(["info", sys.argv[1]]) == 0  # warm-up: every lazy import and allocator pool is in place
    def address_space():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    headroom = 3 << 30
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    limit = address_space() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    try:
        torch.empty(headroom // 4 + (1 << 28), dtype=torch.float32)  # the limit really holds
        print("address-space limit not enforced")
    except RuntimeError:
        print("address-space limit enforced")
    sys.exit(main(["info", sys.argv[2]]))
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc and RLIMIT_AS")
def test_absurd_declared_sizes_allocate_nothing(payload, tmp_path):
    """resnet18 within its limits but at 16×64×64 declares an 8.6 GB decoder; the file holds a 1×28×28 resnet18.

    Run under an address-space limit of 3 GB above the process's size: building the declared model would fail
    there with a traceback (exit 1), comparing shapes on the meta device first refuses it in one line.
    """
    ok = tmp_path / "ok.pt"
    torch.save(fresh(payload), ok)
    small = resolve_architecture_kwargs("resnet18", {"num_attributes": 6})
    bad = Checkpoint(build_model("resnet18", small), "resnet18", small, tiny_bundle().spec, training={}).to_payload()
    bad["architecture"]["kwargs"].update(in_channels=16, input_size=64)
    bad["dataset"]["input_shape"] = [16, 64, 64]
    path = tmp_path / "huge.pt"
    torch.save(bad, path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", _ADDRESS_SPACE_PROBE, str(ok), str(path)], capture_output=True, text=True,
                            env=env, cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert "address-space limit" in result.stdout, result.stderr  # the probe ran (enforced on Linux, whatever the user)
    assert_one_line_refusal(result.returncode, result.stderr, "mis-shaped weights in predictor: 'stem.weight' has shape (64, 1, 3, 3), expected (64, 16, 3, 3)")
    # and beyond the limits (the 2.3 TB decoder of input_size 512) the kwargs are refused before any build
    bad["architecture"]["kwargs"]["input_size"] = 512
    torch.save(bad, path)
    assert_one_line_refusal(*_info_code_and_err(path), "resnet18 argument input_size must be between 4 and 64, got 512")


def _info_code_and_err(path: Path) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "flint_analysis.cli", "info", str(path)], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], timeout=300)
    return result.returncode, result.stderr


# ------------------------------------------------------------------------------ unreadable files
def test_permission_denied_is_one_line_even_as_root(payload, tmp_path, capsys, monkeypatch):
    path = tmp_path / "c.pt"
    torch.save(fresh(payload), path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(checkpoint_module, "open", refuse, raising=False)
    code, _, err = run_cli(["info", str(path)], capsys)
    assert_one_line_refusal(code, err, f"cannot read checkpoint {path}: permission denied")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied_on_a_real_file(payload, tmp_path, capsys):
    path = tmp_path / "c.pt"
    torch.save(fresh(payload), path)
    path.chmod(0)
    try:
        code, _, err = run_cli(["info", str(path)], capsys)
    finally:
        path.chmod(0o600)
    assert_one_line_refusal(code, err, f"cannot read checkpoint {path}: permission denied")


# ------------------------------------------------------------------------------ non-finite weights
@pytest.mark.parametrize("bad_value", [math.nan, math.inf])
def test_non_finite_weights_are_refused_at_load(bad_value, payload, tmp_path, capsys):
    bad = fresh(payload)
    weight = bad["state_dicts"]["predictor"]["classifier.4.weight"].clone()
    weight[0, :3] = bad_value
    bad["state_dicts"]["predictor"]["classifier.4.weight"] = weight
    path = tmp_path / "diverged.pt"
    torch.save(bad, path)
    code, _, err = run_cli(["info", str(path)], capsys)
    assert_one_line_refusal(code, err, "weight predictor.classifier.4.weight holds 3 NaN/Inf values; the training diverged, retrain")


@pytest.mark.parametrize("command", [["metrics"], ["local", "--index", "0"]])
def test_non_finite_weights_stop_analysis_commands(command, mnist5k_checkpoint, tmp_path, capsys):
    bad = torch.load(mnist5k_checkpoint, weights_only=True)
    weight = bad["state_dicts"]["interpreter"]["weight"].clone()
    weight[2, 1] = math.nan
    bad["state_dicts"]["interpreter"]["weight"] = weight
    path = tmp_path / "diverged.pt"
    torch.save(bad, path)
    out = tmp_path / "out"
    code, _, err = run_cli([command[0], str(path), *command[1:], "-o", str(out), "--quiet"], capsys)
    assert_one_line_refusal(code, err, "weight interpreter.weight holds 1 NaN/Inf value;")
    assert not out.exists()


# ------------------------------------------------------------------------------ data fingerprint
def write_mnist_like(root: Path, seed: int, train: int = 60, test: int = 30) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "MNIST" / "raw"
    for prefix, count in (("train", train), ("t10k", test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", (np.arange(count) % 10).astype(np.uint8))
    return root


def mnist_checkpoint(path: Path, fingerprint: str | None) -> Path:
    torch.manual_seed(0)
    kwargs = resolve_architecture_kwargs("lenet", {"num_attributes": 6})
    spec = DatasetSpec(name="mnist", class_names=MNIST_CLASSES, input_shape=(1, 28, 28), train_size=60, test_size=30,
                       fingerprint=fingerprint)
    Checkpoint(build_model("lenet", kwargs), "lenet", kwargs, spec, training={"seed": 0}).save(path)
    return path


def test_data_of_the_same_shape_but_other_content_is_refused(tmp_path, capsys):
    trained_on, other = write_mnist_like(tmp_path / "a", seed=1), write_mnist_like(tmp_path / "b", seed=2)
    fingerprint = data_fingerprint(load_dataset("mnist", data_root=trained_on))
    assert fingerprint != data_fingerprint(load_dataset("mnist", data_root=other))
    path = mnist_checkpoint(tmp_path / "c.pt", fingerprint)
    out = tmp_path / "report"
    code, _, err = run_cli(["metrics", str(path), "--data-root", str(other), "-o", str(out), "--quiet"], capsys)
    assert_one_line_refusal(code, err, "other images or labels than the checkpoint was trained on",
                            fingerprint.removeprefix("sha256:")[:12], "--allow-other-data")
    assert not out.exists()
    code, _, err = run_cli(["metrics", str(path), "--data-root", str(trained_on), "-o", str(out), "--quiet"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["metrics", str(path), "--data-root", str(other), "-o", str(tmp_path / "anyway"), "--quiet",
                            "--allow-other-data"], capsys)
    assert code == 0, err


def test_old_checkpoints_without_a_fingerprint_load_and_run_unchecked(tmp_path, capsys):
    other = write_mnist_like(tmp_path / "b", seed=2)
    path = mnist_checkpoint(tmp_path / "old.pt", None)
    raw = torch.load(path, weights_only=True)
    assert "fingerprint" not in raw["dataset"]  # the file looks exactly as before fingerprints existed
    assert load_checkpoint(path).dataset.fingerprint is None
    code, _, err = run_cli(["metrics", str(path), "--data-root", str(other), "-o", str(tmp_path / "r"), "--quiet"], capsys)
    assert code == 0, err


def test_training_records_the_fingerprint_and_the_environment(tmp_path):
    bundle = tiny_bundle(num_train=32, num_test=16)
    checkpoint = tiny_checkpoint()
    config = TrainingConfig(epochs=1, batch_size=16)
    train(checkpoint, bundle, config, tmp_path / "t.pt", 0, torch.device("cpu"), progress=False, log=lambda s: None)
    loaded = load_checkpoint(tmp_path / "t.pt")
    assert loaded.dataset.fingerprint == data_fingerprint(bundle)
    (record,) = loaded.training.environments
    environment = record.environment
    assert record.first_epoch == 0 and environment["num_threads"] == torch.get_num_threads()
    assert environment["torch"] == torch.__version__ and environment["device"] == "cpu"
    assert environment["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    # resuming on other data of the same shape is refused
    other = tiny_bundle(num_train=32, num_test=16, seed=7)
    with pytest.raises(Exception, match="other images or labels"):
        train(loaded, other, dataclasses.replace(config, epochs=2), tmp_path / "t.pt", 0, torch.device("cpu"), progress=False,
              log=lambda s: None)


def test_reports_record_this_runs_environment_and_nothing_else_changes():
    checkpoint = tiny_checkpoint()
    data = provenance(checkpoint)
    assert set(data) == {"checkpoint", "dataset", "versions", "environment"}
    # the compute environment, the run's processes (one, outside torchrun) and the model's dtype
    assert data["environment"] == compute_environment("cpu") | {"world_size": 1, "backend": None, "dtype": "float32"}
    checkpoint.model.double()
    assert provenance(checkpoint)["environment"]["dtype"] == "float64"
    assert {"torch", "torch_git_version", "torch_debug", "torch_cuda", "cpu_capability", "num_threads", "machine",
            "device"} <= set(data["environment"])
    assert "fingerprint" not in checkpoint.dataset.to_dict()


def test_checkpoints_from_before_h_input_dropout_load_and_a_bad_value_is_refused(payload, tmp_path, capsys):
    """interpreter_input_dropout was added to the training config later: a config without it loads (as 0), one
    outside [0, 1] is a one-line refusal, and DDP runs' per-rank random states are checked like the others."""
    old = copy.deepcopy(payload)
    del old["training"]["config"]["interpreter_input_dropout"]
    torch.save(old, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").training.config.interpreter_input_dropout == 0.0
    bad = copy.deepcopy(payload)
    bad["training"]["config"]["interpreter_input_dropout"] = 2.0
    torch.save(bad, tmp_path / "bad.pt")
    code, _, err = run_cli(["info", str(tmp_path / "bad.pt")], capsys)
    assert_one_line_refusal(code, err, "interpreter_input_dropout = 2.0", "from 0 to 1")
    ranks = copy.deepcopy(payload)
    ranks["resume"]["torch_rng_per_rank"] = [torch.get_rng_state(), torch.zeros(3, dtype=torch.uint8)]
    torch.save(ranks, tmp_path / "ranks.pt")
    code, _, err = run_cli(["info", str(tmp_path / "ranks.pt")], capsys)
    assert_one_line_refusal(code, err, "torch_rng_per_rank[1]")
