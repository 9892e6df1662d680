"""Typed errors of node/ that an operator sees: each message is a complete, actionable sentence.

The CLI prints any `NodeError` (like any `protocol.errors.ProtocolError`) as one red line and exits 1,
so raise one of these, with the fix in the message, instead of letting an OSError or KeyError escape.
"""

from __future__ import annotations


class NodeError(Exception):
    """Base of every typed, user-facing error raised by node/."""


class CliError(NodeError):
    """A command that cannot do what was asked (bad combination of options, missing input)."""


class WalletError(NodeError):
    """A wallet that cannot be created, found or read."""


class KeyFileError(WalletError):
    """A key file that is missing, malformed, tampered with, or of an unknown version."""


class KeyPermissionError(KeyFileError):
    """A key file or directory that group or others may read; the message says how to fix it."""


class WrongPasswordError(WalletError):
    """The password does not open the coldkey (or its ciphertext was modified)."""


class PasswordError(WalletError):
    """No usable password: an empty or unreadable password file, or no way to ask for one."""
