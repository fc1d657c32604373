"""Metrics (fidelity, top-k, CNS, confusion) and the disagreement analysis against brute-force loops."""

import json

import numpy as np
import pytest
import torch

from flint_analysis.agreement import rank_of_class
from flint_analysis.cli import main
from flint_analysis.conciseness import conciseness_curve
from flint_analysis.disagreement import analyse_disagreement, separation
from flint_analysis.errors import InputError
from flint_analysis.inference import ForwardPass
from flint_analysis.metrics import ModelMetrics, evaluate
from flint_analysis.relevance import sample_relevance
from tests.conftest import tiny_checkpoint
from tests.test_run_index import broken_links


def random_pass(n=200, c=5, j=4, seed=0) -> ForwardPass:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c, (n,), generator=g)
    f_logits = torch.randn(n, c, generator=g) + 3 * torch.nn.functional.one_hot(labels, c)
    g_logits = f_logits + 1.5 * torch.randn(n, c, generator=g)
    return ForwardPass(torch.arange(n), labels, f_logits, torch.randn(n, j, generator=g), g_logits)


def strict_json(path):
    def refuse(value):
        raise AssertionError(f"{value} in JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_metrics_match_brute_force_loops():
    fp = random_pass()
    weight = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    m = evaluate(fp, weight.numpy(), ks=(1, 2, 3, 4), taus=(1.5, 2.0, 4.0))
    f, g, y = fp.f_predictions.tolist(), fp.g_predictions.tolist(), fp.labels.tolist()
    n = len(f)
    assert m.accuracy_f == pytest.approx(100 * sum(a == b for a, b in zip(f, y)) / n)
    assert m.accuracy_g == pytest.approx(100 * sum(a == b for a, b in zip(g, y)) / n)
    assert m.fidelity == pytest.approx(100 * sum(a == b for a, b in zip(f, g)) / n)
    for k in (1, 2, 3, 4):
        inside = 0
        for row, fc in zip(fp.g_logits.tolist(), f):
            top = sorted(range(5), key=lambda c: -row[c])[:k]
            inside += fc in top
        assert m.topk_fidelity[k] == pytest.approx(100 * inside / n)
        assert m.topk_fidelity[k] == pytest.approx(100 * float((rank_of_class(fp.g_logits, fp.f_predictions) <= k).double().mean()))
    for c in range(5):
        members = [i for i in range(n) if f[i] == c]
        assert m.per_class_counts[c] == len(members)
        assert m.per_class_fidelity[c] == pytest.approx(100 * sum(g[i] == c for i in members) / len(members))
        for d in range(5):
            assert m.confusion[c, d] == sum(1 for i in range(n) if f[i] == c and g[i] == d)
    r = sample_relevance(fp.attributes, weight, fp.g_predictions).tolist()
    for tau in (1.5, 2.0, 4.0):
        assert m.conciseness[tau] == pytest.approx(sum(sum(v > 1 / tau for v in row) for row in r) / n)
    with pytest.raises(InputError, match="k = 5 is out of range"):
        evaluate(fp, ks=(5,))
    with pytest.raises(InputError, match="τ must be a finite number > 1"):
        conciseness_curve(torch.zeros(2, 3), (1.0,))


def test_disagreement_categories_match_a_loop():
    fp = random_pass(seed=4)
    analysis = analyse_disagreement(fp, k=2)
    expected = []
    for i, (frow, grow, y) in enumerate(zip(fp.f_logits.tolist(), fp.g_logits.tolist(), fp.labels.tolist())):
        fc, gc = max(range(5), key=lambda c: frow[c]), max(range(5), key=lambda c: grow[c])
        if fc == gc:
            continue
        rank = 1 + sum(v > grow[fc] for v in grow)
        category = 0 if rank <= 2 else (2 if fc == y else 1)
        expected.append((i, rank, category))
    assert analysis.rows.tolist() == [e[0] for e in expected]
    assert analysis.f_rank_in_g.tolist() == [e[1] for e in expected]
    assert analysis.category.tolist() == [e[2] for e in expected]
    counts = analysis.counts()
    assert counts["disagreements"] == len(expected)
    assert counts["within_top_k"] + counts["outside_top_k"] == counts["disagreements"]
    assert counts["outside_top_k_f_correct"] == sum(e[2] == 2 for e in expected)
    per_class = analysis.per_class_counts(5)
    assert sum(c["disagreements"] for c in per_class) == len(expected)
    assert [c["samples"] for c in per_class] == torch.bincount(fp.labels, minlength=5).tolist()
    with pytest.raises(InputError, match="-k 5 is out of range"):
        analyse_disagreement(fp, k=5)


def test_separation_is_the_probability_that_a_disagreement_is_less_deep():
    low, high = np.array([0.1, 0.2, 0.5]), np.array([0.3, 0.4, 0.5, 0.6])
    pairs = [(a, b) for a in low for b in high]
    expected = sum(1.0 if a < b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
    result = separation(low, high)
    assert result["auc"] == pytest.approx(expected) and 0 < result["p_value"] < 1
    assert separation(np.array([]), high) == {"auc": None, "p_value": None}


def test_metrics_cli_compares_checkpoints_on_one_figure(mnist5k_checkpoint, tmp_path, capsys):
    other = tmp_path / "other.pt"
    other.write_bytes(mnist5k_checkpoint.read_bytes())
    out = tmp_path / "metrics"
    assert main(["metrics", str(mnist5k_checkpoint), str(other), "--names", "a", "b", "-o", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "top-5" in printed and "CNS_g(τ)" in printed and "fidelity per f-class (b)" in printed
    data = strict_json(out / "metrics.json")
    assert data["schema"] == "flint-analysis/metrics" and [m["name"] for m in data["models"]] == ["a", "b"]
    assert data["models"][0]["metrics"] == data["models"][1]["metrics"]
    assert list(data["models"][0]["metrics"]["conciseness"]) == ["1.5", "2", "2.5", "3", "4", "5"]
    for name in ("confusion-a.png", "per-class-fidelity-b.png", "index.html"):
        assert (out / name).stat().st_size > 1000
    # the untrained g is at chance: left out of the curves unless asked for, and the page says why
    assert data["curves"]["left_out"] == ["a", "b"] and data["figures"] == {"conciseness": None, "topk_fidelity": None}
    assert not (out / "conciseness.png").exists() and "g of a is at chance" in printed
    assert "Left out of the CNS and top-k curves because their g is at chance: a, b" in (out / "index.html").read_text()
    assert broken_links(out / "index.html") == []
    assert main(["metrics", str(mnist5k_checkpoint), str(other), "--names", "a", "b", "-o", str(out), "--quiet",
                 "--include-chance-models"]) == 0
    capsys.readouterr()
    data = strict_json(out / "metrics.json")
    assert data["curves"]["drawn"] == ["a", "b"] and data["curves"]["left_out"] == []
    for name in ("conciseness.png", "topk-fidelity.png"):
        assert (out / name).stat().st_size > 1000
    assert main(["metrics", str(mnist5k_checkpoint), "--split", "validation", "-o", str(tmp_path / "m2")]) == 2
    assert "unknown split 'validation'" in capsys.readouterr().err
    assert main(["metrics", str(mnist5k_checkpoint), "--ks", "10", "-o", str(tmp_path / "m3"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "k = 10 is out of range" in err and err.count("\n") == 1 and not (tmp_path / "m3").exists()


def test_disagreement_cli_with_depth_and_a_degenerate_pixel_space(mnist5k_checkpoint, tmp_path, capsys):
    out = tmp_path / "dis"
    fast = ["--quiet", "--agreeing", "20", "--depth-directions", "100", "--depth-rounds", "3"]
    assert main(["disagreement", str(mnist5k_checkpoint), "-o", str(out), *fast]) == 0
    printed = capsys.readouterr().out
    assert "samples where g's class ≠ f's" in printed and "projection depth (pca space)" in printed
    data = strict_json(out / "disagreement.json")
    assert data["schema"] == "flint-analysis/disagreement" and data["k"] == 3
    counts = data["counts"]
    assert counts["disagreements"] == len(data["samples"]) and counts["samples"] == 1000
    assert data["depth"]["space"] == "pca" and data["depth"]["classes"]
    for entry in data["depth"]["classes"]:
        assert entry["dimension"] == 20 and entry["reference_size"] == 400
        assert len(entry["agreeing"]) <= 20 and all(0 <= s["depth"] <= 1 for s in entry["agreeing"] + entry["disagreeing"])
    assert (out / "depth-per-class.png").exists() and (out / "index.html").exists()
    # 400 training images per class in 784 pixels: n <= 2d, the strict depth is degenerate; say so, do not crash.
    pixels = tmp_path / "pixels"
    assert main(["disagreement", str(mnist5k_checkpoint), "-o", str(pixels), "--depth-space", "pixels", *fast]) == 0
    printed = capsys.readouterr().out
    assert "(n ≤ 2d)" in printed and "use --depth-space pca" in printed
    data = strict_json(pixels / "disagreement.json")
    depths = [s["depth"] for c in data["depth"]["classes"] for s in c["agreeing"] + c["disagreeing"]]
    assert data["depth"]["summary"]["exact_zero_fraction"] > 0.9 and all(d == 0.0 for d in depths if d < 1e-12)
    assert all(c["degenerate"] and c["note"] for c in data["depth"]["classes"])
    assert main(["disagreement", str(mnist5k_checkpoint), "-k", "10", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "-k 10 is out of range" in err and err.count("\n") == 1 and not (tmp_path / "x").exists()
    assert main(["disagreement", str(mnist5k_checkpoint), "--split", "dev", "-o", str(tmp_path / "y")]) == 2
    assert "unknown split 'dev'" in capsys.readouterr().err


def test_g_at_chance_and_the_share_of_samples_without_a_relevant_attribute_match_loops():
    fp = random_pass(n=300, seed=7)
    weight = torch.randn(5, 4, generator=torch.Generator().manual_seed(8))
    m = evaluate(fp, weight.numpy(), ks=(1, 2), taus=(1.5, 3.0))
    y = fp.labels.tolist()
    majority = max(y.count(c) for c in range(5)) / len(y)
    assert m.chance_accuracy == pytest.approx(100 * majority)
    assert m.g_at_chance() == (m.accuracy_g <= 100 * majority + 5.0)
    assert m.g_at_chance(margin=100.0) and not m.g_at_chance(margin=m.accuracy_g - m.chance_accuracy - 0.01)
    for tau in (1.5, 3.0):
        none = 0
        for phi, c in zip(fp.attributes.tolist(), fp.g_predictions.tolist()):
            alpha = [p * w for p, w in zip(phi, weight[c].tolist())]
            scale = max(abs(a) for a in alpha)
            none += not any(a / scale > 1 / tau for a in alpha)
        assert m.conciseness_no_attribute[tau] == pytest.approx(100 * none / len(y))
        # CNS below 1 only through such samples: each other sample counts at least its largest positive α
        assert m.conciseness[tau] >= (100 - m.conciseness_no_attribute[tau]) / 100 - 1e-12
    # a g predicting one class for all: at chance
    constant = ForwardPass(fp.indices, fp.labels, fp.f_logits, fp.attributes, torch.zeros_like(fp.g_logits) + torch.arange(5.0))
    assert evaluate(constant, weight.numpy(), ks=(1,)).g_at_chance()


def _model_metrics(accuracy_g: float, cns: dict) -> ModelMetrics:
    return ModelMetrics(num_samples=100, accuracy_f=97.0, accuracy_g=accuracy_g, fidelity=accuracy_g, per_class_fidelity=np.full(10, 90.0),
                        per_class_counts=np.full(10, 10), confusion=np.eye(10, dtype=int) * 10, topk_fidelity={1: accuracy_g, 2: 99.0},
                        conciseness=cns, chance_accuracy=11.0, conciseness_no_attribute={t: 40.0 if accuracy_g < 20 else 1.0 for t in cns})


def test_the_metrics_page_leaves_out_a_g_at_chance_and_explains_cns(tmp_path):
    from flint_analysis.report_writers.metrics_report import write_metrics_report

    checkpoint = tiny_checkpoint()
    models = [("flint", checkpoint, _model_metrics(96.0, {2.0: 2.5, 3.0: 3.1})),
              ("BASE-f", checkpoint, _model_metrics(14.0, {2.0: 0.6, 3.0: 0.7}))]
    data = write_metrics_report(models, "test", tmp_path / "m")
    page = (tmp_path / "m" / "index.html").read_text()
    assert data["curves"] == {"include_chance_models": False, "chance_margin": 5.0, "drawn": ["flint"], "left_out": ["BASE-f"]}
    assert [m["metrics"]["g_at_chance"] for m in data["models"]] == [False, True]  # 14 ≤ 11 + 5; 96 > 16
    assert data["figures"] == {"conciseness": "conciseness.png", "topk_fidelity": "topk-fidelity.png"}
    assert "Not drawn: BASE-f (g 14.0 %, majority class 11.0 %)" in page and "How to read this page" in page
    assert "<b>below 1</b>" in page and "no attr. 40 %" in page and "uses 2.50 attributes per explanation (CNS at τ = 2)" in page
    assert broken_links(tmp_path / "m" / "index.html") == []
    data = write_metrics_report(models, "test", tmp_path / "m", include_chance_models=True)
    assert data["curves"]["drawn"] == ["flint", "BASE-f"] and "drawn grey and dashed" in (tmp_path / "m" / "index.html").read_text()


def test_worst_first_orders_by_kind_then_rank_then_index_like_a_sort_by_hand():
    fp = random_pass(n=400, seed=11)
    analysis = analyse_disagreement(fp, k=2)
    order = analysis.worst_first(1000)
    assert sorted(order) == list(range(len(analysis.rows)))
    severity = {2: 0, 1: 1, 0: 2}
    expected = sorted(range(len(analysis.rows)), key=lambda p: (severity[int(analysis.category[p])], -int(analysis.f_rank_in_g[p]),
                                                               int(analysis.indices[p])))
    assert order == expected and analysis.worst_first(3) == expected[:3] and analysis.worst_first(0) == []
    assert int(analysis.category[order[0]]) == 2


def test_explain_worst_writes_linked_local_reports_that_survive_copying_the_run_folder(mnist5k_checkpoint, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    checkpoint = run / "ckpt.pt"
    checkpoint.write_bytes(mnist5k_checkpoint.read_bytes())
    fast = ["--quiet", "--am-pi-steps", "2"]
    assert main(["global", str(checkpoint), "-o", str(run / "global"), "--subset-size", "60", "--threshold", "0", "--mas", "1",
                 *fast]) in (0, 3)
    assert main(["disagreement", str(checkpoint), "-o", str(run / "disagreement"), "--explain-worst", "2", "--agreeing", "5",
                 "--depth-directions", "50", "--depth-rounds", "2", "--worst-per-class", "2", *fast]) == 0
    printed = capsys.readouterr().out
    assert f"updated {run / 'index.html'} (links 2 reports)" in printed
    out = run / "disagreement"
    data = strict_json(out / "disagreement.json")
    explained = data["explained_worst"]
    assert len(explained) == 2 and data["figures"]["explained_worst_index"] == "worst/index.html"
    samples = {s["index"]: s for s in data["samples"]}
    for entry in explained:
        assert (out / entry["report"]).is_file() and samples[entry["index"]]["category"] == entry["category"]
        assert entry["report"] == f"worst/test-{entry['index']:05d}/report.html"
    assert [e["index"] for e in explained] == [data["samples"][p]["index"] for p in
                                               sorted(range(len(data["samples"])), key=lambda p: (
                                                   {"outside_top_k_f_correct": 0, "outside_top_k": 1, "within_top_k": 2}[data["samples"][p]["category"]],
                                                   -data["samples"][p]["f_rank_in_g"], data["samples"][p]["index"]))[:2]]
    arrays = np.load(out / "arrays.npz")
    shown = [i for c in data["per_class"] for i in [s["index"] for s in data["samples"]
                                                    if s["label"] == c["class"] and s["category"] == "outside_top_k_f_correct"][:2]]
    assert arrays["worst_case_indices"].tolist() == shown and arrays["worst_case_images"].shape == (len(shown), 1, 28, 28)
    page = (out / "index.html").read_text()
    assert "How to read this page" in page and "the worst kind" in page and 'href="worst/test-' in page
    # a rerun replaces the report, worst/ included (its own files only)
    assert main(["disagreement", str(checkpoint), "-o", str(out), "--explain-worst", "1", "--no-depth", *fast]) == 0
    assert len(strict_json(out / "disagreement.json")["explained_worst"]) == 1
    assert len([p for p in (out / "worst").iterdir() if p.is_dir()]) == 1
    assert main(["metrics", str(checkpoint), "-o", str(run / "metrics"), "--quiet"]) == 0
    copy = tmp_path / "moved" / "elsewhere"
    shutil.copytree(run, copy, symlinks=True)
    shutil.rmtree(run)
    pages = [copy / "index.html", copy / "metrics" / "index.html", copy / "disagreement" / "index.html",
             copy / "disagreement" / "worst" / "index.html", *(copy / "disagreement" / "worst").glob("*/report.html")]
    assert len(pages) == 5
    for page in pages:
        assert broken_links(page, check_anchors_in_other_pages=False) == [], page
