"""Size caps and read deadlines enforced by the host itself, each attacking a real host on loopback.

Every attack ends with the attacked host still serving others: gossip to a good peer, or `assert_serves`.
"""

from __future__ import annotations

import trio
from libp2p.utils.varint import encode_uvarint

from p2pnet import hardening
from p2pnet.errors import DialError, StreamOpenError
from p2pnet.limits import Limits
from p2pnet.reqresp import Kind, PeerGone, ProtocolSpec, ReqResp, encode_frame
from tests.p2pnet.conftest import assert_serves, running_hosts

MESHSUB = hardening.GOSSIP_PROTOCOLS[0]


async def wait_until(predicate, deadline: float = 20.0) -> None:
    with trio.fail_after(deadline):
        while not predicate():
            await trio.sleep(0.01)


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


async def cut_off(stream) -> bool:
    """True once the target resets or closes `stream` (read fails or returns EOF), within a bound."""
    with trio.move_on_after(30):
        try:
            while await stream.read(1024):
                pass
        except Exception:  # noqa: BLE001 - a reset is being cut off
            pass
        return True
    return False


# --- /meshsub: an oversize RPC frame lowers the sender's score; repeats ban it ----------------------


async def test_oversize_meshsub_frames_cost_score_then_ban_while_gossip_flows():
    limits = Limits(max_message_size=1024 * 1024)
    async with running_hosts(3, limits) as (target, attacker, good):
        pt, rt = hardening.make_pubsub(target)
        pg, rg = hardening.make_pubsub(good)
        async with hardening.run_pubsub(pt, rt), hardening.run_pubsub(pg, rg):
            await pt.subscribe("t")
            sub = await pg.subscribe("t")
            await attacker.connect(target.addrs[0])
            victim = str(attacker.peer_id)
            # -25 per oversize frame, decaying slowly: banned at the fifth at the latest
            for n in range(1, 6):
                stream = await attacker.new_stream(target.peer_id, [MESHSUB])
                await stream.write(uvarint(2 * 1024 * 1024) + b"x" * 64)
                assert await cut_off(stream)
                await wait_until(lambda n=n: target.limiter.violations["oversize"] >= n)
                if n == 1:
                    assert target.limiter.score(victim) <= -24
                if target.limiter.is_banned(victim):
                    break
            assert target.limiter.is_banned(victim) and n >= 4
            assert target.limiter.bans == 1
            await wait_until(lambda: attacker.peer_id not in target.peers())
            try:  # banned: its next connection gets no service
                await attacker.connect(target.addrs[0], deadline=5)
                await attacker.new_stream(target.peer_id, [MESHSUB], deadline=5)
                raise AssertionError("a banned peer opened a /meshsub stream")
            except (DialError, StreamOpenError):
                pass
            # the attacked host still gossips with a good peer
            await good.connect(target.addrs[0])
            await wait_until(lambda: "t" in rt.mesh and good.peer_id in rt.mesh["t"])
            await hardening.publish(pt, "t", b"after-oversize")
            with trio.fail_after(10):
                assert (await sub.get()).data == b"after-oversize"
        await assert_serves(target)


# --- every protocol handler: read deadline, idle limit and frame cap from the host's guard ---------

FAST = Limits(read_deadline=1.0, stream_idle_timeout=2.0, default_message_cap=64 * 1024)
SPEC = ProtocolSpec("/tensornet/test/guarded/1", max_request=1024, max_response=1024, timeout=5.0)


async def echo(peer, data: bytes) -> bytes:
    return b"ok:" + data


async def test_silent_dribbling_oversize_and_idle_streams_are_cut_off_while_others_are_served():
    async with (
        running_hosts(1, FAST) as (target,),
        running_hosts(2) as (attacker, good),
        trio.open_nursery() as nursery,
    ):
        served, client = ReqResp(target), ReqResp(good)
        await nursery.start(served.run)
        await nursery.start(client.run)
        served.register(SPEC, echo)
        client.register(SPEC)
        await attacker.connect(target.addrs[0])
        await good.connect(target.addrs[0])
        victim, pid = str(attacker.peer_id), SPEC.protocol_id

        # 1. a stream that never sends a byte is cut off at the read deadline, and charged
        silent = await attacker.new_stream(target.peer_id, [pid])
        assert await good_request(client, target, b"during the stall") == b"ok:during the stall"
        assert await cut_off(silent)
        await wait_until(lambda: target.limiter.violations["read_timeout"] >= 1)
        assert target.limiter.rejects[f"read_timeout:{pid}"] == 1
        assert target.limiter.score(victim) < 0

        # 2. a frame dribbled one byte at a time is cut off at the deadline from its first byte
        dribble = await attacker.new_stream(target.peer_id, [pid])
        frame = encode_frame(Kind.REQUEST, 1, b"d" * 200)
        written = 0
        with trio.move_on_after(60):
            try:
                for written in range(1, len(frame) + 1):
                    await dribble.write(frame[written - 1 : written])
                    await trio.sleep(0.1)
            except Exception:  # noqa: BLE001 - the reset reaches the writer
                pass
        await wait_until(lambda: target.limiter.violations["read_timeout"] >= 2)
        assert written < len(frame)  # never delivered in full

        # 3. a frame over the protocol's cap is refused from its length prefix
        big = await attacker.new_stream(target.peer_id, [pid])
        await big.write(encode_uvarint(FAST.default_message_cap + 1) + b"x" * 100)
        assert await cut_off(big)
        await wait_until(lambda: target.limiter.violations["oversize"] >= 1)
        assert target.limiter.rejects[f"oversize:{pid}"] == 1

        # 4. a persistent stream that goes quiet after a good frame is closed, without a penalty
        before = target.limiter.score(str(good.peer_id))
        assert await good_request(client, target, b"then quiet") == b"ok:then quiet"
        await wait_until(lambda: target.limiter.rejects[f"idle_stream:{pid}"] >= 1)
        assert target.limiter.score(str(good.peer_id)) == before == 0
        # the next request opens a new stream and is served
        assert await good_request(client, target, b"after idle") == b"ok:after idle"
        assert target.limiter.violations["read_timeout"] == 2
        await assert_serves(target)
        nursery.cancel_scope.cancel()


async def good_request(client: ReqResp, target, data: bytes) -> bytes:
    for _ in range(3):  # a request racing the idle close of its stream is retried on a new one
        try:
            return await client.request(target.peer_id, SPEC.protocol_id, data)
        except PeerGone:
            continue
    raise AssertionError("the good client was not served")
