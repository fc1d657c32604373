"""Common tests over every registry entry (as scikit-learn's ``test_common.py``).

Every attribution method against an independent autograd computation, and every report writer's JSON
keys against docs/report-schemas.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from flint_analysis.attribution import ATTRIBUTION_METHODS, attribute_inputs
from flint_analysis.cli import main
from flint_analysis.models import build_model

ROOT = Path(__file__).resolve().parent.parent


def _tiny(architecture: str):
    torch.manual_seed(0)
    return build_model(architecture, {"num_attributes": 5}).eval()


def _gradients(model, x: torch.Tensor, targets: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """∂(s_b φ_{j_b})/∂x_b by plain autograd, one sample at a time."""
    grads = []
    for b in range(x.shape[0]):
        xb = x[b : b + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(signs[b] * model(xb).attributes[0, targets[b]], xb)
        grads.append(grad)
    return torch.cat(grads)


def _integrated_gradients(model, x, targets, signs, n_steps: int, baseline: float) -> torch.Tensor:
    """Integrated gradients by Gauss–Legendre quadrature on [0, 1] (the rule Captum uses by default)."""
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    alphas, weights = (nodes + 1) / 2, weights / 2
    start = torch.full_like(x, baseline)
    total = torch.zeros_like(x)
    for alpha, weight in zip(alphas, weights):
        total += float(weight) * _gradients(model, start + float(alpha) * (x - start), targets, signs)
    return total * (x - start)


def _expected(method: str, model, x, targets, signs, settings: dict) -> torch.Tensor | None:
    if method == "gradient":
        return _gradients(model, x, targets, signs)
    if method == "input-x-gradient":
        return x * _gradients(model, x, targets, signs)
    if method == "integrated-gradients":
        return _integrated_gradients(model, x, targets, signs, settings["n_steps"], settings["baseline"])
    return None  # guided backprop: checked against the hand-written guided rule in test_interpretation_steps


@pytest.mark.parametrize("architecture", ["lenet", "resnet18"])
@pytest.mark.parametrize("method", list(ATTRIBUTION_METHODS))
def test_every_attribution_method_matches_an_independent_computation(method, architecture):
    model = _tiny(architecture).double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    targets = torch.tensor([0, 4])
    signs = torch.tensor([1.0, -1.0], dtype=torch.float64)
    overrides = {"n_steps": 6} if "n_steps" in ATTRIBUTION_METHODS[method].settings else {}  # keeps the reference loop short
    result = attribute_inputs(model, x, targets, signs, method=method, **overrides)
    assert result.maps.shape == x.shape and bool(torch.isfinite(result.maps).all())
    assert result.method == method and dict(result.settings) == {**ATTRIBUTION_METHODS[method].settings, **overrides}
    expected = _expected(method, model, x, targets, signs, dict(result.settings))
    if expected is not None:
        torch.testing.assert_close(result.maps, expected, rtol=1e-6, atol=1e-9)
    assert not model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks


def test_attribution_settings_are_used_and_checked():
    model = _tiny("lenet").double()
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    targets, signs = torch.tensor([1, 3]), torch.ones(2, dtype=torch.float64)
    result = attribute_inputs(model, x, targets, method="integrated-gradients", n_steps=7, baseline=0.25)
    assert dict(result.settings) == {"n_steps": 7, "baseline": 0.25}
    torch.testing.assert_close(result.maps, _integrated_gradients(model, x, targets, signs, 7, 0.25), rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="has no setting 'n_steps'"):
        attribute_inputs(model, x, targets, method="gradient", n_steps=3)
    with pytest.raises(ValueError, match="n_steps must be an integer"):
        attribute_inputs(model, x, targets, method="integrated-gradients", n_steps=0)


# ---- report JSON keys against docs/report-schemas.md ----------------------------------------------

def _documented_fields() -> dict[str, set[str]]:
    """Section JSON name → the field names in the first column of its table (shared ones under '*')."""
    sections: dict[str, set[str]] = {"*": set()}
    current = "*"
    for line in (ROOT / "docs" / "report-schemas.md").read_text().splitlines():
        heading = re.match(r"## `([a-z.]+)`", line)
        if heading:
            current = heading.group(1)
            sections[current] = set()
        elif line.startswith("## "):  # another section (e.g. the checkpoint's fields): not a report's
            current = "other"
            sections[current] = set()
        elif line.startswith("| `"):
            first = line.split("|")[1]
            sections[current].update(re.findall(r"`([^`]+)`", first))
    return sections


def _top_level(names: set[str]) -> set[str]:
    return {re.split(r"[.\[]", name)[0] for name in names}


@pytest.fixture(scope="module")
def reports(mnist5k_checkpoint, tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("reports")
    fast = ["--quiet", "--am-pi-steps", "2"]
    assert main(["global", str(mnist5k_checkpoint), "-o", str(out / "global"), "--subset-size", "100", "--threshold", "0",
                 "--mas", "1", *fast]) == 0
    assert main(["local", str(mnist5k_checkpoint), "--index", "0", "-o", str(out / "local"), "--global-dir", str(out / "global"),
                 *fast]) == 0
    assert main(["metrics", str(mnist5k_checkpoint), "-o", str(out / "metrics"), "--quiet"]) == 0
    assert main(["disagreement", str(mnist5k_checkpoint), "-o", str(out / "disagreement"), "--agreeing", "5",
                 "--depth-directions", "50", "--depth-rounds", "2", "--quiet"]) == 0
    local_folder = next(p for p in (out / "local").iterdir() if p.is_dir())
    return {
        "global.json": json.loads((out / "global" / "global.json").read_text()),
        "report.json": json.loads((local_folder / "report.json").read_text()),
        "metrics.json": json.loads((out / "metrics" / "metrics.json").read_text()),
        "disagreement.json": json.loads((out / "disagreement" / "disagreement.json").read_text()),
    }


@pytest.mark.parametrize("name", ["global.json", "report.json", "metrics.json", "disagreement.json"])
def test_every_report_json_key_is_documented_and_every_documented_key_is_written(reports, name):
    documented = _documented_fields()
    data = reports[name]
    shared = _top_level(documented["*"])
    own = _top_level(documented[name])
    assert set(data) - shared - own == set(), f"{name} writes keys that docs/report-schemas.md does not document"
    assert (own | shared) - set(data) == set(), f"docs/report-schemas.md documents keys that {name} does not write"
    for dotted in documented[name]:
        parts = dotted.split(".")
        if len(parts) == 2 and "[" not in dotted and isinstance(data.get(parts[0]), dict):
            assert parts[1] in data[parts[0]], f"{name}: documented {dotted} is missing"
