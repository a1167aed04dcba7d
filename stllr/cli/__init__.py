"""Command line: ``python -m stllr COMMAND ...`` or the console script ``stllr``.

Commands:

- ``train``: the reference's ``main.py`` with the same flags and meanings (so the paper's commands
  run as printed), plus ``--resume``, ``--max-batches``, ``--reference-baseline``, ``--only-trial``,
  ``--data-option``/``--model-option``, ``--no-progress``, ``--cluster`` (trials as tasks of a
  Dask cluster, :mod:`stllr.training.cluster`) (:mod:`stllr.cli.train`).
- ``eval``: test accuracy of a checkpoint (ours or the reference's ``*.pth.tar``).
- ``models``: the registered architectures.
- ``memory``: measured and analytic memory / MACs (:mod:`stllr.cli.memory`).

Every subcommand parser sets ``func``; :func:`main` dispatches with ``args.func(args)``.

Modules: :mod:`~stllr.cli.train` (``train``, ``eval``, ``models``), :mod:`~stllr.cli.memory` (``memory``)
and :mod:`~stllr.cli._parser` (one-line errors).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from stllr.cli._parser import OneLineParser
from stllr.cli.memory import add_memory_subcommand
from stllr.cli.train import add_eval_subcommand, add_models_subcommand, add_train_subcommand

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``stllr`` parser with its subcommands ``train``, ``eval``, ``models`` and ``memory``."""
    from stllr import __version__

    parser = OneLineParser(
        prog="stllr", description="S-TLLR: train, evaluate and measure spiking networks."
    )
    parser.add_argument("--version", action="version", version=f"stllr {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineParser
    )
    subparsers.required = True
    add_train_subcommand(subparsers)
    add_eval_subcommand(subparsers)
    add_models_subcommand(subparsers)
    add_memory_subcommand(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` (default sys.argv[1:]) and run the subcommand; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from stllr.training.config import ConfigError

    prog = f"stllr {args.command}"
    try:
        from stllr.data import DatasetNotFoundError  # noqa: F401

        not_found = (DatasetNotFoundError,)
    except ImportError:
        not_found = ()
    try:
        rc = args.func(args)
    except ConfigError as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except not_found as e:  # type: ignore[misc]
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (a train run continues with --resume)", file=sys.stderr)
        return 130
    return int(rc or 0)
