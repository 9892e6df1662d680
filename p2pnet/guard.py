"""Size caps and read deadlines on every inbound stream, enforced by the host in one place.

`Host.set_stream_handler` hands each protocol handler a `GuardedStream` instead of the raw libp2p
stream. The guard watches the bytes the handler reads and applies the host's `Limits`, whatever the
handler does with them:

* Framed protocols (every tensornet protocol: `uvarint(len) || body` frames, the default): a frame
  longer than the protocol's cap is refused from its length prefix (`MessageTooLarge`, "oversize"); a
  length prefix that is not a minimal varint of at most 10 bytes is `MalformedFrame` ("malformed"); a
  frame must arrive in full within `Limits.read_deadline` of its first byte plus `transfer_time(length)`
  (its length at `MIN_LINK_RATE`, so a big frame on a slow link is not misbehaviour), and the first frame
  within that of the stream opening (`ReadTimeout`, "read_timeout"), so a peer that opens a stream and
  sends nothing, or dribbles a frame byte by byte, is cut off. Between frames a persistent stream may
  stay quiet for `Limits.stream_idle_timeout`; then it is closed (`StreamIdle`, no penalty: a quiet
  client is not misbehaving).
* A malformed or oversize length prefix AFTER at least one well-formed frame on the stream is
  `CorruptStream` ("corrupt_midstream"): the stream is reset but the peer is not charged. An honest peer
  whose write was cut off midway produces exactly this, and charging it got honest validators banned;
  a peer whose very first frame is malformed is charged as above.
* Raw protocols (`framed=False`): all bytes the stream carries count against the cap, and each read
  must get data within `read_deadline`.

A violation is charged to the peer's score (and counted in `PeerLimiter.violations` and in
`PeerLimiter.rejects["<reason>:<protocol>"]`) the moment the guard raises it, even if the handler
catches the error itself; the host then resets the stream. Only waiting reads are timed: bytes that
already arrived are never refused because the handler was slow to read them.
"""

from __future__ import annotations

from typing import Any, NoReturn

import trio

from p2pnet.errors import LimitExceeded, MessageTooLarge, ReadTimeout
from p2pnet.framing import parse_uvarint
from p2pnet.limits import PeerLimiter

GRACE = 0.01  # seconds a read may still take once its deadline has passed (only buffered bytes make it)
MIN_LINK_RATE = 256 * 1024  # bytes/s: the slowest link we serve; a frame gets its length / this on top of deadlines


def transfer_time(size: int) -> float:
    """Seconds `size` bytes may take on the slowest link we serve (`MIN_LINK_RATE`)."""
    return size / MIN_LINK_RATE


class StreamIdle(LimitExceeded):
    """A persistent stream that carried no frame for `Limits.stream_idle_timeout`; closed, not penalised."""

    def __init__(self, seconds: float) -> None:
        super().__init__("idle_stream", f"no frame for {seconds:g} s")


class CorruptStream(LimitExceeded):
    """A bad frame after good ones: a write cut off midway (the stream broke), reset without a penalty."""

    def __init__(self, cause: LimitExceeded) -> None:
        super().__init__("corrupt_midstream", f"after good frames: {cause}")


class GuardedStream:
    """A libp2p stream as a handler sees it: reads capped and deadlined; everything else passes through."""

    def __init__(
        self,
        stream: Any,
        protocol: str,
        peer: str,
        limiter: PeerLimiter,
        *,
        cap: int,
        framed: bool = True,
    ) -> None:
        self._stream = stream
        self.protocol = protocol
        self.peer = peer
        self.limiter = limiter
        self.cap = cap
        self.framed = framed
        self.violation: LimitExceeded | None = None  # what the guard refused (already charged)
        limits = limiter.limits
        self._read_deadline = limits.read_deadline
        self._idle_timeout = limits.stream_idle_timeout
        now = trio.current_time()
        self._frame_deadline: float | None = now + self._read_deadline  # the first frame is owed now
        self._idle_since = now
        self._prefix = bytearray()
        self._remaining = 0  # body bytes of the current frame not read yet
        self._total = 0  # raw mode: bytes read so far
        self._frames = 0  # complete frames seen: a bad frame after one is a broken stream, not a bad peer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    @property
    def raw(self) -> Any:
        return self._stream

    async def read(self, n: int | None = None) -> bytes:
        if self.violation is not None:
            raise self.violation
        now = trio.current_time()
        if not self.framed:
            deadline, owed = now + self._read_deadline, True
        elif self._frame_deadline is not None:
            deadline, owed = self._frame_deadline, True
        else:
            deadline, owed = self._idle_since + self._idle_timeout, False
        try:
            with trio.fail_at(max(deadline, now + GRACE)):
                data = await self._stream.read(n)
        except trio.TooSlowError:
            if owed:
                self._refuse(ReadTimeout(self._read_deadline, f"a frame on {self.protocol}"))
            self._refuse(StreamIdle(self._idle_timeout), charge=False)
        if self.framed:
            self._observe(data)
        else:
            self._total += len(data)
            if self._total > self.cap:
                self._refuse(MessageTooLarge(self._total, self.cap, self.protocol))
        return data

    def _observe(self, data: bytes) -> None:
        """Follow the frame boundaries in `data`; refuse an oversize or malformed length prefix."""
        i, size = 0, len(data)
        while i < size:
            if self._remaining:
                step = min(self._remaining, size - i)
                self._remaining -= step
                i += step
                if not self._remaining:
                    self._frame_done()
                continue
            if not self._prefix and self._frame_deadline is None:
                self._frame_deadline = trio.current_time() + self._read_deadline
            self._prefix.append(data[i])
            i += 1
            try:
                head = parse_uvarint(self._prefix)
            except LimitExceeded as exc:
                self._refuse_frame(exc)
            if head is None:
                continue
            self._prefix.clear()
            if head[0] > self.cap:
                self._refuse_frame(MessageTooLarge(head[0], self.cap, self.protocol))
            self._remaining = head[0]
            if self._frame_deadline is not None:
                self._frame_deadline += transfer_time(head[0])
            if not self._remaining:
                self._frame_done()

    def _frame_done(self) -> None:
        self._frames += 1
        self._frame_deadline = None
        self._idle_since = trio.current_time()

    def _refuse_frame(self, exc: LimitExceeded) -> NoReturn:
        """Refuse a bad length prefix: charged on a stream's first frame, not after good ones (see module doc)."""
        if self._frames:
            self._refuse(CorruptStream(exc), charge=False)
        self._refuse(exc)

    def _refuse(self, exc: LimitExceeded, charge: bool = True) -> NoReturn:
        self.violation = exc
        self.limiter.rejects[f"{exc.reason}:{self.protocol}"] += 1
        if charge:
            self.limiter.penalize(self.peer, exc.reason)
        raise exc
