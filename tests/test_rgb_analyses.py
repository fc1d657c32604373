"""RGB, normalised inputs through every analysis: AM+PI's box, colour figures, attribution, projection depth, --image.

The model normalises its own input (``FlintModel.set_input_normalization``), so every analysis works on the data's
[0, 1] pixels; these tests check that this holds on a 3-channel ImageFolder with per-channel statistics.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flint_analysis.am_pi import AmPiConfig, am_pi
from flint_analysis.checkpoint import load_checkpoint
from flint_analysis.cli import main as analyze_main
from flint_analysis.models import build_model, resolve_architecture_kwargs
from flint_analysis.training.cli import main as train_main

COLOURS = np.array([[230, 40, 40], [40, 200, 60], [50, 70, 220]], dtype=np.uint8)  # one colour per class


def colour_tree(root: Path, per_class: int = 16, size: int = 28) -> None:
    """3 classes of noisy images with a square of the class's colour, in train/ (3/4) and test/ (1/4)."""
    rng = np.random.default_rng(0)
    for k, colour in enumerate(COLOURS):
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            top, left = rng.integers(2, size - 12, 2)
            pixels[top : top + 10, left : left + 10] = colour
            folder = root / ("train" if i < per_class * 3 // 4 else "test") / f"class{k}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / f"{i:02d}.png")


def test_bounded_am_pi_on_a_normalised_rgb_model_stays_in_the_normalised_data_range():
    torch.manual_seed(0)
    kwargs = resolve_architecture_kwargs("lenet", {"num_classes": 3, "in_channels": 3, "num_attributes": 4})
    model = build_model("lenet", kwargs).eval()
    mean, std = torch.tensor([0.6, 0.3, 0.1]), torch.tensor([0.2, 0.25, 0.1])
    model.set_input_normalization({"mean": mean.tolist(), "std": std.tolist()})
    samples = torch.rand(6, 3, 28, 28)
    with torch.no_grad():  # the model's Φ is that of f on (x − mean)/std, computed here by hand
        taps, _ = model.run_predictor(samples)
        manual = model.attributes([model.predictor.features((samples - mean[:, None, None]) / std[:, None, None])])
    torch.testing.assert_close(model.attributes(taps), manual)
    attributes = torch.arange(6) % 4
    result = am_pi(model, samples, attributes, config=AmPiConfig(steps=40, target_ratio=0))  # bounded, never stopped early
    assert result.images.min() >= 0.0 and result.images.max() <= 1.0
    normalised = (result.images - mean[:, None, None]) / std[:, None, None]
    for c in range(3):  # the per-channel normalised range [(0 − m_c)/s_c, (1 − m_c)/s_c]
        assert float(normalised[:, c].min()) >= float(-mean[c] / std[c]) - 1e-5
        assert float(normalised[:, c].max()) <= float((1 - mean[c]) / std[c]) + 1e-5
    assert bool((result.final_activation > result.initial_activation).any())


@pytest.fixture(scope="module")
def rgb_checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rgb")
    colour_tree(root / "images")
    output = root / "rgb.pt"
    assert train_main(["--dataset", f"imagefolder:{root / 'images'}", "--architecture", "lenet", "--preset", "demo",
                       "--epochs", "4", "--interpretability-start-epoch", "0", "--num-attributes", "6", "--seed", "0", "--quiet", "-o", str(output)]) == 0
    return output


def is_colour(png: Path) -> bool:
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return bool((np.abs(pixels[..., 0] - pixels[..., 1]) > 8).any())


def test_every_analysis_runs_on_rgb_and_draws_in_colour(rgb_checkpoint, tmp_path, capsys):
    checkpoint = load_checkpoint(rgb_checkpoint)
    normalization = checkpoint.dataset.normalization
    assert checkpoint.dataset.input_shape == (3, 28, 28) and len(normalization["mean"]) == 3
    assert normalization["mean"][0] != normalization["mean"][2]  # per-channel statistics

    out = tmp_path / "global"
    assert analyze_main(["global", str(rgb_checkpoint), "-o", str(out), "--threshold", "0", "--mas-per-pair", "2",
                         "--am-pi-steps", "20", "--quiet"]) == 0
    data = json.loads((out / "global.json").read_text())
    assert data["pairs"]
    with np.load(out / "arrays.npz") as arrays:
        assert arrays["am_pi_images"].shape[1:] == (3, 28, 28)
        assert arrays["am_pi_images"].min() >= 0.0 and arrays["am_pi_images"].max() <= 1.0
        assert arrays["mas_images"].shape[1:] == (3, 28, 28)
    tiles = {kind: out / path for pair in data["pairs"] for m in pair["mas"] for kind, path in m["tiles"].items()}
    assert is_colour(tiles["mas"]) and is_colour(tiles["am_pi"])

    photo = np.zeros((40, 30, 3), np.uint8)  # another size: --resize; colour for a colour model: kept as it is
    photo[10:25, 5:20] = COLOURS[1]
    Image.fromarray(photo).save(tmp_path / "photo.png")
    assert analyze_main(["local", str(rgb_checkpoint), "-o", str(tmp_path / "local"), "--index", "0", "--image",
                         str(tmp_path / "photo.png"), "--resize", "--am-pi-steps", "10", "--relevance-threshold", "0", "--quiet"]) == 0
    assert "resized from 30×40 to the model's 28×28" in capsys.readouterr().err
    with np.load(tmp_path / "local" / "image-photo" / "arrays.npz") as arrays:
        assert arrays["input"].shape == (3, 28, 28)
        assert arrays["am_pi"].shape[1:] == (3, 28, 28) and arrays["attribution"].shape[1:] == (3, 28, 28)  # every channel kept
        assert 0.0 <= arrays["am_pi"].min() and arrays["am_pi"].max() <= 1.0
    assert is_colour(tmp_path / "local" / "image-photo" / "input.png")

    assert analyze_main(["disagreement", str(rgb_checkpoint), "-o", str(tmp_path / "disagreement"), "--agreeing", "3",
                         "--depth-directions", "50", "--depth-rounds", "2", "--pca-components", "2", "--quiet"]) == 0
    assert analyze_main(["metrics", str(rgb_checkpoint), "-o", str(tmp_path / "metrics"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "metrics" / "metrics.json").read_text())  # 3 classes: k = 2 and ks 1 2 by default
    assert json.loads((tmp_path / "disagreement" / "disagreement.json").read_text())["k"] == 2
    assert metrics["models"][0]["metrics"]["accuracy_f"] > 100 / 3  # % above chance: f learnt the coloured squares
