"""The cost fixes of p2pnet.tuning: merged RPC batches keep order and size; small messages send no IDONTWANT."""

from __future__ import annotations

from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub.pb import rpc_pb2

from p2pnet import hardening, tuning


def _msg(i: int, size: int = 300) -> rpc_pb2.RPC:
    return rpc_pb2.RPC(publish=[rpc_pb2.Message(data=i.to_bytes(4, "big") * (size // 4), topicIDs=["t"])])


def test_merge_keeps_order_priority_first_and_stops_at_the_limit():
    hardening.install()
    queue = pubsub_module.RpcQueue()
    for i in range(1, 10):
        assert queue.push(_msg(i))
    control = rpc_pb2.RPC(control=rpc_pb2.ControlMessage(graft=[rpc_pb2.ControlGraft(topicID="t")]))
    assert queue.push(control, priority=True)
    first = _msg(0)
    limit = first.ByteSize() + control.ByteSize() + 3 * _msg(1).ByteSize()
    merged = tuning.merge_queued(first, queue, limit)
    assert merged.ByteSize() <= limit + 16  # field framing of the merged repeated entries
    assert [int.from_bytes(m.data[:4], "big") for m in merged.publish] == [0, 1, 2, 3]
    assert [g.topicID for g in merged.control.graft] == ["t"]
    assert len(queue) == 6  # the rest waits for the next write, in order
    nxt = tuning.merge_queued(queue._queue.pop(), queue, 1 << 20)
    assert [int.from_bytes(m.data[:4], "big") for m in nxt.publish] == [4, 5, 6, 7, 8, 9]
    assert len(queue) == 0


def test_a_lone_rpc_is_sent_as_is():
    queue = pubsub_module.RpcQueue()
    first = _msg(7)
    assert tuning.merge_queued(first, queue, 1 << 16) is first
