"""The reproduction reports' conclusions follow their numbers (reports/claims.py), from the committed JSON."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reports.claims import ClaimFailed  # noqa: E402
from reports.readme import fashion_mnist_readme, mnist5k_readme  # noqa: E402


def _report(name: str) -> tuple[dict, Path]:
    folder = ROOT / "reports" / name
    return json.loads((folder / "report.json").read_text()), folder


@pytest.mark.parametrize("name, writer", [("mnist5k", mnist5k_readme), ("fashion-mnist", fashion_mnist_readme)])
def test_committed_readme_is_what_the_builder_writes(name, writer):
    data, folder = _report(name)
    assert writer(data, folder) == (folder / "README.md").read_text()


def test_table4_sentence_follows_the_numbers():
    data, folder = _report("mnist5k")
    assert "The trend of the paper's Table 4 holds" in mnist5k_readme(data, folder)
    broken = copy.deepcopy(data)
    broken["runs"]["demo-j8"]["test_fidelity"] = 99.9  # fidelity no longer rises from J = 8 to J = 25
    text = mnist5k_readme(broken, folder)
    assert "does not hold on every step" in text and "The trend of the paper's Table 4 holds" not in text


def test_fashion_mnist_claims_follow_or_fail():
    from reports.fashion_mnist_text import PAPER, seed_runs, within_spread

    data, folder = _report("fashion-mnist")
    changed = copy.deepcopy(data)
    for run in seed_runs(changed, "flint"):
        run["test_accuracy_f"] = 80.0  # far below BASE-f
    assert "**f loses accuracy**" in fashion_mnist_readme(changed, folder)
    # The defaults follow the seed table: flipping whether the authors'-code runs match the paper must break the
    # README's claim about the default preset (it is checked against the dataset records), not silently rewrite it.
    code = seed_runs(data, "flint-code")
    matched = within_spread([r["test_accuracy_g"] for r in code], PAPER["flint_g"]) and \
        within_spread([r["test_fidelity"] for r in code], PAPER["fidelity"])
    flipped = copy.deepcopy(data)
    for k, run in enumerate(seed_runs(flipped, "flint-code")):
        run["test_accuracy_g"] = (70.0 + k) if matched else PAPER["flint_g"] + 0.5 * (k - 1)
        run["test_fidelity"] = (75.0 + k) if matched else PAPER["fidelity"] + 0.5 * (k - 1)
    with pytest.raises(ClaimFailed):
        fashion_mnist_readme(flipped, folder)


def test_seed_statistics():
    from reports.fashion_mnist_text import mean_sd, within_spread

    mean, sd = mean_sd([85.0, 86.0, 87.0])
    assert mean == pytest.approx(86.0) and sd == pytest.approx(1.0)  # sample standard deviation (n − 1)
    assert within_spread([85.0, 86.0, 87.0], 88.0) and not within_spread([85.0, 86.0, 87.0], 88.1)
