"""Relevance, pair selection, MAS, attribution, decoder ablation and AM+PI against independent computations."""

import pytest
import torch
from torch import nn

from flint_analysis.am_pi import AmPiConfig, am_pi, boundedness, total_variation
from flint_analysis.attribution import attribute_inputs
from flint_analysis.models import default_attribution
from flint_analysis.decoder_ablation import decoder_ablation
from flint_analysis.inference import ForwardPass
from flint_analysis.mas import max_activating_samples
from flint_analysis.models import AttributeHead, FlintModel
from flint_analysis.relevance import class_attribute_relevance, sample_relevance, select_pairs
from tests.conftest import tiny_checkpoint


def random_pass(n=40, j=5, c=4, seed=0) -> ForwardPass:
    g = torch.Generator().manual_seed(seed)
    attributes = torch.randn(n, j, generator=g)
    g_logits = torch.randn(n, c, generator=g)
    g_logits[:, 3] -= 100  # class 3 is never predicted
    return ForwardPass(torch.arange(100, 100 + n), torch.randint(0, c, (n,), generator=g),
                       torch.randn(n, c, generator=g), attributes, g_logits)


def test_relevance_and_pairs_match_a_brute_force_loop():
    fp = random_pass()
    weight = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    predicted = fp.g_predictions
    r = sample_relevance(fp.attributes, weight, predicted)
    sums = [[0.0] * 5 for _ in range(4)]
    counts = [0] * 4
    for x in range(len(fp)):
        c = int(predicted[x])
        alphas = [float(fp.attributes[x, j]) * float(weight[c, j]) for j in range(5)]
        top = max(abs(a) for a in alphas)
        for j in range(5):
            assert float(r[x, j]) == pytest.approx(alphas[j] / top, abs=1e-6)
            sums[c][j] += alphas[j] / top
        counts[c] += 1
    global_r = class_attribute_relevance(r, predicted, 4)
    assert global_r.counts.tolist() == counts and counts[3] == 0
    assert global_r.never_predicted == [3]
    for c in range(4):
        for j in range(5):
            expected = sums[c][j] / counts[c] if counts[c] else 0.0
            assert float(global_r.relevance[c, j]) == pytest.approx(expected, abs=1e-6)
    assert not torch.isnan(global_r.relevance).any()
    pairs = select_pairs(global_r, weight, threshold=0.1)
    expected_pairs = sorted(
        [(c, j) for c in range(4) for j in range(5) if counts[c] and sums[c][j] / counts[c] > 0.1],
        key=lambda p: (p[0], -sums[p[0]][p[1]] / counts[p[0]]),
    )
    assert [(p.class_index, p.attribute) for p in pairs] == expected_pairs
    assert [p.direction for p in pairs] == [1 if float(weight[p.class_index, p.attribute]) >= 0 else -1 for p in pairs]
    assert select_pairs(global_r, weight, threshold=2.0) == []
    assert all(p.class_index == 1 for p in select_pairs(global_r, weight, 0.1, classes=[1]))


def test_relevance_of_a_sample_with_no_contribution_is_zero_not_nan():
    r = sample_relevance(torch.zeros(2, 3), torch.ones(2, 3), torch.tensor([0, 1]))
    assert torch.equal(r, torch.zeros(2, 3))


@pytest.mark.parametrize("class_by", ["prediction", "label"])
def test_mas_match_sorting_by_hand(class_by):
    fp = random_pass(n=60, seed=3)
    weight = torch.randn(4, 5)
    global_r = class_attribute_relevance(sample_relevance(fp.attributes, weight, fp.g_predictions), fp.g_predictions, 4)
    pairs = select_pairs(global_r, weight, threshold=-1.0)  # every pair of a predicted class
    assert {p.direction for p in pairs} == {1, -1}
    classes = fp.g_predictions if class_by == "prediction" else fp.labels
    for mas in max_activating_samples(fp, pairs, n=3, class_by=class_by):
        c, j, s = mas.pair.class_index, mas.pair.attribute, mas.pair.direction
        members = [(float(fp.attributes[x, j]), int(fp.indices[x])) for x in range(len(fp)) if int(classes[x]) == c]
        expected = sorted(members, key=lambda item: -s * item[0])[:3]  # most negative first when s = -1
        assert mas.indices.tolist() == [index for _, index in expected]
        assert mas.activations.tolist() == pytest.approx([value for value, _ in expected])


def test_captum_gradient_equals_autograd():
    model = tiny_checkpoint().model
    x = torch.rand(4, 1, 28, 28)
    targets = torch.tensor([0, 3, 5, 3])
    maps = attribute_inputs(model, x, targets, method="gradient").maps
    for b in range(4):
        xb = x[b : b + 1].clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(model(xb).attributes[0, targets[b]], xb)
        torch.testing.assert_close(maps[b : b + 1], expected)
    negated = attribute_inputs(model, x, targets, torch.tensor([1, -1, 1, -1]), method="gradient").maps
    torch.testing.assert_close(negated, maps * torch.tensor([1.0, -1.0, 1.0, -1.0]).view(4, 1, 1, 1))
    assert default_attribution("lenet") == "gradient"
    assert default_attribution("resnet18") == "guided-backprop"


def two_layer_relu_model() -> FlintModel:
    torch.manual_seed(0)
    predictor = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 7), nn.ReLU(), nn.Linear(7, 3))
    return FlintModel(predictor, ["3"], _FirstTap(nn.Linear(7, 4)), nn.Linear(4, 3), nn.Linear(4, 6))


class _FirstTap(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, taps):
        return self.layer(taps[0])


def test_guided_backprop_equals_the_hand_written_guided_rule_and_leaves_the_model_untouched():
    model = two_layer_relu_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(5, 6)
    targets = torch.tensor([0, 1, 2, 3, 1])
    maps = attribute_inputs(model, x, targets, method="guided-backprop").maps
    lin1, lin2, phi = model.predictor[0], model.predictor[2], model.attributes.layer
    for b in range(5):
        z1 = lin1(x[b])
        z2 = lin2(torch.relu(z1))
        grad = phi.weight[targets[b]]  # ∂φ_j/∂(tap)
        grad = (z2 > 0) * grad.clamp(min=0)  # guided rule through ReLU 2
        grad = lin2.weight.T @ grad
        grad = (z1 > 0) * grad.clamp(min=0)  # guided rule through ReLU 1
        torch.testing.assert_close(maps[b], (lin1.weight.T @ grad).detach())
    plain = attribute_inputs(model, x, targets, method="gradient").maps
    assert not torch.allclose(plain, maps)  # the guided rule did something
    assert model.training
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
        assert not getattr(module, "_backward_pre_hooks", {})
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_decoder_ablation_zeroes_exactly_attribute_j():
    model = tiny_checkpoint().model
    phi = torch.rand(3, 6) + 0.5
    targets = torch.tensor([2, 0, 5])
    seen = []
    handle = model.decoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    result = decoder_ablation(model, None, targets, attributes=phi)
    handle.remove()
    original, ablated = seen
    torch.testing.assert_close(original, phi)
    changed = torch.nonzero(original != ablated).tolist()
    assert changed == [[0, 2], [1, 0], [2, 5]]
    assert bool((ablated[torch.arange(3), targets] == 0).all())
    torch.testing.assert_close(result.with_attribute, model.decoder(phi))
    torch.testing.assert_close(result.difference, result.with_attribute - result.without_attribute)


def test_total_variation_and_boundedness_follow_their_formulas():
    images = torch.randn(3, 2, 4, 5)
    tv = total_variation(images)
    bo = boundedness(images, 0.0, 1.0)
    for b in range(3):
        vertical = [abs(float(images[b, c, i + 1, k] - images[b, c, i, k])) for c in range(2) for i in range(3) for k in range(5)]
        horizontal = [abs(float(images[b, c, i, k + 1] - images[b, c, i, k])) for c in range(2) for i in range(4) for k in range(4)]
        assert float(tv[b]) == pytest.approx(sum(vertical) / len(vertical) + sum(horizontal) / len(horizontal), rel=1e-5)
        pixels = images[b].flatten().tolist()
        assert float(bo[b]) == pytest.approx(sum(abs(v) for v in pixels if v < 0 or v > 1) / len(pixels), rel=1e-5)
    assert float(boundedness(torch.full((1, 1, 2, 2), 0.5))[0]) == 0.0
    assert float(total_variation(torch.ones(1, 1, 3, 3))[0]) == 0.0


def test_batched_am_pi_equals_single_image_runs():
    model = tiny_checkpoint(seed=2).model.double()
    head = AttributeHead(model)
    samples = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    targets = torch.tensor([1, 4, 1, 0])
    config = AmPiConfig(steps=60, halve_every=20)  # crosses two learning-rate halvings
    batched = am_pi(head, samples, targets, config=config)
    chunked = am_pi(head, samples, targets, config=config, batch_size=3)
    for b in range(4):
        single = am_pi(head, samples[b : b + 1], targets[b : b + 1], config=config)
        torch.testing.assert_close(batched.images[b : b + 1], single.images, rtol=0, atol=1e-10)
        torch.testing.assert_close(batched.final_activation[b], single.final_activation[0], rtol=0, atol=1e-10)
    torch.testing.assert_close(chunked.images, batched.images, rtol=0, atol=1e-10)
    # The recorded activations are φ_j at 0.1·x and at the output.
    with torch.no_grad():
        torch.testing.assert_close(batched.initial_activation, head(0.1 * samples)[torch.arange(4), targets])
        torch.testing.assert_close(batched.final_activation, head(batched.images)[torch.arange(4), targets])
    assert torch.equal(batched.raised, batched.final_activation > batched.initial_activation)
    assert all(p.grad is None for p in model.parameters()) and not model.training


def test_am_pi_ascends_a_linear_attribute_at_the_expected_rate():
    # φ(x) = <w, x>: without TV/Bo each Adam step moves every pixel by ≈ lr·sign(w) (its first steps exactly).
    w = torch.randn(1, 1, 3, 3, dtype=torch.float64)
    head = nn.Sequential(nn.Flatten(), nn.Linear(9, 1, bias=False)).double()
    head[1].weight.data = w.flatten().unsqueeze(0)
    config = AmPiConfig(mode="soft", lambda_tv=0.0, lambda_bo=0.0, steps=1, init_scale=1.0)  # soft: x may leave [0, 1]
    x = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    result = am_pi(head, x, torch.tensor([0]), config=config)
    torch.testing.assert_close(result.images, 0.05 * torch.sign(w), rtol=0, atol=1e-6)
    assert bool(result.raised[0]) and float(result.gain[0]) == pytest.approx(0.05 * float(w.abs().sum()), rel=1e-5)
    down = am_pi(head, x, torch.tensor([0]), torch.tensor([-1.0]), config=config)
    torch.testing.assert_close(down.images, -0.05 * torch.sign(w), rtol=0, atol=1e-6)
    assert bool(down.raised[0]) and float(down.final_activation[0]) < 0
