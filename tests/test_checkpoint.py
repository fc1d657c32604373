import argparse
import zipfile
from pathlib import Path

import pytest
import torch

from flint_analysis.checkpoint import FORMAT_VERSION, Checkpoint, load_checkpoint
from flint_analysis.errors import CheckpointError
from flint_analysis.records import EpochRecord, TrainingRecord
from flint_analysis.training.config import TrainingConfig
from tests.conftest import tiny_checkpoint


def saved(tmp_path: Path, checkpoint: Checkpoint | None = None) -> Path:
    path = tmp_path / "ckpt.pt"
    (checkpoint or tiny_checkpoint()).save(path)
    return path


def rewrite(path: Path, edit) -> Path:
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    return path


def test_round_trip_gives_identical_outputs_and_metadata(tmp_path):
    original = tiny_checkpoint(seed=3)
    original.history = [{"epoch": 0, "test_fidelity": 12.5}]
    path = saved(tmp_path, original)
    loaded = load_checkpoint(path)
    x = torch.rand(4, 1, 28, 28)
    a, b = original.model.eval()(x, reconstruct=True), loaded.model(x, reconstruct=True)
    for left, right in zip(a, b):
        assert torch.equal(left, right)
    assert loaded.architecture == "lenet" and loaded.architecture_kwargs == original.architecture_kwargs
    assert loaded.dataset == original.dataset and loaded.history == original.history
    assert loaded.versions["torch"] == torch.__version__.split("+")[0] or loaded.versions["torch"].startswith(torch.__version__[:4])
    assert len(loaded.sha256) == 64 and not loaded.model.training


def test_training_record_and_history_are_typed_and_written_as_the_same_dicts(tmp_path):
    config = TrainingConfig(epochs=2, learning_rate=1)  # an integer where a float is expected stays an integer
    training = {"preset": "demo", "config": config.to_dict(), "seed": 5, "schedule": [vars(w) for w in config.schedule()],
                "environments": [{"first_epoch": 0, "torch": "2.0", "cudnn": None}, {"torch": "2.1"}], "note": "kept"}
    history = [{"epoch": 0, "weights": vars(config.weights_for_epoch(0)), "train_losses": {"prediction": float("nan")},
                "test_accuracy_f": 50.0, "test_accuracy_g": 40.0, "test_fidelity": 60.0, "seconds": 1.5},
               {"epoch": 1, "test_fidelity": 12.5, "extra_metric": 3}]
    original = tiny_checkpoint()
    original.training, original.history = training, history  # plain dicts are read as records
    assert isinstance(original.training, TrainingRecord) and all(isinstance(r, EpochRecord) for r in original.history)
    path = saved(tmp_path, original)
    raw = torch.load(path, weights_only=True)
    assert raw["training"] == training and list(raw["training"]) == list(training)
    assert str(raw["history"]) == str(history) and list(raw["history"][0]) == list(history[0])
    loaded = load_checkpoint(path)
    assert loaded.training.config == config and loaded.training.seed == 5 and loaded.training.preset == "demo"
    assert [e.first_epoch for e in loaded.training.environments] == [0, None] and loaded.training.extra == {"note": "kept"}
    assert loaded.history[1] == EpochRecord(epoch=1, test_fidelity=12.5, extra={"extra_metric": 3})
    assert loaded.history[0].test_metrics() == {"test_accuracy_f": 50.0, "test_accuracy_g": 40.0, "test_fidelity": 60.0}
    # a partial record (made outside flint-train) keeps only the keys it has
    partial = tiny_checkpoint()
    assert partial.training == TrainingRecord(preset="test", seed=0) and partial.to_payload()["training"] == {"preset": "test", "seed": 0}
    assert load_checkpoint(saved(tmp_path, partial)).training == partial.training


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = saved(tmp_path)
    path.write_bytes(b"old")
    tiny_checkpoint().save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
    assert load_checkpoint(path).architecture == "lenet"


def test_missing_and_directory_and_empty(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is not a file"):
        load_checkpoint(tmp_path)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        load_checkpoint(empty)


def test_truncated_file(tmp_path):
    path = saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello, this is text")
    with pytest.raises(CheckpointError, match="not a torch file"):
        load_checkpoint(path)


def test_a_zip_that_is_not_a_torch_archive(tmp_path):
    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not torch")
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)


class Exploit:
    def __reduce__(self):
        return (print, ("this would run on load",))


@pytest.mark.parametrize("payload", [Exploit(), argparse.Namespace(a=1)])
def test_pickles_that_need_code_execution_are_refused(tmp_path, payload):
    path = tmp_path / "evil.pt"
    torch.save({"format": "flint-analysis-checkpoint", "x": payload}, path)
    with pytest.raises(CheckpointError, match="code execution"):
        load_checkpoint(path)


def test_a_torch_file_without_the_format_tag(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="not a flint-analysis checkpoint"):
        load_checkpoint(path)


def test_unknown_format_version(tmp_path):
    path = rewrite(saved(tmp_path), lambda p: p.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}, newer"):
        load_checkpoint(path)


def test_unknown_architecture(tmp_path):
    path = rewrite(saved(tmp_path), lambda p: p["architecture"].update(name="vgg16"))
    with pytest.raises(CheckpointError, match="unknown architecture 'vgg16'"):
        load_checkpoint(path)


def test_missing_weights(tmp_path):
    path = rewrite(saved(tmp_path), lambda p: p["state_dicts"]["decoder"].pop("layers.0.weight"))
    with pytest.raises(CheckpointError, match=r"missing or mis-shaped weights in decoder: missing 'layers.0.weight'"):
        load_checkpoint(path)


def test_mis_shaped_weights(tmp_path):
    def edit(payload):
        payload["state_dicts"]["interpreter"]["weight"] = torch.zeros(10, 7)

    path = rewrite(saved(tmp_path), edit)
    with pytest.raises(CheckpointError, match=r"interpreter: 'weight' has shape \(10, 7\), expected \(10, 6\)"):
        load_checkpoint(path)


def test_messages_are_one_line(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
