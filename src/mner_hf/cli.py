"""The ``mner-hf`` command line: one sub-command per job, each defined next to the code it runs.

Every module listed in :data:`SUBCOMMAND_MODULES` defines
``register_subcommand(subparsers) -> None``, which adds its parser and sets ``func`` to a callable
taking the parsed namespace and returning an exit code.

Errors: a sub-command that fails prints ONE line on stderr, ``mner-hf COMMAND: error: message``,
and exits non-zero; ``--debug`` (before or after the sub-command) prints the traceback instead.

Exit codes shared by every sub-command: 0 success; 1 partial success (``predict``: some lines
failed, the others are written); 2 the job could not run because of its input (arguments, missing
or malformed files, configs, checkpoints; also argparse's usage errors); 3 internal error (a bug:
rerun with ``--debug`` and report the traceback); 130 interrupted (Ctrl-C).
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

EXIT_USER_ERROR, EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED = 2, 3, 130

#: Exceptions that describe a problem with what the user gave (files, values, configs, missing
#: optional packages), reported in one line with exit code 2. ``MNERFormatError``,
#: ``RunConfigError``, ``ImageLoadError`` and ``MNERInputError`` are ``ValueError``\ s.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ImportError)
_MAX_MESSAGE = 1000

_DEBUG_HELP = "print the full traceback when the command fails (default: a one-line message)"


def build_parser() -> argparse.ArgumentParser:
    """Parser with every sub-command registered (``--debug`` accepted before or after it)."""
    parser = argparse.ArgumentParser(
        prog="mner-hf",
        description="Multimodal NER for posts with several images: datasets, training, inference.",
        epilog="exit codes: 0 success, 1 partial (predict: some lines failed), 2 bad input or arguments, "
        "3 internal error (rerun with --debug), 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"mner_hf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register_subcommand(subparsers)
    for sub in subparsers.choices.values():
        # SUPPRESS: an absent sub-command flag does not reset a --debug given before the command
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    return parser


def describe_error(exc: BaseException) -> tuple[str, int]:
    """(one-line message, exit code) for an exception that ended a sub-command.

    A library error raised ``from`` a user error (``datasets``' ``DatasetGenerationError`` around a
    reader's ``MNERFormatError``) is described by that user error.
    """
    cause = exc
    while not isinstance(cause, USER_ERRORS) and cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, USER_ERRORS):
        exc = cause
    message = " ".join(str(exc).split()) or type(exc).__name__
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in message:
        message = f"{exc.filename}: {message}"
    if isinstance(exc, USER_ERRORS):
        return message, EXIT_USER_ERROR
    return (
        f"internal error {type(exc).__name__}: {message} (a bug: rerun with --debug and report the traceback)",
        EXIT_INTERNAL_ERROR,
    )


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
    # the console script's own arguments: `mner-hf train` may re-start itself with them
    # (mner_hf.training.thread_binding); in-process calls (argv given) never re-start
    args.restart_argv = list(sys.argv[1:]) if argv is None else None
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"mner-hf {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 -- one line for the user; --debug shows the traceback
        if args.debug:
            raise
        message, code = describe_error(exc)
        print(f"mner-hf {args.command}: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
