"""Errors that reach the user as one clear message rather than a traceback."""


class UserError(Exception):
    """Bad input from the user (a file, an option, a dataset): the message names it and what is wrong; the
    command line prints ``alexnet COMMAND: error: MESSAGE`` and exits with status 2."""
