"""The status handshake that runs on every connection: a peer of another chain is dropped at once.

On each new connection both sides send their `protocol.messages.Status` (content from a callback of
node/) on `/tensornet/status/1` and check the other's chain id and genesis hash. The protocol id is
deliberately chain-agnostic: a peer of another chain must negotiate it so the mismatch is seen,
logged with its reason, and the peer disconnected. A peer that does not speak the protocol at all
(a discovery-only bootstrap node) is kept for discovery but never counted as a chain peer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.abc import INotifee
from libp2p.peer.id import ID

from p2pnet.metrics import Metrics
from p2pnet.reqresp import PeerGone, ProtocolSpec, Refused, RemoteError, ReqResp, RequestError
from protocol.errors import ProtocolError
from protocol.messages import Status

log = logging.getLogger("p2pnet.handshake")

STATUS_PROTOCOL = "/tensornet/status/1"
STATUS_SPEC = ProtocolSpec(STATUS_PROTOCOL, max_request=1024, max_response=1024, timeout=5.0, server_timeout=5.0)

StatusFn = Callable[[], "Status | Awaitable[Status]"]


class ConnectionEvents(INotifee):
    """A libp2p notifee that turns connects and disconnects into (kind, peer) items on a channel."""

    def __init__(self, send: trio.MemorySendChannel[tuple[str, ID]], metrics: Metrics, name: str) -> None:
        self.send = send
        self.metrics = metrics
        self.name = name

    def _put(self, kind: str, conn: Any) -> None:
        try:
            self.send.send_nowait((kind, conn.muxed_conn.peer_id))
        except trio.WouldBlock:
            self.metrics.drop(f"{self.name}:events", f"{kind} events")
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def connected(self, network: Any, conn: Any) -> None:
        self._put("connected", conn)

    async def disconnected(self, network: Any, conn: Any) -> None:
        self._put("disconnected", conn)

    async def opened_stream(self, network: Any, stream: Any) -> None:
        pass

    async def closed_stream(self, network: Any, stream: Any) -> None:
        pass

    async def listen(self, network: Any, multiaddr: Any) -> None:
        pass

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        pass


def mismatch(ours: Status, theirs: Status) -> str | None:
    """Why `theirs` is not on our chain, or None when it is."""
    if theirs.chain_id != ours.chain_id:
        return f"chain id {theirs.chain_id!r} != ours {ours.chain_id!r}"
    if theirs.genesis_hash != ours.genesis_hash:
        return f"genesis {theirs.genesis_hash.hex()[:16]} != ours {ours.genesis_hash.hex()[:16]}"
    return None


class Handshake:
    """Runs the status exchange on every connection; `statuses` holds each chain peer's last Status.

    `host` is a `p2pnet.host.Host`. `on_ready(peer, status)` (optional) tells node/ a chain peer is
    ready; `on_gone(peer)` that it left.
    """

    def __init__(
        self,
        host: Any,
        reqresp: ReqResp,
        status_fn: StatusFn,
        *,
        metrics: Metrics | None = None,
        on_ready: Callable[[ID, Status], Any] | None = None,
        on_gone: Callable[[ID], Any] | None = None,
    ) -> None:
        self.host = host
        self.reqresp = reqresp
        self.status_fn = status_fn
        self.metrics = metrics if metrics is not None else reqresp.metrics
        self.on_ready = on_ready
        self.on_gone = on_gone
        self.statuses: dict[ID, Status] = {}
        self.discovery_only: set[ID] = set()
        self.refused: dict[ID, str] = {}  # peer -> reason of the last mismatch
        self._changed = trio.Event()
        reqresp.register(STATUS_SPEC, self._serve)

    async def _status(self) -> Status:
        value = self.status_fn()
        if isinstance(value, Awaitable):
            value = await value
        return value

    async def _serve(self, peer: ID, data: bytes) -> bytes:
        ours = await self._status()
        try:
            theirs = Status.from_bytes(data)
        except ProtocolError as exc:
            self.metrics.reject("handshake:malformed")
            self.host.limiter.penalize(str(peer), "malformed")
            raise Refused(f"malformed Status: {exc}", penalty=None) from exc  # charged "malformed" above
        reason = mismatch(ours, theirs)
        if reason is not None:
            self._drop(peer, reason)
            raise Refused(f"wrong chain: {reason}", penalty=None)  # not misbehaviour: dropped, not charged
        self._accept(peer, theirs)
        return ours.to_bytes()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch connections and handshake each new peer until cancelled."""
        send, receive = trio.open_memory_channel[tuple[str, ID]](1024)
        notifee = ConnectionEvents(send, self.metrics, "handshake")
        network = self.host.libp2p.get_network()
        network.register_notifee(notifee)
        try:
            async with trio.open_nursery() as nursery:
                for peer in self.host.peers():
                    nursery.start_soon(self.exchange, peer)
                task_status.started()
                async for kind, peer in receive:
                    self.metrics.peers = len(self.host.peers())
                    if kind == "connected":
                        if peer not in self.statuses:
                            nursery.start_soon(self.exchange, peer)
                    elif not self.host.is_connected(peer):
                        self._forget(peer)
        finally:
            network.remove_notifee(notifee)

    async def exchange(self, peer: ID) -> Status | None:
        """Send our Status to `peer` and check its answer; None if it is not (or no longer) a chain peer."""
        ours = await self._status()
        try:
            data = await self.reqresp.request(peer, STATUS_PROTOCOL, ours.to_bytes())
        except RemoteError as exc:
            if "wrong chain" in exc.text:
                self._drop(peer, exc.text)
            else:
                log.info("handshake with %s refused: %s", peer, exc)
            return None
        except PeerGone as exc:
            if self.host.is_connected(peer) and "protocol" in str(exc).lower():
                self.discovery_only.add(peer)
            else:
                if self.host.is_connected(peer):
                    self.discovery_only.add(peer)  # connected but no status protocol: a discovery-only node
            log.debug("no status handshake with %s: %s", peer, exc)
            return None
        except RequestError as exc:
            log.info("handshake with %s failed: %s", peer, exc)
            return None
        try:
            theirs = Status.from_bytes(data)
        except ProtocolError as exc:
            self.metrics.reject("handshake:malformed")
            self.host.limiter.penalize(str(peer), "malformed")
            self._drop(peer, f"malformed Status: {exc}")
            return None
        reason = mismatch(ours, theirs)
        if reason is not None:
            self._drop(peer, reason)
            return None
        self._accept(peer, theirs)
        return theirs

    def _accept(self, peer: ID, status: Status) -> None:
        new = peer not in self.statuses
        self.statuses[peer] = status
        self.discovery_only.discard(peer)
        self.refused.pop(peer, None)
        self.metrics.chain_peers = len(self.statuses)
        self._changed.set()
        self._changed = trio.Event()
        if new and self.on_ready is not None:
            self.on_ready(peer, status)

    def _drop(self, peer: ID, reason: str) -> None:
        log.warning("disconnecting %s: %s", peer, reason)
        self.metrics.reject("handshake:wrong_chain")
        self.metrics.disconnects["wrong_chain"] += 1
        self.refused[peer] = reason
        self._forget(peer)
        self.host.start_soon(self.host.disconnect, peer)

    def _forget(self, peer: ID) -> None:
        self.discovery_only.discard(peer)
        if self.statuses.pop(peer, None) is not None:
            self.metrics.chain_peers = len(self.statuses)
            self.reqresp.close_peer(peer)
            if self.on_gone is not None:
                self.on_gone(peer)

    async def wait_for_peers(self, n: int) -> None:
        """Wait until at least `n` chain peers completed the handshake (callers bound it with a deadline)."""
        while len(self.statuses) < n:
            await self._changed.wait()
