"""The tensornet libp2p host: py-libp2p 0.8.1 with every known defect fixed (see p2pnet/hardening.py).

Use it like this::

    from p2pnet.host import open_host
    from p2pnet.limits import Limits
    from p2pnet.nodekey import load_or_create_node_key

    keypair = load_or_create_node_key(home)                     # libp2p KeyPair (ed25519)
    async with open_host(keypair, listen=["/ip4/127.0.0.1/tcp/0"], limits=Limits()) as host:
        host.peer_id                 # libp2p ID
        host.addrs                   # list[Multiaddr], each ending in /p2p/<peer id>
        host.libp2p                  # the underlying (hardened) py-libp2p BasicHost
        host.limiter                 # PeerLimiter: scores, bans, counters (rejects/drops/violations/bans)
        host.set_stream_handler("/tn/x/1", handler)   # async handler(stream); capped, deadlined, never kills the host
        peer = await host.connect("/ip4/127.0.0.1/tcp/4001/p2p/12D3...", deadline=10)   # -> ID
        stream = await host.new_stream(peer, ["/tn/x/1"], deadline=10)                   # -> INetStream
        host.peers()                 # list[ID] of connected peers
        rtt = await host.ping(peer, deadline=10)                                          # -> seconds
        await host.disconnect(peer)
        host.start_soon(fn, *args)   # run a task owned by the host (cancelled when the host closes)

    Pubsub (gossipsub) is built with `p2pnet.hardening.make_pubsub(host, ...)` and run with
    `p2pnet.hardening.run_pubsub(...)`; see there.

Security is Noise only (no plaintext, no secio, no TLS), the muxer is yamux, the transport TCP.
Every wait has a deadline; on any exit (error, cancel, SIGINT) the libp2p host is closed so no
listening or established socket outlives the `async with` (defect 9 of the research note).
Peer IDs may be given as `ID` or as their base58 string everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import multiaddr
import trio
from libp2p.abc import INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.host.ping import ID as PING_PROTOCOL
from libp2p.host.ping import perform_ping_roundtrip
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from p2pnet import hardening
from p2pnet.errors import ConfigError, DialError, P2PError, PeerBanned, StreamOpenError
from p2pnet.guard import GuardedStream
from p2pnet.limits import Limits, PeerLimiter

log = logging.getLogger(__name__)

StreamHandler = Callable[[INetStream], Awaitable[None]]
PeerRef = ID | str

DEFAULT_DEADLINE = 10.0


def as_peer_id(peer: PeerRef) -> ID:
    """`ID` from an `ID` or its base58 text; a typed error for anything else."""
    if isinstance(peer, ID):
        return peer
    try:
        return ID.from_base58(peer)
    except Exception as exc:
        raise DialError(f"not a peer ID: {peer!r}") from exc


def parse_multiaddr(addr: str | multiaddr.Multiaddr) -> multiaddr.Multiaddr:
    try:
        return addr if isinstance(addr, multiaddr.Multiaddr) else multiaddr.Multiaddr(addr)
    except Exception as exc:
        raise ConfigError(f"not a multiaddr: {addr!r} ({exc})") from exc


class Host:
    """Thin wrapper over a hardened py-libp2p host; create it with `open_host`."""

    def __init__(self, libp2p_host: Any, limiter: PeerLimiter, nursery: trio.Nursery) -> None:
        self.libp2p = libp2p_host
        self.limiter = limiter
        self._nursery = nursery
        self.handler_errors = 0  # exceptions raised by our stream handlers (each one logged, none fatal)

    # --- identity and addresses -------------------------------------------------------------

    @property
    def peer_id(self) -> ID:
        return self.libp2p.get_id()

    @property
    def addrs(self) -> list[multiaddr.Multiaddr]:
        """Listen (or announced) addresses, each with `/p2p/<peer id>` appended."""
        out = []
        suffix = f"/p2p/{self.peer_id}"
        for a in self.libp2p.get_addrs():
            text = str(a)
            out.append(a if text.endswith(suffix) else multiaddr.Multiaddr(text + suffix))
        return out

    def peers(self) -> list[ID]:
        return list(self.libp2p.get_connected_peers())

    def is_connected(self, peer: PeerRef) -> bool:
        return as_peer_id(peer) in self.libp2p.get_network().connections

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run `fn(*args)` in the host's nursery; it is cancelled when the host closes."""
        self._nursery.start_soon(fn, *args)

    # --- streams ----------------------------------------------------------------------------

    def set_stream_handler(
        self, protocol_id: str, handler: StreamHandler, *, max_frame: int | None = None, framed: bool = True
    ) -> None:
        """Serve `protocol_id` with `handler(stream)`.

        The handler runs guarded: a banned peer's stream is reset before the handler sees it; a peer over
        its concurrent-stream limit is refused; the stream it gets is a `p2pnet.guard.GuardedStream`,
        which enforces the protocol's frame cap (`max_frame`, else `Limits.message_cap(protocol_id)`,
        never above `Limits.max_message_size`) and the read deadlines on uvarint-framed input
        (`framed=False`: the cap covers the whole stream); an exception in the handler is logged,
        counted, charged to the peer's score (malformed input costs more than other errors) and the
        stream is reset. The host keeps serving everyone else in every case (defect 2).
        """
        limiter = self.limiter
        limits = limiter.limits
        cap = min(limits.max_message_size, max_frame if max_frame is not None else limits.message_cap(protocol_id))

        async def guarded(stream: INetStream) -> None:
            peer = str(stream.muxed_conn.peer_id)
            if limiter.is_banned(peer):
                limiter.rejects["banned"] += 1
                await hardening.reset_quietly(stream)
                return
            if not limiter.admit_stream(peer):
                await hardening.reset_quietly(stream)
                return
            guard = GuardedStream(stream, protocol_id, peer, limiter, cap=cap, framed=framed)
            failed = False
            try:
                await handler(guard)  # type: ignore[arg-type]  # a GuardedStream is used as an INetStream
            except Exception as exc:  # noqa: BLE001 - the guard exists to contain any handler failure
                failed = True
                if exc is not guard.violation:  # the guard has charged its own refusals already
                    self.handler_errors += 1
                    reason = hardening.violation_reason(exc)
                    limiter.penalize(peer, reason)
                    log.warning("handler of %s failed on input from %s (%s): %r", protocol_id, peer, reason, exc)
            finally:
                limiter.release_stream(peer)
            if guard.violation is not None:
                log.info("%s stream from %s cut off: %s", protocol_id, peer, guard.violation)
            if failed or guard.violation is not None:
                await hardening.reset_quietly(stream)

        self.libp2p.set_stream_handler(protocol_id, guarded)

    def remove_stream_handler(self, protocol_id: str) -> None:
        self.libp2p.remove_stream_handler(protocol_id)

    async def new_stream(
        self, peer: PeerRef, protocols: Sequence[str], deadline: float = DEFAULT_DEADLINE
    ) -> INetStream:
        """Open a stream to a connected (or dialable) peer, negotiating one of `protocols` within `deadline`."""
        peer_id = as_peer_id(peer)
        self._refuse_banned(peer_id)
        if not protocols:
            raise ConfigError("new_stream needs at least one protocol id")
        try:
            with trio.fail_after(deadline):
                return await self.libp2p.new_stream(peer_id, list(protocols))
        except trio.TooSlowError as exc:
            raise StreamOpenError(f"no {list(protocols)} stream to {peer_id} within {deadline:g} s") from exc
        except P2PError:
            raise
        except Exception as exc:
            raise StreamOpenError(f"cannot open a {list(protocols)} stream to {peer_id}: {exc}") from exc

    async def ping(self, peer: PeerRef, deadline: float = DEFAULT_DEADLINE) -> float:
        """Seconds for one libp2p ping round trip (every host answers /ipfs/ping/1.0.0).

        Proves the connection still carries traffic both ways; raises `StreamOpenError` when no answer
        comes within `deadline`.
        """
        peer_id = as_peer_id(peer)
        start = trio.current_time()
        stream = await self.new_stream(peer_id, [PING_PROTOCOL], deadline)
        try:
            with trio.fail_after(max(0.0, deadline - (trio.current_time() - start))):
                await perform_ping_roundtrip(stream)
                await stream.close()  # one ping per stream: the server's loop ends at our EOF
        except BaseException as exc:
            await hardening.reset_quietly(stream)
            if isinstance(exc, trio.TooSlowError):
                raise StreamOpenError(f"no ping answer from {peer_id} within {deadline:g} s") from exc
            if isinstance(exc, Exception):
                raise StreamOpenError(f"ping to {peer_id} failed: {exc!r}") from exc
            raise
        return trio.current_time() - start

    # --- connections ------------------------------------------------------------------------

    async def connect(self, addr: str | multiaddr.Multiaddr, deadline: float = DEFAULT_DEADLINE) -> ID:
        """Dial `addr` (which must end in /p2p/<peer id>) and return the peer's ID once connected.

        Noise proves the remote holds the key of that peer ID; a different key fails the dial.
        """
        maddr = parse_multiaddr(addr)
        try:
            info = info_from_p2p_addr(maddr)
        except Exception as exc:
            raise DialError(f"{addr} must end in /p2p/<peer id>: {exc}") from exc
        if info.peer_id == self.peer_id:
            raise DialError(f"{addr} is this host itself")
        self._refuse_banned(info.peer_id)
        try:
            with trio.fail_after(deadline):
                await self.libp2p.connect(info)
        except trio.TooSlowError as exc:
            raise DialError(f"dial to {addr} did not complete within {deadline:g} s") from exc
        except Exception as exc:
            raise DialError(f"dial to {addr} failed: {exc}") from exc
        return info.peer_id

    async def disconnect(self, peer: PeerRef) -> None:
        """Close every connection to `peer` (a no-op if there is none)."""
        peer_id = as_peer_id(peer)
        with trio.move_on_after(DEFAULT_DEADLINE):
            try:
                await self.libp2p.disconnect(peer_id)
            except Exception as exc:  # noqa: BLE001 - closing a dead connection may fail; nothing to do then
                log.debug("disconnect %s: %r", peer_id, exc)

    def _refuse_banned(self, peer_id: ID) -> None:
        until = self.limiter.ban_expiry(str(peer_id))
        if until is not None:
            raise PeerBanned(str(peer_id), until)

    def _on_ban(self, peer: str) -> None:
        log.warning("peer %s banned (score %.1f); disconnecting", peer, self.limiter.score(peer))
        try:
            self._nursery.start_soon(self.disconnect, peer)
        except RuntimeError:  # nursery already closing: the host is going away anyway
            pass


@asynccontextmanager
async def open_host(
    keypair: KeyPair,
    listen: Sequence[str | multiaddr.Multiaddr] = ("/ip4/127.0.0.1/tcp/0",),
    external_addrs: Sequence[str | multiaddr.Multiaddr] = (),
    limits: Limits | None = None,
    *,
    limiter: PeerLimiter | None = None,
) -> AsyncIterator[Host]:
    """Start a hardened host listening on `listen`; close it (and every socket) on exit.

    `external_addrs`, if given, are the addresses announced to peers instead of the listen addresses
    (a node behind NAT or in a container). `limiter` lets a caller share or pre-seed the ban list;
    otherwise one is made from `limits`.
    """
    limiter = limiter or PeerLimiter(limits or Limits())
    listen_addrs = [parse_multiaddr(a) for a in listen]
    if not listen_addrs:
        raise ConfigError("open_host needs at least one listen address")
    announce = [parse_multiaddr(a) for a in external_addrs] or None
    libp2p_host = hardening.build_libp2p_host(keypair, limiter, announce_addrs=announce)
    body_error: BaseException | None = None
    try:
        async with hardening.unwrap_single_error(), trio.open_nursery() as nursery:
            async with libp2p_host.run(listen_addrs):
                if not libp2p_host.get_network().listeners:
                    raise ConfigError(f"could not listen on any of {[str(a) for a in listen_addrs]}")
                host = Host(libp2p_host, limiter, nursery)
                limiter.on_ban = host._on_ban
                try:
                    yield host
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    limiter.on_ban = None
                    nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await hardening.close_host(libp2p_host)
    # libp2p's run() awaits during its clean-up; in the cancelled nursery that clean-up raises
    # Cancelled, and the scope absorbs it together with the caller's own exception. Re-raise it
    # so an error inside `async with open_host(...)` never vanishes. (Cancelled itself comes back
    # at the next checkpoint of the scope that cancelled it.)
    if body_error is not None and not isinstance(body_error, trio.Cancelled):
        raise body_error
