"""Per-message costs of py-libp2p 0.8.1 that capped gossip throughput, removed (no security impact).

Measured with py-spy on `bench.gossip` (8 processes, 80 msg/s): a node spent about a third of its CPU on
work that carried no message. Each fix below keeps the wire format; peers running plain py-libp2p
interoperate unchanged. p2pnet.hardening builds its classes on these and calls `install()`.

1. Yamux credit per read. libp2p sends a WINDOW_UPDATE frame after every read of a stream, even the
   1-byte reads of a varint length prefix: two or three extra encrypted frames (and syscalls) per
   pubsub RPC received (11 % of a node's CPU). `BatchedCreditYamuxStream` credits the sender once half
   the receive window has been consumed, as go-yamux does; a reader that keeps reading never stalls
   its writer, because the writer always has at least half a window left.
2. One write per RPC. The per-peer sending loop wrote each queued RPC on its own (a yamux frame, a
   Noise frame and a syscall each). `BatchingSenderMixin` merges whatever is queued, up to
   `WRITE_BATCH_BYTES`, into one RPC and one write. With an empty queue nothing waits, so an idle
   network sees no added latency; a busy one sends fewer, larger frames, and the receiver parses
   one RPC (and one sender record) for many messages.
3. IDONTWANT for small messages. GossipSub 1.2 sends an IDONTWANT control RPC to every mesh peer for
   every message received, as large as a 300-byte message itself (9 % of CPU). go-libp2p sends it
   only for messages of at least 1 KiB (`IDontWantMessageThreshold`); `IdontwantThresholdMixin` does
   the same, so large blocks still benefit.
4. The signed peer record attached to every RPC was re-derived each time (listen addresses rebuilt
   from the sockets, the envelope re-marshalled: 8 % of CPU). `cached_env_to_send_in_RPC` keeps the
   bytes for `RECORD_TTL` seconds per host.
"""

from __future__ import annotations

import sys
import time
import weakref
from typing import Any

from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamClosed, StreamReset
from libp2p.peer import peerstore as peerstore_module
from libp2p.peer.id import ID
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub.pb import rpc_pb2
from libp2p.stream_muxer.yamux.yamux import YamuxStream
from libp2p.utils.varint import encode_uvarint

WRITE_BATCH_BYTES = 64 * 1024  # one yamux frame's worth of queued RPCs per write
IDONTWANT_MIN_BYTES = 1024  # go-libp2p's IDontWantMessageThreshold
RECORD_TTL = 5.0  # seconds a host's signed peer record bytes are reused


# --- 1: yamux credit --------------------------------------------------------------------------------


class BatchedCreditYamuxStream(YamuxStream):
    """Yamux stream that returns receive-window credit in batches of half a window (go-yamux)."""

    _tn_unreleased = 0

    async def _auto_tune_and_send_window_update(self, *, bytes_read: int = 0) -> None:
        self._tn_unreleased += bytes_read
        if self._tn_unreleased < max(1, self._grow_threshold()):
            return
        released, self._tn_unreleased = self._tn_unreleased, 0
        await super()._auto_tune_and_send_window_update(bytes_read=released)


# --- 2: one write per batch of queued RPCs ------------------------------------------------------------


def merge_queued(first: rpc_pb2.RPC, queue: Any, limit: int) -> rpc_pb2.RPC:
    """`first` plus every RPC waiting in `queue` (libp2p RpcQueue) while the merged size stays within `limit`.

    The queue's own order is kept (control RPCs first); an RPC that would overflow the batch is left
    at the head of the queue for the next write.
    """
    inner = queue._queue
    size = first.ByteSize()
    merged: rpc_pb2.RPC | None = None
    while size < limit:
        nxt = inner._priority[0] if inner._priority else inner._non_priority[0] if inner._non_priority else None
        if nxt is None:
            break
        extra = nxt.ByteSize()
        if size + extra > limit:
            break
        inner.pop()
        if merged is None:
            merged = rpc_pb2.RPC()
            merged.CopyFrom(first)
        merged.MergeFrom(nxt)
        size += extra
    return merged if merged is not None else first


class BatchingSenderMixin:
    """Pubsub mixin: the per-peer sending loop writes queued RPCs merged, one write per batch."""

    async def handle_sending_messages(self, peer_id: ID, stream: INetStream, queue: Any) -> None:
        limit = min(WRITE_BATCH_BYTES, getattr(queue, "max_message_size", WRITE_BATCH_BYTES))
        try:
            while True:
                rpc = await queue.pop()
                if rpc is None:
                    return
                body = merge_queued(rpc, queue, limit).SerializeToString()
                try:
                    await stream.write(encode_uvarint(len(body)) + body)
                except (StreamClosed, StreamReset):
                    self._handle_dead_peer(peer_id)  # type: ignore[attr-defined]
                    return
        except Exception:  # noqa: BLE001 - as libp2p: a failed sender drops the peer from pubsub
            self._handle_dead_peer(peer_id)  # type: ignore[attr-defined]


# --- 3: IDONTWANT only for messages worth it --------------------------------------------------------


class IdontwantThresholdMixin:
    """GossipSub mixin: emit IDONTWANT only for messages of at least IDONTWANT_MIN_BYTES."""

    _tn_small_ids: set[bytes]

    async def publish(self, msg_forwarder: ID, pubsub_msg: rpc_pb2.Message) -> None:
        if len(pubsub_msg.data) >= IDONTWANT_MIN_BYTES or self.pubsub is None:  # type: ignore[attr-defined]
            await super().publish(msg_forwarder, pubsub_msg)  # type: ignore[misc]
            return
        small = self.__dict__.setdefault("_tn_small_ids", set())
        msg_id = self.pubsub.get_message_id(pubsub_msg)  # type: ignore[attr-defined]
        small.add(msg_id)
        try:
            await super().publish(msg_forwarder, pubsub_msg)  # type: ignore[misc]
        finally:
            small.discard(msg_id)

    async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids: Any) -> None:
        if msg_id in self.__dict__.get("_tn_small_ids", ()):
            return
        await super()._emit_idontwant_for_message(msg_id, topic_ids)  # type: ignore[misc]


# --- 4: the signed peer record, once per host per RECORD_TTL -----------------------------------------

_original_env_to_send = peerstore_module.env_to_send_in_RPC
_record_cache: weakref.WeakKeyDictionary[Any, tuple[float, bytes]] = weakref.WeakKeyDictionary()


def cached_env_to_send_in_RPC(host: Any) -> tuple[bytes, bool]:  # noqa: N802 - libp2p's name
    now = time.monotonic()
    entry = _record_cache.get(host)
    if entry is not None and now - entry[0] < RECORD_TTL:
        return entry[1], False
    envelope, fresh = _original_env_to_send(host)
    _record_cache[host] = (now, envelope)
    return envelope, fresh


_installed = False


def install() -> None:
    """Bind the cached record function where pubsub imported it by name (idempotent)."""
    global _installed
    if _installed:
        return
    for module in (pubsub_module, sys.modules.get("libp2p.pubsub.gossipsub")):
        if module is not None and getattr(module, "env_to_send_in_RPC", None) is _original_env_to_send:
            module.env_to_send_in_RPC = cached_env_to_send_in_RPC
    _installed = True
