"""``--help`` and ``info`` start without the heavy libraries: only the commands that draw or attribute import them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


_PROBE = """
import contextlib, io, json, sys
from {module} import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main({argv!r})
    except SystemExit:
        pass
print(json.dumps(sorted(name for name in sys.modules if name.split('.')[0] in {roots!r} or name.startswith({prefixes!r}))))
"""


def _imported(module: str, argv: list[str]) -> list[str]:
    roots = ("captum", "matplotlib", "seaborn", "sklearn")
    prefixes = ("flint_analysis.report_writers", "flint_analysis.plots")
    code = _PROBE.format(module=module, argv=argv, roots=roots, prefixes=prefixes)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module, argv", [
    ("flint_analysis.cli", ["--help"]),
    ("flint_analysis.cli", ["global", "--help"]),
    ("flint_analysis.training.cli", ["--help"]),
])
def test_help_imports_no_heavy_library(module, argv):
    assert _imported(module, argv) == []


def test_info_imports_no_heavy_library(mnist5k_checkpoint):
    assert _imported("flint_analysis.cli", ["info", str(mnist5k_checkpoint)]) == []
