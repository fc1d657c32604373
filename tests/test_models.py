import pytest
import torch
from torch import nn

from flint_analysis.errors import ArchitectureError
from flint_analysis.models import ARCHITECTURES, AttributeHead, FlintModel, build_model, resolve_architecture_kwargs


class TwoStepPredictor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(x))


class ConcatAttributes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8 + 8, 4)

    def forward(self, taps):
        return torch.relu(self.fc(torch.cat(taps, dim=1)))


def custom_model() -> FlintModel:
    torch.manual_seed(0)
    return FlintModel(
        predictor=TwoStepPredictor(),
        tap_names=["body.1", "body"],
        attributes=ConcatAttributes(),
        interpreter=nn.Linear(4, 3),
        decoder=nn.Sequential(nn.Linear(4, 16), nn.Unflatten(1, (1, 4, 4))),
    )


def test_any_predictor_is_tapped_by_module_name():
    model = custom_model()
    x = torch.randn(5, 1, 4, 4)
    out = model(x, reconstruct=True)
    # Independent computation: run the layers by hand.
    linear = model.predictor.body[1](x.flatten(1))
    hidden = torch.relu(linear)
    expected_phi = torch.relu(model.attributes.fc(torch.cat([linear, hidden], dim=1)))
    torch.testing.assert_close(out.f_logits, model.predictor.head(hidden))
    torch.testing.assert_close(out.attributes, expected_phi)
    torch.testing.assert_close(out.g_logits, model.interpreter(expected_phi))
    assert out.reconstruction.shape == (5, 1, 4, 4)
    assert model(x).reconstruction is None


def test_forward_leaves_no_hooks_and_early_stop_matches():
    model = custom_model()
    x = torch.randn(3, 1, 4, 4)
    full = model(x).attributes
    torch.testing.assert_close(model.attribute_activations(x), full)
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks


def test_unknown_or_repeated_taps_are_clear_errors():
    with pytest.raises(ArchitectureError, match="no module named 'nope'"):
        FlintModel(TwoStepPredictor(), ["nope"], ConcatAttributes(), nn.Linear(4, 3), nn.Identity())

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 4)

        def forward(self, x):
            return self.layer(self.layer(x))

    model = FlintModel(Twice(), ["layer"], nn.Identity(), nn.Linear(4, 2), nn.Identity())
    with pytest.raises(ArchitectureError, match="ran twice"):
        model.run_predictor(torch.randn(1, 4))


@pytest.mark.parametrize(
    "name, num_attributes, tap_shapes",
    [("lenet", 25, [(32, 14, 14)]), ("resnet18", 24, [(256, 7, 7), (512, 4, 4)])],
)
def test_registered_architectures_have_the_papers_shapes(name, num_attributes, tap_shapes):
    model = build_model(name).eval()
    x = torch.rand(2, 1, 28, 28)
    taps, logits = model.run_predictor(x)
    assert [tuple(t.shape[1:]) for t in taps] == tap_shapes
    out = model(x, reconstruct=True)
    assert out.f_logits.shape == (2, 10) and out.g_logits.shape == (2, 10)
    assert out.attributes.shape == (2, num_attributes) and model.num_attributes == num_attributes
    assert out.reconstruction.shape == (2, 1, 28, 28) and bool((out.reconstruction >= 0).all())
    # h is linear with a bias: g_logits = W φ + b
    torch.testing.assert_close(out.g_logits, out.attributes @ model.interpreter.weight.T + model.interpreter.bias)
    torch.testing.assert_close(AttributeHead(model)(x), out.attributes)


def test_every_relu_of_the_predictor_is_a_distinct_module():
    # GuidedBackprop overrides nn.ReLU modules only; a module used twice would be guided once.
    for name in ARCHITECTURES:
        model = build_model(name)
        relus = [m for m in model.predictor.modules() if isinstance(m, nn.ReLU)]
        calls = []
        handles = [m.register_forward_hook(lambda m, i, o: calls.append(id(m))) for m in relus]
        model.predictor(torch.rand(1, 1, 28, 28))
        for handle in handles:
            handle.remove()
        assert len(calls) == len(set(calls)) == len(relus)


def test_attribute_activation_kwarg_and_defaults():
    assert resolve_architecture_kwargs("lenet", {})["attribute_activation"] == "leaky_relu"
    assert resolve_architecture_kwargs("resnet18", {})["attribute_activation"] == "relu"
    model = build_model("lenet", {"attribute_activation": "relu", "num_attributes": 7})
    assert isinstance(model.attributes.output_activation, nn.ReLU) and model.num_attributes == 7
    with pytest.raises(ArchitectureError, match="unknown architecture"):
        build_model("vgg")
    with pytest.raises(ArchitectureError, match="invalid arguments"):
        resolve_architecture_kwargs("lenet", {"depth": 3})
    with pytest.raises(ArchitectureError, match="unknown attribute activation"):
        build_model("lenet", {"attribute_activation": "tanh"})
