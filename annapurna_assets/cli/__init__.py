"""`annapurna`: the command line. Each subcommand lives in its own module with a `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import sys

# One line per subcommand module; each defines register(subparsers) and sets `func` on its parser.
COMMAND_MODULES = [
    "annapurna_assets.cli.demo",
    "annapurna_assets.cli.status",
    "annapurna_assets.cli.request",
    "annapurna_assets.cli.scrape",
    "annapurna_assets.cli.generate",
    "annapurna_assets.cli.download",
    "annapurna_assets.cli.exec",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="annapurna", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
