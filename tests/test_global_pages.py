"""The global report's page and files: links and anchors resolve, tiles and arrays hold what the JSON says,
AM+PI is drawn on the data's fixed range, direction is marked, the overview shows most negative samples."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import torch
from PIL import Image

from flint_analysis.checkpoint import load_checkpoint
from flint_analysis.cli import main
from flint_analysis.global_interpretation import attribute_overview
from flint_analysis.inference import ForwardPass
from flint_analysis.plots.style import ImageTile, image_rgb
from flint_analysis.relevance import ClassAttributePair
from flint_analysis.report_writers import global_report
from tests.conftest import tiny_bundle


class _PageLinks(HTMLParser):
    """Every ``id``, ``href`` and ``src`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" and value:
                self.ids.append(value)
            if name in ("href", "src") and value is not None:
                self.targets.append(value)


def page_links(path: Path) -> _PageLinks:
    parser = _PageLinks()
    parser.feed(path.read_text())
    return parser


def read_png(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert(mode))


def broken_links(page: Path) -> list[str]:
    """The ``href``/``src`` of ``page`` that do not resolve: a missing file (relative to the page) or a missing ``#anchor``."""
    links = page_links(page)
    broken = []
    for target in links.targets:
        parts = urlsplit(target)
        assert not parts.scheme and not parts.netloc, f"{target}: a report page links only to its own files"
        file = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
        if not file.is_file():
            broken.append(target)
        elif parts.fragment:
            ids = links.ids if file == page else page_links(file).ids if file.suffix == ".html" else []
            if parts.fragment not in ids:
                broken.append(target)
    return broken


@pytest.fixture(scope="module")
def report(mnist5k_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("global-pages") / "global"
    assert main(["global", str(mnist5k_checkpoint), "-o", str(out), "--subset-size", "150", "--threshold", "0.05",
                 "--mas", "2", "--am-pi-steps", "3", "--quiet"]) == 0
    return out


def test_every_link_and_image_of_the_page_resolves_and_every_anchor_exists(report):
    data = json.loads((report / "global.json").read_text())
    assert data["pairs"], "threshold 0.05 must select pairs on this model"
    assert broken_links(report / "index.html") == []
    links = page_links(report / "index.html")
    assert len(links.ids) == len(set(links.ids)), "duplicate ids"
    for c in range(len(data["dataset"]["class_names"])):
        assert f"class-{c}" in links.ids
    for pair in data["pairs"]:
        assert pair["anchor"] == f"pair-c{pair['class']}-j{pair['attribute']}" and pair["anchor"] in links.ids
        assert f"#{pair['anchor']}" in links.targets
    tiles = [path for pair in data["pairs"] for m in pair["mas"] for path in m["tiles"].values()]
    assert tiles and set(tiles) <= set(links.targets)
    # The output-safety layout lists every file written: the folder can be replaced by the next run.
    assert global_report.LAYOUT.foreign_entries(report) == []
    assert sorted(p.name for p in (report / "tiles").iterdir()) == sorted(Path(t).name for t in tiles)


def test_the_page_states_its_result_explains_its_terms_and_marks_direction(report, mnist5k_checkpoint):
    data = json.loads((report / "global.json").read_text())
    html = (report / "index.html").read_text()
    classes = len({p["class"] for p in data["pairs"]})
    summary = data["am_pi_summary"]
    assert f"{len(data['pairs'])} class–attribute pairs over {classes} of 10 classes" in html
    assert f"in {summary['activated']} of {summary['runs']} runs" in html
    assert "How to read this page" in html and "not rescaled" in html
    for term in ("<dt>r<sub>j,c</sub></dt>", "<dt>MAS</dt>", "<dt>AM+PI</dt>", "<dt>attribution map</dt>", "<dt>d(Φ)</dt>",
                 "<dt>ablation</dt>", "<dt>difference map</dt>", "<dt>direction</dt>"):
        assert term in html
    # Direction: the sign of h's weight w_{j,c}, recomputed from the checkpoint; the pairs table says it in words.
    weight = load_checkpoint(mnist5k_checkpoint).model.interpreter.weight.detach()
    for pair in data["pairs"]:
        expected = 1 if float(weight[pair["class"], pair["attribute"]]) >= 0 else -1
        assert pair["direction"] == expected
        words = "via φ&lt;0" if expected < 0 else "via φ&gt;0"
        row = html.split(f"href=\"#{pair['anchor']}\">φ{pair['attribute']}</a></td>", 1)[1].split("</tr>", 1)[0]
        assert words in row
    # AM+PI outcome counts in the summary follow the runs' records, and each record follows its definition.
    records = [m["am_pi"] for p in data["pairs"] for m in p["mas"]]
    for outcome in ("activated", "saturated", "not_activated"):
        assert summary[outcome] == sum(r["outcome"] == outcome for r in records)
    saturation = data["parameters"]["am_pi"]["saturation_ratio"]
    for pair in data["pairs"]:
        for m in pair["mas"]:
            record, s = m["am_pi"], pair["direction"]
            assert record["reference_activation"] == pytest.approx(m["activation"], rel=1e-4, abs=1e-5)
            if s * record["reference_activation"] > 0:
                ratio = record["final_activation"] / record["reference_activation"]
                assert record["ratio"] == pytest.approx(ratio, rel=1e-5)
                expected = "saturated" if ratio > saturation else "activated" if ratio >= 1 else "not_activated"
                assert record["outcome"] == expected
            else:
                assert record["ratio"] is None


def test_arrays_and_tiles_hold_the_runs_of_the_json(report, mnist5k_checkpoint, mnist5k):
    data = json.loads((report / "global.json").read_text())
    arrays = np.load(report / data["arrays"])
    runs = [(p, k, pair, m) for p, pair in enumerate(data["pairs"]) for k, m in enumerate(pair["mas"])]
    assert arrays["run_pair"].tolist() == [p for p, *_ in runs] and arrays["run_mas"].tolist() == [k for _, k, *_ in runs]
    assert arrays["run_index"].tolist() == [m["index"] for *_, m in runs]
    assert arrays["run_attribute"].tolist() == [pair["attribute"] for _, _, pair, _ in runs]
    assert arrays["run_direction"].tolist() == [pair["direction"] for _, _, pair, _ in runs]
    count = len(runs)
    for key in ("mas_images", "am_pi_images", "attribution_maps", "decoder_with_attribute", "decoder_without_attribute",
                "decoder_difference"):
        assert arrays[key].shape == (count, 1, 28, 28), key
    matrix = np.array([[np.nan] * 6 if row is None else row for row in data["relevance"]["matrix"]])
    np.testing.assert_allclose(arrays["relevance"], matrix, rtol=1e-6, atol=1e-7)
    images, _ = mnist5k.train.batch([m["index"] for *_, m in runs])
    np.testing.assert_allclose(arrays["mas_images"], images.numpy(), atol=1e-7)
    np.testing.assert_allclose(arrays["decoder_difference"],
                               arrays["decoder_with_attribute"] - arrays["decoder_without_attribute"], atol=1e-5)
    am_pi = arrays["am_pi_images"]
    for r, (*_, m) in enumerate(runs):
        outside = ((am_pi[r] < 0) | (am_pi[r] > 1)).mean()
        assert m["am_pi"]["out_of_range_fraction"] == pytest.approx(float(outside), abs=1e-6)
        assert m["am_pi"]["max_abs_pixel"] == pytest.approx(float(np.abs(am_pi[r]).max()), rel=1e-5)
    # The attribution map of run 0 is the gradient of direction·φ_j at the MAS (plain autograd, not Captum).
    model = load_checkpoint(mnist5k_checkpoint).model.eval()
    x = torch.tensor(arrays["mas_images"][:1], requires_grad=True)
    phi = model(x).attributes[0, int(arrays["run_attribute"][0])] * int(arrays["run_direction"][0])
    (gradient,) = torch.autograd.grad(phi, x)
    np.testing.assert_allclose(arrays["attribution_maps"][0], gradient[0].numpy(), rtol=1e-4, atol=1e-8)
    # Tiles: the AM+PI tile is the array clipped to the data's range [0, 1], not rescaled to its own range.
    first = runs[0][3]["tiles"]
    tile = read_png(report / first["am_pi"], "L").astype(np.float64)
    factor = tile.shape[0] // 28
    assert tile.shape == (28 * factor, 28 * factor) and factor >= 3
    np.testing.assert_allclose(tile[::factor, ::factor], np.round(np.clip(am_pi[0, 0], 0, 1) * 255), atol=1)
    mas_tile = read_png(report / first["mas"], "L").astype(np.float64)
    np.testing.assert_allclose(mas_tile[::factor, ::factor], np.round(arrays["mas_images"][0, 0] * 255), atol=1)
    # The difference tile's colour scale is ± its own largest |value|: that pixel gets an end colour of the map.
    difference = arrays["decoder_difference"][0, 0]
    y, x_ = np.unravel_index(np.abs(difference).argmax(), difference.shape)
    rgb = read_png(report / first["difference"], "RGB")[y * factor, x_ * factor]
    end = (103, 0, 31) if difference[y, x_] > 0 else (5, 48, 97)  # RdBu_r at +1 and −1
    assert tuple(int(v) for v in rgb) == end


def test_am_pi_pictures_use_the_data_range_and_signed_maps_their_own_scale():
    faint = torch.full((1, 2, 2), 0.05)
    assert image_rgb(faint, "am_pi").max() == round(0.05 * 255)  # a faint output stays faint (not stretched to white)
    outside = torch.tensor([[[-1.0, 0.25], [2.0, 1.0]]])
    assert image_rgb(outside, "am_pi")[..., 0].tolist() == [[0, 64], [255, 255]]
    shifted = image_rgb(torch.tensor([[[0.5, 1.5]]]), "am_pi", value_range=(0.5, 1.5))
    assert shifted[..., 0].tolist() == [[0, 255]]
    signed = torch.tensor([[[0.0, 0.2], [-0.4, 0.4]]])
    picture = image_rgb(signed, "difference")
    assert tuple(picture[1, 0]) == (5, 48, 97) and tuple(picture[1, 1]) == (103, 0, 31)
    assert ImageTile(torch.zeros(1, 28, 28), "am_pi", pixels=112).rgb().shape == (112, 112, 3)
    assert ImageTile(torch.zeros(3, 32, 32), "input", pixels=100).rgb().shape == (96, 96, 3)  # integer factor 3


def test_attribute_overview_keeps_the_most_negative_samples_for_attributes_relevant_through_negative_values():
    bundle = tiny_bundle()
    generator = torch.Generator().manual_seed(3)
    attributes = torch.randn(40, 3, generator=generator)
    indices = torch.arange(60, 100)
    pool = ForwardPass(indices=indices, labels=bundle.train.labels[indices], f_logits=torch.zeros(40, 10),
                       attributes=attributes, g_logits=torch.zeros(40, 10))
    pairs = [ClassAttributePair(0, 0, 0.5, 1), ClassAttributePair(1, 1, 0.4, -1), ClassAttributePair(2, 2, 0.3, -1),
             ClassAttributePair(3, 2, 0.2, 1)]
    overview = attribute_overview(pool, bundle.train, 4, pairs)
    for j in range(3):
        by_value = sorted(range(40), key=lambda row: float(attributes[row, j]))  # brute force
        assert overview.lowest_indices[j].tolist() == [60 + row for row in by_value[:4]]
        assert overview.indices[j].tolist() == [60 + row for row in by_value[::-1][:4]]
        torch.testing.assert_close(overview.lowest_activations[j], attributes[by_value[:4], j])
        images, _ = bundle.train.batch([60 + row for row in by_value[:4]])
        torch.testing.assert_close(overview.lowest_images[j], images)
    assert overview.relevant_negative.tolist() == [False, True, True]
    assert overview.relevant_positive.tolist() == [True, False, True]
    assert [overview.shown_directions(j) for j in range(3)] == [[1], [-1], [1, -1]]
    assert overview.samples(1, -1)[0].tolist() == overview.lowest_indices[1].tolist()
