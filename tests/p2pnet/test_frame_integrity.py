"""Frame integrity of persistent request/response streams, and request failures charged to their cause.

Issue 13, defects 2 and 5: a write cut off midway left half a frame on the stream, the peer read garbage and
banned the honest sender; 3,000 bad requests wrote 3,004 warnings and cost the sender nothing.

Real hardened hosts on loopback. To cut a write off midway deterministically, the receiving side stops reading
(a `Gate`, i.e. a stalled receiver): the writer then really blocks on the yamux window partway through its
frame, and a deadline or a cancelled caller interrupts it there.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.utils.varint import encode_uvarint

from p2pnet.host import Host, open_host
from p2pnet.limits import Limits, LogLimiter, MiB
from p2pnet.reqresp import FrameReader, Kind, PeerGone, ProtocolSpec, Refused, RemoteError, ReqResp, encode_frame
from tests.p2pnet.test_stream_limits import cut_off, wait_until

LIMITS = Limits(read_deadline=2.0, default_message_cap=16 * MiB, max_message_size=16 * MiB)
SPEC = ProtocolSpec(
    "/tensornet/test/integrity/1", max_request=8 * MiB, max_response=8 * MiB, timeout=10.0, server_timeout=1.0
)
PID = SPEC.protocol_id


async def answer(peer: Any, data: bytes) -> bytes:
    if data == b"big":
        return b"r" * MiB
    if data == b"huge":
        return b"h" * (2 * MiB)
    return b"ok:" + data[:16]


# --- a receiver that can stall ----------------------------------------------------------------------


class Gate:
    """Open or closed; reads through a closed gate wait until it opens, and each read first waits `delay` s."""

    def __init__(self) -> None:
        self._open = trio.Event()
        self._open.set()
        self.delay = 0.0

    def close(self) -> None:
        self._open = trio.Event()

    def open(self) -> None:
        self._open.set()

    async def wait(self) -> None:
        await self._open.wait()


class GatedStream:
    def __init__(self, stream: Any, gate: Gate) -> None:
        self._stream, self._gate = stream, gate

    async def read(self, n: int | None = None) -> bytes:
        await self._gate.wait()
        await trio.sleep(self._gate.delay)
        return await self._stream.read(n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class GatedHost:
    """A host whose request/response streams (both directions) stop reading while `gate` is closed."""

    def __init__(self, host: Host, gate: Gate) -> None:
        self._host, self._gate = host, gate

    async def new_stream(self, peer: Any, protocols: list[str]) -> GatedStream:
        return GatedStream(await self._host.new_stream(peer, protocols), self._gate)

    def set_stream_handler(self, protocol_id: str, handler: Any, **kw: Any) -> None:
        async def gated(stream: Any) -> None:
            await handler(GatedStream(stream, self._gate))

        self._host.set_stream_handler(protocol_id, gated, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)


@asynccontextmanager
async def pair(
    *, client_gate: Gate | None = None, server_gate: Gate | None = None, limits: Limits = LIMITS
) -> AsyncIterator[tuple[Host, Host, ReqResp, ReqResp]]:
    """Client host a and server host b, connected, each with a running ReqResp; b serves SPEC with `answer`."""
    async with (
        open_host(create_new_key_pair(), limits=limits) as a,
        open_host(create_new_key_pair(), limits=limits) as b,
        trio.open_nursery() as nursery,
    ):
        ra = ReqResp(GatedHost(a, client_gate) if client_gate else a)
        rb = ReqResp(GatedHost(b, server_gate) if server_gate else b)
        await nursery.start(ra.run)
        await nursery.start(rb.run)
        ra.register(SPEC)
        rb.register(SPEC, answer)
        await a.connect(b.addrs[0])
        yield a, b, ra, rb
        nursery.cancel_scope.cancel()


def assert_nobody_charged(*hosts: Host) -> None:
    for host in hosts:
        assert dict(host.limiter.violations) == {}
        assert host.limiter.bans == 0
        assert all(host.limiter.score(str(other.peer_id)) == 0 for other in hosts)


# --- (a) and (b): a write cut off midway resets its stream; nobody is charged --------------------------


async def test_request_write_cut_off_midway_resets_the_stream_and_charges_nobody():
    gate = Gate()
    with trio.fail_after(60):
        async with pair(server_gate=gate) as (a, b, ra, rb):
            assert await ra.request(b.peer_id, PID, b"hello") == b"ok:hello"
            gate.close()  # b stops reading: a's 4 MiB request stalls on the yamux window, partway through
            with trio.move_on_after(1.0) as cut:  # a caller's own deadline, like the 3 s block push
                await ra.request(b.peer_id, PID, b"x" * (4 * MiB))
            assert cut.cancelled_caught
            assert rb.metrics.requests_in[PID] == 1  # the big frame never arrived whole
            gate.open()
            assert await ra.request(b.peer_id, PID, b"after", timeout=10) == b"ok:after"
            # b is done with the cut stream (only the new one is left) and charged nobody for it
            await wait_until(lambda: b.limiter.streams(str(a.peer_id)) == 1)
            assert_nobody_charged(a, b)


async def test_reply_write_cut_off_midway_resets_the_stream_and_charges_nobody():
    gate = Gate()
    outcome: list[Any] = []

    async def big() -> None:
        try:
            outcome.append(await ra.request(b.peer_id, PID, b"big", timeout=20))
        except Exception as exc:  # noqa: BLE001 - the outcome is asserted below
            outcome.append(exc)

    with trio.fail_after(60):
        async with pair(client_gate=gate) as (a, b, ra, rb):
            assert await ra.request(b.peer_id, PID, b"hello") == b"ok:hello"
            gate.close()  # a stops reading: b's 1 MiB reply stalls on the window past the server deadline (1 s)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(big)
                errors = rb.metrics.request_errors
                await wait_until(lambda: errors[f"{PID}:reply_aborted"] + errors[f"{PID}:server_timeout"] >= 1)
                gate.open()
            assert isinstance(outcome[0], PeerGone)  # the reset reached the waiting request
            assert await ra.request(b.peer_id, PID, b"after", timeout=10) == b"ok:after"
            await wait_until(lambda: b.limiter.streams(str(a.peer_id)) == 1)
            assert_nobody_charged(a, b)


async def test_a_response_still_arriving_is_not_cut_off_at_the_base_deadline():
    gate = Gate()
    with trio.fail_after(60):
        async with pair(client_gate=gate) as (a, b, ra, rb):
            assert await ra.request(b.peer_id, PID, b"hello") == b"ok:hello"
            gate.delay = 0.05  # a reads 64 KiB per 50 ms (~1.3 MB/s): the 2 MiB answer takes 1.6 s or more
            start = trio.current_time()
            assert await ra.request(b.peer_id, PID, b"huge", timeout=1.0) == b"h" * (2 * MiB)
            assert trio.current_time() - start > 1.0  # it did outlast the base deadline
            assert_nobody_charged(a, b)


# --- (c) a corrupt frame after good ones resets the stream without a charge; from the start it costs ------


async def read_frame(stream: Any) -> tuple[Kind, bytes | None]:
    kind, _, payload, _ = await FrameReader(stream).next(lambda k, r: 1024)
    return kind, payload


@pytest.mark.parametrize(
    "junk",
    [
        b"\x06\x09\x00\x00\x00\x01x",  # unknown frame kind (reqresp's reader)
        encode_uvarint(100 * MiB) + b"x" * 16,  # length prefix over the cap (the host's guard)
        b"\x80\x00",  # non-minimal varint (the host's guard)
    ],
    ids=["bad-kind", "oversize", "non-minimal"],
)
async def test_corrupt_frame_midstream_is_not_charged_but_from_the_start_it_is(junk):
    with trio.fail_after(60):
        async with pair() as (a, b, ra, rb):
            victim = str(a.peer_id)
            stream = await a.new_stream(b.peer_id, [PID])
            await stream.write(encode_frame(Kind.REQUEST, 1, b"good"))
            assert await read_frame(stream) == (Kind.RESPONSE, b"ok:good")
            await stream.write(junk)
            assert await cut_off(stream)
            corrupt = f"corrupt_midstream:{PID}"
            await wait_until(lambda: b.limiter.rejects[corrupt] + rb.metrics.rejects[corrupt] == 1)
            await wait_until(lambda: b.limiter.streams(victim) == 0)
            assert_nobody_charged(a, b)

            first = await a.new_stream(b.peer_id, [PID])
            await first.write(junk)
            assert await cut_off(first)
            await wait_until(lambda: sum(b.limiter.violations.values()) == 1)
            assert set(b.limiter.violations) <= {"malformed", "oversize"}
            assert b.limiter.score(victim) < 0


# --- (d) a big frame on a slow (but not too slow) link is not misbehaviour -------------------------------


async def test_slow_sender_of_a_big_frame_is_not_charged():
    limits = Limits(read_deadline=1.0, default_message_cap=16 * MiB, max_message_size=16 * MiB)
    with trio.fail_after(60):
        async with pair(limits=limits) as (a, b, ra, rb):
            stream = await a.new_stream(b.peer_id, [PID])
            frame = encode_frame(Kind.REQUEST, 7, b"s" * MiB)
            start = trio.current_time()
            step = 64 * 1024
            for i in range(0, len(frame), step):  # 64 KiB per 80 ms: ~800 KiB/s, above MIN_LINK_RATE
                await stream.write(frame[i : i + step])
                await trio.sleep(0.08)
            assert trio.current_time() - start > limits.read_deadline  # slower than the base deadline allows
            assert await read_frame(stream) == (Kind.RESPONSE, b"ok:" + b"s" * 16)
            assert_nobody_charged(a, b)


# --- (e) refused and failing requests are charged to the sender; warnings are bounded -----------------------


async def test_refused_and_failing_requests_are_charged_with_bounded_warnings(caplog):
    async def handler(peer: Any, data: bytes) -> bytes:
        if data == b"refuse":
            raise Refused("range out of bounds")
        if data == b"not-yours":
            raise Refused("we lack that block", penalty=None)
        raise ValueError("handler bug")

    limits = Limits(ban_threshold=-1e9)  # count every charge without banning the sender midway
    n = 40
    caplog.set_level(logging.INFO, logger="p2pnet.reqresp")
    with trio.fail_after(120):
        async with pair(limits=limits) as (a, b, ra, rb):
            rb.register(SPEC, handler)
            for data in (b"refuse", b"not-yours", b"bug"):
                for _ in range(n):
                    with pytest.raises(RemoteError):
                        await ra.request(b.peer_id, PID, data)
            assert b.limiter.violations == {"bad_request": n, "handler_error": n}
            assert b.limiter.score(str(a.peer_id)) < -n * 10
            assert rb.metrics.charges == {f"{PID}:bad_request": n, f"{PID}:handler_error": n}
            assert rb.metrics.request_errors[f"{PID}:refused"] == 2 * n
            assert rb.metrics.request_errors[f"{PID}:handler"] == n
            assert dict(a.limiter.violations) == {}
    warnings = [r for r in caplog.records if r.name == "p2pnet.reqresp" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "handler bug" in warnings[0].getMessage()


def test_log_limiter_allows_one_line_per_key_per_interval_and_bounds_its_keys():
    now = [0.0]
    limiter = LogLimiter(interval=60.0, max_keys=2, clock=lambda: now[0])
    assert limiter.allow("p1") and not limiter.allow("p1")
    assert limiter.allow("p2") and not limiter.allow("p3")  # full: a new key is not logged either
    now[0] = 61.0
    assert limiter.allow("p1") and limiter.allow("p3")
    assert limiter.suppressed == 2
