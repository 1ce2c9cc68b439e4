"""Errors that are the user's to fix.

A `UserError` carries a one-line message naming the field at fault and the fix. The CLI prints it
on stderr as ``forgetlaw: error: <message>`` and exits with status 2, without a traceback.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a request that cannot be met; the message says what and how to fix it."""

    exit_code = 2

    def __init__(self, message: str):
        # One line: the CLI prints it verbatim.
        super().__init__(" ".join(str(message).split()))
