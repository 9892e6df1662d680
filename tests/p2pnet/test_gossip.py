"""Gossip on real libp2p hosts over loopback: ACCEPT / IGNORE / REJECT, forwarding, dedup, typed refusals."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from p2pnet.gossip import GossipError, PublishRejected, Verdict, message_id, open_gossip, topic_name
from p2pnet.host import open_host
from protocol.crypto import digest

CHAIN = "testnet"
DEADLINE = 40


class Node:
    def __init__(self, host, gossip) -> None:
        self.host, self.gossip = host, gossip
        self.seen: list[bytes] = []  # every payload the validator was asked about (from peers)
        self.got: list = []

    def validator(self, peer, data: bytes) -> Verdict:
        if peer != self.host.peer_id:
            self.seen.append(data)
        if data.startswith(b"bad"):
            return Verdict.REJECT
        if data.startswith(b"meh"):
            return Verdict.IGNORE
        return Verdict.ACCEPT

    async def collect(self, channel) -> None:
        async for msg in channel:
            self.got.append(msg)


async def _nodes(stack: AsyncExitStack, n: int, topic: str, permissive: int = -1) -> list[Node]:
    """n gossip nodes entered on `stack`; each node's channel is left in `node.channel` for `_collect`."""
    nodes = []
    for i in range(n):
        host = await stack.enter_async_context(open_host(create_new_key_pair()))
        gossip = await stack.enter_async_context(open_gossip(host, CHAIN))
        node = Node(host, gossip)
        validator = (lambda peer, data: Verdict.ACCEPT) if i == permissive else node.validator
        node.channel = await gossip.subscribe(topic, validator)
        nodes.append(node)
    return nodes


def _collect(nursery: trio.Nursery, nodes: list[Node]) -> None:
    for node in nodes:
        nursery.start_soon(node.collect, node.channel)


async def _wait_mesh(nodes: list[Node], topic: str, edges: list[tuple[int, int]]) -> None:
    with trio.fail_after(15):
        for i, j in edges:
            while nodes[j].host.peer_id not in nodes[i].gossip.mesh_peers(topic):
                await trio.sleep(0.05)


async def _wait_for(pred) -> None:
    with trio.fail_after(15):
        while not pred():
            await trio.sleep(0.02)


def test_topic_names_are_per_chain_and_checked():
    assert topic_name("testnet", "blocks") == "/tensornet/testnet/blocks/1"
    assert topic_name("a", "weights") != topic_name("b", "weights")
    with pytest.raises(GossipError):
        topic_name("testnet", "gossip")
    with pytest.raises(GossipError):
        topic_name("bad/chain", "blocks")


async def test_verdicts_forwarding_and_scores():
    topic = topic_name(CHAIN, "blocks")
    with trio.fail_after(DEADLINE):
        async with AsyncExitStack() as stack:
            a, b, c = await _nodes(stack, 3, topic, permissive=0)  # A publishes anything
            nursery = await stack.enter_async_context(trio.open_nursery())
            _collect(nursery, [a, b, c])
            await a.host.connect(b.host.addrs[0])
            await b.host.connect(c.host.addrs[0])  # a line: A - B - C, so C hears only what B forwards
            await _wait_mesh([a, b, c], topic, [(0, 1), (1, 0), (1, 2), (2, 1)])

            await a.gossip.publish(topic, b"bad block")  # B: REJECT
            await a.gossip.publish(topic, b"meh block")  # B: IGNORE
            mid = await a.gossip.publish(topic, b"good block")
            assert mid == digest(b"good block")
            await _wait_for(lambda: len(c.got) == 1)

            msg = c.got[0]
            assert (msg.data, msg.msg_id, msg.source, msg.forwarder) == (
                b"good block",
                digest(b"good block"),
                a.host.peer_id,
                b.host.peer_id,
            )
            assert [m.data for m in b.got] == [b"good block"]
            # B saw all three; only the accepted one was forwarded, so C never saw the others.
            assert b.seen == [b"bad block", b"meh block", b"good block"]
            assert c.seen == [b"good block"]
            vb = b.gossip.metrics.verdicts
            assert (vb[f"{topic}:reject"], vb[f"{topic}:ignore"], vb[f"{topic}:accept"]) == (1, 1, 1)
            # REJECT lowered the forwarder's score on B; IGNORE did not cost anything more.
            assert b.host.limiter.score(str(a.host.peer_id)) == pytest.approx(-20.0, abs=0.5)
            assert b.host.limiter.violations["invalid_message"] == 1
            assert c.host.limiter.score(str(b.host.peer_id)) == 0
            assert a.got == []  # a node does not receive its own messages back
            nursery.cancel_scope.cancel()


async def test_dedup_by_message_id_and_ignored_messages_are_judged_again():
    topic = topic_name(CHAIN, "transactions")
    with trio.fail_after(DEADLINE):
        async with AsyncExitStack() as stack:
            nodes = await _nodes(stack, 3, topic, permissive=0)
            nursery = await stack.enter_async_context(trio.open_nursery())
            _collect(nursery, nodes)
            a, b, c = nodes
            await a.host.connect(b.host.addrs[0])
            await b.host.connect(c.host.addrs[0])
            await a.host.connect(c.host.addrs[0])  # a triangle: C hears A's messages twice (direct and via B)
            await _wait_mesh(nodes, topic, [(0, 1), (0, 2), (1, 2), (2, 1), (1, 0), (2, 0)])
            for i in range(10):
                await a.gossip.publish(topic, b"tx %d" % i)
            await a.gossip.publish(topic, b"tx 3")  # same payload, same id: not sent again
            await _wait_for(lambda: len(b.got) == 10 and len(c.got) == 10)
            await a.gossip.publish(topic, b"tx end")
            await _wait_for(lambda: len(b.got) == 11 and len(c.got) == 11)
            for node in (b, c):
                assert sorted(m.data for m in node.got) == sorted([b"tx %d" % i for i in range(10)] + [b"tx end"])
                assert len({m.msg_id for m in node.got}) == 11
                assert node.gossip.metrics.msgs_in[topic] == 11
            assert a.gossip.metrics.msgs_out[topic] == 12

            # An IGNOREd message is not remembered as invalid: once its validator accepts, it gets through.
            flip = {"ok": False}

            def later(peer, data: bytes) -> Verdict:
                return Verdict.ACCEPT if flip["ok"] else Verdict.IGNORE

            pubsub = c.gossip.pubsub
            pubsub.set_topic_validator(
                topic, lambda fwd, msg: c.gossip._apply(topic, fwd, msg, later(fwd, msg.data)), False
            )
            await pubsub.push_msg(b.host.peer_id, _forged(a, topic, b"meh later"))
            assert len(c.got) == 11
            flip["ok"] = True
            await pubsub.push_msg(b.host.peer_id, _forged(a, topic, b"meh later"))
            await _wait_for(lambda: len(c.got) == 12)
            assert c.got[-1].msg_id == digest(b"meh later")
            nursery.cancel_scope.cancel()


def _forged(node: Node, topic: str, data: bytes):
    """A signed pubsub message from `node` as libp2p would relay it."""
    from libp2p.pubsub.pb import rpc_pb2
    from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX

    pubsub = node.gossip.pubsub
    msg = rpc_pb2.Message(data=data, topicIDs=[topic], from_id=node.host.peer_id.to_bytes(), seqno=b"\x00" * 8)
    key = node.host.libp2p.get_private_key()
    msg.signature = key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
    msg.key = node.host.libp2p.get_public_key().serialize()
    assert message_id(msg) == digest(data) and pubsub is not None
    return msg


async def test_multi_topic_and_oversize_messages_are_rejected_and_own_publish_is_validated():
    topic = topic_name(CHAIN, "weights")
    with trio.fail_after(DEADLINE):
        async with AsyncExitStack() as stack:
            (a,) = await _nodes(stack, 1, topic)
            with pytest.raises(PublishRejected):
                await a.gossip.publish(topic, b"bad weights")
            with pytest.raises(GossipError):
                await a.gossip.publish(topic_name("otherchain", "weights"), b"x")
            with pytest.raises(GossipError):
                await a.gossip.publish(topic, b"x" * (a.gossip.max_message_size + 1))
            with pytest.raises(GossipError):
                await a.gossip.subscribe(topic, a.validator)  # twice
            assert a.gossip.metrics.msgs_out[topic] == 0

            async with open_host(create_new_key_pair()) as other:
                peer = other.peer_id
                msg = _forged(a, topic, b"two topics")
                msg.topicIDs.append(topic_name(CHAIN, "blocks"))
                assert a.gossip._precheck(topic, peer, msg) is False
                big = _forged(a, topic, b"y" * (a.gossip.max_message_size + 1))
                assert a.gossip._precheck(topic, peer, big) is False
            assert a.gossip.metrics.rejects[f"{topic}:multi_topic"] == 1
            assert a.gossip.metrics.rejects[f"{topic}:oversize"] == 1
            assert a.host.limiter.violations["invalid_message"] == 2


async def test_async_validator_and_subscriber_overflow_is_counted():
    topic = topic_name(CHAIN, "blocks")
    with trio.fail_after(DEADLINE):
        async with AsyncExitStack() as stack:
            hosts = [await stack.enter_async_context(open_host(create_new_key_pair())) for _ in range(2)]
            ga = await stack.enter_async_context(open_gossip(hosts[0], CHAIN))
            gb = await stack.enter_async_context(open_gossip(hosts[1], CHAIN))
            gb.queue_size = 3  # a subscriber that never reads, with room for 3

            async def check(peer, data: bytes) -> Verdict:
                await trio.sleep(0)
                return Verdict.ACCEPT

            await ga.subscribe(topic, check)
            channel = await gb.subscribe(topic, check)
            await hosts[0].connect(hosts[1].addrs[0])
            with trio.fail_after(15):
                while hosts[1].peer_id not in ga.mesh_peers(topic):
                    await trio.sleep(0.05)
            for i in range(8):
                await ga.publish(topic, b"blk %d" % i)
            await _wait_for(lambda: gb.metrics.verdicts[f"{topic}:accept"] == 8)
            await _wait_for(lambda: gb.metrics.drops[f"deliver:{topic}"] == 5)
            assert gb.metrics.msgs_in[topic] == 3
            assert [channel.receive_nowait().data for _ in range(3)] == [b"blk 0", b"blk 1", b"blk 2"]


async def test_a_stalled_receiver_pushes_back_on_the_publisher_and_nothing_is_lost():
    """B's validator stalls: B stops reading A, A's queue fills, A's publish() refuses; then all arrive, in order."""
    topic = topic_name(CHAIN, "blocks")
    gate = trio.Event()

    async def stalled(peer, data: bytes) -> Verdict:
        await gate.wait()
        return Verdict.ACCEPT

    with trio.fail_after(DEADLINE):
        async with AsyncExitStack() as stack:
            hosts = [await stack.enter_async_context(open_host(create_new_key_pair())) for _ in range(2)]
            ga = await stack.enter_async_context(open_gossip(hosts[0], CHAIN))
            gb = await stack.enter_async_context(open_gossip(hosts[1], CHAIN, validation_timeout=DEADLINE))
            ga.publish_deadline = 1.0
            await ga.subscribe(topic, lambda peer, data: Verdict.ACCEPT)
            channel = await gb.subscribe(topic, stalled)
            got: list[bytes] = []
            nursery = await stack.enter_async_context(trio.open_nursery())
            nursery.start_soon(_drain_into, channel, got)
            await hosts[0].connect(hosts[1].addrs[0])
            await _wait_for(lambda: hosts[1].peer_id in ga.mesh_peers(topic))
            sent: list[bytes] = []
            with pytest.raises(GossipError, match="did not drain"):
                while len(sent) < 50_000:  # far beyond what the window and queue hold: a pile-up would pass it
                    data = b"m %06d " % len(sent) + b"." * 290
                    await ga.publish(topic, data)
                    sent.append(data)
            assert ga.metrics.drops == {f"publish:{topic}": 1}  # the refused publish, and nothing else
            gate.set()
            await _wait_for(lambda: len(got) == len(sent))
            assert got == sent
            assert gb.metrics.drops == {} and gb.metrics.rejects == {}
            nursery.cancel_scope.cancel()


async def _drain_into(channel, out: list[bytes]) -> None:
    async for msg in channel:
        out.append(msg.data)


async def test_a_validator_past_its_timeout_is_counted_as_ignore():
    topic = topic_name(CHAIN, "blocks")

    async def slow_on_first(peer, data: bytes) -> Verdict:
        if data == b"slow":
            await trio.sleep(3600)
        return Verdict.ACCEPT

    with trio.fail_after(DEADLINE):
        async with AsyncExitStack() as stack:
            hosts = [await stack.enter_async_context(open_host(create_new_key_pair())) for _ in range(2)]
            ga = await stack.enter_async_context(open_gossip(hosts[0], CHAIN))
            gb = await stack.enter_async_context(open_gossip(hosts[1], CHAIN, validation_timeout=0.3))
            await ga.subscribe(topic, lambda peer, data: Verdict.ACCEPT)
            channel = await gb.subscribe(topic, slow_on_first)
            await hosts[0].connect(hosts[1].addrs[0])
            await _wait_for(lambda: hosts[1].peer_id in ga.mesh_peers(topic))
            await ga.publish(topic, b"slow")
            await ga.publish(topic, b"fine")
            assert (await channel.receive()).data == b"fine"
            assert gb.metrics.rejects[f"{topic}:validator_timeout"] == 1
            assert gb.metrics.verdicts[f"{topic}:ignore"] == 1
            assert hosts[1].limiter.score(str(hosts[0].peer_id)) == 0  # our slowness, not the peer's fault
