"""Gossip topics of one chain on top of py-libp2p's GossipSub, with ACCEPT / IGNORE / REJECT validation.

Each chain has its own topics, `/tensornet/<chain_id>/<kind>/1` for blocks, transactions and weight
commits, so two chains never mix messages. A message's id is the BLAKE2b-256 digest of its payload
(`protocol.crypto.digest`), so the same bytes relayed by many peers are delivered once.

py-libp2p validators answer only True/False. We keep the three-way answer by wrapping the hook:
ACCEPT -> True (libp2p forwards and we deliver); IGNORE -> False and nothing else (the message may be
valid later, so the libp2p validation cache is replaced by one that remembers nothing); REJECT ->
False and the forwarder's score drops in `p2pnet.limits.PeerLimiter`. Delivery to the subscriber
happens only for messages libp2p marked seen and forwarded, through a bounded channel whose overflow
is counted in `Metrics.drops` and logged, as are overflows of libp2p's per-peer outbound queues.
"""

from __future__ import annotations

import enum
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.peer.id import ID

from p2pnet import hardening
from p2pnet.errors import P2PError, StreamOpenError
from p2pnet.metrics import Metrics
from protocol.crypto import digest

log = logging.getLogger("p2pnet.gossip")

TOPIC_KINDS = ("blocks", "transactions", "weights")
DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024 + 4096  # a full block plus envelope
DEFAULT_QUEUE = 4096  # delivered messages waiting for the subscriber
VALIDATION_TIMEOUT = 5.0  # an async validator slower than this counts as IGNORE (counted, logged)


class Verdict(enum.Enum):
    """A validator's answer, as in go-libp2p: ACCEPT forwards, IGNORE drops quietly, REJECT penalises."""

    ACCEPT = "accept"
    IGNORE = "ignore"
    REJECT = "reject"


Validator = Callable[[ID, bytes], "Verdict | Awaitable[Verdict]"]


class GossipError(P2PError):
    """A topic or publish the gossip layer refuses."""


class PublishRejected(GossipError):
    """Our own validator did not ACCEPT the message we tried to publish."""

    def __init__(self, topic: str, verdict: Verdict) -> None:
        self.verdict = verdict
        super().__init__(f"own message on {topic} got {verdict.value}, not published")


@dataclass(frozen=True)
class GossipMessage:
    topic: str
    data: bytes
    msg_id: bytes  # BLAKE2b-256 of data
    source: ID  # the peer that published it
    forwarder: ID  # the peer that sent it to us


def topic_name(chain_id: str, kind: str) -> str:
    if not chain_id or "/" in chain_id:
        raise GossipError(f"chain id {chain_id!r} cannot be part of a topic name")
    if kind not in TOPIC_KINDS:
        raise GossipError(f"unknown topic kind {kind!r}; expected one of {TOPIC_KINDS}")
    return f"/tensornet/{chain_id}/{kind}/1"


def message_id(msg: Any) -> bytes:
    """The libp2p `msg_id_constructor`: content addressing by BLAKE2b-256 of the payload."""
    return digest(msg.data)


class _NoValidationCache:
    """Replaces libp2p's validation cache: an IGNOREd message must be judged again when it comes back."""

    def get(self, msg_id: bytes) -> None:
        return None

    def put(self, msg_id: bytes, result: Any) -> None:
        pass

    def clear_expired(self) -> None:
        pass


class _Delivery:
    """Stands in for libp2p's per-topic send channel (32 slots, silent drop): bounded, counted, logged."""

    def __init__(self, gossip: Gossip, topic: str, size: int) -> None:
        self.gossip = gossip
        self.topic = topic
        self.send, self.receive = trio.open_memory_channel[GossipMessage](size)

    def send_nowait(self, msg: Any) -> None:
        g = self.gossip
        source = ID(msg.from_id)
        if source == g.my_id:
            return  # our own publish: node/ already has it
        forwarder = g._forwarders.pop(message_id(msg), source)
        item = GossipMessage(self.topic, bytes(msg.data), message_id(msg), source, forwarder)
        try:
            self.send.send_nowait(item)
        except trio.WouldBlock:
            g.metrics.drop(f"deliver:{self.topic}", "gossip messages")
            return
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            g.metrics.drop(f"deliver:{self.topic}", "gossip messages (subscriber gone)")
            return
        g.metrics.msgs_in[self.topic] += 1
        g.metrics.bytes_in[self.topic] += len(item.data)

    async def aclose(self) -> None:
        await self.send.aclose()


class _CountingQueues(dict):
    """libp2p's `pubsub.peer_queues`, counting every refused push in this node's Metrics.

    p2pnet.hardening already enlarges the queues and counts drops process-wide; this gives the
    per-node figure that node/ exports.
    """

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def __setitem__(self, peer: Any, queue: Any) -> None:
        push = queue.push
        metrics = self.metrics

        def counting_push(rpc: Any, priority: bool = False) -> bool:
            ok = push(rpc, priority)
            if not ok:
                metrics.drop("peer_queue", f"outbound RPCs ({len(rpc.publish)} messages) to {peer}")
            return ok

        queue.push = counting_push
        super().__setitem__(peer, queue)


def instrument_pubsub(pubsub: Any, metrics: Metrics) -> None:
    """Adapt a libp2p Pubsub to our semantics: no validation cache (IGNORE), per-node drop counts."""
    pubsub.validation_cache = _NoValidationCache()
    if not isinstance(pubsub.peer_queues, _CountingQueues):
        queues = _CountingQueues(metrics)
        for peer, queue in pubsub.peer_queues.items():
            queues[peer] = queue
        pubsub.peer_queues = queues


@asynccontextmanager
async def open_gossip(
    host: Any, chain_id: str, *, metrics: Metrics | None = None, **options: Any
) -> AsyncIterator[Gossip]:
    """Build the hardened GossipSub for `host` (a p2pnet Host), run it, and yield the chain's `Gossip`.

    `options` go to `hardening.make_pubsub` (degree, heartbeat_interval, strict_signing, ...), except
    `validation_timeout` (seconds an async validator may take before the message counts as IGNORE,
    `rejects["<topic>:validator_timeout"]`); the message id is always the BLAKE2b digest of the payload.
    """
    validation_timeout = options.pop("validation_timeout", VALIDATION_TIMEOUT)
    # libp2p's own validation timeout drops silently; ours (in Gossip) counts and logs, so libp2p's is
    # set beyond it and never fires first.
    options.setdefault("validation_timeout", validation_timeout + 60.0)
    pubsub, router = hardening.make_pubsub(host, msg_id_fn=message_id, **options)
    async with hardening.run_pubsub(pubsub, router):
        yield Gossip(pubsub, chain_id, limiter=host.limiter, metrics=metrics, validation_timeout=validation_timeout)


class Gossip:
    """The chain's topics on one libp2p Pubsub (built by the host, running before peers connect).

    `limiter` is the host's `PeerLimiter` (REJECT lowers the forwarder's score there); `metrics`
    collects the counters. Topic names come from `topic(kind)`.
    """

    def __init__(
        self,
        pubsub: Any,
        chain_id: str,
        *,
        limiter: Any = None,
        metrics: Metrics | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE,
        queue_size: int = DEFAULT_QUEUE,
        publish_deadline: float = 10.0,
        validation_timeout: float = VALIDATION_TIMEOUT,
    ) -> None:
        self.pubsub = pubsub
        self.chain_id = chain_id
        topic_name(chain_id, "blocks")  # validates the chain id
        self.limiter = limiter
        self.metrics = metrics if metrics is not None else Metrics()
        self.max_message_size = max_message_size
        self.queue_size = queue_size
        self.publish_deadline = publish_deadline
        self.validation_timeout = validation_timeout
        self.my_id: ID = pubsub.my_id
        self._validators: dict[str, Validator] = {}
        self._deliveries: dict[str, _Delivery] = {}
        self._forwarders: dict[bytes, ID] = {}  # msg id -> first forwarder, between validation and delivery
        instrument_pubsub(pubsub, self.metrics)

    def topic(self, kind: str) -> str:
        return topic_name(self.chain_id, kind)

    def _check_topic(self, topic: str) -> None:
        if topic not in {self.topic(k) for k in TOPIC_KINDS}:
            raise GossipError(f"topic {topic!r} is not one of chain {self.chain_id!r}'s topics")

    async def subscribe(self, topic: str, validator: Validator) -> trio.MemoryReceiveChannel[GossipMessage]:
        """Join `topic`; messages that `validator` ACCEPTs arrive on the returned channel, once each."""
        self._check_topic(topic)
        if topic in self._deliveries:
            raise GossipError(f"already subscribed to {topic}")
        self._validators[topic] = validator
        is_async = inspect.iscoroutinefunction(validator)
        if is_async:

            async def check(forwarder: ID, msg: Any) -> bool:
                pre = self._precheck(topic, forwarder, msg)
                if pre is not None:
                    return pre
                verdict: Any = None
                with trio.move_on_after(self.validation_timeout):
                    try:
                        verdict = await validator(forwarder, bytes(msg.data))
                    except Exception as exc:
                        verdict = self._hook_failed(topic, exc)
                if verdict is None:
                    verdict = self._hook_timed_out(topic)
                return self._apply(topic, forwarder, msg, verdict)

            self.pubsub.set_topic_validator(topic, check, True)
        else:

            def check_sync(forwarder: ID, msg: Any) -> bool:
                pre = self._precheck(topic, forwarder, msg)
                if pre is not None:
                    return pre
                try:
                    verdict = validator(forwarder, bytes(msg.data))
                except Exception as exc:
                    verdict = self._hook_failed(topic, exc)
                return self._apply(topic, forwarder, msg, verdict)

            self.pubsub.set_topic_validator(topic, check_sync, False)
        delivery = _Delivery(self, topic, self.queue_size)
        self._deliveries[topic] = delivery
        await self.pubsub.subscribe(topic)
        # libp2p created its own 32-slot channel for the topic; ours replaces it (see _Delivery).
        self.pubsub.subscribed_topics_send[topic] = delivery
        return delivery.receive

    async def unsubscribe(self, topic: str) -> None:
        delivery = self._deliveries.pop(topic, None)
        if delivery is None:
            return
        self.pubsub.remove_topic_validator(topic)
        self._validators.pop(topic, None)
        await self.pubsub.unsubscribe(topic)

    def _precheck(self, topic: str, forwarder: ID, msg: Any) -> bool | None:
        """Checks that need no hook: own messages pass, multi-topic and oversize messages are REJECTed."""
        if forwarder == self.my_id:
            return True  # publish() already ran the hook on our own message
        if len(msg.topicIDs) != 1 or msg.topicIDs[0] != topic:
            return self._apply(topic, forwarder, msg, Verdict.REJECT, reason="multi_topic")
        if len(msg.data) > self.max_message_size:
            return self._apply(topic, forwarder, msg, Verdict.REJECT, reason="oversize")
        return None

    def _hook_failed(self, topic: str, exc: Exception) -> Verdict:
        # A crashing validator is our bug, not the peer's: no penalty, no forwarding.
        log.error("validator of %s raised %r; treating the message as IGNORE", topic, exc)
        self.metrics.rejects[f"{topic}:validator_error"] += 1
        return Verdict.IGNORE

    def _hook_timed_out(self, topic: str) -> Verdict:
        # libp2p would drop the message silently at its own validation timeout; ours comes first.
        log.warning("validator of %s took over %g s; treating the message as IGNORE", topic, self.validation_timeout)
        self.metrics.rejects[f"{topic}:validator_timeout"] += 1
        return Verdict.IGNORE

    def _apply(self, topic: str, forwarder: ID, msg: Any, verdict: Any, reason: str = "invalid") -> bool:
        if not isinstance(verdict, Verdict):
            log.error("validator of %s returned %r, not a Verdict; treating as IGNORE", topic, verdict)
            verdict = Verdict.IGNORE
        self.metrics.verdicts[f"{topic}:{verdict.value}"] += 1
        if verdict is Verdict.ACCEPT:
            mid = message_id(msg)
            if len(self._forwarders) > 4 * self.queue_size:
                self._forwarders.clear()  # entries are consumed at delivery; this only bounds leftovers
            self._forwarders.setdefault(mid, forwarder)
            return True
        if verdict is Verdict.REJECT:
            self.metrics.reject(f"{topic}:{reason}")
            if self.limiter is not None:
                self.limiter.penalize(str(forwarder), "invalid_message")
            log.debug("rejected %s message from %s (%s)", topic, forwarder, reason)
        return False

    async def publish(self, topic: str, data: bytes) -> bytes:
        """Validate our own message with the topic's hook, then publish it; returns its message id."""
        self._check_topic(topic)
        if len(data) > self.max_message_size:
            raise GossipError(f"message of {len(data)} bytes over the {self.max_message_size}-byte gossip cap")
        validator = self._validators.get(topic)
        if validator is not None:
            verdict = validator(self.my_id, data)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if verdict is not Verdict.ACCEPT:
                raise PublishRejected(topic, verdict)
        try:
            await hardening.publish(self.pubsub, topic, data, deadline=self.publish_deadline)
        except StreamOpenError as exc:
            self.metrics.drop(f"publish:{topic}", "own messages (peer queues full)")
            raise GossipError(str(exc)) from exc
        self.metrics.msgs_out[topic] += 1
        self.metrics.bytes_out[topic] += len(data)
        return digest(data)

    def mesh_peers(self, topic: str) -> set[ID]:
        return set(getattr(self.pubsub.router, "mesh", {}).get(topic, set()))

    def topic_peers(self, topic: str) -> set[ID]:
        return set(self.pubsub.peer_topics.get(topic, set()))
