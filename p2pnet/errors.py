"""Typed errors of the p2p layer.

Everything p2pnet raises on bad input or a refused peer is a `P2PError`, so node/ can catch one class,
log the message and keep running. Each class says what went wrong in plain words.
"""

from __future__ import annotations


class P2PError(Exception):
    """Base of every typed p2pnet error."""


class NodeKeyError(P2PError):
    """The node key file is missing, malformed, or has unsafe permissions."""


class DialError(P2PError):
    """A dial that failed, timed out, or reached the wrong peer."""


class StreamOpenError(P2PError):
    """A stream that could not be opened or negotiated within its deadline."""


class PeerBanned(P2PError):
    """The peer is banned (its score fell below the threshold); retry after the ban expires."""

    def __init__(self, peer: str, until: float) -> None:
        self.peer = peer
        self.until = until
        super().__init__(f"peer {peer} is banned until t={until:.1f}")


class LimitExceeded(P2PError):
    """A per-peer or per-IP limit refused the operation; `reason` is the counter key."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")


class MessageTooLarge(LimitExceeded):
    """A frame longer than the cap of its protocol; refused before the body is read."""

    def __init__(self, size: int, cap: int, protocol: str = "") -> None:
        self.size = size
        self.cap = cap
        where = f" on {protocol}" if protocol else ""
        super().__init__("oversize", f"frame of {size} bytes exceeds the {cap}-byte cap{where}")


class ReadTimeout(LimitExceeded):
    """A peer that did not send what it owed before the read deadline."""

    def __init__(self, seconds: float, what: str = "read") -> None:
        super().__init__("read_timeout", f"{what} gave up after {seconds:g} s")


class ConfigError(P2PError):
    """An invalid host configuration (listen address, limits, protocol list)."""


class MalformedFrame(LimitExceeded):
    """A frame that cannot be a frame at all (a varint prefix longer than 10 bytes or not minimal)."""

    def __init__(self, message: str) -> None:
        self.detail = message
        super().__init__("malformed", message)
