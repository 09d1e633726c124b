"""Errors meant for the user: the CLI prints their message as one line, without a traceback."""


class DPTError(Exception):
    """Base class of every error whose message is complete on its own."""
