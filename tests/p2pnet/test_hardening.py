"""One regression test per defect of research/py-libp2p-0.8.1.md, each attacking a real host on loopback.

Every attack ends with `assert_serves(target)`: a brand-new peer still connects and gets an answer.
"""

from __future__ import annotations

import gc
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio
from libp2p.network import swarm as swarm_module
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes

from p2pnet import hardening
from p2pnet.errors import DialError, StreamOpenError
from p2pnet.limits import Limits
from tests.p2pnet.conftest import (
    ECHO,
    assert_serves,
    open_fds,
    rss_bytes,
    running_host,
    running_hosts,
    trio_task_count,
)

REPO = Path(__file__).resolve().parents[2]
MESHSUB = hardening.GOSSIP_PROTOCOLS[0]


async def wait_until(predicate, deadline: float = 15.0) -> None:
    with trio.fail_after(deadline):
        while not predicate():
            await trio.sleep(0.01)


async def mesh_ready(pa, pb, a, b) -> None:
    await wait_until(lambda: b.peer_id in pa.peers and a.peer_id in pb.peers)


# --- defect 1: malformed protobuf frame on /meshsub ------------------------------------------------


async def test_malformed_meshsub_frame_does_not_kill_host():
    async with running_hosts(3) as (target, attacker, good):
        pt, rt = hardening.make_pubsub(target)
        pg, rg = hardening.make_pubsub(good)
        async with hardening.run_pubsub(pt, rt), hardening.run_pubsub(pg, rg):
            sub = await pg.subscribe("t")
            await pt.subscribe("t")
            await attacker.connect(target.addrs[0])
            for garbage in (b"\x0a\xff\xff\xff\xff\x0f", b"\xff" * 40, b"\x12\x05ab"):
                stream = await attacker.new_stream(target.peer_id, [MESHSUB])
                await stream.write(encode_varint_prefixed(garbage))
                with trio.move_on_after(5):
                    try:
                        while await stream.read(1024):
                            pass
                    except Exception:  # noqa: BLE001 - the target resets the stream: that is the point
                        pass
            await wait_until(lambda: target.limiter.violations["malformed"] >= 3)
            assert target.limiter.score(str(attacker.peer_id)) < 0
            # gossip still flows from the attacked host to a good peer
            await good.connect(target.addrs[0])
            await mesh_ready(pt, pg, target, good)
            await wait_until(lambda: "t" in rt.mesh and good.peer_id in rt.mesh["t"])
            await hardening.publish(pt, "t", b"after-attack")
            with trio.fail_after(10):
                assert (await sub.get()).data == b"after-attack"
        await assert_serves(target)


# --- defect 2: exception inside a stream handler ---------------------------------------------------


async def test_handler_exception_does_not_kill_host():
    async with running_hosts(2) as (target, client):

        async def boom(stream):
            await stream.read(10)
            raise ValueError("handler bug")

        target.set_stream_handler("/tn/test/boom/1", boom)
        # also a handler registered on the raw libp2p host, bypassing our wrapper: the host-level guard
        target.libp2p.set_stream_handler("/tn/test/rawboom/1", boom)
        await client.connect(target.addrs[0])
        for proto in ["/tn/test/boom/1", "/tn/test/rawboom/1"] * 3:
            stream = await client.new_stream(target.peer_id, [proto])
            await stream.write(b"x")
            with trio.move_on_after(5):
                try:
                    await stream.read(10)
                except Exception:  # noqa: BLE001 - reset by the target
                    pass
        await wait_until(lambda: target.handler_errors == 3 and target.limiter.violations["stream_handler_crash"] == 3)
        # the same client is still served on the same connection
        stream = await client.new_stream(target.peer_id, [ECHO])
        await stream.write(b"ok")
        assert await stream.read(10) == b"ok"
        await assert_serves(target)


# --- defect 3: inbound slot leak -----------------------------------------------------------------

KILLED_PEER = textwrap.dedent(
    """
    import sys, trio
    from libp2p.crypto.ed25519 import create_new_key_pair
    from p2pnet.host import open_host

    async def main():
        async with open_host(create_new_key_pair()) as h:
            await h.connect(sys.argv[1], deadline=20)
            print("connected", flush=True)
            await trio.sleep_forever()

    trio.run(main)
    """
)


async def connect_killed_peer(target) -> None:
    """A separate OS process connects to `target` and is SIGKILLed while connected."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", KILLED_PEER, str(target.addrs[0])], stdout=subprocess.PIPE, cwd=REPO
    )
    try:
        with trio.fail_after(60):
            line = await proc.stdout.receive_some(100)
        assert b"connected" in line
        await wait_until(lambda: target.limiter.inbound_conns >= 1)
    finally:
        proc.kill()
        await proc.wait()
        await proc.stdout.aclose()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
async def test_thousand_inbound_connections_no_slot_leak():
    clients = 8  # 8 dialers in parallel, each connecting and disconnecting in sequence: 1,000 in all
    async with running_host() as target, running_hosts(clients) as dialers:
        await connect_killed_peer(target)
        await wait_until(lambda: target.limiter.inbound_conns == 0, deadline=30)

        async def rounds(client, n: int) -> None:
            for _ in range(n):
                await client.connect(target.addrs[0])
                await wait_until(lambda: client.peer_id in target.peers())
                await client.disconnect(target.peer_id)
                await wait_until(lambda: client.peer_id not in target.peers())

        async def batch(per_client: int) -> None:
            async with trio.open_nursery() as nursery:
                for client in dialers:
                    nursery.start_soon(rounds, client, per_client)
            await wait_until(lambda: target.limiter.inbound_conns == 0)

        await batch(10)  # warm-up: caches, allocator arenas, lazily created objects
        tasks_before, rss_before, fds_before = trio_task_count(), rss_bytes(), open_fds()
        await batch(55)
        await connect_killed_peer(target)
        await wait_until(lambda: target.limiter.inbound_conns == 0, deadline=30)
        await batch(60)  # 8 x 125 = 1,000 inbound connections, plus the killed peers
        await connect_killed_peer(target)
        await wait_until(lambda: target.limiter.inbound_conns == 0, deadline=30)
        gc.collect()
        tasks_after, rss_after, fds_after = trio_task_count(), rss_bytes(), open_fds()
        assert tasks_after <= tasks_before + 10, (tasks_before, tasks_after)
        assert fds_after <= fds_before + 5, (fds_before, fds_after)
        assert rss_after - rss_before < 48 * 1024 * 1024, (rss_before, rss_after)
        assert target.limiter.rejects.get("inbound_conns", 0) == 0
        # still accepting after four times libp2p's 250-connection lifetime ceiling
        await assert_serves(target)


# --- defect 4: downgrade to plaintext/secio, peer-ID impersonation ---------------------------------


def _ms_line(text: str) -> bytes:
    return encode_varint_prefixed((text + "\n").encode())


async def _propose_security(port: int, protocol: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(_ms_line("/multistream/1.0.0") + _ms_line(protocol))
        got = b""
        with trio.move_on_after(5):
            while b"na\n" not in got and protocol.encode() + b"\n" not in got:
                chunk = await stream.receive_some(1024)
                if not chunk:
                    break
                got += chunk
        return got


async def test_plaintext_and_secio_refused_noise_offered():
    async with running_host() as target:
        port = int(target.addrs[0].value_for_protocol("tcp"))
        for proto in ("/plaintext/2.0.0", "/plaintext/1.0.0", "/secio/1.0.0", "/tls/1.0.0"):
            reply = await _propose_security(port, proto)
            assert b"na\n" in reply, (proto, reply)
        assert b"/noise\n" in await _propose_security(port, "/noise")
        await assert_serves(target)


async def test_plaintext_only_peer_cannot_connect():
    import libp2p
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
    from multiaddr import Multiaddr

    async with running_host() as target:
        kp = create_new_key_pair()
        insecure = libp2p.new_host(key_pair=kp, sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(kp)})
        try:
            async with insecure.run([Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                from libp2p.peer.peerinfo import info_from_p2p_addr

                with pytest.raises(Exception), trio.fail_after(20):  # noqa: B017 - any failure to connect
                    await insecure.connect(info_from_p2p_addr(target.addrs[0]))
                assert insecure.get_id() not in target.peers()
        finally:
            await insecure.close()
        await assert_serves(target)


async def test_peer_id_impersonation_impossible():
    async with running_hosts(3) as (target, victim, attacker):
        # the attacker's address, claimed to be the victim: Noise proves the key, so the dial fails
        port = attacker.addrs[0].value_for_protocol("tcp")
        with pytest.raises(DialError):
            await target.connect(f"/ip4/127.0.0.1/tcp/{port}/p2p/{victim.peer_id}", deadline=10)
        assert victim.peer_id not in target.peers()
        # the attacker dialling in is seen as itself, never as the victim
        await attacker.connect(target.addrs[0])
        await wait_until(lambda: attacker.peer_id in target.peers())
        assert victim.peer_id not in target.peers()
        await assert_serves(target)


# --- defect 5: a peer connects (and opens /meshsub) before pubsub runs ------------------------------


async def test_peer_before_pubsub_runs():
    async with running_hosts(2) as (target, early):
        pt, rt = hardening.make_pubsub(target)  # built, not running yet
        pe, re_ = hardening.make_pubsub(early)
        async with hardening.run_pubsub(pe, re_):
            sub = await pe.subscribe("t")
            await early.connect(target.addrs[0])  # connection set-up must not block on the idle pubsub
            # an early /meshsub stream is refused, not crashing the host
            with pytest.raises(StreamOpenError):
                await early.new_stream(target.peer_id, [MESHSUB], deadline=5)
            assert early.peer_id in target.peers()
            async with hardening.run_pubsub(pt, rt):
                await pt.subscribe("t")
                # the peer that connected before pubsub ran is picked up, and gossip reaches it
                await wait_until(lambda: early.peer_id in pt.peers)
                await wait_until(lambda: "t" in rt.mesh and early.peer_id in rt.mesh["t"])
                await hardening.publish(pt, "t", b"late-start")
                with trio.fail_after(10):
                    assert (await sub.get()).data == b"late-start"
        await assert_serves(target)


# --- defect 6 (and 10: heartbeat, queue sizes): spam protection silently dropping -----------------


async def test_burst_above_ten_per_second_is_delivered_in_full():
    async with running_hosts(2) as (a, b):
        pa, ra = hardening.make_pubsub(a)
        pb, rb = hardening.make_pubsub(b)
        assert ra.spam_protection_enabled is False
        assert ra.heartbeat_interval == 1
        async with hardening.run_pubsub(pa, ra), hardening.run_pubsub(pb, rb):
            sub = await pb.subscribe("t")
            await pa.subscribe("t")
            await b.connect(a.addrs[0])
            await mesh_ready(pa, pb, a, b)
            await wait_until(lambda: "t" in ra.mesh and b.peer_id in ra.mesh["t"])
            assert pa.peer_queues[b.peer_id]._queue.max_size == hardening.OUTBOUND_QUEUE_SIZE
            n = 300
            for i in range(n):
                await hardening.publish(pa, "t", b"m%d" % i)
            got = set()
            with trio.fail_after(30):
                while len(got) < n:
                    got.add((await sub.get()).data)
            assert got == {b"m%d" % i for i in range(n)}
            assert a.limiter.drops == {} and b.limiter.drops == {}


# --- defect 7: large messages -------------------------------------------------------------------


async def test_eight_megabyte_frame_read_in_full():
    size = 8 * 1024 * 1024
    async with running_hosts(2) as (target, client):

        async def digest(stream):
            data = await read_varint_prefixed_bytes(stream)  # libp2p's reader: read_exactly underneath
            await stream.write(hashlib.blake2b(data, digest_size=32).digest())
            await stream.close()

        target.set_stream_handler("/tn/test/big/1", digest, max_frame=size + 16)
        await client.connect(target.addrs[0])
        payload = os.urandom(size)
        stream = await client.new_stream(target.peer_id, ["/tn/test/big/1"])
        with trio.fail_after(120):
            await stream.write(encode_varint_prefixed(payload))
            reply = b""
            while len(reply) < 32:
                reply += await stream.read(32 - len(reply))
        assert reply == hashlib.blake2b(payload, digest_size=32).digest()
        assert target.handler_errors == 0


@pytest.mark.slow
async def test_large_gossip_message_and_oversize_refused():
    limits = Limits(max_message_size=12 * 1024 * 1024)
    async with running_host(limits) as a, running_host(limits) as b:
        pa, ra = hardening.make_pubsub(a)
        pb, rb = hardening.make_pubsub(b)
        async with hardening.run_pubsub(pa, ra), hardening.run_pubsub(pb, rb):
            sub = await pb.subscribe("t")
            await pa.subscribe("t")
            await b.connect(a.addrs[0])
            await mesh_ready(pa, pb, a, b)
            await wait_until(lambda: "t" in ra.mesh and b.peer_id in ra.mesh["t"])
            big = os.urandom(7 * 1024 * 1024)
            await hardening.publish(pa, "t", big, deadline=60)
            with trio.fail_after(120):
                assert (await sub.get()).data == big
            # a frame claiming more than the cap is refused before its body is read (while b's
            # pubsub runs: only then does b serve /meshsub)
            stream = await a.new_stream(b.peer_id, [MESHSUB])
            await stream.write(_varint(13 * 1024 * 1024) + b"x" * 100)
            # refused from its length prefix, and charged to the sender (tests/p2pnet/test_stream_limits.py
            # shows repeated oversize frames banning the peer)
            await wait_until(lambda: b.limiter.violations["oversize"] >= 1)
            assert b.limiter.score(str(a.peer_id)) < 0
        await assert_serves(b)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


# --- defect 8: 250 ms happy-eyeballs wait on every dial ---------------------------------------------


async def test_dial_has_no_happy_eyeballs_wait(mock_clock):
    # Virtual time only moves when every task has been blocked on a timer for 2 real seconds. A dial
    # that waited on the 250 ms head start would advance the virtual clock; a fixed dial does not.
    assert swarm_module._HAPPY_EYEBALLS_DELAY == 0
    async with running_hosts(2) as (a, b):
        assert a.libp2p.get_network().connection_config.max_connections_per_peer == 1
        mock_clock.autojump_threshold = 2.0
        before = trio.current_time()
        await b.connect(a.addrs[0])
        assert trio.current_time() - before < hardening_delay_default()
        mock_clock.autojump_threshold = 0.0


def hardening_delay_default() -> float:
    return 0.25


# --- defect 9: sockets leaked on cancel ------------------------------------------------------------


async def test_cancel_releases_all_sockets():
    async with running_hosts(2) as (a, b):  # warm-up: trio's own fds, libp2p lazy state
        await b.connect(a.addrs[0])
    gc.collect()  # libp2p keeps a socket or two in reference cycles; count only what survives collection
    before = open_fds()
    for _ in range(3):
        with trio.CancelScope() as scope:
            async with running_hosts(2) as (a, b):
                await b.connect(a.addrs[0])
                stream = await b.new_stream(a.peer_id, [ECHO])
                await stream.write(b"x")
                assert open_fds() >= before + 4  # two listeners, two connection ends at least
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught
    gc.collect()
    assert open_fds() <= before


# --- defect 10: half-open socket flood, yamux idle-reader reset, SIGINT, backpressure -------------


async def test_half_open_flood_capped_per_ip_other_ip_gets_in():
    limits = Limits(max_pending_per_ip=8, handshake_timeout=60)
    async with running_host(limits) as target:
        port = int(target.addrs[0].value_for_protocol("tcp"))
        flood = []
        try:
            for _ in range(300):  # more than libp2p's ~250 that locked everyone out
                s = trio.socket.socket()
                await s.bind(("127.0.0.3", 0))
                await s.connect(("127.0.0.1", port))  # and then never a byte: a half-open handshake
                flood.append(s)
            await wait_until(lambda: target.limiter.rejects["pending_per_ip"] >= 300 - 8)
            assert target.limiter.pending("127.0.0.3") == 8
            await assert_serves(target)  # from 127.0.0.1: unaffected by 127.0.0.3's flood
        finally:
            for s in flood:
                s.close()
        await wait_until(lambda: target.limiter.pending("127.0.0.3") == 0)


@pytest.mark.slow
async def test_slow_reader_is_not_reset_after_five_seconds():
    size = 2 * 1024 * 1024  # far more than the 256 KiB initial yamux window
    async with running_hosts(2) as (target, client):
        started = trio.Event()
        received = bytearray()

        async def slow(stream):
            started.set()
            await trio.sleep(6)  # not reading: the writer waits on a closed window past libp2p's 5 s
            while len(received) < size:
                received.extend(await stream.read(size - len(received)))
            await stream.write(b"done")

        target.set_stream_handler("/tn/test/slow/1", slow, framed=False, max_frame=size)
        await client.connect(target.addrs[0])
        stream = await client.new_stream(target.peer_id, ["/tn/test/slow/1"])
        payload = os.urandom(size)
        with trio.fail_after(60):
            await stream.write(payload)
            assert await stream.read(4) == b"done"
        assert bytes(received) == payload


SIGINT_MAIN = textwrap.dedent(
    """
    import sys, trio
    from libp2p.crypto.ed25519 import create_new_key_pair
    from p2pnet.hardening import run_trio
    from p2pnet.host import open_host

    async def main():
        async with open_host(create_new_key_pair()) as a, open_host(create_new_key_pair()) as b:
            await b.connect(a.addrs[0])
            async with trio.open_nursery() as n:
                n.start_soon(trio.sleep_forever)
                print("ready", flush=True)
                await trio.sleep_forever()

    sys.exit(run_trio(main))
    """
)


@pytest.mark.slow
async def test_sigint_inside_nurseries_exits_130():
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", SIGINT_MAIN], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO
    )
    try:
        with trio.fail_after(60):
            assert b"ready" in await proc.stdout.receive_some(100)
            proc.send_signal(signal.SIGINT)
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = await proc.stderr.receive_some(65536)
    assert proc.returncode == 130, err.decode(errors="replace")[-2000:]
    assert b"Traceback" not in err


def test_run_trio_reraises_real_errors_and_handles_bare_interrupt():
    async def fails():
        raise RuntimeError("real bug")

    async def interrupted():
        async with trio.open_nursery() as n:
            n.start_soon(trio.sleep_forever)
            raise KeyboardInterrupt

    with pytest.raises(RuntimeError):
        hardening.run_trio(fails)
    assert hardening.run_trio(interrupted) == 130


async def test_publish_backpressure_and_counted_drops():
    async with running_hosts(2) as (a, b):
        pa, ra = hardening.make_pubsub(a)
        pb, rb = hardening.make_pubsub(b)
        async with hardening.run_pubsub(pa, ra), hardening.run_pubsub(pb, rb):
            await pb.subscribe("t")
            await b.connect(a.addrs[0])
            await mesh_ready(pa, pb, a, b)
            # simulate a peer that does not drain: a queue past the high-water mark that no sender empties
            from libp2p.pubsub.pb import rpc_pb2

            live = pa.peer_queues[b.peer_id]
            stuck = pubsub_module.RpcQueue()
            assert stuck._queue.max_size == hardening.OUTBOUND_QUEUE_SIZE
            for _ in range(int(stuck._queue.max_size * 0.9)):
                assert stuck.push(rpc_pb2.RPC())
            pa.peer_queues[b.peer_id] = stuck
            with pytest.raises(StreamOpenError, match="did not drain"):
                await hardening.publish(pa, "t", b"x", deadline=0.3)
            pa.peer_queues[b.peer_id] = live
            await hardening.publish(pa, "t", b"y", deadline=5)  # drained: goes through
        # drops that libp2p only debug-logged are counted
        assert pubsub_module.drop_rpc is hardening._counting_drop_rpc
        before = hardening.DROPPED_RPCS.get(str(b.peer_id), 0)
        pubsub_module.drop_rpc(b.peer_id, rpc_pb2.RPC())
        assert hardening.DROPPED_RPCS[str(b.peer_id)] == before + 1
