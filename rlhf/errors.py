"""Errors caused by the user's input: command lines print them as one line, no traceback."""


class UserError(Exception):
    """Bad input (config, paths, models) with a message that says how to fix it."""
