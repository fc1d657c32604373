import subprocess
import sys

import numpy as np
import pytest
import torch

from flint_analysis.checkpoint import Checkpoint, load_checkpoint
from flint_analysis.datasets import DatasetBundle, ImageDataset, load_dataset
from flint_analysis.models import build_model, resolve_architecture_kwargs
from flint_analysis.training.cli import main as train_main
from flint_analysis.training.config import TrainingConfig
from flint_analysis.training.trainer import train
from tests.conftest import tiny_bundle

FAST = TrainingConfig(
    epochs=3, batch_size=16, learning_rate=2e-3, eta=0.02, interpretability_start_epoch=0, entropy_start_epoch=1
)


@pytest.fixture(scope="module")
def mnist_subset() -> DatasetBundle:
    full = load_dataset("mnist5k")
    train_index, test_index = torch.arange(0, 4000, 5), torch.arange(0, 1000, 4)  # 800 / 250 images
    train_set = ImageDataset(full.train.images[train_index], full.train.labels[train_index])
    test_set = ImageDataset(full.test.images[test_index], full.test.labels[test_index])
    return DatasetBundle(full.spec, train_set, test_set)


def fresh_checkpoint(bundle: DatasetBundle, seed: int) -> Checkpoint:
    torch.manual_seed(seed)
    kwargs = resolve_architecture_kwargs("lenet", {"num_attributes": 10})
    return Checkpoint(build_model("lenet", kwargs), "lenet", kwargs, bundle.spec)


def run(bundle, tmp_path, name, config=FAST, seed=0, checkpoint=None):
    checkpoint = checkpoint or fresh_checkpoint(bundle, seed)
    return train(checkpoint, bundle, config, tmp_path / name, seed, torch.device("cpu"), progress=False, log=lambda s: None)


def test_short_training_beats_chance_by_a_wide_margin(mnist_subset, tmp_path):
    result = run(mnist_subset, tmp_path, "a.pt")
    last = result.history[-1]
    assert last.test_accuracy_f > 70.0  # chance is 10 %
    assert last.test_accuracy_g > 35.0
    assert [record.epoch for record in result.history] == [0, 1, 2]
    assert [record.weights["zeta"] for record in result.history] == [0.0, FAST.zeta, FAST.zeta]
    saved = load_checkpoint(tmp_path / "a.pt")
    assert len(saved.history) == 3 and saved.training.config.learning_rate == 2e-3
    assert saved.history == result.history and saved.training == result.training


def state(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in checkpoint.model.state_dict().items()}


def test_same_seed_is_bit_identical_and_resume_continues_exactly(tmp_path):
    bundle = tiny_bundle(num_train=96, num_test=32)
    config = TrainingConfig(epochs=3, batch_size=16, learning_rate=1e-3, interpretability_start_epoch=1, entropy_start_epoch=2)
    first = state(run(bundle, tmp_path, "1.pt", config, seed=5))
    second = state(run(bundle, tmp_path, "2.pt", config, seed=5))
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = state(run(bundle, tmp_path, "3.pt", config, seed=6))
    assert not all(torch.equal(first[k], other[k]) for k in first)
    # Interrupted after two epochs, then resumed from the file: the same weights as the straight run.
    from dataclasses import replace

    run(bundle, tmp_path, "4.pt", replace(config, epochs=2), seed=5)
    partial = load_checkpoint(tmp_path / "4.pt")
    partial.model.train()
    resumed = state(run(bundle, tmp_path, "4.pt", config, seed=5, checkpoint=partial))
    assert all(torch.equal(first[k], resumed[k]) for k in first)


def write_quickdraw(folder, classes, rows=40):
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        bitmaps = rng.integers(0, 40, (rows, 784), dtype=np.uint8)
        bitmaps[:, k * 70 : k * 70 + 60] = 255
        np.save(folder / f"full_numpy_bitmap_{name}.npy", bitmaps)


def test_flint_train_cli_trains_resumes_and_reports_bad_input(tmp_path, capsys):
    write_quickdraw(tmp_path, ["cat", "dog", "frog"])
    out = tmp_path / "run" / "ckpt.pt"
    common = ["--dataset", "quickdraw", "--data-root", str(tmp_path), "--classes", "cat", "dog", "frog",
              "--samples-per-class", "30", "--preset", "paper-mnist", "--num-attributes", "5", "--batch-size", "8", "--quiet"]
    assert train_main(common + ["--epochs", "1", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "epoch  1/1" in printed and "fidelity" in printed and f"wrote {out}" in printed
    first = load_checkpoint(out)
    assert first.architecture == "lenet" and first.architecture_kwargs["num_attributes"] == 5
    assert first.dataset.class_names == ("cat", "dog", "frog") and first.dataset.train_size == 72
    assert train_main(common + ["--epochs", "1", "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert train_main(["--resume", str(out), "--epochs", "2", "--data-root", str(tmp_path), "--quiet"]) == 0
    assert len(load_checkpoint(out).history) == 2
    capsys.readouterr()
    assert train_main(["--dataset", "mnist", "--data-root", str(tmp_path / "none"), "-o", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flint-train: error: mnist not found") and err.count("\n") == 1


def test_cli_entry_point_is_installed():
    result = subprocess.run([sys.executable, "-m", "flint_analysis.training.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--baseline" in result.stdout


def test_interpreter_input_dropout_feeds_h_dropped_attributes_only_while_training(tmp_path):
    """The authors' h is Dropout → Linear. With p = 1, h sees zeros in training: its weights get no gradient
    (Adam then leaves them exactly unchanged) while its bias, Φ and d still learn; with p = 0 the weights move."""
    from dataclasses import replace

    bundle = tiny_bundle(num_train=64, num_test=16)
    config = TrainingConfig(epochs=1, batch_size=16, learning_rate=1e-3, interpretability_start_epoch=0, entropy_start_epoch=0)
    start = state(fresh_checkpoint(bundle, 3))
    dropped = run(bundle, tmp_path, "p1.pt", replace(config, interpreter_input_dropout=1.0), seed=3)
    after = state(dropped)
    weight, bias = "interpreter.weight", "interpreter.bias"
    assert torch.equal(after[weight], start[weight])
    assert not torch.equal(after[bias], start[bias])
    assert any(not torch.equal(after[k], start[k]) for k in after if k.startswith(("attributes.", "decoder.")))
    assert load_checkpoint(tmp_path / "p1.pt").training.config.interpreter_input_dropout == 1.0
    kept = state(run(bundle, tmp_path, "p0.pt", config, seed=3))
    assert not torch.equal(kept[weight], start[weight])
    # Evaluation is unaffected by the training-time dropout: g's test accuracy is computed on undropped Φ.
    assert 0.0 < dropped.history[-1].test_accuracy_g <= 100.0


def test_authors_presets_state_every_code_difference():
    from flint_analysis.training.config import AUTHORS_MNIST, PAPER_MNIST

    differences = {k: (v, getattr(AUTHORS_MNIST, k)) for k, v in PAPER_MNIST.to_dict().items() if getattr(AUTHORS_MNIST, k) != v}
    assert differences == {"l1_reduction": ("sum", "mean"), "entropy_start_epoch": (3, 4), "interpreter_input_dropout": (0.0, 0.01)}
