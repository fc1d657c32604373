"""`flint-analyze info`, and the resnet18 path (guided backpropagation through residual blocks)."""

import json

import torch

from flint_analysis.am_pi import AmPiConfig, am_pi
from flint_analysis.attribution import attribute_inputs
from flint_analysis.models import default_attribution
from flint_analysis.checkpoint import Checkpoint, load_checkpoint
from flint_analysis.cli import main
from flint_analysis.models import AttributeHead, build_model, resolve_architecture_kwargs
from tests.conftest import tiny_bundle


def test_info_prints_what_the_checkpoint_holds(tmp_path, capsys):
    kwargs = resolve_architecture_kwargs("lenet", {"num_attributes": 7})
    history = [{"epoch": 0, "test_accuracy_f": 91.5, "test_accuracy_g": 88.25, "test_fidelity": 90.0,
                "train_losses": {"prediction": 0.5, "output_fidelity": 0.7, "input_fidelity": 0.05, "conciseness_diversity": 0.1}}]
    config = {"epochs": 12, "batch_size": 16, "learning_rate": 1e-4, "beta": 0.5, "gamma": 0.8, "delta": 0.2, "zeta": 1.0,
              "mu": 1.0, "eta": 0.5, "interpretability_start_epoch": 2, "entropy_start_epoch": 3, "l1_reduction": "sum",
              "baseline": False}
    path = tmp_path / "c.pt"
    Checkpoint(build_model("lenet", kwargs), "lenet", kwargs, tiny_bundle().spec, training={"preset": "paper-mnist", "seed": 4,
               "config": config}, history=history).save(path)
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    for expected in ("architecture  lenet", "num_attributes=7", "J = 7 attributes read from features", "mnist5k: 10 classes",
                     "preset paper-mnist, seed 4, 1/12 epochs, Adam lr 0.0001, batch 16", "β 0.5  γ 0.8  δ 0.2  ζ 1  μ 1  η 0.5",
                     "test accuracy f 91.50%, g 88.25%, fidelity 90.00%", load_checkpoint(path).sha256):
        assert expected in text, expected
    assert main(["info", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["architecture"]["num_attributes"] == 7 and data["final_metrics"]["test_fidelity"] == 90.0
    assert main(["info", str(tmp_path / "none.pt")]) == 2
    assert capsys.readouterr().err.strip() == f"flint-analyze: error: checkpoint {tmp_path / 'none.pt'} does not exist; check the path"


def test_resnet18_guided_backprop_and_am_pi_run_and_leave_the_model_untouched():
    torch.manual_seed(0)
    model = build_model("resnet18", {"num_attributes": 5, "attribute_activation": "leaky_relu"}).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 1, 28, 28)
    assert default_attribution("resnet18") == "guided-backprop"
    maps = attribute_inputs(model, x, torch.tensor([0, 3]), method="guided-backprop").maps
    plain = attribute_inputs(model, x, torch.tensor([0, 3]), method="gradient").maps
    assert maps.shape == x.shape and torch.isfinite(maps).all() and not torch.allclose(maps, plain)
    result = am_pi(AttributeHead(model), x, torch.tensor([1, 2]), config=AmPiConfig(steps=2))
    assert result.images.shape == x.shape
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and not model.training
