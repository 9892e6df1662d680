"""Every fix to py-libp2p 0.8.1 lives here, one place, each labelled with its defect number.

The numbers are those of /work/shared/research/py-libp2p-0.8.1.md. Each fix is a subclass (swapped
in for the instance we build, so other libp2p objects are untouched) or, where libp2p binds a name at
import time, a module-level patch applied once by `install()`. tests/p2pnet/test_hardening.py attacks a
real host for each one.

Public API (used by p2pnet.host and p2pnet.gossip):

    build_libp2p_host(keypair, limiter, announce_addrs=None) -> BasicHost   # Noise+yamux+TCP, hardened
    close_host(libp2p_host)                                  # close listeners and connections (defect 9)
    make_pubsub(host, protocols=GOSSIP_PROTOCOLS, *, degree=6, degree_low=4, degree_high=12,
                heartbeat_interval=1.0, msg_id_fn=None, strict_signing=True,
                max_message_size=None, seen_ttl=120, validation_timeout=5.0) -> (HardenedPubsub, HardenedGossipSub)
    run_pubsub(pubsub, router)          # async context manager: runs both, handlers registered only once running
    publish(pubsub, topic, data, *, deadline=10.0)           # publish with backpressure (defect 10)
    run_trio(main, *args) -> int        # trio.run that turns SIGINT inside a BaseExceptionGroup into exit 130
    reset_quietly(stream); violation_reason(exc) -> str

`host` arguments accept either a p2pnet.host.Host or a raw libp2p host.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio
from google.protobuf.message import DecodeError as ProtobufDecodeError
from libp2p import new_host
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.exceptions import ParseError
from libp2p.host.basic_host import BasicHost
from libp2p.io import utils as io_utils
from libp2p.io.exceptions import IncompleteReadError
from libp2p.network import swarm as swarm_module
from libp2p.network.config import ConnectionConfig
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.exceptions import SwarmException
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub import rpc_queue as rpc_queue_module
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.pubsub_notifee import PubsubNotifee
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux import yamux as yamux_module
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr

from p2pnet import tuning
from p2pnet.errors import LimitExceeded, P2PError, StreamOpenError
from p2pnet.limits import PeerLimiter
from p2pnet.meshsub import OrderedReaderMixin
from protocol.errors import DecodeError, ValidationError

log = logging.getLogger(__name__)

GOSSIP_PROTOCOLS: tuple[str, ...] = (PROTOCOL_ID_V12, PROTOCOL_ID_V11)
OUTBOUND_QUEUE_SIZE = 1024  # per-peer pubsub RPC queue (libp2p: 32, dropping silently beyond it)
SUBSCRIPTION_QUEUE_SIZE = 4096  # messages buffered per subscription before a counted drop (libp2p: 32)
PUBLISH_HIGH_WATER = 0.5  # publish() waits while any peer queue is fuller than this fraction


# --- small helpers ------------------------------------------------------------------------------


async def reset_quietly(stream: Any) -> None:
    """Reset a stream, ignoring the errors of a stream that is already dead."""
    with trio.CancelScope(shield=True), trio.move_on_after(2):
        try:
            await stream.reset()
        except Exception:  # noqa: BLE001 - the stream may be gone; nothing else to do
            pass


def violation_reason(exc: BaseException) -> str:
    """The PeerLimiter penalty reason for an exception raised while handling a peer's input."""
    if isinstance(exc, LimitExceeded):
        return exc.reason
    if isinstance(exc, DecodeError | ProtobufDecodeError | ParseError):
        return "malformed"
    if isinstance(exc, ValidationError):
        return "invalid_message"
    if isinstance(exc, trio.TooSlowError):
        return "read_timeout"
    return "handler_error"


def _single_leaf(exc: BaseException) -> BaseException | None:
    """The one non-Cancelled exception inside (nested) groups, or None if there are several or none."""
    if not isinstance(exc, BaseExceptionGroup):
        return None if isinstance(exc, trio.Cancelled) else exc
    leaves = [leaf for e in exc.exceptions if (leaf := _single_leaf(e)) is not None]
    return leaves[0] if len(leaves) == 1 else None


@asynccontextmanager
async def unwrap_single_error() -> AsyncIterator[None]:
    """Re-raise a lone error that libp2p's nested nurseries wrapped in ExceptionGroups, as itself.

    Callers of open_host then catch `DialError` or `ConfigError` directly instead of digging through
    groups; several concurrent errors stay grouped.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = _single_leaf(group)
        if leaf is None:
            raise
        raise leaf from group


def _limiter_of(obj: Any) -> PeerLimiter | None:
    return getattr(obj, "_tn_limiter", None)


def _libp2p_host(host: Any) -> BasicHost:
    return getattr(host, "libp2p", host)


# --- defect 7: framed reads gave up after 100 partial reads (messages over ~6.5 MB failed) ---------

_original_read_exactly = io_utils.read_exactly


async def read_exactly(reader: Any, n: int, retry_count: int = 0) -> bytes:
    """Read exactly `n` bytes; loop until they arrive or the stream ends (EOF raises IncompleteReadError).

    libp2p's version stops after 100 reads, so a large frame arriving in yamux-sized (64 KiB) pieces
    failed. Size caps are enforced before this is called (the length prefix is checked first), and the
    caller's deadline bounds the time, so no retry count is needed. `retry_count` is ignored.
    """
    buffer = bytearray()
    while len(buffer) < n:
        chunk = await reader.read(n - len(buffer))
        if not chunk:
            raise IncompleteReadError(
                f"stream ended after {len(buffer)} of {n} bytes", expected_bytes=n, received_bytes=len(buffer)
            )
        buffer.extend(chunk)
    return bytes(buffer)


# --- defect 10: yamux gave a writer waiting on a full window 5 s, then raised ---------------------


class PatientYamuxStream(tuning.BatchedCreditYamuxStream):
    """A yamux stream whose writes wait for the peer's window as long as the caller's deadline allows.

    libp2p raises after 5 s without a window update, which resets streams to a slow (but alive) reader,
    e.g. a validator that is busy verifying a burst. We write at most the current window at a time, so
    libp2p's 5 s wait is never entered; between chunks we wait (bounded by the caller's deadline or the
    stream closing) for the window to open.
    """

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            while self.send_window <= 0 and not (self.closed or self.send_closed):
                await trio.sleep(0.005)
            step = max(1, min(len(view), self.send_window))
            await YamuxStream.write(self, bytes(view[:step]))
            view = view[step:]


# --- defects 3 and 10: inbound slot leak, and no per-IP cap on half-open sockets -----------------


def _remote_ip(read_write_closer: Any) -> str:
    try:
        remote = read_write_closer.get_remote_address()
    except Exception:  # noqa: BLE001 - a socket that died already has no address
        remote = None
    return str(remote[0]) if remote else "?"


class HardenedSwarm(Swarm):
    """Swarm whose inbound path neither leaks slots nor lets one IP hold every handshake slot.

    Defect 3: libp2p keeps each inbound handler (and its inbound-limiter token) alive until the whole
    swarm stops, so after 250 lifetime inbound connections every new one is refused. Here the handler
    lives exactly as long as its connection, and its slots are released when the connection closes.
    Defect 10: ~250 idle sockets that never start the handshake locked everyone out. Here each remote IP
    gets `max_pending_per_ip` handshake slots and `max_conns_per_ip` connections, and a handshake that
    does not finish within `handshake_timeout` is dropped; other IPs are unaffected.
    """

    _tn_limiter: PeerLimiter

    async def _handle_inbound_connection(self, read_write_closer: Any, maddr: Multiaddr) -> None:
        limiter = self._tn_limiter
        ip = _remote_ip(read_write_closer)
        if not limiter.admit_pending(ip):
            await _close_quietly(read_write_closer)
            return
        pending = True
        muxed_conn = None
        try:
            remote_maddr = self._build_remote_multiaddr(read_write_closer)
            if remote_maddr is not None and not await self.connection_gate.is_allowed(remote_maddr):
                limiter.rejects["gated"] += 1
                return
            raw_conn = RawConnection(read_write_closer, False)
            with trio.move_on_after(limiter.limits.handshake_timeout) as scope:
                muxed_conn = await self.upgrade_inbound_raw_conn(raw_conn, maddr)
            if scope.cancelled_caught or muxed_conn is None:
                limiter.rejects["handshake_timeout"] += 1
                return
            limiter.release_pending(ip)
            pending = False
            peer = str(muxed_conn.peer_id)
            if limiter.is_banned(peer):
                limiter.rejects["banned"] += 1
                return
            if not limiter.admit_conn(ip, inbound=True):
                return
            try:
                # Live exactly as long as the connection (libp2p waited for the whole swarm to stop).
                await muxed_conn.event_closed.wait()
            finally:
                limiter.release_conn(ip, inbound=True)
        except Exception as exc:  # noqa: BLE001 - a failed handshake is routine; count it, never crash
            limiter.rejects["handshake_failed"] += 1
            log.debug("inbound connection from %s failed: %r", ip, exc)
        finally:
            if pending:
                limiter.release_pending(ip)
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                if muxed_conn is not None:
                    await _close_quietly(muxed_conn)
                await _close_quietly(read_write_closer)


async def _close_quietly(closable: Any) -> None:
    try:
        await closable.close()
    except Exception:  # noqa: BLE001 - already closed or broken; nothing to do
        pass


# --- defect 2: an exception in any stream handler killed the host --------------------------------


class HardenedBasicHost(BasicHost):
    """BasicHost whose stream dispatch contains every handler failure (defect 2).

    libp2p runs handlers inside the connection's nursery, so one raising handler tore down the
    connection's task tree and then the swarm. Here any Exception from negotiation or a handler
    (including libp2p's own: identify, ping, meshsub) is logged, counted, charged to the peer, and
    answered with a stream reset. Cancellation and KeyboardInterrupt still propagate.
    """

    _tn_limiter: PeerLimiter

    async def _swarm_stream_handler(self, net_stream: INetStream) -> None:
        try:
            await super()._swarm_stream_handler(net_stream)
        except Exception as exc:  # noqa: BLE001 - the whole point: no handler failure may kill the host
            peer = str(getattr(net_stream.muxed_conn, "peer_id", "?"))
            reason = violation_reason(exc)
            limiter = _limiter_of(self)
            if limiter is not None:
                limiter.violations["stream_handler_crash"] += 1
                limiter.penalize(peer, reason)
            log.warning("stream handler failed on input from %s (%s): %r", peer, reason, exc)
            await reset_quietly(net_stream)


# --- defect 4: plaintext and secio offered by default (peer-ID impersonation) --------------------


def noise_only_security(keypair: KeyPair) -> dict[str, Any]:
    """Only Noise XX: it proves possession of the peer ID's key. No plaintext, secio or TLS."""
    return {NOISE_PROTOCOL_ID: NoiseTransport(keypair, noise_privkey=create_x25519_key_pair().private_key)}


def build_libp2p_host(
    keypair: KeyPair, limiter: PeerLimiter, announce_addrs: Sequence[Multiaddr] | None = None
) -> BasicHost:
    """A py-libp2p host with Noise, yamux and TCP only, and every fix of this module in place."""
    install()
    limits = limiter.limits
    config = ConnectionConfig(
        # defect 8: one connection per peer, so the first successful dial ends the happy-eyeballs wait
        max_connections_per_peer=1,
        min_connections=0,  # no floor of connections to keep up (see _no_auto_connect)
        low_watermark=0,
        max_connections=limits.max_inbound_conns + 64,
        high_watermark=limits.max_inbound_conns + 64,
        inbound_upgrade_timeout=limits.handshake_timeout,
    )
    host = new_host(
        key_pair=keypair,
        sec_opt=noise_only_security(keypair),
        muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
        connection_config=config,
        announce_addrs=announce_addrs,
        enable_mDNS=False,
        enable_upnp=False,
    )
    swarm = host.get_network()
    # The auto-connector dialled up to ~300 peers from the peerstore (banned or stale ones too) to hit a
    # connection target; discovery decides whom we dial, so it is switched off for this swarm.
    swarm.auto_connector.maybe_connect = _no_auto_connect
    swarm.__class__ = HardenedSwarm
    swarm._tn_limiter = limiter
    host.__class__ = HardenedBasicHost
    host._tn_limiter = limiter
    # BasicHost.__init__ bound the unguarded dispatcher into the swarm; bind the guarded one instead.
    swarm.set_stream_handler(host._swarm_stream_handler)
    return host


async def _no_auto_connect() -> None:
    await trio.lowlevel.checkpoint()


async def close_host(libp2p_host: Any) -> None:
    """Close the host, its listeners and every connection (defect 9: cancelling alone leaked sockets)."""
    try:
        await libp2p_host.close()
    except Exception as exc:  # noqa: BLE001 - close as much as we can, then check the listeners ourselves
        log.debug("host close: %r", exc)
    swarm = libp2p_host.get_network()
    for listener in list(getattr(swarm, "listeners", {}).values()):
        await _close_quietly(listener)
    for conns in list(getattr(swarm, "connections", {}).values()):
        for conn in list(conns if isinstance(conns, list) else [conns]):
            await _close_quietly(conn)


# --- pubsub: defects 1, 5, 6 and the queue parts of 10 -----------------------------------------


class _QueueingPubsubNotifee(INotifee):
    """Connection events for pubsub, never blocking the swarm (defect 5).

    libp2p's notifee hands each new peer to pubsub over an unbuffered channel, so a connection made
    before pubsub runs blocks the swarm's connection set-up. This one buffers the events; pubsub drains
    them once it runs (peers that connected earlier are then picked up, not lost).
    """

    def __init__(self, limiter: PeerLimiter | None, size: int = 4096) -> None:
        self.send, self.receive = trio.open_memory_channel[tuple[bool, ID]](size)
        self.limiter = limiter

    def _put(self, connected: bool, conn: INetConn) -> None:
        try:
            self.send.send_nowait((connected, conn.muxed_conn.peer_id))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            if self.limiter is not None:
                self.limiter.drops["pubsub_peer_event"] += 1

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._put(True, conn)
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._put(False, conn)
        await trio.lowlevel.checkpoint()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        await trio.lowlevel.checkpoint()

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        await trio.lowlevel.checkpoint()


class HardenedPubsub(OrderedReaderMixin, tuning.BatchingSenderMixin, Pubsub):
    """Pubsub that survives malformed frames and early peers, and counts what it drops.

    Its /meshsub reader is p2pnet.meshsub's (ordered, capped, deadlined: defects 12 and 13) and its
    per-peer sender writes queued RPCs in merged batches (p2pnet.tuning).

    Defect 1: a malformed protobuf frame on /meshsub raised DecodeError out of the stream handler and
    killed the host. Here any failure reading a peer's stream resets that stream, drops the peer from
    pubsub, and charges its score. Defect 5: a peer opening /meshsub before the service ran hit
    `AttributeError: _manager`; here the stream handlers are registered only once the service runs,
    and connection events are queued (see `_QueueingPubsubNotifee`). Defect 10: a subscriber's
    32-entry queue dropped silently; here it is larger and each drop is counted.
    """

    def __init__(self, host: Any, router: Any, *, limiter: PeerLimiter | None = None, **kwargs: Any) -> None:
        super().__init__(host, router, **kwargs)
        self._tn_limiter = limiter
        self._tn_running = False
        network = host.get_network()
        # Swap libp2p's blocking notifee for a queueing one; keep its channels to feed pubsub later.
        original = [n for n in network.notifees if isinstance(n, PubsubNotifee)][-1]
        network.notifees.remove(original)
        self._tn_peer_send = original.initiator_peers_queue
        self._tn_dead_send = original.dead_peers_queue
        self._tn_notifee = _QueueingPubsubNotifee(limiter)
        network.register_notifee(self._tn_notifee)
        # Not serving /meshsub until run() (defect 5).
        for protocol in router.get_protocols():
            host.remove_stream_handler(protocol)

    async def run(self) -> None:
        self.manager.run_daemon_task(self._tn_forward_peer_events)
        for peer_id in self.host.get_connected_peers():  # connected before we ran: not lost
            self._tn_notifee.send.send_nowait((True, peer_id))
        for protocol in self.router.get_protocols():
            self.host.set_stream_handler(protocol, self.stream_handler)
        self._tn_running = True
        try:
            await super().run()
        finally:
            self._tn_running = False
            for protocol in self.router.get_protocols():
                try:
                    self.host.remove_stream_handler(protocol)
                except Exception:  # noqa: BLE001 - host may be closing already
                    pass

    async def _handle_new_peer(self, peer_id: ID) -> None:
        # One registration per peer at a time: two concurrent ones (the connection event and a retry)
        # both passed libp2p's `peer_id in self.peers` check and the second replaced the first's
        # stream and queue.
        registering = self.__dict__.setdefault("_tn_registering", set())
        if peer_id in registering:
            return
        registering.add(peer_id)
        try:
            await super()._handle_new_peer(peer_id)
        finally:
            registering.discard(peer_id)

    async def _tn_forward_peer_events(self) -> None:
        await self.event_handle_peer_queue_started.wait()
        async for connected, peer_id in self._tn_notifee.receive:
            channel = self._tn_peer_send if connected else self._tn_dead_send
            try:
                await channel.send(peer_id)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def stream_handler(self, stream: INetStream) -> None:
        peer_id = stream.muxed_conn.peer_id
        if not self._tn_running:
            await reset_quietly(stream)
            return
        limiter = self._tn_limiter
        if limiter is not None and limiter.is_banned(str(peer_id)):
            limiter.rejects["banned"] += 1
            await reset_quietly(stream)
            return
        if peer_id not in self.peers:
            # The peer talks to us but we have no stream to it: our own attempt failed earlier (it
            # connected before our pubsub ran and libp2p does not retry a refused negotiation).
            self._schedule_peer_stream_retry(peer_id)
        try:
            await self.continuously_read_stream(stream)
        except Exception as exc:  # noqa: BLE001 - defect 1: a bad frame costs the peer its stream, not us the host
            reason = violation_reason(exc)
            if isinstance(exc, IncompleteReadError | SwarmException) or "closed" in str(exc).lower():
                reason = "disconnect"
            elif limiter is not None:
                limiter.penalize(str(peer_id), reason)
            log.debug("pubsub stream from %s ended (%s): %r", peer_id, reason, exc)
            await reset_quietly(stream)
            try:
                self._handle_dead_peer(peer_id)
            except Exception:  # noqa: BLE001 - best effort clean-up of a peer that is gone
                pass

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        for topic in publish_message.topicIDs:
            channel = self.subscribed_topics_send.get(topic)
            if channel is None:
                continue
            try:
                channel.send_nowait(publish_message)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                if self._tn_limiter is not None:
                    self._tn_limiter.drops["subscription_full"] += 1
                log.warning("subscriber of %s is not keeping up; message dropped (counted)", topic)


class HardenedGossipSub(tuning.IdontwantThresholdMixin, GossipSub):
    """GossipSub with spam protection off (defect 6) and a 1 s heartbeat (defect 10).

    libp2p's spam protection silently stopped forwarding past 10 msg/s per forwarder per topic, our own
    publishes included: consensus traffic is far above that. Rate abuse is handled by PeerLimiter and
    topic validators instead, which count what they refuse. IDONTWANT is sent only for messages of
    1 KiB or more (p2pnet.tuning).
    """


def make_pubsub(
    host: Any,
    protocols: Sequence[str] = GOSSIP_PROTOCOLS,
    *,
    degree: int = 6,
    degree_low: int = 4,
    degree_high: int = 12,
    heartbeat_interval: float = 1.0,
    msg_id_fn: Callable[[rpc_pb2.Message], bytes] | None = None,
    strict_signing: bool = True,
    max_message_size: int | None = None,
    seen_ttl: int = 120,
    validation_timeout: float = 5.0,
    **gossipsub_kwargs: Any,
) -> tuple[HardenedPubsub, HardenedGossipSub]:
    """Build a hardened (Pubsub, GossipSub) pair for `host`; run them with `run_pubsub`.

    `msg_id_fn(msg) -> bytes` gives message identity for dedup (e.g. the digest of msg.data); the
    default is libp2p's (sender, seqno). `max_message_size` defaults to the host's `Limits.max_message_size`.
    """
    libp2p_host = _libp2p_host(host)
    limiter = _limiter_of(libp2p_host)
    if max_message_size is None:
        max_message_size = limiter.limits.max_message_size if limiter else 1 << 20
    router = HardenedGossipSub(
        protocols=list(protocols),
        degree=degree,
        degree_low=degree_low,
        degree_high=degree_high,
        heartbeat_interval=heartbeat_interval,  # type: ignore[arg-type]  # defect 10: libp2p default is 120 s
        spam_protection_enabled=False,  # defect 6
        **gossipsub_kwargs,
    )
    kwargs: dict[str, Any] = {
        "strict_signing": strict_signing,
        "max_inbound_rpc_size": max_message_size,
        "seen_ttl": seen_ttl,
        "validation_timeout": validation_timeout,
    }
    if msg_id_fn is not None:
        kwargs["msg_id_constructor"] = msg_id_fn
    pubsub = HardenedPubsub(libp2p_host, router, limiter=limiter, **kwargs)
    pubsub._tn_max_message_size = max_message_size
    return pubsub, router


@asynccontextmanager
async def run_pubsub(pubsub: HardenedPubsub, router: GossipSub) -> AsyncIterator[HardenedPubsub]:
    """Run router and pubsub; on entry /meshsub is served and early peers have been queued."""
    async with background_trio_service(pubsub), background_trio_service(router):
        await pubsub.wait_until_ready()
        yield pubsub


async def publish(pubsub: Pubsub, topic: str, data: bytes, *, deadline: float = 10.0) -> None:
    """Publish with backpressure (defect 10): wait, within `deadline`, while any peer queue is over half full.

    libp2p's publish() returns at once and, past 32 queued RPCs per peer, drops silently. Here the
    queues are larger, drops are counted, and a publisher that outruns the network is slowed down
    instead. Raises StreamOpenError if the queues do not drain within `deadline`.
    """
    try:
        with trio.fail_after(deadline):
            while True:
                fullest = max((len(q) / q._queue.max_size for q in pubsub.peer_queues.values()), default=0.0)
                if fullest <= PUBLISH_HIGH_WATER:
                    break
                await trio.sleep(0.002)
            await pubsub.publish(topic, data)
    except trio.TooSlowError as exc:
        raise StreamOpenError(f"gossip queues did not drain within {deadline:g} s; not published") from exc


def _counting_drop_rpc(peer_id: ID, rpc: rpc_pb2.RPC) -> None:
    """Defect 10: outbound pubsub RPCs dropped on a full queue are counted, not only debug-logged."""
    DROPPED_RPCS[str(peer_id)] = DROPPED_RPCS.get(str(peer_id), 0) + 1
    _original_drop_rpc(peer_id, rpc)


DROPPED_RPCS: dict[str, int] = {}  # peer -> outbound pubsub RPCs dropped (process-wide: libp2p has no host here)
_original_drop_rpc = rpc_queue_module.drop_rpc


class _LargerRpcQueue(rpc_queue_module.RpcQueue):
    """Per-peer outbound pubsub queue of OUTBOUND_QUEUE_SIZE RPCs (libp2p: 32)."""

    def __init__(self, max_size: int = OUTBOUND_QUEUE_SIZE, max_message_size: int = 64 << 20) -> None:
        super().__init__(max_size=max_size, max_message_size=max_message_size)


# --- defect 10: SIGINT arrives wrapped in a BaseExceptionGroup -------------------------------------


def _only_interrupts(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_interrupts(e) for e in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt | trio.Cancelled)


def _has_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return any(_has_interrupt(e) for e in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt)


def run_trio(main: Callable[..., Awaitable[Any]], *args: Any) -> int:
    """`trio.run(main, *args)` for a CLI: 0 on return, 130 on SIGINT, 143 on SIGTERM, with a clean shutdown.

    Trio delivers SIGINT as KeyboardInterrupt inside whichever task is running, often one of libp2p's,
    which may swallow it or wrap it in nested BaseExceptionGroups that `except KeyboardInterrupt` does
    not catch. Instead, the signals are received here and turned into a cancellation of `main`, so every
    `async with` (hosts, databases) unwinds normally. A KeyboardInterrupt that still arrives wrapped is
    recognised too. Any other error is re-raised unchanged.
    """
    received: list[int] = []

    async def supervised() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with unwrap_single_error(), trio.open_nursery() as nursery:

                async def watch() -> None:
                    async for signum in signals:
                        received.append(signum)
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(watch)
                await main(*args)
                nursery.cancel_scope.cancel()

    try:
        trio.run(supervised)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) or (_has_interrupt(exc) and _only_interrupts(exc)):
            return 128 + signal.SIGINT
        raise
    return 128 + received[0] if received else 0


# --- cost: every pubsub RPC re-verified the sender's signed peer record, twice --------------------
# py-libp2p attaches the sender's signed peer record to each RPC, and both Pubsub's reader and
# GossipSub.handle_rpc verify it (an ed25519 verify plus protobuf parsing each time): two extra
# signature checks per gossip message, measured at ~12% of a validator's CPU. A record is the same
# bytes until its sender's addresses change, so a verified (peer, record) pair is remembered.

_RECORD_CACHE_SIZE = 4096
_verified_records: dict[tuple[str, bytes], None] = {}
_original_consume_record = pubsub_module.maybe_consume_signed_record


def _cached_consume_signed_record(msg: rpc_pb2.RPC, host: Any, peer_id: ID) -> bool:
    if not msg.HasField("senderRecord"):
        return True
    key = (str(peer_id), msg.senderRecord)
    if key in _verified_records:
        return True
    ok = _original_consume_record(msg, host, peer_id)
    if ok:
        if len(_verified_records) >= _RECORD_CACHE_SIZE:
            _verified_records.pop(next(iter(_verified_records)))
        _verified_records[key] = None
    return ok


# --- module-level patches -----------------------------------------------------------------------

_installed = False


def install() -> None:
    """Apply the import-time patches once per process (idempotent). build_libp2p_host calls it."""
    global _installed
    if _installed:
        return
    # Defect 7: every module that imported read_exactly by name gets the unbounded-retry version.
    for name, module in list(sys.modules.items()):
        if name.startswith("libp2p") and getattr(module, "read_exactly", None) is _original_read_exactly:
            module.read_exactly = read_exactly
    io_utils.read_exactly = read_exactly
    # Defect 8: no 250 ms head start between addresses of one peer (and, with one connection per peer,
    # no wait at all once a dial succeeds).
    swarm_module._HAPPY_EYEBALLS_DELAY = 0.0
    # Defect 10: yamux streams wait for the window instead of failing after 5 s.
    yamux_module.YamuxStream = PatientYamuxStream
    # Defect 10: larger pubsub queues, counted drops.
    pubsub_module.RpcQueue = _LargerRpcQueue
    pubsub_module.SUBSCRIPTION_CHANNEL_SIZE = SUBSCRIPTION_QUEUE_SIZE
    for module in (pubsub_module, rpc_queue_module, sys.modules.get("libp2p.pubsub.gossipsub")):
        if module is not None and getattr(module, "drop_rpc", None) is _original_drop_rpc:
            module.drop_rpc = _counting_drop_rpc
    # Cost: build our signed record once per few seconds, not per RPC; fewer frames (p2pnet.tuning).
    tuning.install()
    # Cost: verify each peer's signed record once, not twice per RPC.
    for module in (pubsub_module, sys.modules.get("libp2p.pubsub.gossipsub")):
        if module is not None and getattr(module, "maybe_consume_signed_record", None) is _original_consume_record:
            module.maybe_consume_signed_record = _cached_consume_signed_record
    _installed = True


__all__ = [
    "GOSSIP_PROTOCOLS",
    "HardenedBasicHost",
    "HardenedGossipSub",
    "HardenedPubsub",
    "HardenedSwarm",
    "P2PError",
    "PatientYamuxStream",
    "build_libp2p_host",
    "close_host",
    "install",
    "make_pubsub",
    "noise_only_security",
    "publish",
    "read_exactly",
    "reset_quietly",
    "run_pubsub",
    "run_trio",
    "violation_reason",
]
