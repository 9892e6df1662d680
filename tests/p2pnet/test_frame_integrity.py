"""Frame integrity of persistent request/response and one-way streams, and failures charged to their cause.

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
from p2pnet.reqresp import (
    Backlogged,
    FrameReader,
    Kind,
    PeerGone,
    ProtocolSpec,
    Refused,
    RemoteError,
    ReqResp,
    RequestError,
    RequestTooLarge,
    encode_frame,
)
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


# --- (f) one-way streams (a pushed block): a bad frame resets only its stream and costs its sender ------------

ONE_WAY = ProtocolSpec("/tensornet/test/one-way/1", max_request=1024, max_response=0, timeout=10.0, one_way=True)
ONE_WAY_PID = ONE_WAY.protocol_id


@asynccontextmanager
async def one_way_pair(**kw: Any) -> AsyncIterator[tuple[Host, Host, ReqResp, ReqResp, list[bytes]]]:
    """`pair`, with b also serving ONE_WAY: every message it takes is appended to the list yielded last."""
    got: list[bytes] = []

    async def take(peer: Any, data: bytes) -> bytes:
        if data == b"invalid":
            raise Refused("invalid block", penalty="invalid_block")
        got.append(data)
        return b""

    async with pair(**kw) as (a, b, ra, rb):
        ra.register(ONE_WAY)
        rb.register(ONE_WAY, take)
        yield a, b, ra, rb, got


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (encode_frame(Kind.MESSAGE, 0, b"m" * 2000), "oversize"),  # over the request cap: skipped, charged
        (encode_uvarint(100 * MiB) + b"x" * 16, "oversize"),  # over the host's frame cap: the guard refuses it
        (encode_frame(Kind.REQUEST, 1, b"a request"), "malformed"),  # a one-way stream carries MESSAGE frames only
        (b"\x80\x00", "malformed"),  # non-minimal varint
        (encode_frame(Kind.MESSAGE, 0, b"invalid"), "invalid_block"),  # the handler refused it: charged, kept
    ],
    ids=["over-request-cap", "over-frame-cap", "wrong-kind", "non-minimal", "refused"],
)
async def test_a_bad_one_way_frame_is_charged_to_its_sender_and_the_other_streams_carry_on(frame, reason):
    with trio.fail_after(60):
        async with one_way_pair() as (a, b, ra, rb, got):
            await ra.send(b.peer_id, ONE_WAY_PID, b"before")
            await wait_until(lambda: got == [b"before"])
            raw = await a.new_stream(b.peer_id, [ONE_WAY_PID])
            await raw.write(frame)
            await wait_until(lambda: b.limiter.violations[reason] == 1)
            assert b.limiter.score(str(a.peer_id)) < 0
            await ra.send(b.peer_id, ONE_WAY_PID, b"after")  # the persistent stream was not touched
            await wait_until(lambda: got == [b"before", b"after"])
            assert ra.outbound_streams(b.peer_id) == 1
            assert sum(b.limiter.violations.values()) == 1
            assert dict(a.limiter.violations) == {}


async def test_one_way_messages_arrive_in_order_and_nothing_comes_back():
    with trio.fail_after(60):
        async with one_way_pair() as (a, b, ra, rb, got):
            sent = [b"m%d" % i for i in range(50)]
            for data in sent:
                await ra.send(b.peer_id, ONE_WAY_PID, data)
            await wait_until(lambda: len(got) == len(sent))
            assert got == sent
            assert ra.outbound_streams(b.peer_id) == 1
            assert rb.metrics.requests_in[ONE_WAY_PID] == ra.metrics.requests_out[ONE_WAY_PID] == 50
            assert rb.metrics.bytes_out[ONE_WAY_PID] == ra.metrics.bytes_in[ONE_WAY_PID] == 0  # no answers
            with pytest.raises(RequestError, match="one-way: use send"):
                await ra.request(b.peer_id, ONE_WAY_PID, b"x")
            with pytest.raises(RequestError, match="request/response"):
                await ra.send(b.peer_id, PID, b"x")
            with pytest.raises(RequestTooLarge):
                await ra.send(b.peer_id, ONE_WAY_PID, b"x" * 2000)
            assert_nobody_charged(a, b)


async def test_a_stalled_receiver_costs_a_bounded_backlog_and_a_cut_off_write_resets_only_its_stream():
    """b stops reading: a's 4 MiB message stalls on the yamux window, the next waits for the writer, and one more
    is dropped at once (`Backlogged`) rather than queued; the stalled write is cut off at its deadline, which
    resets that stream without a charge, and the next message opens a new one."""
    gate = Gate()
    spec = ProtocolSpec("/tensornet/test/one-way-big/1", max_request=8 * MiB, max_response=0, timeout=1.0,
                        max_in_flight=2, one_way=True)
    got: list[int] = []

    async def take(peer: Any, data: bytes) -> bytes:
        got.append(len(data))
        return b""

    failures: list[BaseException] = []

    async def big() -> None:
        try:
            await ra.send(b.peer_id, spec.protocol_id, b"x" * (4 * MiB), timeout=60)
        except RequestError as exc:
            failures.append(exc)

    with trio.fail_after(120):
        async with pair(server_gate=gate) as (a, b, ra, rb):
            ra.register(spec)
            rb.register(spec, take)
            await ra.send(b.peer_id, spec.protocol_id, b"hello")
            await wait_until(lambda: got == [5])
            gate.close()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(big)
                nursery.start_soon(big)
                out = ra._outbound[(b.peer_id, spec.protocol_id)]
                await wait_until(lambda: out.waiting == 2)
                with pytest.raises(Backlogged):
                    await ra.send(b.peer_id, spec.protocol_id, b"one too many")
                nursery.cancel_scope.cancel()  # the writer is cut off midway: the stream is reset
            gate.open()
            await ra.send(b.peer_id, spec.protocol_id, b"after", timeout=10)
            await wait_until(lambda: got[-1:] == [5])
            assert 4 * MiB not in got  # the cut-off message never arrived whole
            assert ra.metrics.request_errors[f"{spec.protocol_id}:Backlogged"] == 1
            await wait_until(lambda: b.limiter.streams(str(a.peer_id)) == 1)
            assert_nobody_charged(a, b)
