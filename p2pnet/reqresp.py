"""Request/response, and one-way messages, over persistent multiplexed libp2p streams.

Opening a libp2p stream costs a multistream negotiation (~6 ms here), so each (peer, protocol) pair
keeps ONE long-lived stream and multiplexes requests on it by request id; many requests can be in
flight at once. Every frame is `uvarint(len) || kind (1 byte) || request id (4 bytes, big-endian) ||
payload`. Kinds: REQUEST, RESPONSE, ERROR (payload = 1-byte code + UTF-8 text), MESSAGE.

A one-way protocol (`ProtocolSpec(one_way=True)`, sent with `send`) carries MESSAGE frames only and
nothing comes back: an answer nobody waits for costs a frame each way through yamux, Noise and Trio's
scheduler (a pushed block's empty answer was a third of a validator's networking CPU). The receiver
handles a stream's messages in order, one at a time, and charges a bad one to the sender as it would
a refused request; a sender that writes faster than that waits on the yamux window.

Every request has a deadline and a response size cap; failures are typed (`RequestTimeout`,
`ResponseTooLarge`, `RemoteError`, `PeerGone`). Servers answer each request from a handler
`async (peer_id, request_bytes) -> response_bytes`, under their own deadline and an in-flight cap;
a handler's exception becomes an ERROR frame for that one request, never a dead host, and is charged
to the peer (`Refused(..., penalty=)`, "handler_error") with at most one warning per peer per minute.

Frame integrity: every frame is written whole or its stream is reset (`write_frame`), because a
frame cut off midway would make the peer read the next frame as garbage and charge the honest sender.
Deadlines grow with message size at `MIN_LINK_RATE`, so a slow link is not taken for misbehaviour.
"""

from __future__ import annotations

import enum
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import trio
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_uvarint

from p2pnet.errors import MalformedFrame, P2PError
from p2pnet.framing import READ_CHUNK, parse_uvarint
from p2pnet.guard import transfer_time
from p2pnet.limits import LogLimiter
from p2pnet.metrics import Metrics

log = logging.getLogger("p2pnet.reqresp")

HEADER = 5  # kind + request id
DISCARD_LIMIT = 64 * 1024 * 1024  # an oversize frame longer than this resets the stream instead of being skipped
MAX_ERROR_TEXT = 512
ARRIVAL_SLACK = 1.0  # seconds added to a response's transfer time once its header has arrived

Handler = Callable[[ID, bytes], Awaitable[bytes]]


class Kind(enum.IntEnum):
    REQUEST = 0
    RESPONSE = 1
    ERROR = 2
    MESSAGE = 3  # one-way (request id 0); only on a one-way protocol's stream, never answered


class ErrorCode(enum.IntEnum):
    """Why a server refused one request (first payload byte of an ERROR frame)."""

    HANDLER = 1  # the handler raised
    TIMEOUT = 2  # the handler missed the server deadline
    TOO_LARGE = 3  # the request exceeded the protocol's request cap
    BUSY = 4  # too many requests in flight on this stream
    REFUSED = 5  # the handler refused the request on purpose (bad input, unknown item)


# --- typed errors ------------------------------------------------------------------------------


class RequestError(P2PError):
    """Base of every failed request."""


class RequestTimeout(RequestError):
    """No response before the request's deadline."""


class RequestTooLarge(RequestError):
    """The request is over the protocol's request cap; it was not sent."""


class ResponseTooLarge(RequestError):
    """The response was over the caller's cap; it was skipped unread."""


class RemoteError(RequestError):
    """The server answered with an ERROR frame."""

    def __init__(self, code: int, text: str) -> None:
        self.code = code
        self.text = text
        try:
            name = ErrorCode(code).name.lower()
        except ValueError:
            name = f"code {code}"
        super().__init__(f"remote error ({name}): {text}")


class PeerGone(RequestError):
    """The stream or connection closed before the response arrived (or could not be opened)."""


class Backlogged(RequestError):
    """Too many messages already wait to be written to this peer: this one was dropped, not queued."""


class ProtocolViolation(P2PError):
    """A peer sent a malformed frame; its stream is reset."""


class Refused(Exception):
    """Raise from a handler to refuse a request with a message the caller sees (bad input, unknown item).

    `penalty` is the `PeerLimiter` reason charged to the requester ("bad_request" by default); pass
    `penalty=None` when the refusal is not the peer's fault (we lack the item, we are busy).
    """

    def __init__(self, text: str, *, penalty: str | None = "bad_request") -> None:
        super().__init__(text)
        self.penalty = penalty


# --- framing -----------------------------------------------------------------------------------


def encode_frame(kind: Kind, request_id: int, payload: bytes) -> bytes:
    return encode_uvarint(HEADER + len(payload)) + bytes([kind]) + request_id.to_bytes(4, "big") + payload


def error_payload(code: ErrorCode, text: str) -> bytes:
    return bytes([code]) + text.encode("utf-8", "replace")[:MAX_ERROR_TEXT]


class StreamLike(Protocol):
    async def read(self, n: int | None = None) -> bytes: ...
    async def write(self, data: bytes) -> None: ...


async def write_frame(stream: Any, frame: bytes, seconds: float | None = None) -> None:
    """Write `frame` whole (within `seconds`, if given) or reset `stream` and re-raise.

    A write cut off midway (a deadline, a cancelled caller, a muxer error) must not leave half a frame
    on a persistent stream: the peer would read the next frame's bytes as the rest of this one.
    """
    try:
        with nullcontext() if seconds is None else trio.fail_after(seconds):  # None: the caller's deadline holds
            await stream.write(frame)
    except BaseException:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await _reset(stream)
        raise


class FrameReader:
    """Buffered reader of frames from one stream; reads in large chunks, never byte by byte.

    `frames` counts the complete frames read: a bad frame after good ones means the stream broke (a
    write cut off midway), while a stream that is bad from its first frame is a malformed peer.
    """

    def __init__(self, stream: StreamLike) -> None:
        self._stream = stream
        self._buf = bytearray()
        self.frames = 0

    async def _fill(self) -> None:
        chunk = await self._stream.read(READ_CHUNK)
        if not chunk:
            raise EOFError("stream closed")
        self._buf += chunk

    async def _take(self, n: int) -> bytes:
        while len(self._buf) < n:
            await self._fill()
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def _varint(self) -> int:
        """The frame's length prefix; a malformed one is this stream's `ProtocolViolation` (the stream resets)."""
        while True:
            try:
                head = parse_uvarint(self._buf)
            except MalformedFrame as exc:
                raise ProtocolViolation(exc.detail) from exc
            if head is not None:
                value, used = head
                del self._buf[:used]
                return value
            await self._fill()

    async def _skip(self, n: int) -> None:
        while n > 0:
            if not self._buf:
                await self._fill()
            k = min(n, len(self._buf))
            del self._buf[:k]
            n -= k

    async def next(
        self,
        cap: Callable[[Kind, int], int],
        on_header: Callable[[int, int], None] | None = None,
    ) -> tuple[Kind, int, bytes | None, int]:
        """Next frame as (kind, request id, payload, payload length); payload is None when over `cap`.

        `cap(kind, request_id)` gives the payload limit (it may raise `ProtocolViolation` for a kind
        the reader does not accept). An oversize payload is skipped (up to DISCARD_LIMIT) so the other
        requests on the stream survive; a longer one is a violation. `on_header(request_id, size)` is
        called once the header is in, before the payload is read.
        """
        length = await self._varint()
        if length < HEADER:
            raise ProtocolViolation(f"frame of {length} bytes is shorter than its {HEADER}-byte header")
        header = await self._take(HEADER)
        try:
            kind = Kind(header[0])
        except ValueError as exc:
            raise ProtocolViolation(f"unknown frame kind {header[0]}") from exc
        request_id = int.from_bytes(header[1:], "big")
        size = length - HEADER
        limit = cap(kind, request_id)
        if size > limit and size > DISCARD_LIMIT:
            raise ProtocolViolation(f"frame of {size} bytes is over the {DISCARD_LIMIT}-byte discard limit")
        if on_header is not None:
            on_header(request_id, size)
        payload = None
        if size > limit:
            await self._skip(size)
        else:
            payload = await self._take(size)
        self.frames += 1
        return kind, request_id, payload, size


# --- protocol registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class ProtocolSpec:
    """Limits of one request/response protocol; both sides use the same numbers."""

    protocol_id: str
    max_request: int
    max_response: int
    timeout: float = 10.0  # default client deadline
    server_timeout: float = 10.0
    max_in_flight: int = 32  # per inbound stream; one-way: messages waiting to be written, per outbound stream
    one_way: bool = False  # MESSAGE frames, no answer (`ReqResp.send`); `max_response` is unused


@dataclass
class _Pending:
    max_response: int
    send: trio.MemorySendChannel[tuple[Kind, bytes | None, int]]
    deadline: trio.CancelScope  # the request's; extended once its response starts arriving

    def arriving(self, size: int) -> None:
        """A response of `size` bytes has started: give it time to arrive on a slow link."""
        self.deadline.deadline = max(self.deadline.deadline, trio.current_time() + ARRIVAL_SLACK + transfer_time(size))


class _Outbound:
    """The client side of one persistent stream: a writer lock and the requests awaiting answers."""

    def __init__(self, peer: ID, spec: ProtocolSpec, stream: Any) -> None:
        self.peer = peer
        self.spec = spec
        self.stream = stream
        self.write_lock = trio.Lock()
        self.pending: dict[int, _Pending] = {}
        self.ids = itertools.count(1)
        self.closed = False
        self.waiting = 0  # one-way messages waiting for the writer (bounded by the spec's max_in_flight)

    def cap(self, kind: Kind, request_id: int) -> int:
        if self.spec.one_way:
            raise ProtocolViolation(f"a {kind.name} frame came back on a one-way stream")
        if kind in (Kind.REQUEST, Kind.MESSAGE):
            raise ProtocolViolation(f"client got a {kind.name} frame")
        pending = self.pending.get(request_id)
        if kind == Kind.ERROR:
            return MAX_ERROR_TEXT + 1
        return pending.max_response if pending is not None else 0

    def fail_all(self) -> None:
        self.closed = True
        for pending in self.pending.values():
            pending.send.send_nowait((Kind.ERROR, None, -1))
        self.pending.clear()

    def arriving(self, request_id: int, size: int) -> None:
        pending = self.pending.get(request_id)
        if pending is not None:
            pending.arriving(size)


class ReqResp:
    """Client and server of every request/response and one-way protocol of one host.

    `host` is anything with libp2p's `new_stream(peer_id, [protocol])` and `set_stream_handler`.
    Run `await nursery.start(reqresp.run)` (or `async with reqresp.running()`) before requests:
    the readers of persistent streams live in its nursery.
    """

    def __init__(self, host: Any, metrics: Metrics | None = None, open_timeout: float = 5.0) -> None:
        self.host = host
        self.metrics = metrics if metrics is not None else Metrics()
        self.open_timeout = open_timeout
        self.specs: dict[str, ProtocolSpec] = {}
        self._handlers: dict[str, Handler] = {}
        self._outbound: dict[tuple[ID, str], _Outbound] = {}
        self._open_locks: dict[tuple[ID, str], trio.Lock] = {}
        self._nursery: trio.Nursery | None = None
        self._log_limiter = LogLimiter()  # one warning per peer per minute; the rest are only counted

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the reader tasks; on exit every persistent stream is reset and its requests fail."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for out in list(self._outbound.values()):
                out.fail_all()
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await _reset(out.stream)
            self._outbound.clear()

    # --- server -------------------------------------------------------------------------------

    def register(self, spec: ProtocolSpec, handler: Handler | None = None) -> None:
        """Declare a protocol's limits; with a handler, also serve it."""
        self.specs[spec.protocol_id] = spec
        if handler is not None:
            self._handlers[spec.protocol_id] = handler
            serve = self._make_stream_handler(spec)
            limiter = getattr(self.host, "limiter", None)
            if limiter is None:  # a bare libp2p host (tests): no central guard
                self.host.set_stream_handler(spec.protocol_id, serve)
                return
            # The host's guard refuses frames over the protocol's cap (and charges the peer); frames
            # between our request cap and that are skipped and answered TOO_LARGE below.
            cap = max(limiter.limits.message_cap(spec.protocol_id), HEADER + spec.max_request)
            self.host.set_stream_handler(spec.protocol_id, serve, max_frame=cap)

    def _make_stream_handler(self, spec: ProtocolSpec) -> Callable[[Any], Awaitable[None]]:
        serve = self._serve_one_way if spec.one_way else self._serve

        async def handle(stream: Any) -> None:
            try:
                await serve(spec, stream)
            except BaseException as exc:  # noqa: B036 - a handler error must never reach py-libp2p (defect 2)
                if isinstance(exc, trio.Cancelled):
                    raise
                log.debug("stream of %s ended: %r", spec.protocol_id, exc)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await _reset(stream)

        return handle

    async def _serve(self, spec: ProtocolSpec, stream: Any) -> None:
        peer: ID = stream.muxed_conn.peer_id
        reader = FrameReader(stream)
        write_lock = trio.Lock()
        in_flight = 0
        handler = self._handlers[spec.protocol_id]
        pid = spec.protocol_id

        async def reply(request_id: int, kind: Kind, payload: bytes) -> None:
            frame = encode_frame(kind, request_id, payload)
            async with write_lock:
                try:  # a slow link gets time in proportion to the reply; a dead one loses the stream
                    await write_frame(stream, frame, spec.server_timeout + transfer_time(len(frame)))
                except BaseException:
                    self.metrics.request_errors[f"{pid}:reply_aborted"] += 1
                    nursery.cancel_scope.cancel()  # the stream is reset: stop reading it too
                    raise
            self.metrics.bytes_out[pid] += len(frame)

        async def answer(request_id: int, data: bytes) -> None:
            nonlocal in_flight
            try:
                kind, payload = await self._handle(spec, handler, peer, data)
                await reply(request_id, kind, payload)
            except Exception as exc:  # the stream died while replying: it is reset and the reader stops
                log.debug("reply on %s to %s failed: %r", pid, peer, exc)
            finally:
                in_flight -= 1

        def cap(kind: Kind, request_id: int) -> int:
            if kind != Kind.REQUEST:
                raise ProtocolViolation(f"server got a {kind.name} frame")
            return spec.max_request

        async with trio.open_nursery() as nursery:
            try:
                while True:
                    kind, request_id, data, size = await reader.next(cap)
                    self.metrics.bytes_in[pid] += size + HEADER
                    self.metrics.requests_in[pid] += 1
                    if data is None:
                        self.metrics.reject(f"{pid}:request_too_large")
                        await reply(
                            request_id,
                            Kind.ERROR,
                            error_payload(ErrorCode.TOO_LARGE, f"request of {size} bytes over cap {spec.max_request}"),
                        )
                        continue
                    if in_flight >= spec.max_in_flight:
                        self.metrics.drop(f"{pid}:in_flight", "requests")
                        await reply(request_id, Kind.ERROR, error_payload(ErrorCode.BUSY, "too many in flight"))
                        continue
                    in_flight += 1
                    nursery.start_soon(answer, request_id, data)
            except ProtocolViolation as exc:
                self._violation(peer, pid, reader, exc)
            except (EOFError, Exception) as exc:
                log.debug("inbound %s stream from %s closed: %r", pid, peer, exc)
            nursery.cancel_scope.cancel()

    async def _serve_one_way(self, spec: ProtocolSpec, stream: Any) -> None:
        """Handle a one-way stream's messages in order, one at a time, answering none: a slow handler stops
        our reads and the sender's writes wait on the yamux window, so nothing queues here."""
        peer: ID = stream.muxed_conn.peer_id
        reader = FrameReader(stream)
        handler = self._handlers[spec.protocol_id]
        pid = spec.protocol_id

        def cap(kind: Kind, request_id: int) -> int:
            if kind != Kind.MESSAGE:
                raise ProtocolViolation(f"one-way stream got a {kind.name} frame")
            return spec.max_request

        try:
            while True:
                _kind, _id, data, size = await reader.next(cap)
                self.metrics.bytes_in[pid] += size + HEADER
                self.metrics.requests_in[pid] += 1
                if data is None:  # skipped unread; there is no answer to refuse it with, so it is charged
                    self.metrics.reject(f"{pid}:request_too_large")
                    self._charge(peer, pid, "oversize")
                    continue
                await self._handle(spec, handler, peer, data)  # charges a refusal or a handler failure
        except ProtocolViolation as exc:
            self._violation(peer, pid, reader, exc)
        except (EOFError, Exception) as exc:
            log.debug("inbound %s stream from %s closed: %r", pid, peer, exc)

    async def _handle(self, spec: ProtocolSpec, handler: Handler, peer: ID, data: bytes) -> tuple[Kind, bytes]:
        """Run the handler under the server deadline; its outcome as the frame to send, charged to its cause."""
        pid = spec.protocol_id
        try:
            with trio.fail_after(spec.server_timeout):
                response = await handler(peer, data)
        except Refused as exc:
            self.metrics.request_errors[f"{pid}:refused"] += 1
            if exc.penalty is not None:
                self._charge(peer, pid, exc.penalty)
            return Kind.ERROR, error_payload(ErrorCode.REFUSED, str(exc))
        except trio.TooSlowError:
            self.metrics.request_errors[f"{pid}:server_timeout"] += 1
            return Kind.ERROR, error_payload(ErrorCode.TIMEOUT, "handler deadline")
        except Exception as exc:  # the handler's bug is the caller's ERROR frame, not a dead host
            self.metrics.request_errors[f"{pid}:handler"] += 1
            self._charge(peer, pid, "handler_error")
            if self._log_limiter.allow(str(peer)):
                log.warning("handler of %s failed for %s: %r (more within 60 s: only counted)", pid, peer, exc)
            return Kind.ERROR, error_payload(ErrorCode.HANDLER, type(exc).__name__)
        if len(response) > spec.max_response:
            self.metrics.request_errors[f"{pid}:response_over_cap"] += 1
            if self._log_limiter.allow(pid):
                log.warning("handler of %s returned %d bytes > cap %d", pid, len(response), spec.max_response)
            return Kind.ERROR, error_payload(ErrorCode.HANDLER, "response over cap")
        return Kind.RESPONSE, response

    def _charge(self, peer: ID, pid: str, reason: str) -> None:
        """Lower `peer`'s score for `reason` on the host's limiter (a bare libp2p host has none)."""
        self.metrics.charges[f"{pid}:{reason}"] += 1
        limiter = getattr(self.host, "limiter", None)
        if limiter is not None:
            limiter.penalize(str(peer), reason)

    def _violation(self, peer: ID, pid: str, reader: FrameReader, exc: ProtocolViolation) -> None:
        """A bad frame resets its stream; only a stream bad from its first frame is the peer's fault."""
        if reader.frames:  # after good frames: the stream broke (a write cut off midway), not an attack
            self.metrics.reject(f"corrupt_midstream:{pid}")
            log.info("resetting %s stream with %s, corrupt after %d good frames: %s", pid, peer, reader.frames, exc)
            return
        self.metrics.reject(f"{pid}:violation")
        self._charge(peer, pid, "malformed")
        log.info("resetting %s stream with %s: %s", pid, peer, exc)

    # --- client -------------------------------------------------------------------------------

    async def request(
        self,
        peer: ID,
        protocol_id: str,
        data: bytes,
        *,
        timeout: float | None = None,
        max_response: int | None = None,
    ) -> bytes:
        """Send one request on the persistent stream to `peer` and wait for its answer.

        The deadline (`timeout`, else the protocol's) grows by the request's transfer time at
        `MIN_LINK_RATE`, and once the response's header arrives, by the response's. A write that is
        cut off (deadline, cancelled caller) resets the stream, failing its other requests with PeerGone.
        Raises RequestTooLarge, RequestTimeout, ResponseTooLarge, RemoteError or PeerGone.
        """
        spec = self._spec(protocol_id, data, one_way=False)
        cap = spec.max_response if max_response is None else min(max_response, spec.max_response)
        pid = protocol_id
        with self._counted(pid, peer, "request got no answer in time"):
            seconds = (spec.timeout if timeout is None else timeout) + transfer_time(HEADER + len(data))
            with trio.fail_after(seconds) as scope:
                out = await self._outbound_for(peer, spec)
                request_id = next(out.ids) & 0xFFFFFFFF
                send, receive = trio.open_memory_channel[tuple[Kind, bytes | None, int]](1)
                out.pending[request_id] = _Pending(cap, send, scope)
                try:
                    await self._write(out, encode_frame(Kind.REQUEST, request_id, data))
                    kind, payload, size = await receive.receive()
                finally:
                    out.pending.pop(request_id, None)
        if kind == Kind.ERROR and size < 0:
            self.metrics.request_errors[f"{pid}:peer_gone"] += 1
            raise PeerGone(f"{pid} stream to {peer} closed before the answer")
        if payload is None:
            self.metrics.request_errors[f"{pid}:response_too_large"] += 1
            raise ResponseTooLarge(f"{pid} response of {size} bytes from {peer} is over the {cap}-byte cap")
        if kind == Kind.ERROR:
            code = payload[0] if payload else 0
            self.metrics.request_errors[f"{pid}:remote"] += 1
            raise RemoteError(code, payload[1:].decode("utf-8", "replace"))
        return payload

    async def send(self, peer: ID, protocol_id: str, data: bytes, *, timeout: float | None = None) -> None:
        """Send one message of a one-way protocol on the persistent stream to `peer`; nothing comes back.

        Returns once the frame is written whole, within `timeout` (else the protocol's) plus its transfer time;
        the receiver's verdict is not reported (it charges a bad message to us). At most the spec's
        `max_in_flight` messages per peer wait for the writer: beyond that one is dropped (`Backlogged`), so a
        peer that cannot keep up costs a bounded queue. Raises RequestTooLarge, Backlogged, RequestTimeout
        or PeerGone.
        """
        spec = self._spec(protocol_id, data, one_way=True)
        frame = encode_frame(Kind.MESSAGE, 0, data)
        with self._counted(protocol_id, peer, "message not written in time"):
            with trio.fail_after((spec.timeout if timeout is None else timeout) + transfer_time(len(frame))):
                out = await self._outbound_for(peer, spec)
                if out.waiting >= spec.max_in_flight:
                    raise Backlogged(f"{spec.max_in_flight} {protocol_id} messages already wait for {peer}")
                out.waiting += 1
                try:
                    await self._write(out, frame)
                finally:
                    out.waiting -= 1

    def _spec(self, protocol_id: str, data: bytes, *, one_way: bool) -> ProtocolSpec:
        """The registered spec of `protocol_id`, checked against the call (`request` or `send`) and its size cap."""
        spec = self.specs.get(protocol_id)
        if spec is None:
            raise RequestError(f"protocol {protocol_id} is not registered")
        if spec.one_way != one_way:
            raise RequestError(f"{protocol_id} is {'one-way: use send' if spec.one_way else 'request/response'}")
        if len(data) > spec.max_request:
            raise RequestTooLarge(f"request of {len(data)} bytes over the {spec.max_request}-byte cap of {protocol_id}")
        return spec

    @contextmanager
    def _counted(self, pid: str, peer: ID, late: str) -> Iterator[None]:
        """Count a failed request or message by cause; a missed deadline becomes `RequestTimeout` saying `late`."""
        try:
            yield
        except trio.TooSlowError as exc:
            self.metrics.request_errors[f"{pid}:timeout"] += 1
            raise RequestTimeout(f"{pid} to {peer}: {late}") from exc
        except RequestError as exc:
            self.metrics.request_errors[f"{pid}:{type(exc).__name__}"] += 1
            raise

    async def _write(self, out: _Outbound, frame: bytes) -> None:
        """Write one frame whole under the stream's lock; a write cut off resets the stream (its requests fail)."""
        pid = out.spec.protocol_id
        async with out.write_lock:
            try:
                await write_frame(out.stream, frame)
            except BaseException as exc:  # the stream is reset: its other requests fail now
                self._forget(out)
                if isinstance(exc, Exception) and not isinstance(exc, trio.TooSlowError):
                    raise PeerGone(f"{pid} stream to {out.peer} failed on write: {exc!r}") from exc
                raise
        self.metrics.requests_out[pid] += 1
        self.metrics.bytes_out[pid] += len(frame)

    async def _outbound_for(self, peer: ID, spec: ProtocolSpec) -> _Outbound:
        key = (peer, spec.protocol_id)
        out = self._outbound.get(key)
        if out is not None and not out.closed:
            return out
        lock = self._open_locks.setdefault(key, trio.Lock())
        async with lock:
            out = self._outbound.get(key)
            if out is not None and not out.closed:
                return out
            if self._nursery is None:
                raise PeerGone("reqresp is not running")
            try:
                with trio.fail_after(self.open_timeout):
                    stream = await self.host.new_stream(peer, [spec.protocol_id])
            except trio.TooSlowError as exc:
                raise PeerGone(f"opening {spec.protocol_id} to {peer} timed out") from exc
            except trio.Cancelled:
                raise
            except Exception as exc:
                raise PeerGone(f"cannot open {spec.protocol_id} to {peer}: {exc}") from exc
            out = _Outbound(peer, spec, stream)
            self._outbound[key] = out
            self._nursery.start_soon(self._read_responses, out)
            return out

    def _forget(self, out: _Outbound) -> None:
        out.fail_all()
        key = (out.peer, out.spec.protocol_id)
        if self._outbound.get(key) is out:
            del self._outbound[key]

    async def _read_responses(self, out: _Outbound) -> None:
        reader = FrameReader(out.stream)
        pid = out.spec.protocol_id
        try:
            while True:
                kind, request_id, payload, size = await reader.next(out.cap, out.arriving)
                self.metrics.bytes_in[pid] += size + HEADER
                pending = out.pending.pop(request_id, None)
                if pending is None:
                    continue  # the caller gave up (deadline) before the answer came: not an error
                pending.send.send_nowait((kind, payload, size))
        except ProtocolViolation as exc:
            self._violation(out.peer, pid, reader, exc)
        except (EOFError, Exception) as exc:
            log.debug("outbound %s stream to %s ended: %r", pid, out.peer, exc)
        finally:
            self._forget(out)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await _reset(out.stream)

    def close_peer(self, peer: ID) -> None:
        """Fail the requests to a disconnected peer now instead of at their deadlines."""
        for key, out in list(self._outbound.items()):
            if key[0] == peer:
                self._forget(out)
                if self._nursery is not None:
                    self._nursery.start_soon(_reset, out.stream)

    def outbound_streams(self, peer: ID) -> int:
        return sum(1 for key, out in self._outbound.items() if key[0] == peer and not out.closed)


async def _reset(stream: Any) -> None:
    try:
        await stream.reset()
    except Exception:  # already closed or reset: nothing to release
        pass


def spec_for(chain_id: str, name: str, max_request: int, max_response: int, **kw: Any) -> ProtocolSpec:
    """The `/tensornet/<chain_id>/<name>/1` protocol with its limits."""
    if not chain_id or "/" in chain_id or not name or "/" in name:
        raise P2PError(f"bad protocol name parts: chain {chain_id!r}, name {name!r}")
    return ProtocolSpec(f"/tensornet/{chain_id}/{name}/1", max_request, max_response, **kw)


__all__ = [
    "Backlogged",
    "ErrorCode",
    "Handler",
    "PeerGone",
    "ProtocolSpec",
    "ProtocolViolation",
    "Refused",
    "RemoteError",
    "ReqResp",
    "RequestError",
    "RequestTimeout",
    "RequestTooLarge",
    "ResponseTooLarge",
    "encode_frame",
    "spec_for",
    "write_frame",
]
