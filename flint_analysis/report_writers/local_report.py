"""Write local reports: one folder per sample (``report.png``, ``report.json``, ``report.html``) plus an index.

``report.json`` (``"schema": "flint-analysis/local"``) and ``local.json`` (the folder's index) are
documented in ``docs/report-schemas.md``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flint_analysis.checkpoint import Checkpoint
from flint_analysis.atomic_output import atomic_directory, atomic_write_bytes, write_json
from flint_analysis.local_interpretation import LocalConfig, LocalExplanation
from flint_analysis.plots import save_figure
from flint_analysis.plots.local_plots import plot_local_explanation
from flint_analysis.report_writers.common import check_output_folder, header, provenance
from flint_analysis.report_writers.html import Raw, escape, image, link, page, table

SCHEMA = "flint-analysis/local"
INDEX_SCHEMA = "flint-analysis/local-index"
SCHEMA_VERSION = 1
INDEX_NAME = "local.json"


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


def find_global_report(checkpoint: Checkpoint, global_dir: str | Path | None) -> tuple[Path, dict[str, Any]] | None:
    """The global report of the same checkpoint: ``global_dir``, else next to the checkpoint.

    Returns ``None`` when there is none whose ``global.json`` records this checkpoint's SHA-256.
    """
    candidates = [Path(global_dir)] if global_dir else []
    if checkpoint.path is not None and not global_dir:
        candidates += [checkpoint.path.parent / f"{checkpoint.path.stem}-global", checkpoint.path.parent / "global"]
    for folder in candidates:
        try:
            data = json.loads((folder / "global.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if data.get("checkpoint", {}).get("sha256") == checkpoint.sha256:
            return folder, data
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
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        **provenance(checkpoint),
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
                       "decoder": config.decoder, "am_pi": config.am_pi.to_dict(), "rank_class_by": config.rank_class_by,
                       "seed": seed},
        "figure": "report.png",
    }


def summary_lines(data: dict[str, Any]) -> list[str]:
    """Two lines that say what the report found (printed by the CLI, shown on the page)."""
    prediction = data["prediction"]
    f, g = prediction["f"], prediction["g"]
    sample = data["sample"]
    where = f"{sample['split']} #{sample['index']}" if sample["kind"] == "dataset" else sample["path"]
    label = "" if sample["label"] is None else f", label {sample['label_name']}"
    agreement = "agree" if prediction["agree"] else f"DISAGREE (f's class is g's #{prediction['f_rank_in_g']})"
    top = ", ".join(f"φ{t['attribute']} (r={t['relevance']:.2f}, φ={t['activation']:.2f}, rank {t['rank_in_class']}/{t['class_size']})"
                    for t in data["top"])
    return [
        f"{where}{label}: f {f['class_name']} ({100 * f['probability']:.1f}%), g {g['class_name']} ({100 * g['probability']:.1f}%): {agreement}",
        f"  why {data['explained_class']['name']}: {top}",
    ]


def _sample_html(data: dict[str, Any]) -> str:
    names = data["dataset"]["class_names"]
    body = header("FLINT local interpretation", data)
    body.append("<p>" + "<br>".join(escape(line) for line in summary_lines(data)) + "</p>")
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


def write_local_reports(
    explanations: list[LocalExplanation], sources: list[SampleSource], checkpoint: Checkpoint, config: LocalConfig,
    seed: int, output_dir: str | Path, global_dir: str | Path | None = None, force: bool = False,
) -> list[tuple[Path, dict[str, Any]]]:
    """Write one folder per sample (each atomically) and update the folder's ``local.json``/``index.html``."""
    output_dir = Path(output_dir)
    check_output_folder(output_dir, INDEX_NAME, checkpoint.sha256, force)
    global_report = find_global_report(checkpoint, global_dir)
    index_path = output_dir / INDEX_NAME
    previous = json.loads(index_path.read_text()) if index_path.is_file() else {}
    if previous.get("checkpoint", {}).get("sha256") == checkpoint.sha256:
        keep = {s["id"]: s for s in previous.get("samples", [])}
    else:  # replacing (with --force) the reports of another checkpoint: none of its sample folders may stay
        keep = {}
        for sample in previous.get("samples", []):
            stale = output_dir / Path(sample["folder"]).name
            if stale.is_dir() and (stale / "report.json").is_file():
                shutil.rmtree(stale)
    written = []
    for explanation, source in zip(explanations, sources):
        identifier = source.identifier(config.explained_class)
        sample_dir = output_dir / identifier
        data = local_report_data(explanation, source, checkpoint, config, seed, global_report, sample_dir)
        with atomic_directory(sample_dir) as staging:
            save_figure(plot_local_explanation(explanation, checkpoint.dataset.class_names, checkpoint.dataset.value_range,
                                               config.attribution), staging / "report.png")
            write_json(staging / "report.json", data)
            (staging / "report.html").write_text(_sample_html(data))
        keep[identifier] = {"id": identifier, "folder": identifier, "summary": summary_lines(data),
                            "agree": data["prediction"]["agree"], "sample": data["sample"]}
        written.append((sample_dir, data))
    index = {"schema": INDEX_SCHEMA, "schema_version": SCHEMA_VERSION, **provenance(checkpoint),
             "samples": [keep[k] for k in sorted(keep)]}
    write_json(index_path, index)
    rows = [[Raw(link(f"{s['folder']}/report.html", s["id"])), s["summary"][0], s["summary"][1]] for s in index["samples"]]
    body = header("FLINT local interpretations", index) + [table(["sample", "predictions", "top attributes"], rows)]
    atomic_write_bytes(output_dir / "index.html", page("FLINT local interpretations", body).encode())
    return written
