"""Errors caused by the user's input: command lines print them as one line, no traceback."""

from __future__ import annotations

import argparse
from typing import NoReturn


class UserError(Exception):
    """Bad input (config, paths, models) with a message that says how to fix it."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with one-line mistakes, like every other error here (argparse prints its
    whole usage first, which buries the line that says what was wrong)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")
