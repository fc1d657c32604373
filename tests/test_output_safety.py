"""Output folders never lose a user's files: only a report's own files are replaced, all or nothing, one line on error.

The scenarios go through ``flint_analysis.cli.main`` on the session's tiny mnist5k checkpoint, with the data cut
to a few hundred samples and the figures not drawn, so that each run takes a second or two.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import flint_analysis
from flint_analysis import cli
from flint_analysis.atomic_output import OutputLayout, atomic_directory, remove_stale_leftovers
from flint_analysis.checkpoint import load_checkpoint
from flint_analysis.cli import main
from flint_analysis.datasets import DatasetBundle, ImageDataset
from flint_analysis.errors import OutputError
from flint_analysis.report_writers import global_report, local_report, metrics_report
from flint_analysis.report_writers.common import check_output_folder

GLOBAL = ["--subset-size", "50", "--mas", "1", "--am-pi-steps", "2", "--attribution", "none", "--no-decoder", "--quiet"]
LOCAL = ["--top", "1", "--am-pi-steps", "2", "--attribution", "none", "--no-decoder", "--quiet"]
fcntl = pytest.importorskip("fcntl")


@pytest.fixture(autouse=True)
def small_data(monkeypatch, mnist5k):
    """The checkpoint's real dataset, cut to 300 training and 100 test samples (the numbers do not matter here)."""
    bundle = DatasetBundle(mnist5k.spec, ImageDataset(mnist5k.train.images[:300], mnist5k.train.labels[:300]),
                           ImageDataset(mnist5k.test.images[:100], mnist5k.test.labels[:100]))
    monkeypatch.setattr(cli, "load_dataset_for_spec", lambda spec, **kwargs: bundle)


@pytest.fixture(autouse=True)
def fast_figures(monkeypatch):
    """Figures are not drawn (a few bytes stand for each PNG): these tests are about where files go."""
    from flint_analysis.report_writers import disagreement_report

    for module in (global_report, local_report, metrics_report, disagreement_report):
        for name in dir(module):
            if name.startswith("plot_"):
                monkeypatch.setattr(module, name, lambda *args, **kwargs: None)
        monkeypatch.setattr(module, "save_figure", lambda figure, path: Path(path).write_bytes(b"\x89PNG stand-in"))


@pytest.fixture
def other_checkpoint(mnist5k_checkpoint, tmp_path) -> Path:
    path = tmp_path / "other.pt"
    checkpoint = load_checkpoint(mnist5k_checkpoint)
    checkpoint.training = {"seed": 1}
    checkpoint.save(path)
    return path


def one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("flint-analyze: error:") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def hidden(folder: Path) -> list[str]:
    """Hidden entries anywhere below ``folder``: staging folders, retired folders, temporary files."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(folder.rglob("*"))}


def sha256(path: Path) -> str:
    return load_checkpoint(path).sha256


def test_metrics_into_the_checkpoints_own_folder_is_refused_and_deletes_nothing(mnist5k_checkpoint, tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "via-link").symlink_to(real)
    assert main(["metrics", str(mnist5k_checkpoint), "-o", str(tmp_path / "via-link"), "--quiet"]) == 0  # a link stands for its folder
    assert (tmp_path / "via-link").is_symlink() and (real / "metrics.json").is_file()
    folder = tmp_path / "D"  # the issue: the checkpoint, a notes file and a metrics report of that checkpoint, in one folder
    folder.mkdir()
    checkpoint = folder / "ckpt.pt"
    checkpoint.write_bytes(mnist5k_checkpoint.read_bytes())
    (folder / "notes.txt").write_text("mine")
    for report_file in real.iterdir():
        (folder / report_file.name).write_bytes(report_file.read_bytes())
    before = snapshot(folder)
    capsys.readouterr()
    for extra in ([], ["--force"]):
        assert main(["metrics", str(checkpoint), "-o", str(folder), "--quiet", *extra]) == 2
        one_line_error(capsys, "ckpt.pt", "notes.txt", "besides its metrics report", "--force does not change this", "-o")
        assert snapshot(folder) == before
    assert hidden(tmp_path) == []


def test_force_never_follows_folder_names_read_from_local_json(mnist5k_checkpoint, tmp_path, capsys):
    parent = tmp_path / "P"
    output = parent / "sub"
    output.mkdir(parents=True)
    (parent / "beside.txt").write_text("mine")
    (parent / "beside").mkdir()
    (parent / "beside" / "report.json").write_text("{}")
    index = {"checkpoint": {"sha256": "0" * 64}, "samples": [{"id": "..", "folder": ".."}, {"id": "test-00001", "folder": "../beside"},
                                                             {"id": "/etc", "folder": "/etc"}]}
    (output / "local.json").write_text(json.dumps(index))
    (output / "index.html").write_text("<p>another checkpoint's</p>")
    assert main(["local", str(mnist5k_checkpoint), "-o", str(output), "--index", "2", *LOCAL]) == 2
    one_line_error(capsys, "holds a report of another checkpoint", "--force")
    assert main(["local", str(mnist5k_checkpoint), "-o", str(output), "--index", "2", *LOCAL, "--force"]) == 0
    assert (parent / "beside.txt").read_text() == "mine" and (parent / "beside" / "report.json").read_text() == "{}"
    assert sorted(p.name for p in parent.iterdir()) == ["beside", "beside.txt", "sub"]
    assert sorted(p.name for p in output.iterdir()) == ["index.html", "local.json", "test-00002"]
    assert [s["id"] for s in json.loads((output / "local.json").read_text())["samples"]] == ["test-00002"]
    # a local.json of this very checkpoint that lists ".." keeps only the sample folders it may name
    data = json.loads((output / "local.json").read_text())
    data["samples"].append({"id": "..", "folder": ".."})
    (output / "local.json").write_text(json.dumps(data))
    assert main(["local", str(mnist5k_checkpoint), "-o", str(output), "--index", "3", *LOCAL]) == 0
    assert [s["id"] for s in json.loads((output / "local.json").read_text())["samples"]] == ["test-00002", "test-00003"]
    assert (parent / "beside.txt").read_text() == "mine" and hidden(tmp_path) == []


def test_output_paths_that_cannot_be_a_report_folder_are_one_line_errors(mnist5k_checkpoint, tmp_path, monkeypatch, capsys):
    def refused(output: str, *fragments: str) -> None:
        assert main(["global", str(mnist5k_checkpoint), "-o", output, *GLOBAL]) == 2
        one_line_error(capsys, *fragments)

    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    refused(str(dangling), "is a symbolic link to", "does not exist")
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    refused(str(notes / "sub"), "which is a file")
    refused(str(notes), "is a file")
    assert notes.read_text() == "mine"
    report = tmp_path / "report"
    report.mkdir()
    (report / "global.json").write_text(json.dumps({"checkpoint": {"sha256": sha256(mnist5k_checkpoint)}}))
    monkeypatch.chdir(report)
    refused(".", "is the current folder", "run the command from another folder")
    (report / "classes").mkdir()
    monkeypatch.chdir(report / "classes")
    refused("..", "is the current folder or contains it")
    assert sorted(p.name for p in report.iterdir()) == ["classes", "global.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "notes.txt", "report"]


def test_a_full_disk_or_a_read_only_folder_is_one_line_and_leaves_nothing(mnist5k_checkpoint, tmp_path, monkeypatch, capsys):
    real_save = global_report.save_figure
    calls = []

    def disk_fills_up(figure, path):
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"\x89PNG half")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(figure, path)

    monkeypatch.setattr(global_report, "save_figure", disk_fills_up)
    out = tmp_path / "global"
    assert main(["global", str(mnist5k_checkpoint), "-o", str(out), *GLOBAL]) == 2
    one_line_error(capsys, f"cannot write report to {out}: No space left on device (errno ENOSPC); free space or choose another -o")
    assert not out.exists() and hidden(tmp_path) == []
    monkeypatch.setattr(global_report, "save_figure", real_save)

    # a read-only folder: for real unless root (whom chmod does not stop), and always simulated
    import tempfile

    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0:
        locked.chmod(0o555)
        try:
            assert main(["disagreement", str(mnist5k_checkpoint), "-o", str(locked / "d"), "--no-depth", "--quiet"]) == 2
        finally:
            locked.chmod(0o755)
        one_line_error(capsys, "Permission denied (errno EACCES); make it writable or choose another -o")
    real_mkdtemp = tempfile.mkdtemp

    def read_only(*args, **kwargs):
        if Path(kwargs.get("dir", "")) == locked:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_mkdtemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    assert main(["disagreement", str(mnist5k_checkpoint), "-o", str(locked / "d"), "--no-depth", "--quiet"]) == 2
    one_line_error(capsys, f"cannot write report to {locked / 'd'}: Permission denied (errno EACCES); make it writable")
    monkeypatch.setattr(tempfile, "mkdtemp", real_mkdtemp)
    assert list(locked.iterdir()) == []

    # a checkpoint write on a full disk: one OutputError line, the old file intact, no temporary file
    target = tmp_path / "ckpt.pt"
    target.write_bytes(b"old")

    def no_space(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OutputError, match=r"cannot write .*ckpt.pt: No space left on device \(errno ENOSPC\); free space or choose another output path"):
        load_checkpoint(mnist5k_checkpoint).save(target)
    assert target.read_bytes() == b"old" and hidden(tmp_path) == []


def test_an_interrupted_or_failing_local_run_leaves_the_folder_as_it_was(mnist5k_checkpoint, tmp_path, monkeypatch, capsys):
    out = tmp_path / "local"
    command = ["local", str(mnist5k_checkpoint), "-o", str(out), *LOCAL]
    assert main([*command, "--index", "0"]) == 0
    before = snapshot(out)
    real_save = local_report.save_figure
    for failure, status, message in ((KeyboardInterrupt(), 130, "interrupted; nothing was written"),
                                     (OSError(errno.ENOSPC, "No space left on device"), 2, "No space left on device (errno ENOSPC)")):
        calls = []

        def fails_on_the_second_sample(figure, path, failure=failure, calls=calls):
            calls.append(path)
            if len(calls) == 2:  # the first new sample folder is complete
                raise failure
            real_save(figure, path)

        monkeypatch.setattr(local_report, "save_figure", fails_on_the_second_sample)
        capsys.readouterr()
        assert main([*command, "--index", *map(str, range(1, 8))]) == status
        err = capsys.readouterr().err
        assert message in err and err.strip().count("\n") == 0, err
        assert snapshot(out) == before and hidden(tmp_path) == []
    monkeypatch.setattr(local_report, "save_figure", real_save)
    assert main([*command, "--index", *map(str, range(1, 8))]) == 0  # the same command now runs: the folder is a report
    expected = [f"test-{i:05d}" for i in range(8)]
    assert [s["id"] for s in json.loads((out / "local.json").read_text())["samples"]] == expected
    assert sorted(p.name for p in out.iterdir()) == sorted([*expected, "index.html", "local.json"])
    assert (out / "test-00000" / "report.json").read_bytes() == before["test-00000/report.json"]  # kept as it was


KILLED_WRITER = """
import os, signal, sys, types
package = types.ModuleType("flint_analysis")
package.__path__ = [sys.argv[1]]
sys.modules["flint_analysis"] = package  # only the two modules below, without torch
from flint_analysis.atomic_output import atomic_directory, atomic_write_bytes
folder = sys.argv[2]
with atomic_directory(os.path.join(folder, "g")) as staging:
    (staging / "global.json").write_text("{}")
    os.fsync = lambda descriptor: os.kill(os.getpid(), signal.SIGKILL)
    atomic_write_bytes(os.path.join(folder, "ckpt.pt"), b"x" * 1_000_000)
"""


def test_leftovers_of_killed_runs_are_removed_by_the_next_run_and_live_ones_kept(mnist5k_checkpoint, tmp_path):
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(Path(flint_analysis.__file__).parent), str(tmp_path)],
                            capture_output=True, timeout=60)
    assert killed.returncode == -9, killed.stderr
    leftovers = hidden(tmp_path)
    assert len(leftovers) == 2 and {Path(p).suffix for p in leftovers} == {".partial", ".tmp"}  # a staging folder, a temporary file
    past = time.time() - 3600
    for name in leftovers:
        os.utime(tmp_path / name, (past, past))
    live = tmp_path / ".g.live1234.partial"  # another run's staging folder, still held by that run
    fresh = tmp_path / ".g.fresh123.partial"  # made after this process started: may be a run starting right now
    foreign = tmp_path / ".notes.abcd1234.partial"  # not our name
    for folder in (live, fresh, foreign):
        folder.mkdir()
    for folder in (live, foreign):
        os.utime(folder, (past, past))
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        assert main(["global", str(mnist5k_checkpoint), "-o", str(tmp_path / "g"), *GLOBAL]) == 0
        load_checkpoint(mnist5k_checkpoint).save(tmp_path / "ckpt.pt")
        assert hidden(tmp_path) == sorted(p.name for p in (live, fresh, foreign))
    finally:
        os.close(holder)
    # killed between the two renames of a swap: the previous folder is put back, not deleted
    retired = tmp_path / ".r.abcd1234.old"
    (retired / "previous").mkdir(parents=True)
    (retired / "previous" / "who.txt").write_text("previous")
    os.utime(retired, (past, past))
    remove_stale_leftovers(tmp_path / "r")
    assert (tmp_path / "r" / "who.txt").read_text() == "previous" and not retired.exists()


def test_two_runs_of_different_checkpoints_into_one_folder_cannot_both_win(mnist5k_checkpoint, other_checkpoint, tmp_path,
                                                                            monkeypatch, capsys):
    out = tmp_path / "metrics"
    real_save = metrics_report.save_figure
    raced = []

    def the_other_run_finishes_meanwhile(figure, path):
        if not raced:  # run A passed its check and is building its folder: run B starts and finishes
            raced.append(None)
            raced[0] = main(["metrics", str(other_checkpoint), "-o", str(out), "--quiet"])
        real_save(figure, path)

    monkeypatch.setattr(metrics_report, "save_figure", the_other_run_finishes_meanwhile)
    assert main(["metrics", str(mnist5k_checkpoint), "-o", str(out), "--quiet"]) == 2 and raced == [0]
    one_line_error(capsys, "holds a report of another checkpoint", "--force")
    assert json.loads((out / "metrics.json").read_text())["checkpoint"]["sha256"] == sha256(other_checkpoint)
    assert hidden(tmp_path) == []


def test_concurrent_writers_recheck_under_the_lock(tmp_path):
    target = tmp_path / "report"
    layout = OutputLayout(kind="test", marker="who.txt", files=frozenset({"who.txt"}))
    both_built = threading.Barrier(2)
    results: dict[str, str] = {}

    def write(name: str) -> None:
        def check(folder: Path) -> None:
            if (folder / "who.txt").exists() and (folder / "who.txt").read_text() != name:
                raise OutputError(f"{folder} holds another writer's report")
        try:
            with atomic_directory(target, layout, check) as staging:
                (staging / "who.txt").write_text(name)
                both_built.wait(timeout=30)
            results[name] = "wrote"
        except OutputError:
            results[name] = "refused"

    threads = [threading.Thread(target=write, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results.values()) == ["refused", "wrote"]
    assert (target / "who.txt").read_text() == next(n for n, r in results.items() if r == "wrote")
    assert hidden(tmp_path) == []


def test_layouts_name_exactly_what_each_report_writes(mnist5k_checkpoint, tmp_path, capsys):
    sha = sha256(mnist5k_checkpoint)
    folder = tmp_path / "local"
    sample = folder / "test-00001"
    sample.mkdir(parents=True)
    (sample / "report.json").write_text(json.dumps({"checkpoint": {"sha256": sha}}))
    (folder / ".index.html.abcd1234.tmp").write_text("")  # a leftover of an older version's in-place write: ours
    # an interrupted run of an older version: sample folders without local.json
    with pytest.raises(OutputError, match="incomplete local report .*pass --force"):
        check_output_folder(folder, "local.json", sha, force=False)
    check_output_folder(folder, "local.json", sha, force=True)
    (folder / "local.json").write_text(json.dumps({"checkpoint": {"sha256": sha}}))
    check_output_folder(folder, "local.json", sha, force=False)
    for name, make in (("test-00001/notes.txt", lambda p: p.write_text("")), ("image-X", lambda p: p.mkdir()),
                       ("test-00002/", lambda p: p.mkdir()), ("link", lambda p: p.symlink_to(tmp_path)),
                       ("..x", lambda p: p.write_text(""))):
        path = folder / name.rstrip("/")
        make(path)
        with pytest.raises(OutputError, match="besides its local report") as refused:
            check_output_folder(folder, "local.json", sha, force=True)
        assert name in str(refused.value)
        os.unlink(path) if path.is_symlink() or path.is_file() else path.rmdir()
    assert global_report.LAYOUT.foreign_entries(folder) == ["local.json", "test-00001/"]
    classes = tmp_path / "global" / "classes"
    classes.mkdir(parents=True)
    (classes / global_report.class_figure_name(3, "T-shirt/top").split("/")[1]).write_text("")
    (classes / "class-03-T-shirt.png").write_text("")
    assert global_report.LAYOUT.foreign_entries(tmp_path / "global") == ["classes/class-03-T-shirt.png"]
    assert metrics_report.LAYOUT.owns_file("confusion-my-model-2.png") and not metrics_report.LAYOUT.owns_file("confusion-.png")
    for source in (local_report.SampleSource(split="test", index=12), local_report.SampleSource(path="/x/My Image (2).png")):
        for explained in (None, 4):
            assert local_report.LAYOUT.folder_layout(source.identifier(explained)) is not None
