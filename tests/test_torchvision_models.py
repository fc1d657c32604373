"""torchvision classifiers as f (``torchvision:NAME``): build, one training step, taps, guided backprop, checkpoints,
input normalisation, and custom predictors saved and loaded with the user's builder mapping.

Tiny inputs (≤ 3×32×32), J ≤ 5, batches of 2, ``weights=None``: nothing is downloaded.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from flint_analysis.attribution import attribute_inputs
from flint_analysis.checkpoint import Checkpoint, load_checkpoint
from flint_analysis.datasets import DatasetSpec
from flint_analysis.errors import ArchitectureError, CheckpointError
from flint_analysis.models import (
    KNOWN_ARCHITECTURES,
    TORCHVISION_ARCHITECTURES,
    FlintModel,
    architecture_entry,
    build_model,
    default_attribution,
    resolve_architecture_kwargs,
)
from flint_analysis.training.config import LossWeights
from flint_analysis.training.losses import flint_loss
from tests.test_models import custom_model

ALL_WEIGHTS = LossWeights(beta=0.5, gamma=1.0, delta=0.2, zeta=1.0, mu=1.0, eta=0.1)


def tiny(name: str, seed: int = 0, **kwargs) -> tuple[FlintModel, dict]:
    kwargs = resolve_architecture_kwargs(name, {"num_classes": 3, "in_channels": 1, "input_size": 32, "num_attributes": 4,
                                                "phi_width": 8, "decoder_width": 4, **kwargs})
    torch.manual_seed(seed)
    return build_model(name, kwargs), kwargs


def spec_for(kwargs: dict, normalization: dict | None = None) -> DatasetSpec:
    channels, size = kwargs["in_channels"], kwargs["input_size"]
    return DatasetSpec(name="tiny", class_names=tuple("abc"[: kwargs["num_classes"]]), input_shape=(channels, size, size),
                       normalization=normalization)


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


@pytest.mark.parametrize("name", list(TORCHVISION_ARCHITECTURES))
def test_each_network_builds_with_its_default_taps_and_trains_one_step(name):
    record = TORCHVISION_ARCHITECTURES[name]
    model, kwargs = tiny(name)
    assert model.tap_names == record.taps and kwargs["taps"] == list(record.taps) and model.architecture_name == name
    # the data's channels and classes: a 1-channel first convolution, 3 logits
    first_conv = next(m for m in model.predictor.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1
    # the same state-dict keys as torchvision's own model: torchvision-style weight files load
    import torchvision

    with torch.device("meta"):
        plain = torchvision.models.get_model(name.split(":")[1], weights=None, num_classes=3)
    assert list(model.predictor.state_dict()) == list(plain.state_dict())
    # guided-backprop-safe: no in-place module, every nn.ReLU of f and Φ its own module called once (checked below)
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    calls: list[int] = []
    handles = [m.register_forward_hook(lambda m, i, o: calls.append(id(m))) for m in relus]
    # one training step of the full FLINT loss reaches f, Φ, h and d (SGD: Adam's state for VGG's 129 M weights is slow)
    parts = ("predictor", "attributes", "interpreter", "decoder")
    before = {part: [p.detach().clone() for p in getattr(model, part).parameters()] for part in parts}
    optimizer = torch.optim.SGD(model.training_parameters(), lr=0.1)
    x = torch.rand(2, 1, 32, 32)
    model.train()
    out = model(x, reconstruct=True)
    for handle in handles:
        handle.remove()
    assert relus and len(calls) == len(set(calls))
    assert out.f_logits.shape == (2, 3) and out.attributes.shape == (2, 4)
    assert out.reconstruction.shape == x.shape and bool((out.reconstruction >= 0).all())
    terms = flint_loss(out, x, torch.tensor([0, 2]), ALL_WEIGHTS)
    assert torch.isfinite(terms.total)
    optimizer.zero_grad()
    terms.total.backward()
    optimizer.step()
    for part in parts:
        after = list(getattr(model, part).parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before[part], after)), part
    with torch.no_grad():
        taps, _ = model.eval().run_predictor(x)
    assert [tuple(t.shape[1:]) for t in taps] == list(record.tap_shapes(32))


def test_registry_names_defaults_and_attribution():
    assert set(TORCHVISION_ARCHITECTURES) >= {f"torchvision:{n}" for n in (
        "resnet18", "resnet34", "resnet50", "vgg11_bn", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny")}
    assert set(TORCHVISION_ARCHITECTURES) <= set(KNOWN_ARCHITECTURES)
    assert architecture_entry("torchvision:resnet50").taps == ("layer3", "layer4.0")
    assert default_attribution("torchvision:resnet18") == "guided-backprop"
    assert default_attribution("torchvision:convnext_tiny") == "gradient"  # GELU: GBP would guide no activation of f
    with pytest.raises(ArchitectureError, match=r"unknown architecture 'torchvision:alexnet'.*known: .*torchvision:resnet18"):
        architecture_entry("torchvision:alexnet")
    with pytest.raises(ArchitectureError, match="did you mean torchvision:resnet18"):
        architecture_entry("torchvision:resnet81")


def test_unknown_or_unusable_taps_are_one_line_errors_with_candidates():
    with pytest.raises(ArchitectureError) as error:
        tiny("torchvision:resnet18", taps=["layer5"])
    message = str(error.value)
    assert "\n" not in message and "no module 'layer5'" in message and "layer4" in message
    with pytest.raises(ArchitectureError, match=r"close names: .*layer4\.0\.conv1"):
        tiny("torchvision:resnet18", taps=["layer4.0.conv"])
    with pytest.raises(ArchitectureError, match=r"tap 'fc' .* returns shape \(1, 3\), not feature maps"):
        tiny("torchvision:resnet18", taps=["fc"])
    with pytest.raises(ArchitectureError, match=r"cannot run on 1×16×16 inputs .* give it larger images"):
        tiny("torchvision:vgg11_bn", input_size=16)
    # each ReLU call of a block is its own module, so a block's ReLU is a valid tap (it runs once)
    model, _ = tiny("torchvision:resnet18", taps=["layer2.1.relu_2", "layer3"])
    assert model.tap_names == ("layer2.1.relu_2", "layer3")


@pytest.mark.parametrize("kwargs, expected", [
    ({"taps": "layer3"}, "must be a list of module names"),
    ({"taps": ["layer3", "../etc"]}, "not a module name"),
    ({"taps": ["a b"]}, "not a module name"),
    ({"taps": ["x" * 101]}, "not a module name"),
    ({"taps": [f"layer{i}" for i in range(9)]}, "must name 1 to 8 modules"),
    ({"taps": ["layer3", "layer3"]}, "names a module twice"),
    ({"phi_width": 10_000}, "phi_width must be between 1 and 512"),
    ({"decoder_width": 0}, "decoder_width must be between 1 and 256"),
    ({"input_size": 4096}, "input_size must be between 8 and 512"),
    ({"depth": 3}, "invalid arguments"),
])
def test_kwargs_have_types_and_limits(kwargs, expected):
    with pytest.raises(ArchitectureError, match=expected):
        resolve_architecture_kwargs("torchvision:resnet18", kwargs)


def test_checkpoint_round_trip_rebuilds_identical_outputs(tmp_path):
    normalization = {"mean": [0.5, 0.25, 0.125], "std": [0.2, 0.3, 0.4]}
    for name, extra in (("torchvision:resnet18", {"taps": ["layer2", "layer4"], "phi_pool": 2}),
                        ("torchvision:mobilenet_v3_small", {})):
        model, kwargs = tiny(name, in_channels=3, **extra)
        model.eval()
        path = tmp_path / f"{name.split(':')[1]}.pt"
        Checkpoint(model, name, kwargs, spec_for(kwargs, normalization)).save(path)
        loaded = load_checkpoint(path)
        assert loaded.architecture == name and loaded.architecture_kwargs == kwargs
        assert loaded.model.tap_names == model.tap_names and loaded.model.input_normalization is not None
        x = torch.rand(2, 3, 32, 32)
        with torch.no_grad():
            for left, right in zip(model(x, reconstruct=True), loaded.model(x, reconstruct=True)):
                assert torch.equal(left, right)
        raw = torch.load(path, weights_only=True)
        assert raw["architecture"] == {"name": name, "kwargs": kwargs}
        assert not any("input_mean" in key or "input_std" in key for part in raw["state_dicts"].values() for key in part)


def test_hostile_torchvision_checkpoints_are_refused(tmp_path):
    model, kwargs = tiny("torchvision:mobilenet_v3_small")
    path = tmp_path / "ok.pt"
    Checkpoint(model, "torchvision:mobilenet_v3_small", kwargs, spec_for(kwargs)).save(path)
    cases = {
        "name": (lambda p: p["architecture"].update(name="torchvision:alexnet"), "unknown architecture 'torchvision:alexnet'"),
        "taps": (lambda p: p["architecture"]["kwargs"].update(taps=["__class__.__init__"]), "has no module '__class__.__init__'"),
        "tap": (lambda p: p["architecture"]["kwargs"].update(taps=["classifier"]), "not feature maps"),
        "width": (lambda p: p["architecture"]["kwargs"].update(phi_width=4096), "phi_width must be between"),
        "shapes": (lambda p: p["architecture"]["kwargs"].update(phi_width=16), "mis-shaped weights in attributes"),
        "std": (lambda p: p["dataset"].update(normalization={"mean": [0.5], "std": [0.0]}), "std must be positive"),
        "channels": (lambda p: p["dataset"].update(normalization={"mean": [0.5, 0.5], "std": [1.0, 1.0]}),
                     "normalization for 2 channels but inputs of 1"),
    }
    for case, (edit, expected) in cases.items():
        payload = torch.load(path, weights_only=True)
        edit(payload)
        bad = tmp_path / f"{case}.pt"
        torch.save(payload, bad)
        with pytest.raises(CheckpointError, match=expected) as error:
            load_checkpoint(bad)
        assert "\n" not in str(error.value), case


# ---- guided backpropagation on a torchvision ResNet, against a hand-written rule -----------------------------------
class _GuidedReLUFunction(torch.autograd.Function):
    """ReLU forward; backward ``clamp(grad, 0) · [x > 0]`` (Springenberg et al. 2014), applied per call."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0).to(grad.dtype)


class _GuidedReLU(nn.Module):
    def forward(self, x):
        return _GuidedReLUFunction.apply(x)


def _guided(module: nn.Module) -> nn.Module:
    """A copy with every nn.ReLU module (shared or not, in-place or not) replaced by the hand-written rule."""
    module = copy.deepcopy(module)
    for name, sub in list(module.named_modules()):
        if isinstance(sub, nn.ReLU):
            _replace(module, name, _GuidedReLU())
    return module


def test_guided_backprop_on_a_torchvision_resnet_matches_a_hand_written_rule():
    import torchvision

    torch.manual_seed(0)
    # Φ ends in LeakyReLU (guided by neither side), so no attribute is dead at 0 and every map is non-trivial
    kwargs = resolve_architecture_kwargs("torchvision:resnet18", {"num_classes": 3, "in_channels": 3, "input_size": 32,
                                                                   "num_attributes": 2, "phi_width": 8,
                                                                   "attribute_activation": "leaky_relu"})
    model = build_model("torchvision:resnet18", kwargs).double().eval()
    model.set_input_normalization({"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]})
    # Independent f: torchvision's own resnet18 (blocks calling one in-place ReLU module 2×) with the same weights.
    plain = torchvision.models.resnet18(weights=None, num_classes=3).double().eval()
    plain.load_state_dict(model.predictor.state_dict())
    reference = FlintModel(_guided(plain), model.tap_names, _guided(model.attributes), model.interpreter, model.decoder).eval()
    reference.set_input_normalization({"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]})
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(reference.attribute_activations(x), model.attribute_activations(x), rtol=1e-12, atol=1e-12)
    for j in range(2):
        indices = torch.full((2,), j)
        captum = attribute_inputs(model, x, indices, method="guided-backprop").maps
        xr = x.clone().requires_grad_(True)
        reference.attribute_activations(xr)[:, j].sum().backward()
        assert captum.abs().max() > 0
        torch.testing.assert_close(captum, xr.grad, rtol=1e-9, atol=1e-12)
    # not vacuous: guided backprop is not the plain gradient here
    gradient = attribute_inputs(model, x, torch.zeros(2, dtype=torch.long), method="gradient").maps
    captum0 = attribute_inputs(model, x, torch.zeros(2, dtype=torch.long), method="guided-backprop").maps
    assert (gradient - captum0).abs().max() > 1e-3 * captum0.abs().max()


# ---- input normalisation inside the model ----------------------------------------------------------------------------
def test_input_normalisation_is_applied_in_front_of_f_only(tmp_path):
    model, kwargs = tiny("torchvision:resnet18", in_channels=3)
    model.eval()
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        plain_taps, plain_logits = model.run_predictor((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
        model.set_input_normalization({"mean": mean, "std": std})
        taps, logits = model.run_predictor(x)
        out = model(x, reconstruct=True)
    torch.testing.assert_close(logits, plain_logits)
    for a, b in zip(taps, plain_taps):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(out.reconstruction, model.decoder(out.attributes))  # d is not normalised
    assert set(model.state_dict()) == set(build_model("torchvision:resnet18", kwargs).state_dict())  # no new keys
    model.set_input_normalization(None)
    with torch.no_grad():
        assert not torch.allclose(model.run_predictor(x)[1], logits)
    for bad, expected in (({"mean": [0.5], "std": [0.0]}, "std must be positive"), ({"mean": [0.5, 0.1], "std": [1.0]}, "2 means but 1 stds"),
                          ({"mean": [float("nan")], "std": [1.0]}, "finite"), ({"avg": [0.1]}, "one number per channel")):
        with pytest.raises(ArchitectureError, match=expected):
            model.set_input_normalization(bad)
    # a checkpoint records it in the dataset spec; the model and the spec must agree
    spec = spec_for(kwargs, {"mean": mean, "std": std})
    fresh = tiny("torchvision:resnet18", in_channels=3)[0]
    Checkpoint(fresh, "torchvision:resnet18", kwargs, spec)  # the spec's normalisation is set on the model
    assert fresh.input_normalization is not None
    fresh.set_input_normalization({"mean": [0.1, 0.1, 0.1], "std": [1.0, 1.0, 1.0]})
    with pytest.raises(ArchitectureError, match="normalises its inputs with"):
        Checkpoint(fresh, "torchvision:resnet18", kwargs, spec)


# ---- any nn.Module through FlintModel, saved and loaded with the user's builder mapping -------------------------
def test_custom_predictor_saves_and_loads_with_the_builder_mapping(tmp_path):
    model = custom_model().eval()
    spec = DatasetSpec(name="mine", class_names=("a", "b", "c"), input_shape=(1, 4, 4))
    checkpoint = Checkpoint(model, "two-step", {}, spec)
    path = tmp_path / "mine.pt"
    with pytest.raises(ArchitectureError, match=r"'two-step' is not known.*architectures=\{'two-step': builder\}"):
        checkpoint.save(path)
    assert not path.exists()
    with pytest.raises(ArchitectureError, match="does not match the model's"):
        checkpoint.save(path, architectures={"two-step": lambda: build_model("lenet")})
    assert not path.exists()
    checkpoint.save(path, architectures={"two-step": custom_model})
    with pytest.raises(CheckpointError, match="unknown architecture 'two-step'"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, architectures={"two-step": custom_model})
    x = torch.randn(3, 1, 4, 4)
    with torch.no_grad():
        for left, right in zip(model(x, reconstruct=True), loaded.model(x, reconstruct=True)):
            assert torch.equal(left, right)
    # the mapping adds to the known architectures: a torchvision checkpoint still loads with it
    tv, kwargs = tiny("torchvision:mobilenet_v3_small")
    Checkpoint(tv, "torchvision:mobilenet_v3_small", kwargs, spec_for(kwargs)).save(tmp_path / "tv.pt", architectures={"two-step": custom_model})
    assert load_checkpoint(tmp_path / "tv.pt", architectures={"two-step": custom_model}).architecture == "torchvision:mobilenet_v3_small"
