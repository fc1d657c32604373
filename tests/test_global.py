"""End-to-end `flint-analyze global` on a tiny checkpoint: files, JSON schema, determinism, bad input."""

import json
from pathlib import Path

import pytest
import torch

from flint_analysis.checkpoint import Checkpoint, load_checkpoint
from flint_analysis.cli import main
from flint_analysis.datasets import load_dataset
from flint_analysis.global_interpretation import GlobalConfig, global_interpretation
from flint_analysis.am_pi import AmPiConfig
from flint_analysis.models import build_model, resolve_architecture_kwargs

FAST = ["--subset-size", "150", "--am-pi-steps", "4", "--quiet"]


@pytest.fixture(scope="module")
def checkpoint_path(mnist5k_checkpoint) -> Path:
    return mnist5k_checkpoint


def run_global(checkpoint_path, out, *extra):
    return main(["global", str(checkpoint_path), "-o", str(out), *FAST, *extra])


def test_global_writes_every_file_and_a_json_that_matches_an_independent_recomputation(checkpoint_path, mnist5k, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_global(checkpoint_path, out, "--threshold", "0.05") == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'index.html'}" in printed and "class-attribute pairs" in printed
    data = json.loads((out / "global.json").read_text())
    assert data["schema"] == "flint-analysis/global" and data["schema_version"] == 1
    for key in ("checkpoint", "dataset", "versions", "parameters", "subset", "relevance", "pairs", "am_pi_summary",
                "per_sample_relevance", "figures", "split"):
        assert key in data
    checkpoint = load_checkpoint(checkpoint_path)
    assert data["checkpoint"]["sha256"] == checkpoint.sha256
    assert data["parameters"]["attribution"] == "gradient" and data["parameters"]["am_pi"]["steps"] == 4
    assert data["parameters"]["seed"] == 0 and data["versions"]["torch"]
    for name in ("index.html", "relevance_heatmap.png", "sample_relevance.png", "attribute_overview.png"):
        assert (out / name).stat().st_size > 1000
    for figure in data["figures"]["classes"].values():
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "index.html").read_text()
    assert all(figure in html for figure in data["figures"]["classes"].values())
    # Recompute r_{j,c} with a plain loop over the subset the JSON lists.
    subset = data["subset"]["indices"]
    assert len(subset) == 150 and len(set(subset)) == 150
    images, _ = mnist5k.train.batch(subset)
    with torch.no_grad():
        out_model = checkpoint.model(images)
    w = checkpoint.model.interpreter.weight.detach()
    predicted = out_model.g_logits.argmax(1)
    for c, row in enumerate(data["relevance"]["matrix"]):
        members = [x for x in range(150) if int(predicted[x]) == c]
        if not members:
            assert row is None and c in data["subset"]["classes_never_predicted"]
            continue
        for j, value in enumerate(row):
            alphas = [[float(out_model.attributes[x, i] * w[c, i]) for i in range(6)] for x in members]
            expected = sum(a[j] / max(abs(v) for v in a) for a in alphas) / len(members)
            assert value == pytest.approx(expected, abs=1e-5)
    # Pairs, MAS and AM+PI records are consistent.
    assert data["pairs"], "threshold 0.05 must select pairs on this model"
    runs = [m for p in data["pairs"] for m in p["mas"]]
    assert data["am_pi_summary"]["runs"] == len(runs) and data["am_pi_summary"]["raised"] == sum(m["am_pi"]["raised"] for m in runs)
    for outcome in ("activated", "saturated", "not_activated"):  # the summary counts the runs' outcomes
        assert data["am_pi_summary"][outcome] == sum(m["am_pi"]["outcome"] == outcome for m in runs)
    for pair in data["pairs"]:
        assert pair["relevance"] > 0.05 and data["relevance"]["matrix"][pair["class"]][pair["attribute"]] == pair["relevance"]
        values = [pair["direction"] * m["activation"] for m in pair["mas"]]
        assert values == sorted(values, reverse=True) and all(m["g_prediction"] == pair["class"] for m in pair["mas"])


def test_same_seed_gives_identical_json_and_another_seed_another_subset(checkpoint_path, tmp_path):
    assert run_global(checkpoint_path, tmp_path / "a") == 0
    assert run_global(checkpoint_path, tmp_path / "b") == 0
    first, second = (tmp_path / "a" / "global.json").read_bytes(), (tmp_path / "b" / "global.json").read_bytes()
    assert first == second
    assert run_global(checkpoint_path, tmp_path / "c", "--seed", "1") == 0
    third = json.loads((tmp_path / "c" / "global.json").read_text())
    assert third["subset"]["indices"] != json.loads(first)["subset"]["indices"]


def test_mas_pool_train_reuses_one_pass_and_finds_at_least_as_large_activations(checkpoint_path, mnist5k):
    model = load_checkpoint(checkpoint_path).model
    config = GlobalConfig(subset_size=150, threshold=0.05, am_pi=AmPiConfig(steps=1), attribution=None, decoder=False)
    small = global_interpretation(model, mnist5k.train, config)
    large = global_interpretation(model, mnist5k.train, GlobalConfig(**{**config.__dict__, "mas_pool": "train"}))
    torch.testing.assert_close(small.relevance.relevance, large.relevance.relevance)
    assert [p.attribute for p in small.pairs] == [p.attribute for p in large.pairs]
    for a, b in zip(small.analyses, large.analyses):
        s = a.pair.direction
        assert float(s * b.mas.activations[0]) >= float(s * a.mas.activations[0])


def test_bad_input_is_one_line_exit_2_and_nothing_half_written(checkpoint_path, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_global(checkpoint_path, out, "--classes", "eleven") == 2
    err = capsys.readouterr().err
    assert err.startswith("flint-analyze: error: unknown class 'eleven'") and err.count("\n") == 1
    assert run_global(checkpoint_path, out, "--classes", "12") == 2
    assert "out of range" in capsys.readouterr().err and not out.exists()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert run_global(checkpoint_path, a_file) == 2
    assert "is a file" in capsys.readouterr().err and a_file.read_text() == "x"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    assert run_global(checkpoint_path, foreign) == 2
    assert "not a flint-analysis report folder" in capsys.readouterr().err and (foreign / "notes.txt").exists()
    assert list(tmp_path.glob(".*partial")) == []


def test_threshold_that_selects_nothing_says_so_and_still_writes_the_heat_map(checkpoint_path, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_global(checkpoint_path, out, "--threshold", "1.5") == 3  # EXIT_EMPTY_RESULT: written, but empty
    err = capsys.readouterr().err
    assert "no class-attribute pair has r_(j,c) > 1.5" in err and "lower --threshold" in err and err.count("\n") == 1
    data = json.loads((out / "global.json").read_text())
    assert data["pairs"] == [] and (out / "relevance_heatmap.png").exists() and (out / "index.html").exists()


def test_missing_dataset_and_reports_of_another_checkpoint(checkpoint_path, tmp_path, capsys):
    fashion = tmp_path / "fashion.pt"
    checkpoint = load_checkpoint(checkpoint_path)
    spec = load_dataset("mnist5k").spec
    from dataclasses import replace

    checkpoint.dataset = replace(spec, name="fashion-mnist", split_seed=None, train_size=60000, test_size=10000)
    checkpoint.save(fashion)
    assert main(["global", str(fashion), "--data-root", str(tmp_path / "empty"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "fashion-mnist not found" in err and err.count("\n") == 1
    out = tmp_path / "report"
    assert run_global(checkpoint_path, out) == 0
    other = tmp_path / "other.pt"
    torch.manual_seed(9)
    kwargs = resolve_architecture_kwargs("lenet", {"num_attributes": 6})
    Checkpoint(build_model("lenet", kwargs), "lenet", kwargs, spec).save(other)
    assert run_global(other, out) == 2
    assert "holds a report of another checkpoint" in capsys.readouterr().err
    assert run_global(other, out, "--force", "--threshold", "0.0") == 0
    assert json.loads((out / "global.json").read_text())["checkpoint"]["sha256"] == load_checkpoint(other).sha256
