"""Write local reports: one folder per sample (``report.png``, ``report.json``, ``report.html``) plus an index.

``report.json`` (``"schema": "flint-analysis/local"``) and ``local.json`` (the folder's index) are
documented in ``docs/report-schemas.md``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flint_analysis.checkpoint import Checkpoint
from flint_analysis.errors import InputError
from flint_analysis.atomic_output import OutputLayout, atomic_directory, atomic_write_bytes, write_json
from flint_analysis.local_interpretation import LocalConfig, LocalExplanation
from flint_analysis.plots import save_figure
from flint_analysis.plots.local_plots import plot_local_explanation
from flint_analysis.report_writers.common import check_output_folder, header, report_stamp
from flint_analysis.report_writers.html import Raw, escape, image, link, page, table

SCHEMA = "flint-analysis/local"
INDEX_SCHEMA = "flint-analysis/local-index"
SCHEMA_VERSION = 1
INDEX_NAME = "local.json"
SAMPLE_FILES = ("report.png", "report.json", "report.html")
SAMPLE_FOLDER = r"(?:(?:train|test)-[0-9]{5,}|image-[a-z0-9]+(?:-[a-z0-9]+)*)(?:-class-[0-9]+)?"
"""The names :meth:`SampleSource.identifier` gives sample folders (never ``..``, ``/`` or hidden)."""
LAYOUT = OutputLayout(
    kind="local", marker=INDEX_NAME, files=frozenset({INDEX_NAME, "index.html"}),
    folders=((SAMPLE_FOLDER, OutputLayout(kind="local", marker="report.json", files=frozenset(SAMPLE_FILES), required=("report.json",))),),
)
"""Everything :func:`write_local_reports` writes: ``local.json``, ``index.html`` and sample folders (named like
:data:`SAMPLE_FOLDER`, holding ``report.json`` and only :data:`SAMPLE_FILES`); a folder holding anything else is refused."""


@dataclass(frozen=True)
class SampleSource:
    """Where a sample came from: a dataset split and index, or an image file."""

    split: str | None = None
    index: int | None = None
    path: str | None = None

    def identifier(self, explained_class: int | None) -> str:
        base = f"{self.split}-{self.index:05d}" if self.path is None else "image-" + (re.sub(r"[^A-Za-z0-9]+", "-", Path(self.path).stem).strip("-").lower() or "x")
        return base if explained_class is None else f"{base}-class-{explained_class}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "image" if self.path else "dataset", "split": self.split, "index": self.index, "path": self.path}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _global_report_problem(folder: Path, data: dict[str, Any]) -> str | None:
    """What is wrong with the parts of a ``global.json`` that local reports read (``None``: nothing)."""
    pairs = data.get("pairs")
    if not isinstance(pairs, list):
        return "'pairs' is not a list"
    try:
        root = folder.resolve()
    except (OSError, RuntimeError):
        return f"cannot resolve {folder}"
    for k, pair in enumerate(pairs):
        where = f"pairs[{k}]"
        if not isinstance(pair, dict):
            return f"{where} is not an object"
        for key, check, kind in (("attribute", _is_int, "an integer"), ("class", _is_int, "an integer"),
                                 ("class_name", lambda v: isinstance(v, str), "a string"), ("relevance", _is_number, "a number")):
            if not check(pair.get(key)):
                return f"{where}.{key} is missing or not {kind}"
        if "figure" not in pair:
            return f"{where} has no 'figure'"
        figure = pair["figure"]
        if figure is not None:
            if not isinstance(figure, str) or not figure:
                return f"{where}.figure is neither null nor a file name"
            try:
                inside = not Path(figure).is_absolute() and "\\" not in figure and (root / figure).resolve().is_relative_to(root)
            except (OSError, RuntimeError, ValueError):
                inside = False
            if not inside:
                return f"{where}.figure {figure[:60]!r} points outside {folder}"
        mas = pair.get("mas")
        if not isinstance(mas, list):
            return f"{where}.mas is not a list"
        for m, sample in enumerate(mas):
            am_pi = sample.get("am_pi") if isinstance(sample, dict) else None
            if not (isinstance(sample, dict) and _is_int(sample.get("index")) and _is_number(sample.get("activation"))
                    and isinstance(am_pi, dict) and _is_number(am_pi.get("final_activation"))):
                return f"{where}.mas[{m}] lacks an integer index, a numeric activation or am_pi.final_activation"
    return None


def find_global_report(checkpoint: Checkpoint, global_dir: str | Path | None) -> tuple[Path, dict[str, Any]] | None:
    """The global report of the same checkpoint: ``global_dir``, else next to the checkpoint.

    Returns ``None`` when there is none whose ``global.json`` records this checkpoint's SHA-256. Found next
    to the checkpoint, an unreadable or malformed ``global.json`` (wrong types, a figure outside its folder)
    is skipped with a note on stderr.

    Raises:
        InputError: ``global_dir`` was given and holds no valid global report of this checkpoint.
    """
    explicit = bool(global_dir)
    candidates = [Path(global_dir)] if global_dir else []
    if checkpoint.path is not None and not global_dir:
        candidates += [checkpoint.path.parent / f"{checkpoint.path.stem}-global", checkpoint.path.parent / "global"]
    for folder in candidates:
        path = folder / "global.json"
        problem = None
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            if explicit:
                raise InputError(f"--global-dir {folder} holds no global.json; run flint-analyze global first, or leave out --global-dir") from None
            continue
        except (OSError, ValueError, RecursionError) as error:  # ValueError: invalid JSON or not UTF-8
            problem = f"cannot read it ({getattr(error, 'strerror', None) or type(error).__name__})"
            data = None
        if problem is None:
            recorded = data.get("checkpoint") if isinstance(data, dict) else None
            sha256 = recorded.get("sha256") if isinstance(recorded, dict) else None
            if not isinstance(sha256, str):
                problem = "it records no checkpoint sha256"
            elif sha256 != checkpoint.sha256:
                if explicit:
                    raise InputError(f"--global-dir {folder} is the global report of another checkpoint (sha256 {sha256[:12]}…, "
                                     f"this one is {str(checkpoint.sha256)[:12]}…)")
                continue
            else:
                problem = _global_report_problem(folder, data)
        if problem is None:
            return folder, data
        if explicit:
            raise InputError(f"--global-dir: {path} is not a usable global report: {problem}; rerun flint-analyze global")
        print(f"note: ignoring {path}: {problem}; local reports will not link to it", file=sys.stderr)
    return None


def _global_links(attribute: int, explained_class: int, global_report: tuple[Path, dict[str, Any]] | None, sample_dir: Path) -> dict[str, Any] | None:
    if global_report is None:
        return None
    folder, data = global_report
    pairs = []
    for pair in data["pairs"]:
        if pair["attribute"] != attribute:
            continue
        pairs.append({
            "class": pair["class"], "class_name": pair["class_name"], "relevance": pair["relevance"],
            "same_class": pair["class"] == explained_class,
            "figure": os.path.relpath(folder / pair["figure"], sample_dir) if pair["figure"] else None,
            "mas": [{"index": m["index"], "activation": m["activation"], "am_pi_final_activation": m["am_pi"]["final_activation"]}
                    for m in pair["mas"]],
        })
    return {"report": os.path.relpath(folder / "index.html", sample_dir), "pairs": pairs}


def local_report_data(
    explanation: LocalExplanation, source: SampleSource, checkpoint: Checkpoint, config: LocalConfig, seed: int,
    global_report: tuple[Path, dict[str, Any]] | None, sample_dir: Path,
) -> dict[str, Any]:
    """The content of one ``report.json``."""
    names = checkpoint.dataset.class_names
    f_class, g_class = explanation.f_class, explanation.g_class
    return {
        **report_stamp(SCHEMA, SCHEMA_VERSION, checkpoint),
        "sample": {**source.to_dict(), "label": explanation.label,
                   "label_name": None if explanation.label is None else names[explanation.label]},
        "prediction": {
            "f": {"class": f_class, "class_name": names[f_class], "probability": float(explanation.f_probabilities[f_class])},
            "g": {"class": g_class, "class_name": names[g_class], "probability": float(explanation.g_probabilities[g_class])},
            "f_probabilities": explanation.f_probabilities.tolist(),
            "g_probabilities": explanation.g_probabilities.tolist(),
            "agree": explanation.agree,
            "f_rank_in_g": explanation.f_rank_in_g,
        },
        "explained_class": {"index": explanation.explained_class, "name": names[explanation.explained_class],
                            "is_g_prediction": explanation.explained_class == g_class,
                            "asked": config.explained_class is not None},
        "attributes": explanation.attributes.tolist(),
        "relevance": explanation.relevances.tolist(),
        "top": [
            {
                "attribute": item.attribute,
                "relevance": item.relevance,
                "activation": item.activation,
                "direction": item.direction,
                "rank_in_class": item.rank,
                "class_size": item.class_size,
                "am_pi": {"initial_activation": float(item.am_pi.initial_activation[0]),
                          "final_activation": float(item.am_pi.final_activation[0]),
                          "gain": float(item.am_pi.gain[0]), "raised": bool(item.am_pi.raised[0])},
                "global": _global_links(item.attribute, explanation.explained_class, global_report, sample_dir),
            }
            for item in explanation.top
        ],
        "parameters": {"top": config.top, "explained_class": config.explained_class, "attribution": config.attribution,
                       "attribution_method": config.tools.attribution_record(),
                       "decoder": config.decoder, "am_pi": config.am_pi.to_dict(), "rank_class_by": config.rank_class_by,
                       "seed": seed},
        "figure": "report.png",
    }


def summary_lines(explanation: LocalExplanation, source: SampleSource, class_names: Sequence[str]) -> list[str]:
    """Two lines that say what the explanation found (printed by the CLI, shown on the page, kept in ``local.json``)."""
    f_class, g_class = explanation.f_class, explanation.g_class
    f_probability = float(explanation.f_probabilities[f_class])
    g_probability = float(explanation.g_probabilities[g_class])
    where = f"{source.split} #{source.index}" if not source.path else source.path
    label = "" if explanation.label is None else f", label {class_names[explanation.label]}"
    agreement = "agree" if explanation.agree else f"DISAGREE (f's class is g's #{explanation.f_rank_in_g})"
    top = ", ".join(f"φ{t.attribute} (r={t.relevance:.2f}, φ={t.activation:.2f}, rank {t.rank}/{t.class_size})"
                    for t in explanation.top)
    return [
        f"{where}{label}: f {class_names[f_class]} ({100 * f_probability:.1f}%), g {class_names[g_class]} ({100 * g_probability:.1f}%): {agreement}",
        f"  why {class_names[explanation.explained_class]}: {top}",
    ]


def _sample_html(data: dict[str, Any], summary: list[str]) -> str:
    names = data["dataset"]["class_names"]
    body = header("FLINT local interpretation", data)
    body.append("<p>" + "<br>".join(escape(line) for line in summary) + "</p>")
    if not data["prediction"]["agree"]:
        body.append("<p class=\"warn\">f and g disagree on this sample: the attributes explain g's decision, which is not f's "
                    "(paper: a local interpretation of f is reliable only where g(x) = f(x)).</p>")
    body.append(image(data["figure"], "local explanation"))
    rows = []
    for item in data["top"]:
        links = "no global report found" if item["global"] is None else (
            link(item["global"]["report"], "global report") + ": " + (", ".join(
                link(p["figure"], f"{p['class_name']} (r={p['relevance']:.2f})") if p["figure"] else escape(p["class_name"])
                for p in item["global"]["pairs"]) or "not in any selected pair"))
        rows.append([f"φ{item['attribute']}", f"{item['relevance']:.3f}", f"{item['activation']:.3f}",
                     f"{item['rank_in_class']} / {item['class_size']}",
                     f"{item['am_pi']['initial_activation']:.2f} → {item['am_pi']['final_activation']:.2f}"
                     + ("" if item["am_pi"]["raised"] else " (not raised)"), Raw(links)])
    body.append("<h2>Top attributes</h2>")
    body.append(table(["attribute", "r_{j,ĉ,x}", "φ_j(x)", f"rank among training samples of {names[data['explained_class']['index']]}",
                       "AM+PI φ_j", "global interpretation"], rows, numeric=[1, 2]))
    body.append("<h2>All classes</h2>")
    prediction = data["prediction"]
    body.append(table(["class", "p_f", "p_g"], [[n, f"{pf:.4f}", f"{pg:.4f}"] for n, pf, pg in
                                                 zip(names, prediction["f_probabilities"], prediction["g_probabilities"])], numeric=[1, 2]))
    body.append(f"<p>Machine-readable: {link('report.json', 'report.json')}.</p>")
    return page("FLINT local interpretation", body)


def _kept_samples(output_dir: Path, sha256: str | None) -> dict[str, dict[str, Any]]:
    """The index entries of ``output_dir``'s ``local.json`` whose sample folders stay: same checkpoint only.

    Names read from the file are never followed: an entry is kept only if its ``id`` is a sample-folder name
    (:data:`SAMPLE_FOLDER`), its ``folder`` is that same name, and ``output_dir/id`` is a real folder with ``report.json``.
    """
    try:
        previous = json.loads((output_dir / INDEX_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(previous, dict) or not isinstance(previous.get("checkpoint"), dict) or previous["checkpoint"].get("sha256") != sha256:
        return {}  # replacing (with --force) the reports of another checkpoint: none of its sample folders stays
    keep = {}
    for sample in previous.get("samples") or []:
        identifier = sample.get("id") if isinstance(sample, dict) else None
        if not isinstance(identifier, str) or not re.fullmatch(SAMPLE_FOLDER, identifier) or sample.get("folder") != identifier:
            continue
        folder = output_dir / identifier
        if folder.is_dir() and not folder.is_symlink() and (folder / "report.json").is_file() and not (folder / "report.json").is_symlink():
            keep[identifier] = sample
    return keep


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)  # files are only ever replaced by rename, never changed in place: sharing is safe
    except OSError:
        shutil.copy2(source, destination)


@dataclass(frozen=True)
class LocalReports:
    """What :func:`write_local_reports` wrote.

    Attributes:
        samples: per explanation, in the order given: its sample folder and its ``report.json`` data.
        global_report: the folder of the global report the samples link to (``None``: none was found).
    """

    samples: list[tuple[Path, dict[str, Any]]]
    global_report: Path | None


def write_local_reports(
    explanations: list[LocalExplanation], sources: list[SampleSource], checkpoint: Checkpoint, config: LocalConfig,
    seed: int, output_dir: str | Path, global_dir: str | Path | None = None, force: bool = False,
) -> LocalReports:
    """Write one folder per sample plus the folder's ``local.json``/``index.html``, all or nothing.

    The new state of the whole folder is built aside: this run's sample folders, the sample folders of earlier
    runs of the same checkpoint that ``local.json`` lists (linked, not recomputed), the index; then it replaces
    ``output_dir`` in one swap. An interrupted or failing run leaves ``output_dir`` as it was. ``output_dir`` must be
    new, empty, or hold only a local report (:data:`LAYOUT`) of this checkpoint (of any with ``force``).
    """
    config = config.for_architecture(checkpoint.architecture)
    output_dir = Path(output_dir)
    check_output_folder(output_dir, INDEX_NAME, checkpoint.sha256, force, LAYOUT)
    global_report = find_global_report(checkpoint, global_dir)
    entries: dict[str, dict[str, Any]] = {}
    written = []

    def check(target: Path) -> None:
        check_output_folder(target, INDEX_NAME, checkpoint.sha256, force, LAYOUT)

    def finish(staging: Path) -> None:  # under the folder lock, right before the swap: the current state of the folder
        keep = _kept_samples(output_dir, checkpoint.sha256)
        for identifier in keep.keys() - entries.keys():
            (staging / identifier).mkdir()
            for name in SAMPLE_FILES:
                source = output_dir / identifier / name
                if source.is_file() and not source.is_symlink():
                    _link_or_copy(source, staging / identifier / name)
        keep.update(entries)
        index = {**report_stamp(INDEX_SCHEMA, SCHEMA_VERSION, checkpoint), "samples": [keep[k] for k in sorted(keep)]}
        write_json(staging / INDEX_NAME, index)
        rows = [[Raw(link(f"{s['folder']}/report.html", s["id"])), s["summary"][0], s["summary"][1]] for s in index["samples"]]
        body = header("FLINT local interpretations", index) + [table(["sample", "predictions", "top attributes"], rows)]
        atomic_write_bytes(staging / "index.html", page("FLINT local interpretations", body).encode())

    with atomic_directory(output_dir, LAYOUT, check, finish) as staging:
        for explanation, source in zip(explanations, sources):
            identifier = source.identifier(config.explained_class)
            sample_dir = output_dir / identifier
            data = local_report_data(explanation, source, checkpoint, config, seed, global_report, sample_dir)
            (staging / identifier).mkdir(exist_ok=True)
            save_figure(plot_local_explanation(explanation, checkpoint.dataset.class_names, checkpoint.dataset.value_range,
                                               config.attribution), staging / identifier / "report.png")
            summary = summary_lines(explanation, source, checkpoint.dataset.class_names)
            write_json(staging / identifier / "report.json", data)
            (staging / identifier / "report.html").write_text(_sample_html(data, summary))
            entries[identifier] = {"id": identifier, "folder": identifier, "summary": summary,
                                   "agree": data["prediction"]["agree"], "sample": data["sample"]}
            written.append((sample_dir, data))
    return LocalReports(samples=written, global_report=None if global_report is None else global_report[0])
