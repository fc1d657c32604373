"""g's logit split into h's bias and the attributes' contributions α_j = φ_j w_{j,c}, and the contrast Δ_j.

Checked against the model's own forward pass (g's logits) and against brute-force loops over j.
"""

import pytest
import torch
from torch import nn

from tests.conftest import tiny_checkpoint
from flint_analysis.relevance import logit_decomposition, runner_up_classes, sample_relevance


def forward(seed: int = 3):
    model = tiny_checkpoint(seed=seed, num_attributes=6).model.double()
    with torch.no_grad():
        nn.init.normal_(model.interpreter.bias, std=0.5)  # a visible bias, so that leaving it out would show
        x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        out = model(x)
    return model, out


def test_the_decomposition_sums_to_gs_logit_and_the_contrast_to_the_logit_gap():
    model, out = forward()
    w, b = model.interpreter.weight.detach(), model.interpreter.bias.detach()
    explained = torch.tensor([0, 3, 9, 4, 4])
    contrast = torch.tensor([1, 0, 2, 7, 5])
    d = logit_decomposition(out.attributes, w, b, explained, contrast)
    for n in range(5):
        c, k = int(explained[n]), int(contrast[n])
        alpha = [float(out.attributes[n, j]) * float(w[c, j]) for j in range(6)]  # brute force, one product at a time
        alpha_k = [float(out.attributes[n, j]) * float(w[k, j]) for j in range(6)]
        assert d.contributions[n].tolist() == pytest.approx(alpha, rel=1e-12, abs=1e-15)
        assert d.contrast_contributions[n].tolist() == pytest.approx(alpha_k, rel=1e-12, abs=1e-15)
        assert float(d.bias[n]) == float(b[c]) and float(d.contrast_bias[n]) == float(b[k])
        # the model's own forward: h(Φ(x))_c = b_c + Σ_j α_j
        assert float(d.logit[n]) == pytest.approx(float(out.g_logits[n, c]), abs=1e-10)
        assert float(b[c]) + sum(alpha) == pytest.approx(float(out.g_logits[n, c]), abs=1e-10)
        assert float(d.contrast_logit[n]) == pytest.approx(float(out.g_logits[n, k]), abs=1e-10)
        delta = [float(out.attributes[n, j]) * (float(w[c, j]) - float(w[k, j])) for j in range(6)]
        assert d.difference[n].tolist() == pytest.approx(delta, rel=1e-9, abs=1e-12)
        assert float(d.bias_difference[n]) == pytest.approx(float(b[c] - b[k]), abs=1e-12)
        gap = float(out.g_logits[n, c] - out.g_logits[n, k])
        assert float(d.logit_difference[n]) == pytest.approx(gap, abs=1e-10)
        assert float(b[c] - b[k]) + sum(delta) == pytest.approx(gap, abs=1e-10)
        scale = max(abs(a) for a in alpha)
        assert d.relevance[n].tolist() == pytest.approx([a / scale for a in alpha], rel=1e-9)
    assert torch.equal(d.relevance, sample_relevance(out.attributes, w, explained))
    one = d.select(2)
    assert one.contributions.shape == (1, 6) and float(one.logit[0]) == pytest.approx(float(out.g_logits[2, 9]), abs=1e-10)


def test_in_float32_the_decomposition_matches_the_forward_to_rounding():
    model = tiny_checkpoint(seed=1, num_attributes=6).model
    with torch.no_grad():
        out = model(torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    c = out.g_logits.argmax(1)
    d = logit_decomposition(out.attributes, model.interpreter.weight.detach(), model.interpreter.bias.detach(), c,
                            runner_up_classes(out.g_logits, c))
    assert torch.allclose(d.logit, out.g_logits[torch.arange(4), c], atol=1e-5)
    assert torch.allclose(d.logit_difference, out.g_logits[torch.arange(4), c] - out.g_logits[torch.arange(4), d.contrast_class], atol=1e-5)


def test_without_a_bias_the_contributions_alone_make_the_logit():
    phi = torch.tensor([[1.0, -2.0, 0.5]])
    w = torch.tensor([[1.0, 1.0, 2.0], [0.0, -1.0, 4.0]])
    d = logit_decomposition(phi, w, None, torch.tensor([0]), torch.tensor([1]))
    assert d.contributions.tolist() == [[1.0, -2.0, 1.0]] and d.contrast_contributions.tolist() == [[0.0, 2.0, 2.0]]
    assert float(d.logit[0]) == 0.0 and float(d.contrast_logit[0]) == 4.0
    assert d.difference.tolist() == [[1.0, -4.0, -1.0]] and float(d.logit_difference[0]) == -4.0
    assert d.relevance.tolist() == [[0.5, -1.0, 0.5]]


def test_the_contrast_class_is_the_runner_up_or_gs_prediction():
    logits = torch.tensor([[0.1, 3.0, 2.0, -1.0], [5.0, 1.0, 4.0, 4.5], [0.0, 0.0, 1.0, 2.0]])
    # explaining g's prediction: the second largest logit; explaining another class: g's prediction
    assert runner_up_classes(logits, torch.tensor([1, 0, 3])).tolist() == [2, 3, 2]
    assert runner_up_classes(logits, torch.tensor([3, 2, 0])).tolist() == [1, 0, 3]
    for n in range(3):
        for c in range(4):
            order = sorted(range(4), key=lambda k: -float(logits[n, k]))
            expected = order[1] if order[0] == c else order[0]
            assert int(runner_up_classes(logits[n : n + 1], torch.tensor([c]))[0]) == expected
