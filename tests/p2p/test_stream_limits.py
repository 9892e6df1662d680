"""Size caps and read deadlines enforced by the host itself, each attacking a real host on loopback.

Every attack ends with the attacked host still serving others: gossip to a good peer, or `assert_serves`.
"""

from __future__ import annotations

import trio

from p2pnet import hardening
from p2pnet.errors import DialError, StreamOpenError
from p2pnet.limits import Limits
from tests.p2p.conftest import assert_serves, running_hosts

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


async def drain(stream) -> None:
    """Read until the target resets or closes the stream (bounded)."""
    with trio.move_on_after(10):
        try:
            while await stream.read(1024):
                pass
        except Exception:  # noqa: BLE001 - the reset is the expected outcome
            pass


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
                await drain(stream)
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
