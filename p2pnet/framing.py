"""uvarint-length-prefixed frames read from a libp2p stream, with a size cap and a per-frame deadline.

Every tensornet protocol (and libp2p's /meshsub) frames messages as `uvarint(len) || bytes`. This
reader takes them from a stream in large chunks (libp2p's own helper reads the prefix one byte at a
time, one muxer read per byte), checks the length against a cap before reading the body, and gives a
frame that has started `deadline` seconds to arrive in full. Between frames it waits as long as the
caller wants (persistent streams may be quiet). Failures are typed: `MessageTooLarge`, `ReadTimeout`,
`MalformedFrame` (all `LimitExceeded`, whose `reason` is the peer-score penalty), and `EOFError` for a
stream that ended or broke, which is the peer leaving rather than misbehaving.
"""

from __future__ import annotations

from typing import Any

import trio

from p2pnet.errors import MalformedFrame, MessageTooLarge, ReadTimeout

MAX_VARINT = 10
READ_CHUNK = 64 * 1024


def parse_uvarint(buf: bytes | bytearray) -> tuple[int, int] | None:
    """(value, bytes used) of the uvarint at the start of `buf`; None if it is not complete yet."""
    value = 0
    for i, byte in enumerate(buf[:MAX_VARINT]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i > 0 and byte == 0:
                raise MalformedFrame("non-minimal varint length prefix")
            return value, i + 1
    if len(buf) >= MAX_VARINT:
        raise MalformedFrame("varint length prefix longer than 10 bytes")
    return None


class VarintFrameReader:
    """Frames from `stream`: `await reader.next()` returns the next frame's body."""

    def __init__(self, stream: Any, cap: int, deadline: float, protocol: str = "") -> None:
        self._stream = stream
        self._buf = bytearray()
        self.cap = cap
        self.deadline = deadline
        self.protocol = protocol

    async def _fill(self, until: float | None) -> None:
        try:
            if until is None:
                chunk = await self._stream.read(READ_CHUNK)
            else:
                with trio.fail_at(until):
                    chunk = await self._stream.read(READ_CHUNK)
        except trio.TooSlowError:
            raise ReadTimeout(self.deadline, f"a frame on {self.protocol or 'the stream'}") from None
        except (trio.Cancelled, MemoryError):
            raise
        except Exception as exc:  # reset, closed connection: the peer left
            raise EOFError(f"stream ended: {exc!r}") from exc
        if not chunk:
            raise EOFError("stream ended")
        self._buf += chunk

    async def next(self) -> bytes:
        until = None if not self._buf else trio.current_time() + self.deadline
        while True:
            head = parse_uvarint(self._buf)
            if head is not None:
                break
            await self._fill(until)
            if until is None:
                until = trio.current_time() + self.deadline  # the frame has started
        length, used = head
        if length > self.cap:
            raise MessageTooLarge(length, self.cap, self.protocol)
        while len(self._buf) < used + length:
            await self._fill(until)
        body = bytes(self._buf[used : used + length])
        del self._buf[: used + length]
        return body
