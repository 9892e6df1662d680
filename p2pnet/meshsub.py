"""The /meshsub stream reader of our Pubsub: ordered, bounded by the peer, and every violation charged.

libp2p's reader (Pubsub.continuously_read_stream) has three faults we replace here:

* An oversize RPC frame was refused and the stream reset inside libp2p, so the peer's score never
  heard of it. Here the frame cap (`max_inbound_rpc_size`) is checked on the length prefix and the
  typed `MessageTooLarge` reaches `HardenedPubsub.stream_handler`, which charges the peer ("oversize",
  banned after repeats like any other violation). A frame that has started must arrive within
  `Limits.read_deadline` (`ReadTimeout`, "read_timeout").
* Every received message became its own task, unbounded: a node short of CPU piled up thousands of
  tasks while its peers kept sending, so latency grew without limit and senders never slowed down.
  Here each peer's messages are processed in order by its reader. A slow node stops reading, the
  yamux window fills, the sender's queue grows, and `hardening.publish` makes the publisher wait:
  the backlog is bounded and visible instead of hidden in the scheduler.
* The length prefix was read one byte at a time, one muxer read (and one window update) per byte.
  `p2pnet.framing.VarintFrameReader` reads in 64 KiB chunks.

What is processed per RPC is libp2p's own logic, called in the same order: the sender's signed
record, the published messages (`push_msg`: seen-cache, signature, validators, forwarding), the
subscriptions (capped per RPC), and the control messages (the router).
"""

from __future__ import annotations

import logging
from typing import Any

from libp2p.abc import INetStream
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub.pb import rpc_pb2

from p2pnet.framing import VarintFrameReader
from p2pnet.limits import Limits

log = logging.getLogger(__name__)


class OrderedReaderMixin:
    """Pubsub mixin replacing `continuously_read_stream`; see the module docstring."""

    async def continuously_read_stream(self, stream: INetStream) -> None:
        me: Any = self
        peer_id = stream.muxed_conn.peer_id
        limiter = getattr(me, "_tn_limiter", None)
        limits = limiter.limits if limiter is not None else Limits()
        frames = VarintFrameReader(
            stream, me.max_inbound_rpc_size, limits.read_deadline, protocol=str(stream.get_protocol())
        )
        while me.manager.is_running:
            try:
                data = await frames.next()
            except EOFError:
                return
            rpc = rpc_pb2.RPC()
            rpc.ParseFromString(data)  # DecodeError: the stream handler charges "malformed"
            # Looked up on the module each time: p2pnet.hardening caches verified records there.
            if not pubsub_module.maybe_consume_signed_record(rpc, me.host, peer_id):
                if limiter is not None:
                    limiter.penalize(str(peer_id), "invalid_record")
                log.info("pubsub RPC from %s carries an invalid signed record; ignored", peer_id)
                continue
            for msg in rpc.publish:
                if me._is_subscribed_to_msg(msg):
                    await me.push_msg(peer_id, msg)
            if rpc.subscriptions:
                if len(rpc.subscriptions) > me.max_subscriptions_per_rpc:
                    if limiter is not None:
                        limiter.penalize(str(peer_id), "too_many_subscriptions")
                    log.info("pubsub RPC from %s has %d subscriptions; ignored", peer_id, len(rpc.subscriptions))
                else:
                    for sub in rpc.subscriptions:
                        me.handle_subscription(peer_id, sub)
            if rpc.HasField("control"):
                await me.router.handle_rpc(rpc, peer_id)
