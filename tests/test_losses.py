import math

import pytest
import torch

from flint_analysis.models import FlintOutput
from flint_analysis.training.config import LossWeights, TrainingConfig
from flint_analysis.training.losses import (
    conciseness_entropy,
    diversity_entropy,
    flint_loss,
    input_fidelity_loss,
    l1_norm,
    output_fidelity_loss,
    real_entropy,
)


def softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def entropy(values):
    return -sum(p * math.log(p) for p in softmax(values))


PHI = [[0.5, -0.2, 2.0], [0.0, 1.5, 0.3]]
F_LOGITS = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]
G_LOGITS = [[1.0, 0.0, 0.0], [-0.5, 2.0, 1.0]]


def test_real_entropy_matches_its_definition():
    assert float(real_entropy(torch.tensor([1.0, 2.0, 3.0]))) == pytest.approx(entropy([1, 2, 3]), abs=1e-6)
    assert float(real_entropy(torch.zeros(4))) == pytest.approx(math.log(4), abs=1e-6)
    batch = real_entropy(torch.tensor(PHI))
    assert batch.tolist() == pytest.approx([entropy(row) for row in PHI], abs=1e-6)


def test_output_fidelity_is_soft_target_cross_entropy_with_f_detached():
    f = torch.tensor(F_LOGITS, requires_grad=True)
    g = torch.tensor(G_LOGITS, requires_grad=True)
    loss = output_fidelity_loss(g, f)
    expected = 0.0
    for f_row, g_row in zip(F_LOGITS, G_LOGITS):
        expected -= sum(p * math.log(q) for p, q in zip(softmax(f_row), softmax(g_row)))
    assert float(loss.detach()) == pytest.approx(expected / 2, abs=1e-6)
    loss.backward()
    assert f.grad is None  # f's output is a fixed target
    assert g.grad is not None and float(g.grad.abs().sum()) > 0


def test_input_fidelity_is_per_pixel_mean_squared_error():
    x = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])
    r = torch.tensor([[[[0.5, 1.0], [0.0, 0.25]]]])
    assert float(input_fidelity_loss(r, x)) == pytest.approx((0.25 + 0 + 0.25 + 0) / 4)


def test_entropies_and_l1_use_absolute_attributes():
    phi = torch.tensor(PHI)
    abs_rows = [[abs(v) for v in row] for row in PHI]
    assert float(conciseness_entropy(phi)) == pytest.approx(sum(entropy(r) for r in abs_rows) / 2, abs=1e-6)
    mean_row = [(a + b) / 2 for a, b in zip(*abs_rows)]
    assert float(diversity_entropy(phi)) == pytest.approx(entropy(mean_row), abs=1e-6)
    assert float(l1_norm(phi, "sum")) == pytest.approx((2.7 + 1.8) / 2)
    assert float(l1_norm(phi, "mean")) == pytest.approx((2.7 + 1.8) / 6)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_flint_loss_combines_the_terms_as_algorithm_1(reduction):
    torch.manual_seed(0)
    images = torch.rand(2, 1, 2, 2)
    labels = torch.tensor([0, 2])
    output = FlintOutput(torch.tensor(F_LOGITS), torch.tensor(PHI), torch.tensor(G_LOGITS), torch.rand(2, 1, 2, 2))
    w = LossWeights(beta=0.5, gamma=0.8, delta=0.2, zeta=1.0, mu=2.0, eta=0.5)
    terms = flint_loss(output, images, labels, w, reduction)
    pred = -(math.log(softmax(F_LOGITS[0])[0]) + math.log(softmax(F_LOGITS[1])[2])) / 2
    assert float(terms.prediction) == pytest.approx(pred, abs=1e-6)
    abs_rows = [[abs(v) for v in row] for row in PHI]
    l1 = sum(sum(r) for r in abs_rows) / 2 / (1 if reduction == "sum" else 3)
    cd = 1.0 * (sum(entropy(r) for r in abs_rows) / 2 - 2.0 * entropy([(a + b) / 2 for a, b in zip(*abs_rows)])) + 0.5 * l1
    assert float(terms.conciseness_diversity) == pytest.approx(cd, abs=1e-5)
    mse = float(((output.reconstruction - images) ** 2).mean())
    expected = pred + 0.5 * float(terms.output_fidelity) + 0.8 * mse + 0.2 * cd
    assert float(terms.total) == pytest.approx(expected, abs=1e-5)


def test_schedule_follows_algorithm_1_epoch_by_epoch():
    config = TrainingConfig()  # the paper's MNIST values
    schedule = config.schedule()
    assert len(schedule) == 12
    assert schedule[0] == schedule[1] == LossWeights(gamma=0.8)
    assert schedule[2] == LossWeights(beta=0.5, gamma=0.8, delta=0.2, eta=0.5)  # no entropy yet
    for epoch in range(3, 12):
        assert schedule[epoch] == LossWeights(beta=0.5, gamma=0.8, delta=0.2, zeta=1.0, mu=1.0, eta=0.5)
    assert all(w == LossWeights() for w in TrainingConfig(baseline=True).schedule())
    shifted = TrainingConfig(interpretability_start_epoch=1, entropy_start_epoch=4, epochs=5).schedule()
    assert [w.beta for w in shifted] == [0, 0.5, 0.5, 0.5, 0.5]
    assert [w.zeta for w in shifted] == [0, 0, 0, 0, 1.0]
