"""Errors meant for the user: the CLI prints their message as one line, without a traceback."""


class DPTError(Exception):
    """Base class of every error whose message is complete on its own."""

    exit_code = 1


class UsageError(DPTError):
    """The command line asks for something that cannot be had (unknown model, missing device)."""

    exit_code = 2
