"""Plain counters of the p2p layer: peers, bytes and messages per topic and protocol, rejects, drops.

They are ordinary integers in dicts (no Prometheus dependency here) so every p2pnet module can count
without I/O, tests can assert on them, and node/ exports a `snapshot()` to Prometheus later. One
`Metrics` per node; everything is keyed by topic or protocol id, so the label sets stay small.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("p2pnet.metrics")


@dataclass
class Metrics:
    """Counters of one node. Each `Counter` key is a topic, a protocol id, or a reason string."""

    peers: int = 0  # connected peers right now (a gauge, set by the connection notifee)
    chain_peers: int = 0  # peers whose status handshake succeeded
    msgs_in: Counter[str] = field(default_factory=Counter)  # gossip messages delivered, per topic
    msgs_out: Counter[str] = field(default_factory=Counter)  # gossip messages published, per topic
    bytes_in: Counter[str] = field(default_factory=Counter)  # per topic or protocol
    bytes_out: Counter[str] = field(default_factory=Counter)
    requests_in: Counter[str] = field(default_factory=Counter)  # per protocol
    requests_out: Counter[str] = field(default_factory=Counter)
    request_errors: Counter[str] = field(default_factory=Counter)  # "protocol:kind"
    charges: Counter[str] = field(default_factory=Counter)  # "protocol:penalty" charged to request senders
    verdicts: Counter[str] = field(default_factory=Counter)  # "topic:accept|ignore|reject"
    rejects: Counter[str] = field(default_factory=Counter)  # reason -> count (gossip, handshake, frames)
    drops: Counter[str] = field(default_factory=Counter)  # queue name -> messages lost to overflow
    disconnects: Counter[str] = field(default_factory=Counter)  # reason -> count

    def drop(self, queue: str, what: str, n: int = 1) -> None:
        """Count and log a message lost to a full queue: nothing is dropped without a trace."""
        self.drops[queue] += n
        total = self.drops[queue]
        # Log the first drop of a queue and then every 1000th, so a flood cannot flood the log too.
        if total == n or total // 1000 != (total - n) // 1000:
            log.warning("dropped %d %s on full queue %s (total %d)", n, what, queue, total)

    def reject(self, reason: str) -> None:
        self.rejects[reason] += 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of every counter."""
        out: dict[str, Any] = {"peers": self.peers, "chain_peers": self.chain_peers}
        for name in (
            "msgs_in",
            "msgs_out",
            "bytes_in",
            "bytes_out",
            "requests_in",
            "requests_out",
            "request_errors",
            "charges",
            "verdicts",
            "rejects",
            "drops",
            "disconnects",
        ):
            out[name] = dict(getattr(self, name))
        return out
