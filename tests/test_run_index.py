"""The run index in a parent folder of reports: created, updated, never overwriting the user's files; and a link checker."""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from flint_analysis.report_writers import run_index
from flint_analysis.report_writers.run_index import GENERATOR_MARKER, find_reports, is_run_index, refresh_run_index


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        if tag == "a" and values.get("name"):
            self.ids.add(values["name"])
        for key in ("href", "src"):
            if values.get(key):
                self.references.append(values[key])


def _parse(page: Path) -> _LinkParser:
    parser = _LinkParser()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def broken_links(page: Path, check_anchors_in_other_pages: bool = True) -> list[str]:
    """Every ``href``/``src`` of ``page`` that does not resolve: a relative path that must exist (relative to the
    page), and an ``#anchor`` that must be an ``id`` of its target page. Absolute paths and ``file:`` URLs are
    broken by definition (they do not survive copying the run folder)."""
    problems = []
    for reference in _parse(page).references:
        parts = urlsplit(reference)
        if parts.scheme in ("http", "https", "mailto"):
            continue
        if parts.scheme or parts.netloc or reference.startswith("/"):
            problems.append(f"{reference} (not relative)")
            continue
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        if not target.exists():
            problems.append(f"{reference} (missing)")
            continue
        if parts.fragment and (target == page or check_anchors_in_other_pages):
            if target.suffix != ".html" or parts.fragment not in _parse(target).ids:
                problems.append(f"{reference} (no such anchor)")
    return problems


def _report(parent: Path, folder: str, kind_json: str, schema: str, **fields) -> Path:
    path = parent / folder
    path.mkdir(parents=True)
    data = {"schema": schema, "checkpoint": {"path": "/somewhere/ckpt.pt", "sha256": "ab" * 32}, **fields}
    (path / kind_json).write_text(json.dumps(data))
    (path / "index.html").write_text("<p>report</p>")
    return path


def _two_reports(parent: Path) -> None:
    _report(parent, "metrics", "metrics.json", "flint-analysis/metrics", split="test",
            models=[{"name": "flint", "metrics": {"accuracy_f": 97.25, "accuracy_g": 96.5, "fidelity": 97.0, "g_at_chance": False}},
                    {"name": "base-f", "metrics": {"accuracy_f": 97.0, "accuracy_g": 7.0, "fidelity": 8.0, "g_at_chance": True}}])
    _report(parent, "disagreement", "disagreement.json", "flint-analysis/disagreement", split="test", k=3,
            counts={"samples": 1000, "disagreements": 27, "within_top_k": 20, "outside_top_k": 7, "outside_top_k_f_correct": 5})


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_an_index_is_created_when_two_reports_share_a_folder_and_links_each(tmp_path):
    _report(tmp_path, "global", "global.json", "flint-analysis/global", pairs=[{"class": 0}, {"class": 0}, {"class": 3}],
            am_pi_summary={"runs": 6, "activated": 4, "raised": 6})
    outcome = refresh_run_index(tmp_path)
    assert outcome.status == "too_few" and not (tmp_path / "index.html").exists()
    _two_reports(tmp_path)
    (tmp_path / "notes").mkdir()  # not a report: ignored
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "global.json").write_text(json.dumps({"checkpoint": {"sha256": "x"}}))  # no schema: ignored
    (tmp_path / "fake" / "index.html").write_text("x")
    outcome = refresh_run_index(tmp_path)
    assert outcome.status == "written" and [r.folder for r in outcome.reports] == ["global", "metrics", "disagreement"]
    page = tmp_path / "index.html"
    text = page.read_text()
    assert is_run_index(page) and GENERATOR_MARKER in text
    assert "3 class-attribute pairs over 2 classes; AM+PI activated the attribute in 4 of 6 runs" in text
    assert "flint: f 97.2 %, g 96.5 %, fidelity 97.0 %; base-f: f 97.0 %, g 7.0 % (g at chance), fidelity 8.0 %" in text
    assert "g ≠ f on 27 of 1000 test samples; 5 of the worst kind (f right, f&#x27;s class outside g&#x27;s top-3)" in text
    assert "ckpt.pt" in text and "abababababab" in text and "/somewhere" not in text
    assert broken_links(page) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert refresh_run_index(tmp_path).status == "unchanged"


def test_an_index_of_ours_is_updated_and_one_that_is_not_is_never_touched(tmp_path):
    _two_reports(tmp_path)
    page = tmp_path / "index.html"
    page.write_text("<html>my own notes</html>")
    before = _snapshot(tmp_path)
    outcome = refresh_run_index(tmp_path)
    assert outcome.status == "foreign" and _snapshot(tmp_path) == before
    # the marker must be near the start: a file that merely quotes it far below is not ours
    page.write_text("<html>" + "x" * 5000 + GENERATOR_MARKER + "</html>")
    before = _snapshot(tmp_path)
    assert refresh_run_index(tmp_path).status == "foreign" and _snapshot(tmp_path) == before
    # ours: replaced, and a new report appears in it
    page.unlink()
    assert refresh_run_index(tmp_path).status == "written"
    _report(tmp_path, "global", "global.json", "flint-analysis/global", pairs=[])
    assert refresh_run_index(tmp_path).status == "written" and "global/index.html" in page.read_text()
    # ours is kept up to date even when fewer than two reports remain (nothing is deleted)
    for name in ("metrics", "disagreement"):
        (tmp_path / name / "index.html").unlink()
    outcome = refresh_run_index(tmp_path)
    assert outcome.status == "written" and [r.folder for r in outcome.reports] == ["global"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disagreement", "global", "index.html", "metrics"]


def test_a_link_or_folder_named_index_html_is_left_alone(tmp_path):
    _two_reports(tmp_path)
    target = tmp_path / "elsewhere.html"
    target.write_text(GENERATOR_MARKER)  # even a link to a file of ours is not ours
    (tmp_path / "index.html").symlink_to(target)
    assert refresh_run_index(tmp_path).status == "foreign"
    assert (tmp_path / "index.html").is_symlink() and target.read_text() == GENERATOR_MARKER
    (tmp_path / "index.html").unlink()
    (tmp_path / "index.html").mkdir()
    assert refresh_run_index(tmp_path).status == "foreign" and (tmp_path / "index.html").is_dir()


def test_creation_never_overwrites_a_file_that_appears_meanwhile(tmp_path):
    path = tmp_path / "index.html"
    path.write_text("theirs")
    assert run_index._write_new(path, b"ours", replace=False) is False
    assert path.read_text() == "theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]


def test_a_failure_to_write_is_an_outcome_not_an_exception(tmp_path, monkeypatch):
    _two_reports(tmp_path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(run_index, "_write_new", refuse)
    outcome = refresh_run_index(tmp_path)
    assert outcome.status == "failed" and outcome.message == "Permission denied" and not (tmp_path / "index.html").exists()
    assert refresh_run_index(tmp_path / "missing").status == "too_few"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_parent_is_reported(tmp_path):
    _two_reports(tmp_path)
    tmp_path.chmod(0o555)
    try:
        assert refresh_run_index(tmp_path).status == "failed"
    finally:
        tmp_path.chmod(0o755)


def test_the_cli_writes_the_index_after_a_report_and_warns_when_it_cannot(mnist5k_checkpoint, tmp_path, capsys, monkeypatch):
    from flint_analysis.cli import main

    run = tmp_path / "run"
    _report(run, "disagreement", "disagreement.json", "flint-analysis/disagreement", split="test", k=3,
            counts={"samples": 10, "disagreements": 1, "outside_top_k_f_correct": 0})
    assert main(["metrics", str(mnist5k_checkpoint), "-o", str(run / "metrics"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"updated {run / 'index.html'} (links 2 reports)" in printed and is_run_index(run / "index.html")
    assert broken_links(run / "index.html") == []
    monkeypatch.setattr(run_index, "_write_new", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    (run / "index.html").unlink()
    assert main(["metrics", str(mnist5k_checkpoint), "-o", str(run / "metrics"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: could not write the run index" in err and "Permission denied" in err
    assert (run / "metrics" / "metrics.json").is_file() and not (run / "index.html").exists()
    assert find_reports(run)[0].kind == "metrics"
