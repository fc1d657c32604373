"""README.md of reports/fashion-mnist, written from report.json and the analysis JSON files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reports.claims import either, require
from reports.paper_numbers import PAPER as PAPER_TABLES

PAPER = PAPER_TABLES["fashion-mnist"]


def _load(folder: Path, relative: str) -> dict[str, Any]:
    return json.loads((folder / relative).read_text())


def _commands(data: dict[str, Any]) -> str:
    lines = [data["build_command"] + "   # rebuilds everything below (trains only missing checkpoints)", ""]
    lines += [run["command"] for run in data["runs"].values()]
    lines += [""] + list(data["analysis_commands"].values())
    return "```bash\n" + "\n".join(lines) + "\n```"


def fashion_mnist_text(data: dict[str, Any], folder: Path) -> str:
    runs = data["runs"]
    flint, base, l1mean, l1only = runs["flint"], runs["base-f"], runs["flint-l1mean"], runs["l1-only"]
    metrics = _load(folder, "metrics/metrics.json")
    global_data = _load(folder, "global/global.json")
    global_l1mean = _load(folder, "global-l1mean/global.json")
    disagreement = _load(folder, "disagreement/disagreement.json")
    local = _load(folder, "local/local.json")
    models = {m["name"]: m["metrics"] for m in metrics["models"]}
    taus = list(models["FLINT"]["conciseness"])
    names = data and global_data["dataset"]["class_names"]

    def row(label: str, b: float | str, f: float, g: float, fid: float) -> str:
        bb = b if isinstance(b, str) else f"{b:.1f}"
        return f"| {label} | {bb} | {f:.1f} | {g:.1f} | {fid:.1f} |"

    counts = disagreement["counts"]
    depth = disagreement["depth"]["summary"]
    lines = [
        "# Reproduction on FashionMNIST",
        "",
        "Full FashionMNIST (60,000 training / 10,000 test images, from the Debian package `dataset-fashion-mnist`), the "
        "paper's FashionMNIST setting: the MNIST hyper-parameters and the `lenet` architecture, 12 epochs, Adam 1e-4, "
        f"batch 16, seed {data['seed']}. Accuracy and fidelity in % on the 10,000 test images.",
        "",
        "## Accuracy and fidelity",
        "",
        "| | BASE-f | FLINT-f | FLINT-g | fidelity |",
        "|---|---:|---:|---:|---:|",
        row(f"paper, {PAPER['source']}", PAPER["base_f"], PAPER["flint_f"], PAPER["flint_g"], PAPER["fidelity"]),
        row("this project, the paper's settings (`flint.pt`)", base["test_accuracy_f"], flint["test_accuracy_f"],
            flint["test_accuracy_g"], flint["test_fidelity"]),
        row("same, ℓ1 averaged over the attributes as in the authors' code (`flint-l1mean.pt`)", "", l1mean["test_accuracy_f"],
            l1mean["test_accuracy_g"], l1mean["test_fidelity"]),
        "",
        f"Training time on this 2-core CPU (one thread per run, the machine shared with other work): BASE-f "
        f"{base['train_seconds'] / 60:.0f} min, FLINT {flint['train_seconds'] / 60:.0f} min, FLINT with ℓ1 mean "
        f"{l1mean['train_seconds'] / 60:.0f} min, ℓ1 only {l1only['train_seconds'] / 60:.0f} min ({flint['epochs']} epochs each).",
        "",
        "### Test accuracy of g by epoch",
        "",
        "| epoch | " + " | ".join(str(r["epoch"] + 1) for r in flint["history"]) + " |",
        "|---|" + "---:|" * len(flint["history"]),
        "| FLINT (paper settings) | " + " | ".join(f"{r['test_accuracy_g']:.1f}" for r in flint["history"]) + " |",
        "| FLINT, ℓ1 mean | " + " | ".join(f"{r['test_accuracy_g']:.1f}" for r in l1mean["history"]) + " |",
        "",
    ]
    lines += findings(data, folder)
    lines += [
        "",
        "## Conciseness: entropy versus ℓ1 only (paper Fig. 3–4)",
        "",
        "| model | " + " | ".join(f"τ = {t}" for t in taus) + " |",
        "|---|" + "---:|" * len(taus),
    ]
    for name in ("FLINT", "FLINT (l1 mean)", "l1 only (l1 mean, zeta 0)"):
        lines.append(f"| {name} | " + " | ".join(f"{models[name]['conciseness'][t]:.2f}" for t in taus) + " |")
    lines += [
        "",
        "![CNS curves](metrics/conciseness.png)",
        "",
        "CNS_g(τ) is the mean number of attributes whose relevance for g's class exceeds 1/τ on the test images; the ℓ1-only "
        "model (ζ = 0) is the same run as FLINT with ℓ1 mean but without the entropy terms. The full metrics "
        "(top-k fidelity, confusion matrices, fidelity per class) are in [metrics/](metrics/index.html).",
        "",
        "## Global interpretation (the paper-settings model)",
        "",
        f"{len(global_data['pairs'])} class-attribute pairs have r_(j,c) > 0.1 on 1,000 random training images; AM+PI raised "
        f"the attribute in {global_data['am_pi_summary']['raised']} of {global_data['am_pi_summary']['runs']} runs. "
        f"For the ℓ1-mean model: {len(global_l1mean['pairs'])} pairs, {global_l1mean['am_pi_summary']['raised']} of "
        f"{global_l1mean['am_pi_summary']['runs']} raised ([global-l1mean/](global-l1mean/index.html)).",
        "",
        "![relevance heat map](global/relevance_heatmap.png)",
        "",
        "The heat map shows r_(j,c) for every attribute (rows) and class (columns); boxed cells are the analysed pairs.",
        "",
    ]
    for class_index, figure in global_data["figures"]["classes"].items():
        pairs = [p for p in global_data["pairs"] if str(p["class"]) == class_index]
        attributes = ", ".join(f"φ{p['attribute']} (r = {p['relevance']:.2f})" for p in pairs)
        lines += [f"**{names[int(class_index)]}**: {attributes}", "", f"![{names[int(class_index)]}](global/{figure})", ""]
    lines += [
        "Each row is a class-attribute pair: for each of its three maximum activating samples, the image, its AM+PI output "
        "(✗ where AM+PI did not raise the attribute), the gradient of φ_j and the decoder's reconstruction with and without φ_j. "
        "The full page with the per-sample relevance plot and the overview of all attributes: [global/](global/index.html).",
        "",
        "## Local interpretations",
        "",
    ]
    for sample in local["samples"]:
        lines += [f"- [{sample['id']}](local/{sample['folder']}/report.html): {sample['summary'][0]}",
                  f"  {sample['summary'][1].strip()}", f"  ![{sample['id']}](local/{sample['folder']}/report.png)"]
    agreeing = [s for s in local["samples"] if s["agree"]]
    require(len(agreeing) == len(local["samples"]) - 1 and not local["samples"][-1]["agree"] or len(agreeing) == 2,
            "the local section shows two agreeing samples and one disagreement")
    worst_first = any(s["category"] == "outside_top_k_f_correct" for s in disagreement["samples"])
    lines += [
        "",
        "Two test samples where f and g agree and one where they disagree ("
        + either(worst_first, "the first of the worst kind: f right, f's class outside g's top-3", "the first disagreement; "
                 "there is none of the worst kind") + "). Each figure shows the relevance of every attribute for ĉ and, for the top three, AM+PI, the "
        "gradient and the decoder ablation.",
        "",
        "## Disagreement analysis",
        "",
        f"{counts['disagreements']} of {counts['samples']} test samples: {counts['within_top_k']} with f's class in g's "
        f"top-3, {counts['outside_top_k']} outside, {counts['outside_top_k_f_correct']} of them with f right "
        "([disagreement/](disagreement/index.html) has the counts per class).",
        "",
        "![worst cases](disagreement/worst-cases.png)" if disagreement["figures"]["worst_cases"] else "",
        "",
        "The worst disagreements per class (f right, f's class not in g's top-3), as in the paper's Fig. 13 and 15.",
        "",
        "![depth per class](disagreement/depth-per-class.png)",
        "",
        f"Projection depth (supplement Eq. 1) of each class's disagreements and of 100 random agreeing test samples with "
        f"respect to the class's 6,000 training images, in the space of the class's first 20 principal components (on raw "
        f"pixels the exact depth is 0 for almost every image). Median depth {depth['median_depth_disagreeing']:.3f} for "
        f"disagreements against {depth['median_depth_agreeing']:.3f} for agreeing samples; the probability that a "
        f"disagreement is less deep than an agreeing sample (AUC) is {depth['auc']:.2f} (one-sided Mann–Whitney "
        f"p = {depth['p_value']:.1g}).",
        "",
        "![depth summary](disagreement/depth-summary.png)",
        "",
        "## How this was made",
        "",
        "Checkpoints are not committed (runs/reports/fashion-mnist/); report.json records each one's SHA-256, command, "
        "configuration and per-epoch history, and every analysis JSON records the SHA-256 of the checkpoint it read.",
        "",
        _commands(data),
        "",
    ]
    return "\n".join(lines)


def findings(data: dict[str, Any], folder: Path) -> list[str]:
    """What the numbers say about the gap to the paper (every number read from the runs)."""
    runs = data["runs"]
    flint, base, l1mean, l1only = runs["flint"], runs["base-f"], runs["flint-l1mean"], runs["l1-only"]
    epoch3 = {name: runs[name]["history"][2]["test_accuracy_g"] for name in ("flint", "flint-l1mean")}
    f_gap = max(abs(flint["test_accuracy_f"] - PAPER["flint_f"]), abs(base["test_accuracy_f"] - PAPER["base_f"]))
    no_loss = flint["test_accuracy_f"] >= base["test_accuracy_f"] - 0.5
    g_short = flint["test_accuracy_g"] < PAPER["flint_g"] - 1 or flint["test_fidelity"] < PAPER["fidelity"] - 1
    g_gap = PAPER["flint_g"] - flint["test_accuracy_g"]
    closed = (l1mean["test_accuracy_g"] - flint["test_accuracy_g"]) / g_gap if g_gap > 0 else 0.0
    history = flint["history"]
    still_rising = history[-1]["test_accuracy_g"] > history[-2]["test_accuracy_g"]
    models = {m["name"]: m["metrics"] for m in _load(folder, "metrics/metrics.json")["models"]}
    first_tau = next(iter(models["FLINT (l1 mean)"]["conciseness"]))
    cns_entropy, cns_l1 = models["FLINT (l1 mean)"]["conciseness"][first_tau], models["l1 only (l1 mean, zeta 0)"]["conciseness"][first_tau]
    price = l1only["test_fidelity"] - l1mean["test_fidelity"]
    require(g_short, "g or fidelity falls more than a point short of the paper with its settings as written")
    require(closed > 0, f"the ℓ1 averaging narrows g's gap to the paper ({100 * closed:.0f} % of it)")
    return [
        "### What the comparison shows",
        "",
        "- " + either(no_loss, "**f loses no accuracy**, the paper's central claim", "**f loses accuracy**, against the "
                      "paper's central claim") + f": FLINT-f {flint['test_accuracy_f']:.1f} % against BASE-f "
        f"{base['test_accuracy_f']:.1f} % (paper: {PAPER['flint_f']} against {PAPER['base_f']}). "
        + either(f_gap <= 0.5, f"Both are within {f_gap:.1f} points of the paper.", f"One is {f_gap:.1f} points from the paper."),
        f"- **g and fidelity fall short with the paper's settings as written**: g {flint['test_accuracy_g']:.1f} % "
        f"(paper {PAPER['flint_g']}), fidelity {flint['test_fidelity']:.1f} % (paper {PAPER['fidelity']}).",
        "- **Why.** The authors' code departs from the paper in a few places; one departure closes "
        f"{100 * closed:.0f} % of g's gap. The paper writes the ℓ1 term as η‖Φ(x)‖₁, a sum over the 25 attributes; the authors' code averages "
        "over them (`nn.L1Loss`), so its η = 0.5 acts 25 times more weakly on each attribute, and the paper's reported "
        "numbers come from that code. With the sum, the ℓ1 term dominates when it switches on at epoch 3: g's test accuracy "
        f"after epoch 3 is {epoch3['flint']:.1f} % against {epoch3['flint-l1mean']:.1f} % with the code's mean, and it is "
        + either(still_rising, f"still rising at epoch {len(history)}", f"flat by epoch {len(history)}") + " (table above). Changing only that (`--l1-reduction mean`) gives g "
        f"{l1mean['test_accuracy_g']:.1f} % and fidelity {l1mean['test_fidelity']:.1f} %, within "
        f"{PAPER['flint_g'] - l1mean['test_accuracy_g']:.1f} and {PAPER['fidelity'] - l1mean['test_fidelity']:.1f} points of the paper.",
        f"- **The rest** ({PAPER['flint_g'] - l1mean['test_accuracy_g']:.1f} points of g) is not explained by this report, "
        "and none of it was tuned on the test split. This is one seed, and the other differences of the authors' code "
        "(the entropy terms from epoch 5 rather than Algorithm 1's epoch 4, dropout before the tap and on h's input) were "
        "not tried here; the paper does not say over how many runs its FashionMNIST numbers are taken. "
        "Without the entropy terms "
        f"(ℓ1 only, ζ = 0) fidelity is {l1only['test_fidelity']:.1f} % and g {l1only['test_accuracy_g']:.1f} %"
        + either(cns_entropy < cns_l1 and 0 <= price < 3,
                 f": as the paper's Table 3 says for QuickDraw, entropy buys conciseness (CNS at τ = {first_tau} "
                 f"{cns_entropy:.2f} against {cns_l1:.2f}, next section) for {price:.1f} points of fidelity.",
                 f"; here the entropy terms do not trade fidelity for conciseness as the paper's Table 3 does (CNS at "
                 f"τ = {first_tau} {cns_entropy:.2f} with entropy against {cns_l1:.2f} without, fidelity {price:+.1f} points)."),
        "- This project keeps the paper's formula by default and offers the code's normalisation as "
        "`--l1-reduction mean`; the MNIST/FashionMNIST preset therefore follows the paper's text, and its numbers fall short of the paper's as the table shows.",
    ]
