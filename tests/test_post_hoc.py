"""Post-hoc FLINT: ``flint-train --predictor-weights FILE --freeze-predictor`` keeps a trained f bit-identical and
trains Φ, h and d; the checkpoint and ``flint-analyze info`` say so. Tiny QuickDraw files (3 classes, 28×28)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from torch import nn

from flint_analysis.checkpoint import load_checkpoint, load_predictor_weights
from flint_analysis.cli import main as analyze_main
from flint_analysis.errors import CheckpointError
from flint_analysis.models import build_model, resolve_architecture_kwargs
from flint_analysis.runtime import seed_everything
from flint_analysis.training.cli import main as train_main
from tests.conftest import tiny_checkpoint
from tests.test_training import write_quickdraw

CLASSES = ["cat", "dog", "frog"]


def torchvision_resnet18(num_classes: int, seed: int) -> nn.Module:
    """torchvision's resnet18 for 1-channel images, as a user would have trained it (here: random weights)."""
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    with torch.no_grad():  # non-trivial batch-norm statistics, so "eval mode kept" is tested too
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture
def quickdraw(tmp_path):
    write_quickdraw(tmp_path, CLASSES)
    return ["--dataset", "quickdraw", "--data-root", str(tmp_path), "--classes", *CLASSES, "--samples-per-class", "12",
            "--quiet"]


def test_post_hoc_training_keeps_f_bit_identical_and_info_says_so(quickdraw, tmp_path, capsys):
    f = torchvision_resnet18(num_classes=3, seed=1)
    weights = tmp_path / "f.pt"
    # as DataParallel and many training scripts save it: under "state_dict", keys prefixed "module."
    torch.save({"state_dict": {f"module.{k}": v for k, v in f.state_dict().items()}, "epoch": 7}, weights)
    out = tmp_path / "run" / "ckpt.pt"
    args = quickdraw + ["--architecture", "torchvision:resnet18", "--num-attributes", "4", "--batch-size", "8",
                        "--epochs", "1", "--lr", "1e-2", "--interpretability-start-epoch", "0",
                        "--predictor-weights", str(weights), "--freeze-predictor", "-o", str(out)]
    assert train_main(args) == 0
    assert "f frozen (post-hoc)" in capsys.readouterr().out
    trained = load_checkpoint(out)
    assert trained.training.config.freeze_predictor is True
    assert trained.training.extra["predictor_weights"] == {"path": str(weights), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    # f: every weight and batch-norm statistic as in the file, and the same logits, bit for bit
    file_state = f.state_dict()
    saved = trained.model.predictor.state_dict()
    assert list(saved) == list(file_state) and all(torch.equal(saved[k], file_state[k]) for k in saved)
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(trained.model(x).f_logits, f(x))
    # Φ, h and d did train: they differ from their initialisation (flint-train seeds 0, then builds)
    seed_everything(0)
    initial = build_model("torchvision:resnet18", trained.architecture_kwargs)
    for part in ("attributes", "interpreter", "decoder"):
        before, after = getattr(initial, part).state_dict(), getattr(trained.model, part).state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before), part
    losses = trained.history[0].train_losses
    assert losses["prediction"] > 0 and losses["output_fidelity"] > 0  # L_pred still reported
    # info says where f came from
    assert analyze_main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert f"predictor     frozen, weights from {weights} (sha256 {digest[:12]}…)" in text
    assert analyze_main(["info", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["predictor"] == {"frozen": True, "weights": {"path": str(weights), "sha256": digest}}
    assert summary["training"]["config"]["freeze_predictor"] is True
    # --resume keeps f frozen
    assert train_main(["--resume", str(out), "--epochs", "2", "--data-root", str(tmp_path), "--quiet"]) == 0
    resumed = load_checkpoint(out)
    assert len(resumed.history) == 2 and resumed.training.config.freeze_predictor
    assert all(torch.equal(v, file_state[k]) for k, v in resumed.model.predictor.state_dict().items())
    capsys.readouterr()
    assert train_main(["--resume", str(out), "--epochs", "3", "--predictor-weights", str(weights)]) == 2
    assert "--predictor-weights applies to new runs" in capsys.readouterr().err


def test_a_base_f_checkpoint_is_a_predictor_weights_file(tmp_path):
    base = tiny_checkpoint(seed=4)
    base.save(tmp_path / "base.pt")
    torch.manual_seed(9)
    model = build_model("lenet", resolve_architecture_kwargs("lenet", {"num_attributes": 6}))
    source = load_predictor_weights(model, tmp_path / "base.pt")
    assert source.kind == "flint-analysis checkpoint" and len(source.sha256) == 64
    expected = base.model.predictor.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in model.predictor.state_dict().items())
    plain = tmp_path / "plain.pt"
    torch.save(base.model.predictor.state_dict(), plain)
    assert load_predictor_weights(model, plain).kind == "state dict"


class Exploit:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_bad_post_hoc_input_is_one_line_and_exit_2(quickdraw, tmp_path, capsys):
    wrong_classes = tmp_path / "ten.pt"
    torch.save(torchvision_resnet18(num_classes=10, seed=0).state_dict(), wrong_classes)
    code = tmp_path / "code.pt"
    torch.save({"fc.weight": Exploit()}, code)
    not_weights = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_weights)
    out = ["-o", str(tmp_path / "x.pt"), "--architecture", "torchvision:resnet18"]
    cases = [
        (["--freeze-predictor"], "--freeze-predictor needs --predictor-weights"),
        (["--baseline", "--freeze-predictor", "--predictor-weights", str(wrong_classes)], "choose one"),
        (["--predictor-weights", str(wrong_classes)], "'fc.weight' has shape (10, 512), expected (3, 512)"),
        (["--predictor-weights", str(code), "--freeze-predictor"], "would need code execution"),
        (["--predictor-weights", str(not_weights)], "hold no state dict"),
        (["--predictor-weights", str(tmp_path / "none.pt")], "does not exist"),
        (["--taps", "layer9"], "no module 'layer9' to tap; close names: layer"),
    ]
    for extra, expected in cases:
        assert train_main(quickdraw + out + extra) == 2, extra
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, (extra, err)
    assert train_main(quickdraw + ["-o", str(tmp_path / "y.pt"), "--architecture", "lenet", "--taps", "features"]) == 2
    assert "--taps applies to torchvision:NAME architectures; lenet reads features" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        train_main(quickdraw + ["--architecture", "torchvision:resnet81"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "did you mean torchvision:resnet18" in err and err.count("\n") == 1
    assert not (tmp_path / "x.pt").exists()


def test_load_predictor_weights_refuses_non_finite_weights(tmp_path):
    model = build_model("lenet", resolve_architecture_kwargs("lenet", {"num_attributes": 6}))
    state = model.predictor.state_dict()
    state["features.0.weight"] = state["features.0.weight"].clone().fill_(float("nan"))
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="'features.0.weight' holds NaN/Inf"):
        load_predictor_weights(model, tmp_path / "nan.pt")
