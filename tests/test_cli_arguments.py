"""Argument values of both commands: each bad one is one line naming the option and exit status 2, before
anything is loaded; plus the global-report lookup, metrics figure names, exit status 3, flint-train's output
checks and interrupt message, and --version."""

from __future__ import annotations

import json
import shutil
from importlib import metadata

import pytest
import torch

import flint_analysis.cli as analyze_cli
import flint_analysis.training.cli as train_cli
from flint_analysis.am_pi import AmPiConfig
from flint_analysis.checkpoint import load_checkpoint
from flint_analysis.cli_common import EXIT_EMPTY_RESULT, EXIT_USER_ERROR
from flint_analysis.disagreement import DepthConfig
from flint_analysis.errors import InputError
from flint_analysis.global_interpretation import GlobalConfig
from flint_analysis.local_interpretation import LocalConfig
from flint_analysis.report_writers.local_report import find_global_report
from flint_analysis.report_writers.metrics_report import figure_slugs
from flint_analysis.training.config import TrainingConfig

BAD_ANALYZE = {
    "global": [
        ("--batch-size", "0"), ("--batch-size", "-3"), ("--batch-size", "1.5"), ("--batch-size", "²"),
        ("--device", "meta"), ("--device", "mps"), ("--device", "cuda:x"), ("--device", "CPU"), ("--device", "cuda:-1"),
        ("--seed", "-1"), ("--seed", str(2**63)), ("--seed", str(2**64)), ("--seed", "¹"), ("--seed", "١٢"),
        ("--subset-size", "0"), ("--threshold", "nan"), ("--threshold", "inf"), ("--threshold", "1e400"),
        ("--threshold", "abc"), ("--mas", "0"), ("--classes", "²"), ("--classes", "-1"), ("--classes", "١"),
        ("--am-pi-steps", "-1"), ("--am-pi-lr", "0"), ("--am-pi-lr", "-0.1"), ("--am-pi-lr", "nan"),
        ("--am-pi-halve-every", "0"), ("--am-pi-init", "-0.1"), ("--am-pi-init", "1.5"), ("--am-pi-init", "nan"),
        ("--lambda-phi", "-1"), ("--lambda-phi", "nan"), ("--lambda-tv", "inf"), ("--lambda-bo", "-1e-3"),
    ],
    "local": [
        ("--index", "-1"), ("--index", "²"), ("--index", "1.5"), ("--index", "١٢"), ("--class", "²"), ("--class", "-1"),
        ("--top", "0"), ("--seed", "-5"), ("--batch-size", "0"), ("--device", "meta"), ("--am-pi-steps", "x"),
    ],
    "metrics": [
        ("--taus", "nan"), ("--taus", "1"), ("--taus", "0.5"), ("--taus", "inf"), ("--taus", "-2"),
        ("--ks", "0"), ("--ks", "-1"), ("--ks", "²"), ("--batch-size", "0"), ("--device", "meta"),
    ],
    "disagreement": [
        ("-k", "0"), ("--worst-per-class", "-1"), ("--pca-components", "0"), ("--agreeing", "0"),
        ("--depth-directions", "0"), ("--depth-directions", "100001"), ("--depth-rounds", "-1"), ("--seed", str(2**63)),
    ],
}
BAD_TRAIN = [
    ("--epochs", "0"), ("--epochs", "³"), ("--batch-size", "0"), ("--batch-size", "-8"), ("--lr", "0"), ("--lr", "nan"),
    ("--lr", "-1e-3"), ("--beta", "-1"), ("--gamma", "nan"), ("--delta", "inf"), ("--zeta", "-0.5"), ("--mu", "nan"),
    ("--eta", "-1"), ("--num-attributes", "0"), ("--num-attributes", "1025"), ("--samples-per-class", "1"),
    ("--interpretability-start-epoch", "-1"), ("--entropy-start-epoch", "²"), ("--seed", str(2**63)), ("--seed", "-1"),
    ("--device", "meta"),
]


def _never(*args, **kwargs):
    raise AssertionError("nothing may be loaded or run after a bad argument")


@pytest.fixture
def nothing_runs(monkeypatch):
    for module, names in ((analyze_cli, ("load_checkpoint", "load_dataset_for_spec")),
                          (train_cli, ("load_checkpoint", "load_dataset", "load_dataset_for_spec", "train"))):
        for name in names:
            monkeypatch.setattr(module, name, _never)


def _one_line_naming(capsys, option: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and (f"argument {option}:" in err or f"argument {option}/" in err), err  # "--mas/--mas-per-pair:"
    return err


@pytest.mark.parametrize(("command", "option", "value"),
                         [(command, option, value) for command, cases in BAD_ANALYZE.items() for option, value in cases])
def test_bad_analyze_value_is_one_line_and_exit_2_before_loading(command, option, value, tmp_path, capsys, nothing_runs):
    out = tmp_path / "out"
    argv = [command, str(tmp_path / "model.pt"), "-o", str(out), "--quiet", f"{option}={value}"]
    with pytest.raises(SystemExit) as exit_:
        analyze_cli.main(argv)
    assert exit_.value.code == EXIT_USER_ERROR
    assert _one_line_naming(capsys, option).startswith(f"flint-analyze {command}: error: ")
    assert not out.exists()


@pytest.mark.parametrize(("option", "value"), BAD_TRAIN)
def test_bad_train_value_is_one_line_and_exit_2_before_loading(option, value, tmp_path, capsys, nothing_runs):
    out = tmp_path / "run" / "ckpt.pt"
    with pytest.raises(SystemExit) as exit_:
        train_cli.main(["--dataset", "mnist5k", "-o", str(out), "--quiet", f"{option}={value}"])
    assert exit_.value.code == EXIT_USER_ERROR
    assert _one_line_naming(capsys, option).startswith("flint-train: error: ")
    assert not out.parent.exists()


def test_boundary_values_are_accepted_and_agree_with_the_dataclasses():
    parse = analyze_cli.build_parser().parse_args
    args = parse(["global", "m.pt", "--seed", str(2**63 - 1), "--threshold", "-1", "--am-pi-steps", "0", "--am-pi-init", "0",
                  "--am-pi-lr", "1e-12", "--am-pi-halve-every", "1", "--lambda-phi", "0", "--subset-size", "1", "--mas", "1",
                  "--classes", "0", "7", "T-shirt/top", "--device", "cpu"])
    assert args.seed == 2**63 - 1 and args.classes == ["0", "7", "T-shirt/top"] and args.am_pi_init == 0.0
    assert parse(["local", "m.pt", "--index", "0", "+3", "--class", "cat", "--top", "1", "--am-pi-init", "1"]).index == [0, 3]
    assert parse(["metrics", "m.pt", "--taus", "1.0001", "1e3", "--ks", "1"]).taus == [1.0001, 1000.0]
    disagreement = parse(["disagreement", "m.pt", "--worst-per-class", "0", "--depth-rounds", "0", "--depth-directions", "100000"])
    assert disagreement.worst_per_class == 0 and disagreement.depth_directions == 100_000
    assert parse(["info", "m.pt"]).command == "info"
    # The parser's smallest accepted values are valid for the dataclasses, and one below is refused by them too.
    AmPiConfig(steps=0, halve_every=1, learning_rate=1e-12, init_scale=0.0, lambda_phi=0.0)
    GlobalConfig(subset_size=1)
    LocalConfig(top=1)
    DepthConfig(pca_components=1, agreeing_per_class=1)
    TrainingConfig(epochs=1, batch_size=1, learning_rate=1e-12, beta=0.0, gamma=0.0, delta=0.0, zeta=0.0, mu=0.0, eta=0.0)
    for build in (lambda: AmPiConfig(steps=-1), lambda: AmPiConfig(halve_every=0), lambda: AmPiConfig(learning_rate=0.0),
                  lambda: GlobalConfig(subset_size=0), lambda: LocalConfig(top=0), lambda: DepthConfig(pca_components=0),
                  lambda: DepthConfig(agreeing_per_class=0), lambda: TrainingConfig(epochs=0), lambda: TrainingConfig(batch_size=0),
                  lambda: TrainingConfig(learning_rate=0.0), lambda: TrainingConfig(eta=-1.0)):
        with pytest.raises(InputError):
            build()
    train = train_cli.build_parser().parse_args(["--epochs", "1", "--num-attributes", "1024", "--beta", "0", "--seed", "0"])
    assert train.epochs == 1 and train.num_attributes == 1024


def test_cuda_device_number_must_exist_when_cuda_is_available(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    parse = analyze_cli.build_parser().parse_args
    assert parse(["metrics", "m.pt", "--device", "cuda:0"]).device == "cuda:0"
    assert parse(["metrics", "m.pt", "--device", "cuda"]).device == "cuda"
    with pytest.raises(SystemExit) as exit_:
        parse(["metrics", "m.pt", "--device", "cuda:1"])
    assert exit_.value.code == EXIT_USER_ERROR and "no GPU cuda:1" in _one_line_naming(capsys, "--device")


@pytest.mark.parametrize(("content", "message"), [
    ("1\n²\n", "contains '²'"), ("3, -1", "negative index -1"), ("1 2 three", "contains 'three'"), ("١٢", "contains '١٢'"),
])
def test_indices_file_accepts_only_ascii_indices_from_zero(content, message, tmp_path, capsys, nothing_runs):
    ids = tmp_path / "ids.txt"
    ids.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    assert analyze_cli.main(["local", str(tmp_path / "m.pt"), "-o", str(out), "--indices-file", str(ids), "--quiet"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--indices-file" in err and message in err, err
    assert not out.exists()


# ------------------------------------------------------------------------------------------- global report


def _global_json(sha256: str, **changes) -> dict:
    pair = {"class": 3, "class_name": "3", "attribute": 1, "relevance": 0.4, "direction": 1, "figure": "class-3.png",
            "mas": [{"index": 5, "activation": 1.5, "am_pi": {"final_activation": 2.0}}]}
    pair.update(changes)
    return {"schema": "flint-analysis/global", "checkpoint": {"sha256": sha256}, "pairs": [pair]}


MALFORMED = {
    "pairs not a list": lambda sha: {"checkpoint": {"sha256": sha}, "pairs": {"0": 1}},
    "pair without figure": lambda sha: {"checkpoint": {"sha256": sha}, "pairs": [
        {k: v for k, v in _global_json(sha)["pairs"][0].items() if k != "figure"}]},
    "figure escapes the folder": lambda sha: _global_json(sha, figure="../../secret.png"),
    "absolute figure": lambda sha: _global_json(sha, figure="/etc/passwd"),
    "figure not a string": lambda sha: _global_json(sha, figure=3),
    "attribute a string": lambda sha: _global_json(sha, attribute="1"),
    "relevance a bool": lambda sha: _global_json(sha, relevance=True),
    "mas entry without am_pi": lambda sha: _global_json(sha, mas=[{"index": 1, "activation": 0.5}]),
    "pair not an object": lambda sha: {"checkpoint": {"sha256": sha}, "pairs": [7]},
    "no sha256": lambda sha: {"checkpoint": [], "pairs": []},
    "not an object": lambda sha: [1, 2],
}


@pytest.fixture(scope="module")
def loaded(mnist5k_checkpoint):
    return load_checkpoint(mnist5k_checkpoint)


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_global_json_named_with_global_dir_is_refused(case, loaded, tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "global.json").write_text(json.dumps(MALFORMED[case](loaded.sha256)))
    with pytest.raises(InputError, match="--global-dir") as error:
        find_global_report(loaded, folder)
    assert "\n" not in str(error.value)


def test_malformed_global_json_next_to_the_checkpoint_is_skipped_with_a_note(mnist5k_checkpoint, tmp_path, capsys):
    checkpoint_path = tmp_path / "model.pt"
    shutil.copyfile(mnist5k_checkpoint, checkpoint_path)
    checkpoint = load_checkpoint(checkpoint_path)
    (tmp_path / "model-global").mkdir()
    (tmp_path / "model-global" / "global.json").write_text(json.dumps(_global_json(checkpoint.sha256, figure="../x.png")))
    (tmp_path / "global").mkdir()
    (tmp_path / "global" / "global.json").write_bytes(b"\xff\xfe not json")
    assert find_global_report(checkpoint, None) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "points outside" in err and "note: ignoring" in err
    (tmp_path / "global" / "global.json").write_text(json.dumps(_global_json(checkpoint.sha256)))
    folder, data = find_global_report(checkpoint, None)
    assert folder == tmp_path / "global" and data["pairs"][0]["figure"] == "class-3.png"
    # another checkpoint's report is not ours: skipped quietly next to the checkpoint, refused when named
    (tmp_path / "global" / "global.json").write_text(json.dumps(_global_json("0" * 64)))
    shutil.rmtree(tmp_path / "model-global")
    capsys.readouterr()
    assert find_global_report(checkpoint, None) is None
    assert capsys.readouterr().err == ""
    with pytest.raises(InputError, match="another checkpoint"):
        find_global_report(checkpoint, tmp_path / "global")
    with pytest.raises(InputError, match="holds no global.json"):
        find_global_report(checkpoint, tmp_path / "nowhere")


def test_local_refuses_a_malformed_global_dir_before_computing(mnist5k_checkpoint, mnist5k, loaded, tmp_path, capsys, monkeypatch):
    import flint_analysis.local_interpretation as local_interpretation

    monkeypatch.setattr(analyze_cli, "load_dataset_for_spec", lambda *args, **kwargs: mnist5k)
    monkeypatch.setattr(local_interpretation, "explain_samples", _never)
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "global.json").write_text(json.dumps({"checkpoint": {"sha256": loaded.sha256}, "pairs": "none"}))
    out = tmp_path / "local"
    argv = ["local", str(mnist5k_checkpoint), "--index", "0", "--global-dir", str(folder), "-o", str(out), "--quiet", "--device", "cpu"]
    assert analyze_cli.main(argv) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--global-dir" in err and "'pairs' is not a list" in err
    assert not out.exists()


# ---------------------------------------------------------------------------------- metrics, exit status 3


def test_figure_slugs_are_distinct_and_deterministic():
    assert figure_slugs(["a", "A", "a-2", "a_2", "", "!!"]) == ["a", "a-2", "a-2-2", "a-2-3", "model", "model-2"]
    assert figure_slugs(["Model B", "model-b"]) == ["model-b", "model-b-2"]


def test_metrics_names_that_differ_only_in_case_get_distinct_figures(mnist5k_checkpoint, mnist5k, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(analyze_cli, "load_dataset_for_spec", lambda *args, **kwargs: mnist5k)
    other = tmp_path / "A.pt"
    shutil.copyfile(mnist5k_checkpoint, other)
    out = tmp_path / "metrics"
    assert analyze_cli.main(["metrics", str(mnist5k_checkpoint), str(other), "--names", "a", "A", "-o", str(out),
                             "--quiet", "--device", "cpu", "--ks", "1", "--taus", "2"]) == 0
    data = json.loads((out / "metrics.json").read_text())
    figures = [m["figures"]["confusion"] for m in data["models"]] + [m["figures"]["per_class_fidelity"] for m in data["models"]]
    assert figures == ["confusion-a.png", "confusion-a-2.png", "per-class-fidelity-a.png", "per-class-fidelity-a-2.png"]
    assert all((out / name).is_file() for name in figures)
    capsys.readouterr()
    assert analyze_cli.main(["metrics", str(mnist5k_checkpoint), "--names", " ", "-o", str(tmp_path / "m2")]) == EXIT_USER_ERROR
    assert "--names: a name is empty" in capsys.readouterr().err and not (tmp_path / "m2").exists()


def test_global_with_no_pair_writes_the_report_and_exits_3_with_a_note(mnist5k_checkpoint, mnist5k, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(analyze_cli, "load_dataset_for_spec", lambda *args, **kwargs: mnist5k)
    out = tmp_path / "global"
    argv = ["global", str(mnist5k_checkpoint), "-o", str(out), "--subset-size", "60", "--threshold", "1e9", "--attribution", "none",
            "--no-decoder", "--am-pi-steps", "0", "--quiet", "--device", "cpu"]
    assert analyze_cli.main(argv) == EXIT_EMPTY_RESULT == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("flint-analyze: note: no class-attribute pair") and "error" not in err
    assert json.loads((out / "global.json").read_text())["pairs"] == [] and (out / "index.html").is_file()


def test_help_lists_the_exit_statuses(capsys):
    for argv in (["--help"], ["global", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            analyze_cli.main(argv)
        assert exit_.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert all(part in text for part in ("exit status: 0", "2 bad input", "3 the report was written but is empty", "130 interrupted"))


# ------------------------------------------------------------------------------------------------ flint-train


def test_train_output_that_is_a_directory_is_refused_before_loading(tmp_path, capsys, nothing_runs):
    assert train_cli.main(["--dataset", "mnist5k", "-o", str(tmp_path), "--quiet"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a directory" in err and "--resume" not in err and "--overwrite" not in err


def test_train_output_under_a_file_is_refused(tmp_path, capsys, nothing_runs):
    (tmp_path / "file").write_text("x")
    assert train_cli.main(["--dataset", "mnist5k", "-o", str(tmp_path / "file" / "ckpt.pt"), "--quiet"]) == EXIT_USER_ERROR
    assert "is a file, not a folder" in capsys.readouterr().err


def test_train_resume_does_not_replace_another_checkpoint_without_overwrite(mnist5k_checkpoint, tmp_path, capsys, nothing_runs):
    target = tmp_path / "B.pt"
    target.write_bytes(b"keep me")
    assert train_cli.main(["--resume", str(mnist5k_checkpoint), "-o", str(target), "--quiet"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{target} exists; replace it with --overwrite or choose another -o" in err
    assert target.read_bytes() == b"keep me"


def test_train_interrupted_before_the_first_checkpoint_says_nothing_was_written(mnist5k, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cli, "load_dataset", lambda *args, **kwargs: mnist5k)
    monkeypatch.setattr(train_cli, "train", interrupted)
    out = tmp_path / "run" / "ckpt.pt"
    assert train_cli.main(["--dataset", "mnist5k", "-o", str(out), "--epochs", "1", "--quiet", "--device", "cpu"]) == 130
    err = capsys.readouterr().err
    assert "interrupted before the first epoch finished; no checkpoint was written" in err and not out.exists()


# ---------------------------------------------------------------------------------------------------- --version


@pytest.mark.parametrize("main", [analyze_cli.main, train_cli.main])
def test_version_prints_package_torch_and_captum_versions(main, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for package in ("flint-analysis", "torch", "captum"):
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "not installed"
        assert f"{package} {version}" in out, out
    assert out.count("\n") == 1


def test_unknown_class_name_is_one_line_after_loading(mnist5k_checkpoint, mnist5k, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(analyze_cli, "load_dataset_for_spec", lambda *args, **kwargs: mnist5k)
    out = tmp_path / "local"
    assert analyze_cli.main(["local", str(mnist5k_checkpoint), "--index", "0", "--class", "ten", "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown class 'ten'; classes are: 0, 1" in err and not out.exists()


def test_a_closed_standard_output_ends_quietly_with_status_141(mnist5k_checkpoint):
    """``flint-analyze info ckpt | head -1``: the reader goes away; no traceback, status 128 + SIGPIPE."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    read, write = os.pipe()
    os.close(read)  # nobody will read: the command's first write fails with EPIPE
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    try:
        run = subprocess.run([sys.executable, "-m", "flint_analysis.cli", "info", str(mnist5k_checkpoint)], stdout=write,
                             stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    finally:
        os.close(write)
    assert run.returncode == 141 and "Traceback" not in run.stderr, run.stderr
