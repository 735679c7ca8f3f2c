"""``mner-hf train`` and ``mner-hf push`` sub-commands."""

from __future__ import annotations

import argparse

from .push import add_push_parser


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``mner-hf train`` (also used by ``examples/train.py``)."""
    p.add_argument("--config", required=True, help="YAML run config (see examples/configs/)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.learning_rate=3e-5 (repeatable)",
    )
    p.add_argument("--output-dir", default=None, help="shortcut for --set training.output_dir=...")
    p.add_argument("--resume", nargs="?", const=True, default=None,
                   help="resume from the last checkpoint in output_dir (or from the given checkpoint folder)")
    p.add_argument("--fraction", type=float, default=None, help="shortcut for --set data.train_fraction=...")
    p.add_argument("--no-test", action="store_true", help="skip the final test evaluation")


def run_train(args: argparse.Namespace) -> int:
    """``mner-hf train`` handler."""
    from .run import main_from_args

    return main_from_args(args)


def register_subcommand(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``push``."""
    p = subparsers.add_parser("train", help="train and evaluate an MNER model from a YAML config")
    add_train_arguments(p)
    p.set_defaults(func=run_train)
    add_push_parser(subparsers)
