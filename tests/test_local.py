"""`flint-analyze local`: numbers against independent computations, --class, --image round trip, bad input."""

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import torch
from PIL import Image

from flint_analysis.checkpoint import load_checkpoint
from flint_analysis.cli import main

FAST = ["--am-pi-steps", "3", "--quiet"]


def run_local(checkpoint, out, *extra):
    return main(["local", str(checkpoint), "-o", str(out), *FAST, *extra])


def report(out: Path, identifier: str) -> dict:
    return json.loads((out / identifier / "report.json").read_text())


def assert_same_up_to_rounding(actual, expected, where: str = "") -> None:
    """Same structure and discrete values; floats equal to float32 rounding. The same image at another
    position of one batch may be rounded differently by the BLAS/oneDNN kernels (measured: 1.5e-8 on
    softmax outputs), so bit-identity is not guaranteed there."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), where
        for key in expected:
            assert_same_up_to_rounding(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for position, (a, e) in enumerate(zip(actual, expected)):
            assert_same_up_to_rounding(a, e, f"{where}[{position}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-5, abs=1e-6), where
    else:
        assert actual == expected, where


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.targets.append(value)
            if name in ("id", "name") and value:
                self.ids.add(value)


def assert_links_resolve(folder: Path) -> None:
    """Every ``href``/``src`` of every HTML page under ``folder`` names an existing file (relative to the page), and a
    ``#anchor`` exists in the page it names (this page, or another HTML page such as the global report's
    ``#pair-c{c}-j{j}``); links to other sites are not followed."""
    pages = sorted(folder.rglob("*.html"))
    assert pages

    def parse(page: Path) -> _Links:
        parser = _Links()
        parser.feed(page.read_text())
        return parser

    for page in pages:
        parser = parse(page)
        assert parser.targets, page
        for target in parser.targets:
            parsed = urlparse(target)
            if parsed.scheme in ("http", "https", "mailto"):
                continue
            assert not parsed.scheme and not parsed.netloc, (page, target)
            if not parsed.path:
                assert parsed.fragment in parser.ids, (page, target)
                continue
            path = (page.parent / unquote(parsed.path)).resolve()
            assert path.is_file(), (page, target)
            if parsed.fragment:
                assert path.suffix == ".html" and parsed.fragment in parse(path).ids, (page, target)


def test_json_numbers_match_an_independent_computation(mnist5k_checkpoint, mnist5k, tmp_path, capsys):
    out = tmp_path / "local"
    assert run_local(mnist5k_checkpoint, out, "--index", "5", "42", "--top", "2") == 0
    printed = capsys.readouterr().out
    assert "test #5, label" in printed and "why" in printed
    model = load_checkpoint(mnist5k_checkpoint).model
    w = model.interpreter.weight.detach()
    with torch.no_grad():
        train_out = model(mnist5k.train.batch()[0])
    for index in (5, 42):
        data = report(out, f"test-{index:05d}")
        for name in ("report.png", "report.html"):
            assert (out / f"test-{index:05d}" / name).stat().st_size > 500
        x, label = mnist5k.test[index]
        with torch.no_grad():
            o = model(x[None])
        f_p, g_p = torch.softmax(o.f_logits, 1)[0], torch.softmax(o.g_logits, 1)[0]
        assert data["sample"] == {"kind": "dataset", "split": "test", "index": index, "path": None, "label": label, "label_name": str(label)}
        assert data["prediction"]["f_probabilities"] == pytest.approx(f_p.tolist(), abs=1e-6)
        assert data["prediction"]["g_probabilities"] == pytest.approx(g_p.tolist(), abs=1e-6)
        c = int(g_p.argmax())
        assert data["explained_class"]["index"] == c and data["prediction"]["agree"] == (int(f_p.argmax()) == c)
        expected_rank = 1 + sum(1 for v in g_p.tolist() if v > float(g_p[int(f_p.argmax())]))
        assert data["prediction"]["f_rank_in_g"] == expected_rank
        phi = o.attributes[0].tolist()
        alphas = [phi[j] * float(w[c, j]) for j in range(6)]
        scale = max(abs(a) for a in alphas)
        assert data["relevance"] == pytest.approx([a / scale for a in alphas], abs=1e-6)
        order = [j for j in sorted(range(6), key=lambda j: -alphas[j] / scale) if alphas[j] / scale > 0.1][:2]
        assert [t["attribute"] for t in data["top"]] == order
        assert data["selection"] == {"relevance_threshold": 0.1, "qualifying": sum(a / scale > 0.1 for a in alphas),
                                     "listed": len(order), "top": 2}
        # g's logit of ĉ = b_ĉ + Σ α_j, and the contrast with g's runner-up c′
        b = model.interpreter.bias.detach()
        runner_up = sorted(range(10), key=lambda k: -float(o.g_logits[0, k]))[1]
        logits = data["logits"]
        assert logits["explained"]["class"] == c and logits["contrast"]["class"] == runner_up
        assert logits["contrast"]["reason"] == "runner_up"
        assert logits["explained"]["contributions"] == pytest.approx(alphas, abs=1e-6)
        assert logits["explained"]["bias"] == pytest.approx(float(b[c]), abs=1e-6)
        assert logits["explained"]["logit"] == pytest.approx(float(o.g_logits[0, c]), abs=1e-5)
        assert logits["contrast"]["logit"] == pytest.approx(float(o.g_logits[0, runner_up]), abs=1e-5)
        deltas = [phi[j] * (float(w[c, j]) - float(w[runner_up, j])) for j in range(6)]
        assert logits["differences"] == pytest.approx(deltas, abs=1e-6)
        assert logits["logit_difference"] == pytest.approx(float(o.g_logits[0, c] - o.g_logits[0, runner_up]), abs=1e-5)
        members = [i for i in range(len(mnist5k.train)) if int(train_out.g_logits[i].argmax()) == c]
        for t in data["top"]:
            j = t["attribute"]
            s = 1 if float(w[c, j]) >= 0 else -1
            values = sorted((s * float(train_out.attributes[i, j]) for i in members), reverse=True)
            assert t["direction"] == s and t["class_size"] == len(members)
            assert t["rank_in_class"] == 1 + sum(v > s * phi[j] for v in values)
            assert t["percentile_in_class"] == pytest.approx(100 * t["rank_in_class"] / len(members))
            assert t["contribution"] == pytest.approx(alphas[j], abs=1e-6) and t["difference"] == pytest.approx(deltas[j], abs=1e-6)
            # without a global report: the attribute's top training samples of class ĉ, most activating first
            best = sorted(members, key=lambda i: -s * float(train_out.attributes[i, j]))[:3]
            shown = t["samples"]["shown"]
            assert t["samples"]["source"] == "training" and [m["index"] for m in shown] == best
            assert [m["activation"] for m in shown] == pytest.approx([float(train_out.attributes[i, j]) for i in best], abs=1e-6)
            thumbnail = np.asarray(Image.open(out / f"test-{index:05d}" / shown[0]["image"]))
            assert thumbnail.shape == (84, 84) and np.array_equal(thumbnail[::3, ::3], mnist5k.train.images[best[0], 0].numpy())
            assert set(t["am_pi"]) >= {"reference_activation", "final_activation", "ratio", "outcome"}
            assert t["am_pi"]["reference_activation"] == pytest.approx(phi[j], abs=1e-5)  # AM+PI's reference: x itself
        arrays = np.load(out / f"test-{index:05d}" / "arrays.npz")
        top = len(data["top"])
        assert np.allclose(arrays["input"], x.numpy()) and arrays["top_attributes"].tolist() == order
        assert np.allclose(arrays["contributions"], alphas, atol=1e-6)
        for key in ("am_pi", "attribution", "decoder_with", "decoder_without", "decoder_difference"):
            assert arrays[key].shape == (top, 1, 28, 28), key
        assert np.allclose(arrays["decoder_difference"], arrays["decoder_with"] - arrays["decoder_without"], atol=1e-6)
    index = json.loads((out / "local.json").read_text())
    assert [s["id"] for s in index["samples"]] == ["test-00005", "test-00042"] and (out / "index.html").exists()
    assert_links_resolve(out)


def test_class_option_changes_the_explained_class_and_nothing_else(mnist5k_checkpoint, tmp_path):
    out = tmp_path / "local"
    assert run_local(mnist5k_checkpoint, out, "--index", "7") == 0
    base = report(out, "test-00007")
    other = (base["explained_class"]["index"] + 1) % 10
    assert run_local(mnist5k_checkpoint, out, "--index", "7", "--class", str(other), "--relevance-threshold", "0.6", "--top", "5") == 0
    asked = report(out, f"test-00007-class-{other}")
    assert asked["explained_class"] == {"index": other, "name": str(other), "is_g_prediction": False, "asked": True}
    for key in ("sample", "prediction", "attributes", "checkpoint", "dataset"):
        assert asked[key] == base[key]
    w = load_checkpoint(mnist5k_checkpoint).model.interpreter.weight.detach()
    alphas = [a * float(w[other, j]) for j, a in enumerate(base["attributes"])]
    relevance = [a / max(abs(v) for v in alphas) for a in alphas]
    assert asked["relevance"] == pytest.approx(relevance, abs=1e-6)
    # only attributes above the threshold are listed, never padded up to --top
    qualifying = sorted((j for j in range(6) if relevance[j] > 0.6), key=lambda j: -relevance[j])
    assert [t["attribute"] for t in asked["top"]] == qualifying[:5] and asked["selection"]["listed"] == len(qualifying)
    assert all(t["relevance"] > 0.6 for t in asked["top"]) and asked["parameters"]["relevance_threshold"] == 0.6
    page = (out / f"test-00007-class-{other}" / "report.html").read_text()
    assert f"{len(qualifying)} attribute" in page and "are not listed" in page
    # with --class, the contrast is g's prediction
    g_class = base["prediction"]["g"]["class"]
    assert asked["logits"]["contrast"]["class"] == g_class and asked["logits"]["contrast"]["reason"] == "g_prediction"
    assert asked["logits"]["logit_difference"] == pytest.approx(
        asked["logits"]["explained"]["logit"] - base["logits"]["explained"]["logit"], abs=1e-5)
    assert (out / "test-00007" / "report.json").exists()  # the g-class report is kept
    assert_links_resolve(out)


def test_an_image_file_round_trips_to_the_same_report_as_its_index(mnist5k_checkpoint, mnist5k, tmp_path):
    out = tmp_path / "local"
    pixels = mnist5k.test.images[11, 0].numpy()
    Image.fromarray(pixels, mode="L").save(tmp_path / "eleven.png")
    np.save(tmp_path / "eleven.npy", pixels)
    np.save(tmp_path / "eleven-float.npy", pixels.astype(np.float32) / 255.0)
    Image.fromarray(255 - pixels, mode="L").save(tmp_path / "paper.png")  # dark strokes on white paper
    assert run_local(mnist5k_checkpoint, out, "--index", "11", "--image", str(tmp_path / "eleven.png"),
                     str(tmp_path / "eleven.npy"), str(tmp_path / "eleven-float.npy"), str(tmp_path / "paper.png")) == 0
    by_index = report(out, "test-00011")
    for identifier in ("image-eleven", "image-eleven-float"):
        by_image = report(out, identifier)
        assert by_image["sample"]["kind"] == "image" and by_image["sample"]["label"] is None
        for key in ("prediction", "explained_class", "attributes", "relevance", "top", "parameters", "logits"):
            assert_same_up_to_rounding(by_image[key], by_index[key], key)
        assert "unusual_input" not in [w["kind"] for w in by_image["warnings"]]
    # the --invert hint reaches the page, not only stderr
    assert "unusual_input" in [w["kind"] for w in report(out, "image-paper")["warnings"]]
    page = (out / "image-paper" / "report.html").read_text()
    assert "Read with care" in page and "--invert" in page


def test_bad_input_is_one_line_exit_2_and_leaves_no_folder(mnist5k_checkpoint, tmp_path, capsys):
    out = tmp_path / "local"

    def fails(*extra, message):
        assert run_local(mnist5k_checkpoint, out, *extra) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("flint-analyze: error:") and err.count("\n") == 1, err
        assert not out.exists()

    fails(message="say which samples")
    fails("--index", "1000", message="index 1000 is out of range for the test split")
    fails("--index", "4000", "--split", "train", message="index 4000 is out of range for the train split")
    fails("--index", "1", "--class", "ten", message="unknown class 'ten'")
    (tmp_path / "ids.txt").write_text("1\n2\nthree\n")
    fails("--indices-file", str(tmp_path / "ids.txt"), message="contains 'three'")
    fails("--image", str(tmp_path / "missing.png"), message="does not exist")
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(tmp_path / "big.png")
    fails("--image", str(tmp_path / "big.png"), message="is 32×32 pixels, the model expects 28×28; pass --resize")
    np.save(tmp_path / "two.npy", np.zeros((28, 28, 2), dtype=np.uint8))  # colour is converted (a note); 2 channels are not
    fails("--image", str(tmp_path / "two.npy"), message="has 2 channel(s), the model expects 1")
    np.save(tmp_path / "loud.npy", np.full((28, 28), 3.0, dtype=np.float32))
    fails("--image", str(tmp_path / "loud.npy"), message="outside the model's range [0, 1]")
    (tmp_path / "text.png").write_text("not an image")
    fails("--image", str(tmp_path / "text.png"), message="cannot read image")
    assert run_local(mnist5k_checkpoint, out, "--image", str(tmp_path / "big.png"), "--resize") == 0
    assert report(out, "image-big")["sample"]["path"].endswith("big.png")
    assert "resized from 32×32 to the model's 28×28" in capsys.readouterr().err
    rgb = np.zeros((28, 28, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "red.png")
    assert run_local(mnist5k_checkpoint, out, "--image", str(tmp_path / "red.png"), "--force") == 0
    assert "red.png: colour image converted to the model's one channel" in capsys.readouterr().err


def test_local_links_to_the_global_report_found_next_to_the_checkpoint(mnist5k_checkpoint, tmp_path):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(mnist5k_checkpoint.read_bytes())
    assert main(["global", str(checkpoint), "--subset-size", "150", "--am-pi-steps", "2", "--threshold", "0.0", "--quiet"]) == 0
    assert main(["local", str(checkpoint), "--index", "3", *FAST]) == 0
    data = report(tmp_path / "model-local", "test-00003")
    links = [t["global"] for t in data["top"]]
    assert all(link is not None and link["report"] == "../../model-global/index.html" for link in links)
    global_data = json.loads((tmp_path / "model-global" / "global.json").read_text())
    c = data["explained_class"]["index"]
    for t in data["top"]:
        expected = sorted(p["class"] for p in global_data["pairs"] if p["attribute"] == t["attribute"])
        assert sorted(p["class"] for p in t["global"]["pairs"]) == expected
        for p in t["global"]["pairs"]:
            assert (tmp_path / "model-local" / "test-00003" / p["figure"]).resolve().is_file()
            assert p["link"] == f"../../model-global/index.html#pair-c{p['class']}-j{t['attribute']}"
        # the thumbnails are the MAS of the global report's pair (ĉ, j) when it has one
        pair = next((p for p in global_data["pairs"] if p["class"] == c and p["attribute"] == t["attribute"]), None)
        if pair is not None:
            assert t["samples"]["source"] == "global"
            assert [m["index"] for m in t["samples"]["shown"]] == [m["index"] for m in pair["mas"]]
    assert any(t["samples"]["source"] == "global" for t in data["top"])  # threshold 0.0: every pair of ĉ is selected
    assert_links_resolve(tmp_path / "model-local")


def test_force_over_another_checkpoints_reports_removes_its_sample_folders(mnist5k_checkpoint, tmp_path, capsys):
    out = tmp_path / "local"
    assert run_local(mnist5k_checkpoint, out, "--index", "1") == 0
    other = tmp_path / "other.pt"
    checkpoint = load_checkpoint(mnist5k_checkpoint)
    checkpoint.training = {"seed": 1}
    checkpoint.save(other)
    assert run_local(other, out, "--index", "2") == 2
    assert "holds a report of another checkpoint" in capsys.readouterr().err
    assert run_local(other, out, "--index", "2", "--force") == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["test-00002"]
    assert [s["id"] for s in json.loads((out / "local.json").read_text())["samples"]] == ["test-00002"]
