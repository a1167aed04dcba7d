"""The argument parser every ``stllr`` subcommand uses: errors are one line."""

from __future__ import annotations

import argparse

__all__ = ["OneLineParser"]


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr (``prog: error: message``), status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")
