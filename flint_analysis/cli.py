"""``flint-analyze``: interpret a trained FLINT checkpoint.

Sub-commands: ``info``. Every user error is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from flint_analysis.checkpoint import load_checkpoint
from flint_analysis.errors import FlintError
from flint_analysis.info import checkpoint_summary, format_summary
from flint_analysis.io import dumps_json


def _info(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    summary = checkpoint_summary(checkpoint)
    print(dumps_json(summary) if args.json else format_summary(summary), end="\n" if not args.json else "")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flint-analyze", description="Interpret trained FLINT checkpoints.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="print what a checkpoint holds", description="Print what a checkpoint holds: architecture, J, classes, dataset, hyper-parameters, final metrics.")
    info.add_argument("checkpoint", help="a .pt file written by flint-train")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    info.set_defaults(handler=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except FlintError as error:
        print(f"flint-analyze: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nflint-analyze: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
