"""Write local reports: one folder per sample plus an index.

A sample folder holds ``report.png`` (the figure), ``report.json``, ``report.html``, ``arrays.npz`` (the input, AM+PI
images, attribution maps and decoder drawings as arrays), ``input.png`` (the index's thumbnail) and the thumbnails
``mas-phi{j}-{k}.png`` of each top attribute's maximum activating samples. ``report.json``
(``"schema": "flint-analysis/local"``) and ``local.json`` (the folder's index) are documented in
``docs/report-schemas.md``.
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

import torch
from torch import Tensor

from flint_analysis.checkpoint import Checkpoint
from flint_analysis.datasets import ImageDataset
from flint_analysis.errors import InputError
from flint_analysis.atomic_output import OutputLayout, atomic_directory, atomic_write_bytes, write_json
from flint_analysis.inputs import looks_inverted
from flint_analysis.local_interpretation import AttributeExplanation, LocalConfig, LocalExplanation
from flint_analysis.plots import save_figure
from flint_analysis.plots.local_plots import plot_local_explanation, save_thumbnail
from flint_analysis.report_writers.common import ARRAYS_NAME, check_output_folder, header, report_stamp, write_arrays
from flint_analysis.report_writers.html import Raw, escape, how_to_read, image, lead, link, page, table

SCHEMA = "flint-analysis/local"
INDEX_SCHEMA = "flint-analysis/local-index"
SCHEMA_VERSION = 1
INDEX_NAME = "local.json"
SAMPLE_FILES = ("report.png", "report.json", "report.html", ARRAYS_NAME, "input.png")
THUMBNAIL_FILE = r"mas-phi[0-9]+-[0-9]+\.png"
"""Names of the sample thumbnails of the top attributes (:func:`thumbnail_name`)."""
SAMPLE_FOLDER = r"(?:(?:train|test)-[0-9]{5,}|image-[a-z0-9]+(?:-[a-z0-9]+)*)(?:-class-[0-9]+)?"
"""The names :meth:`SampleSource.identifier` gives sample folders (never ``..``, ``/`` or hidden)."""
SAMPLE_LAYOUT = OutputLayout(kind="local", marker="report.json", files=frozenset(SAMPLE_FILES), file_patterns=(THUMBNAIL_FILE,),
                             required=("report.json",))
LAYOUT = OutputLayout(kind="local", marker=INDEX_NAME, files=frozenset({INDEX_NAME, "index.html"}), folders=((SAMPLE_FOLDER, SAMPLE_LAYOUT),))
"""Everything :func:`write_local_reports` writes: ``local.json``, ``index.html`` and sample folders (named like
:data:`SAMPLE_FOLDER`, holding ``report.json`` and only :data:`SAMPLE_FILES` and thumbnails); a folder holding anything else is refused."""


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
    report = os.path.relpath(folder / "index.html", sample_dir)
    pairs = []
    for pair in data["pairs"]:
        if pair["attribute"] != attribute:
            continue
        pairs.append({
            "class": pair["class"], "class_name": pair["class_name"], "relevance": pair["relevance"],
            "same_class": pair["class"] == explained_class,
            "link": f"{report}#pair-c{pair['class']}-j{attribute}",
            "figure": os.path.relpath(folder / pair["figure"], sample_dir) if pair["figure"] else None,
            "mas": [{"index": m["index"], "activation": m["activation"], "am_pi_final_activation": m["am_pi"]["final_activation"]}
                    for m in pair["mas"]],
        })
    return {"report": report, "pairs": pairs}


def thumbnail_name(attribute: int, position: int) -> str:
    """File name of the ``position``-th sample thumbnail of attribute ``attribute`` in a sample folder."""
    return f"mas-phi{attribute}-{position}.png"


def _thumbnail_samples(item: AttributeExplanation, explained_class: int, global_report: tuple[Path, dict[str, Any]] | None,
                       training_size: int | None) -> tuple[str, list[tuple[int, float]]]:
    """Where the samples shown for a top attribute come from and their (training index, φ_j).

    The MAS of the global report's pair (ĉ, j) when it has one (indices checked against the training split),
    else the attribute's top activating training samples of class ĉ.
    """
    if global_report is not None and training_size is not None:
        for pair in global_report[1]["pairs"]:
            if pair["class"] == explained_class and pair["attribute"] == item.attribute and pair["mas"]:
                samples = [(m["index"], float(m["activation"])) for m in pair["mas"]]
                if all(0 <= index < training_size for index, _ in samples):
                    return "global", samples
    return "training", list(zip(item.class_samples, item.class_sample_activations))


def _percentile_text(rank: int, size: int) -> str:
    """``rank`` of ``size`` as "top 3 %" (the highest: "highest of 400")."""
    if rank <= 1:
        return f"highest of {size}"
    share = 100.0 * rank / max(size, 1)
    return f"top {share:.0f} %" if share >= 10 else f"top {share:.1f} %"


def sample_warnings(explanation: LocalExplanation, source: SampleSource, class_names: Sequence[str],
                    value_range: tuple[float, float], config: LocalConfig) -> list[dict[str, str]]:
    """What a reader must know before trusting the explanation: ``[{"kind", "message"}]``.

    Kinds: ``disagreement`` (f ≠ g: the attributes explain g, not f), ``low_confidence`` (g's probability of its
    class below :attr:`LocalConfig.low_confidence`), ``unusual_input`` (an image file that is mostly bright,
    unlike the light-on-dark training data), ``no_relevant_attribute`` (no ``r_{j,ĉ,x}`` above the threshold).
    """
    warnings = []
    f_class, g_class = explanation.f_class, explanation.g_class
    if not explanation.agree:
        warnings.append({"kind": "disagreement", "message": (
            f"f predicts {class_names[f_class]} but g predicts {class_names[g_class]} (f's class is g's #{explanation.f_rank_in_g}): "
            "the attributes below explain g's decision, not f's. The paper trusts a local interpretation of f only where g(x) = f(x).")})
    g_probability = float(explanation.g_probabilities[g_class])
    if g_probability < config.low_confidence:
        runner = torch.argsort(explanation.g_probabilities, descending=True)[1] if len(explanation.g_probabilities) > 1 else g_class
        warnings.append({"kind": "low_confidence", "message": (
            f"g is unsure: it gives {class_names[g_class]} only {100 * g_probability:.0f} % (next: {class_names[int(runner)]} "
            f"{100 * float(explanation.g_probabilities[int(runner)]):.0f} %; warning below {100 * config.low_confidence:.0f} %). "
            "Read the contributions in logit units and the contrast with the runner-up rather than the normalised r.")})
    if source.path is not None and looks_inverted(explanation.image, value_range):
        warnings.append({"kind": "unusual_input", "message": (
            "most of this image is bright, while the training data has light strokes on a dark background: the model sees an "
            "input unlike anything it was trained on. If the image has dark strokes on light paper, rerun with --invert.")})
    if not explanation.top:
        warnings.append({"kind": "no_relevant_attribute", "message": (
            f"no attribute has r > {explanation.relevance_threshold:g} for {class_names[explanation.explained_class]}: "
            "no attribute speaks for this class here (every contribution α_j is ≤ its threshold share).")})
    return warnings


def local_report_data(
    explanation: LocalExplanation, source: SampleSource, checkpoint: Checkpoint, config: LocalConfig, seed: int,
    global_report: tuple[Path, dict[str, Any]] | None, sample_dir: Path, training_size: int | None = None,
) -> dict[str, Any]:
    """The content of one ``report.json``.

    ``training_size``: number of training samples whose images can be shown as thumbnails (``None``: no thumbnails).
    """
    names = checkpoint.dataset.class_names
    f_class, g_class = explanation.f_class, explanation.g_class
    logits = explanation.logits
    if logits is None:
        raise ValueError("the explanation carries no logit decomposition; build it with explain_samples")
    contrast = int(logits.contrast_class[0])

    def side(class_index: int, bias: float, logit: float, contributions: list[float]) -> dict[str, Any]:
        return {"class": class_index, "class_name": names[class_index], "bias": bias, "logit": logit, "contributions": contributions}

    top = []
    for item in explanation.top:
        source_kind, samples = _thumbnail_samples(item, explanation.explained_class, global_report, training_size)
        top.append({
            "attribute": item.attribute,
            "relevance": item.relevance,
            "activation": item.activation,
            "direction": item.direction,
            "contribution": item.contribution,
            "contrast_contribution": float(logits.contrast_contributions[0, item.attribute]),
            "difference": item.difference,
            "rank_in_class": item.rank,
            "class_size": item.class_size,
            "percentile_in_class": item.percentile,
            "am_pi": item.am_pi.run_record(0),
            "samples": {"source": source_kind, "shown": [
                {"index": index, "activation": activation,
                 "image": thumbnail_name(item.attribute, k) if training_size is not None else None}
                for k, (index, activation) in enumerate(samples)]},
            "global": _global_links(item.attribute, explanation.explained_class, global_report, sample_dir),
        })
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
        "logits": {
            "explained": side(explanation.explained_class, float(logits.bias[0]), float(logits.logit[0]), logits.contributions[0].tolist()),
            "contrast": {**side(contrast, float(logits.contrast_bias[0]), float(logits.contrast_logit[0]),
                                logits.contrast_contributions[0].tolist()),
                         "reason": "runner_up" if explanation.explained_class == g_class else "g_prediction"},
            "differences": logits.difference[0].tolist(),
            "bias_difference": float(logits.bias_difference[0]),
            "logit_difference": float(logits.logit_difference[0]),
        },
        "selection": {"relevance_threshold": explanation.relevance_threshold, "qualifying": explanation.qualifying,
                      "listed": len(explanation.top), "top": config.top},
        "warnings": sample_warnings(explanation, source, names, checkpoint.dataset.value_range, config),
        "top": top,
        "parameters": {"top": config.top, "relevance_threshold": config.relevance_threshold, "low_confidence": config.low_confidence,
                       "class_samples": config.class_samples, "explained_class": config.explained_class,
                       "attribution": config.attribution, "attribution_method": config.tools.attribution_record(),
                       "decoder": config.decoder, "am_pi": config.am_pi.to_dict(), "rank_class_by": config.rank_class_by,
                       "seed": seed, "tool_batch_size": config.tool_batch_size},
        "figure": "report.png",
        "thumbnail": "input.png",
        "arrays": ARRAYS_NAME,
    }


def sample_arrays(explanation: LocalExplanation) -> dict[str, Tensor]:
    """The arrays of ``arrays.npz`` (keys documented in docs/report-schemas.md); ``T`` top attributes."""
    image = explanation.image
    empty = image.new_zeros((0, *image.shape))
    top = explanation.top
    arrays: dict[str, Tensor] = {
        "input": image,
        "attributes": explanation.attributes,
        "relevance": explanation.relevances,
        "top_attributes": torch.tensor([item.attribute for item in top], dtype=torch.long),
        "am_pi": torch.cat([item.am_pi.images for item in top]) if top else empty,
    }
    if explanation.logits is not None:
        arrays["contributions"] = explanation.logits.contributions[0]
        arrays["contrast_contributions"] = explanation.logits.contrast_contributions[0]
    if top and top[0].tools.attribution is not None:
        arrays["attribution"] = torch.cat([item.tools.attribution.maps for item in top])  # type: ignore[union-attr]
    if top and top[0].decoder is not None:
        arrays["decoder_with"] = torch.cat([item.decoder.with_attribute for item in top])  # type: ignore[union-attr]
        arrays["decoder_without"] = torch.cat([item.decoder.without_attribute for item in top])  # type: ignore[union-attr]
        arrays["decoder_difference"] = torch.cat([item.decoder.difference for item in top])  # type: ignore[union-attr]
    return arrays


def summary_lines(explanation: LocalExplanation, source: SampleSource, class_names: Sequence[str]) -> list[str]:
    """Two lines that say what the explanation found (printed by the CLI, shown on the index, kept in ``local.json``)."""
    f_class, g_class = explanation.f_class, explanation.g_class
    f_probability = float(explanation.f_probabilities[f_class])
    g_probability = float(explanation.g_probabilities[g_class])
    where = f"{source.split} #{source.index}" if not source.path else source.path
    label = "" if explanation.label is None else f", label {class_names[explanation.label]}"
    agreement = "agree" if explanation.agree else f"DISAGREE (f's class is g's #{explanation.f_rank_in_g})"
    top = ", ".join(f"φ{t.attribute} (r={t.relevance:.2f}, α={t.contribution:+.2f}, {_percentile_text(t.rank, t.class_size)})"
                    for t in explanation.top) or f"no attribute with r > {explanation.relevance_threshold:g}"
    contrast = ""
    if explanation.logits is not None:
        gap = float(explanation.logits.logit_difference[0])
        contrast = (f"; {'leads' if gap >= 0 else 'trails'} {class_names[explanation.contrast_class]} "  # type: ignore[index]
                    f"by {abs(gap):.2f} logits")
    return [
        f"{where}{label}: f {class_names[f_class]} ({100 * f_probability:.1f}%), g {class_names[g_class]} ({100 * g_probability:.1f}%): {agreement}",
        f"  why {class_names[explanation.explained_class]}: {top}{contrast}",
    ]


def _names(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _lead(data: dict[str, Any]) -> str:
    """The page's first sentence: what f and g predict, which attributes carry g's logit, and the contrast."""
    prediction, explained, logits = data["prediction"], data["explained_class"], data["logits"]
    f, g = prediction["f"], prediction["g"]
    q = lambda name: f"‘{escape(name)}’"  # noqa: E731
    if prediction["agree"]:
        start = f"f and g both predict {q(g['class_name'])} (f {100 * f['probability']:.0f} %, g {100 * g['probability']:.0f} %)"
    else:
        start = (f"<span class=\"warn\">f predicts {q(f['class_name'])} ({100 * f['probability']:.0f} %) but g predicts "
                 f"{q(g['class_name'])} ({100 * g['probability']:.0f} %)</span>")
    if not explained["is_g_prediction"]:
        start += f"; explaining {q(explained['name'])}, which g does not predict"
    own, contrast = logits["explained"], logits["contrast"]
    if data["top"]:
        carried = sum(t["contribution"] for t in data["top"])
        rest = own["logit"] - own["bias"] - carried
        attributes = _names([f"φ{t['attribute']}" for t in data["top"]])
        middle = (f"{attributes} add{'s' if len(data['top']) == 1 else ''} {carried:+.2f} to g's logit {own['logit']:.2f} for {q(own['class_name'])} "
                  f"(bias {own['bias']:+.2f}, the other attributes {rest:+.2f})")
    else:
        middle = f"no attribute has r &gt; {data['selection']['relevance_threshold']:g} for {q(own['class_name'])}"
    gap = logits["logit_difference"]
    which = "runner-up" if contrast["reason"] == "runner_up" else "g's prediction"
    end = (f"{q(own['class_name'])} {'leads' if gap >= 0 else 'trails'} {which} {q(contrast['class_name'])} "
           f"by {abs(gap):.2f} logits")
    return lead(f"{start}; {middle}; {end}.")


HOW_TO_READ = [
    ("ĉ and c′", "ĉ is the class explained (g's prediction unless <code>--class</code> asked for another); c′ is the class it is "
     "compared with: g's runner-up, or g's prediction when ĉ was asked for."),
    ("α<sub>j</sub> (logit units)", "g's logit is linear in the attributes: logit<sub>ĉ</sub> = b<sub>ĉ</sub> + Σ<sub>j</sub> α<sub>j</sub> "
     "with α<sub>j</sub> = φ<sub>j</sub>(x)·w<sub>j,ĉ</sub> and b<sub>ĉ</sub> h's bias. α<sub>j</sub> says how many logits "
     "attribute j adds to (or removes from) ĉ; it has an absolute scale, unlike r."),
    ("r", "r<sub>j,ĉ,x</sub> = α<sub>j</sub> / max<sub>i</sub>|α<sub>i</sub>| (the paper's relevance): the strongest attribute always "
     "has r = 1, however weak the evidence; attributes with r above the threshold are analysed."),
    ("Δ<sub>j</sub>", "φ<sub>j</sub>(x)·(w<sub>j,ĉ</sub> − w<sub>j,c′</sub>): what attribute j contributes to the gap between the "
     "logits of ĉ and c′ (positive: it speaks for ĉ rather than c′). Σ Δ<sub>j</sub> plus the bias difference is the logit gap."),
    ("low φ speaks for ĉ", "an attribute with w<sub>j,ĉ</sub> &lt; 0 is relevant through a negative value: φ<sub>j</sub>(x) &lt; 0 "
     "times a negative weight adds to ĉ. Its samples, attribution and AM+PI then work on −φ<sub>j</sub>."),
    ("top 3 % of class ĉ", "where φ<sub>j</sub>(x) (in the attribute's direction) falls among the training samples of class ĉ: "
     "top 3 % means only 3 % of them have a value as large."),
    ("MAS", "maximum activating samples: the training samples of class ĉ with the largest φ<sub>j</sub> in its direction "
     "(from the global report's pair when there is one); they show what the attribute responds to."),
    ("AM+PI", "activation maximisation with partial initialisation: the input is started from a faint copy of x and changed to "
     "raise φ<sub>j</sub>, showing the attribute's pattern adapted to this input. The numbers under it are φ<sub>j</sub> at the "
     "start and at the end; ✓ the run reached x's own φ<sub>j</sub>, ⚠ it went far beyond, ✗ it did not."),
    ("attribution", "which pixels raise (red) or lower (blue) φ<sub>j</sub>, from the input attribution method named in the column "
     "title (summed over the channels of a colour image; arrays.npz keeps each channel); the colour bar gives the scale."),
    ("d(Φ), ablation, difference", "d(Φ) is the decoder's drawing from all attributes; the ablation draws with φ<sub>j</sub> = 0; "
     "the difference map d(Φ) − ablation shows what attribute j adds to the drawing (red) or removes (blue)."),
]


def _warning_box(warnings: Sequence[dict[str, str]]) -> str:
    items = "".join(f"<li>{escape(w['message'])}</li>" for w in warnings)
    return ("<div class=\"warn\" role=\"alert\" style=\"border:1px solid #b2182b;background:#fdf1f1;border-radius:4px;"
            f"padding:0.3em 0.9em;margin:0.8em 0\"><strong>Read with care</strong><ul style=\"margin:0.3em 0\">{items}</ul></div>")


def _thumbnails_html(item: dict[str, Any], class_name: str) -> str:
    shown = item["samples"]["shown"]
    if not shown or shown[0]["image"] is None:
        return escape(", ".join(f"#{s['index']}" for s in shown) or "none")
    cells = "".join(
        f"<figure style=\"display:inline-block;margin:0 0.25em 0 0;text-align:center;vertical-align:top\">"
        f"<img src=\"{escape(s['image'])}\" alt=\"training sample {s['index']}\" width=\"48\" height=\"48\" "
        f"style=\"image-rendering:pixelated;margin:0\"><figcaption class=\"meta\">#{s['index']}<br>φ={s['activation']:.2f}</figcaption></figure>"
        for s in shown)
    origin = "MAS of the global pair" if item["samples"]["source"] == "global" else f"top training samples of {escape(class_name)}"
    return f"<div style=\"white-space:nowrap\">{cells}</div><div class=\"meta\">{origin}</div>"


def _am_pi_html(record: dict[str, Any]) -> str:
    words = {"activated": ("✓ reached x's own φ", "ok"), "saturated": ("⚠ far beyond x's own φ", "warn"),
             "not_activated": ("✗ did not reach x's own φ", "warn")}
    word, style = words.get(record["outcome"], (record["outcome"], "meta"))
    ratio = "" if record["ratio"] is None else f" ({record['ratio']:.1f}×)"
    weak = ("<br><span class=\"warn\">weak: x barely activates this attribute (under 10 % of its largest |φ| "
            "in training)</span>") if record.get("weak_reference") else ""
    return (f"{record['initial_activation']:.2f} → {record['final_activation']:.2f}{ratio}<br>"
            f"<span class=\"{style}\">{escape(word)}</span>{weak}")


def _sample_html(data: dict[str, Any], summary: list[str]) -> str:
    names = data["dataset"]["class_names"]
    explained = data["explained_class"]
    logits = data["logits"]
    own, contrast = logits["explained"], logits["contrast"]
    body = header("FLINT local interpretation", data)
    body.append(_lead(data))
    if data["warnings"]:
        body.append(_warning_box(data["warnings"]))
    body.append(how_to_read(HOW_TO_READ, open_=False))
    body.append("<p class=\"meta\">" + escape(summary[0]) + f" · {link('../index.html', 'all samples')}</p>")
    body.append(image(data["figure"], "local explanation"))

    selection = data["selection"]
    body.append(f"<h2 id=\"top\">Why {escape(explained['name'])}: the top attributes</h2>")
    if selection["listed"] < selection["top"]:
        body.append(f"<p>{selection['qualifying']} attribute{'s' if selection['qualifying'] != 1 else ''} "
                    f"ha{'ve' if selection['qualifying'] != 1 else 's'} r &gt; {selection['relevance_threshold']:g} "
                    f"(up to {selection['top']} were asked for with --top): the others are not listed.</p>")
    rows = []
    for item in data["top"]:
        direction = "" if item["direction"] > 0 else (
            f"<br><span class=\"meta\">low φ speaks for {escape(explained['name'])}: φ &lt; 0 and w &lt; 0</span>")
        if item["global"] is None:
            links = "no global report found"
        else:
            pair_links = [link(p["link"], f"{p['class_name']} (r={p['relevance']:.2f})") for p in item["global"]["pairs"]]
            links = link(item["global"]["report"], "global report") + (": " + ", ".join(pair_links) if pair_links else ": in no selected pair")
        rows.append([
            Raw(f"<strong>φ{item['attribute']}</strong>{direction}"), f"{item['relevance']:.2f}", f"{item['activation']:.3f}",
            f"{item['contribution']:+.2f}", f"{item['difference']:+.2f}",
            Raw(f"{escape(_percentile_text(item['rank_in_class'], item['class_size']))}<br>"
                f"<span class=\"meta\">of {item['class_size']}</span>"),
            Raw(_thumbnails_html(item, explained['name'])), Raw(_am_pi_html(item["am_pi"])), Raw(links),
        ])
    if rows:
        body.append(table(["attribute", "r", "φ_j(x)", f"α_j for {own['class_name']} (logits)",
                           f"Δ_j vs {contrast['class_name']} (logits)", f"φ_j among class {explained['name']}'s training samples",
                           "maximum activating samples", "AM+PI φ_j: start → end", "global report"], rows, numeric=[1, 2, 3, 4]))

    body.append(f"<h2 id=\"logits\">g's logits: {escape(own['class_name'])} vs {escape(contrast['class_name'])}</h2>")
    listed = {t["attribute"] for t in data["top"]}
    def split(side: dict[str, Any]) -> list[str]:
        analysed = sum(side["contributions"][j] for j in listed)
        return [f"{side['bias']:+.2f}", f"{analysed:+.2f}", f"{side['logit'] - side['bias'] - analysed:+.2f}", f"{side['logit']:.2f}"]
    which = "runner-up" if contrast["reason"] == "runner_up" else "g's prediction"
    body.append(table(["class", "bias b_c", "listed attributes Σα_j", "other attributes Σα_j", "logit"], [
        [f"{own['class_name']} (explained)", *split(own)], [f"{contrast['class_name']} ({which})", *split(contrast)],
        ["difference", f"{logits['bias_difference']:+.2f}", "", "", f"{logits['logit_difference']:+.2f}"]], numeric=[1, 2, 3, 4]))
    order = sorted(range(len(logits["differences"])), key=lambda j: -abs(logits["differences"][j]))
    shown = order[:10]
    rows = [[f"φ{j}", f"{data['attributes'][j]:.3f}", f"{own['contributions'][j]:+.2f}", f"{contrast['contributions'][j]:+.2f}",
             f"{logits['differences'][j]:+.2f}"] for j in shown]
    body.append(f"<p>Why {escape(own['class_name'])} rather than {escape(contrast['class_name'])}: the attributes with the "
                f"largest |Δ<sub>j</sub>| (positive: speaks for {escape(own['class_name'])})"
                + (f"; the other {len(order) - len(shown)} add {sum(logits['differences'][j] for j in order[10:]):+.2f}" if len(order) > 10 else "")
                + ".</p>")
    body.append(table(["attribute", "φ_j(x)", f"α_j for {own['class_name']}", f"α_j for {contrast['class_name']}", "Δ_j"],
                      rows, numeric=[1, 2, 3, 4]))
    body.append("<h2 id=\"classes\">All classes</h2>")
    prediction = data["prediction"]
    body.append(table(["class", "p_f", "p_g"], [[n, f"{pf:.4f}", f"{pg:.4f}"] for n, pf, pg in
                                                 zip(names, prediction["f_probabilities"], prediction["g_probabilities"])], numeric=[1, 2]))
    body.append(f"<p>Machine-readable: {link('report.json', 'report.json')}; images and maps as arrays: "
                f"{link(data['arrays'], data['arrays'])} (numpy.load).</p>")
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


def _index_html(index: dict[str, Any], staging: Path) -> str:
    """The folder's ``index.html``: a row per sample with its thumbnail (when its folder holds one)."""
    samples = index["samples"]
    agree = sum(1 for s in samples if s.get("agree"))
    body = header("FLINT local interpretations", index)
    body.append(lead(f"{len(samples)} sample{'s' if len(samples) != 1 else ''} explained; f and g agree on {agree} of them."))
    body.append(how_to_read([
        ("a row", "one explained sample: f's and g's predictions, then the top attributes with r (relevance, 1 for the "
         "strongest), α (contribution to g's logit, in logits) and where φ<sub>j</sub>(x) falls among class ĉ's training samples."),
        ("DISAGREE", "f and g predict different classes: the attributes explain g's decision, not f's."),
        ("details", "open a sample for its figure, the logit decomposition, the contrast with the runner-up class and warnings."),
    ], open_=False))
    rows = []
    for s in samples:
        thumbnail = staging / s["folder"] / "input.png"
        picture = (f"<img src=\"{escape(s['folder'])}/input.png\" alt=\"{escape(s['id'])}\" width=\"56\" height=\"56\" "
                   "style=\"image-rendering:pixelated;margin:0\">") if thumbnail.is_file() else ""
        kinds = s.get("warnings") or []
        flags = f"<br><span class=\"warn\">{escape(', '.join(k.replace('_', ' ') for k in kinds))}</span>" if kinds else ""
        rows.append([Raw(f"<a href=\"{escape(s['folder'])}/report.html\">{picture}</a>"),
                     Raw(link(f"{s['folder']}/report.html", s["id"]) + flags), s["summary"][0], s["summary"][1].strip()])
    body.append(table(["input", "sample", "predictions", "top attributes"], rows))
    return page("FLINT local interpretations", body)


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
    training: ImageDataset | None = None,
) -> LocalReports:
    """Write one folder per sample plus the folder's ``local.json``/``index.html``, all or nothing.

    ``training``: the checkpoint's training split, for the thumbnails of each top attribute's maximum activating
    samples (the global report's, or the attribute's top samples of class ĉ); ``None``: no thumbnails.

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
            for source in sorted((output_dir / identifier).iterdir()):
                if SAMPLE_LAYOUT.owns_file(source.name) and source.is_file() and not source.is_symlink():
                    _link_or_copy(source, staging / identifier / source.name)
        keep.update(entries)
        index = {**report_stamp(INDEX_SCHEMA, SCHEMA_VERSION, checkpoint), "samples": [keep[k] for k in sorted(keep)]}
        write_json(staging / INDEX_NAME, index)
        atomic_write_bytes(staging / "index.html", _index_html(index, staging).encode())

    with atomic_directory(output_dir, LAYOUT, check, finish) as staging:
        for explanation, source in zip(explanations, sources):
            identifier = source.identifier(config.explained_class)
            sample_dir = output_dir / identifier
            data = local_report_data(explanation, source, checkpoint, config, seed, global_report, sample_dir,
                                     None if training is None else len(training))
            folder = staging / identifier
            folder.mkdir(exist_ok=True)
            value_range = checkpoint.dataset.value_range
            save_figure(plot_local_explanation(explanation, checkpoint.dataset.class_names, value_range, config.attribution),
                        folder / "report.png")
            save_thumbnail(explanation.image, value_range, folder / data["thumbnail"])
            if training is not None:
                for item in data["top"]:
                    for shown in item["samples"]["shown"]:
                        save_thumbnail(training[shown["index"]][0], value_range, folder / shown["image"])
            write_arrays(folder / ARRAYS_NAME, sample_arrays(explanation))
            summary = summary_lines(explanation, source, checkpoint.dataset.class_names)
            write_json(folder / "report.json", data)
            (folder / "report.html").write_text(_sample_html(data, summary))
            entries[identifier] = {"id": identifier, "folder": identifier, "summary": summary,
                                   "agree": data["prediction"]["agree"], "sample": data["sample"],
                                   "warnings": [w["kind"] for w in data["warnings"]]}
            written.append((sample_dir, data))
    return LocalReports(samples=written, global_report=None if global_report is None else global_report[0])
