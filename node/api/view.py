"""What the API may see of a node: `NodeView`, and `ApiContext`, the one argument every handler gets.

The handlers are typed against this narrow view, never against `node.daemon.Node`, so the API does not
import the daemon (the daemon imports the API to serve it). `Node` satisfies `NodeView` structurally;
a test may pass any object with these members.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from node.api.guard import ApiLimits
from node.chain import Chain
from node.metrics import NodeMetrics


@runtime_checkable  # so a test can check that `Node` still has every member the handlers use
class NodeView(Protocol):
    """Exactly the members of a node that the handlers read or call (read-only: plain attributes or properties)."""

    @property
    def chain(self) -> Chain: ...  # read between commits (handlers run on the node's loop); `on_commit` wrapped once

    @property
    def metrics(self) -> NodeMetrics: ...

    @property
    def stack(self) -> Any: ...  # the libp2p stack once started, else None: only its peer limiter's bans are read

    @property
    def peer_id(self) -> Any: ...

    @property
    def listen_addrs(self) -> list[str]: ...

    @property
    def commit_sync_blocks(self) -> int: ...

    def chain_peers(self) -> int: ...

    def sync_distance(self) -> int: ...

    def proven_behind(self) -> int: ...

    def last_commit_age_ms(self) -> int: ...

    def health_reasons(self) -> list[str]: ...

    def subnet_obj(self, netuid: int) -> dict[str, Any]: ...

    def refresh_metrics(self) -> None: ...

    async def submit_tx(self, data: bytes, gossip: bool = True) -> bytes: ...

    async def push_to_owners(self, digests: list[bytes]) -> int: ...


@dataclass(frozen=True)
class ApiContext:
    """A handler's world: the node, the limits it enforces, and the epochs seen since the API started."""

    node: NodeView
    limits: ApiLimits
    emission_history: deque[dict[str, Any]]
