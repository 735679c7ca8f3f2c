"""The ``mner-hf`` command line: one sub-command per job, each defined next to the code it runs.

Every module listed in :data:`SUBCOMMAND_MODULES` defines
``register_subcommand(subparsers) -> None``, which adds its parser and sets ``func`` to a callable
taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from . import __version__

SUBCOMMAND_MODULES: tuple[str, ...] = (
    "mner_hf.export",  # export-dataset
    "mner_hf.statistics",  # stats
    "mner_hf.training.cli",  # train, push
    "mner_hf.predict",  # predict
    "mner_hf.demo",  # demo
)


def build_parser() -> argparse.ArgumentParser:
    """Parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="mner-hf",
        description="Multimodal NER for posts with several images: datasets, training, inference.",
    )
    parser.add_argument("--version", action="version", version=f"mner_hf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register_subcommand(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mner-hf`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
