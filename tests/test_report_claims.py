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
    data, folder = _report("fashion-mnist")
    changed = copy.deepcopy(data)
    changed["runs"]["flint"]["test_accuracy_f"] = changed["runs"]["base-f"]["test_accuracy_f"] - 2.0
    assert "**f loses accuracy**" in fashion_mnist_readme(changed, folder)
    closed = copy.deepcopy(data)
    closed["runs"]["flint"]["test_accuracy_g"] = 88.0
    closed["runs"]["flint"]["test_fidelity"] = 92.0
    with pytest.raises(ClaimFailed):
        fashion_mnist_readme(closed, folder)
