"""The one canonical CBOR codec (RFC 8949 §4.2.1 deterministic encoding).

Every byte that crosses the network or feeds a signature or digest goes through `encode` and
`decode`. cbor2's own decoder accepts non-canonical heads, indefinite lengths, tags, duplicate
keys and trailing bytes, and allocates from attacker-claimed lengths, so the strict decoder is
ours: it checks the size before it parses, caps depth and container lengths, and raises a typed
`protocol.errors.DecodeError` that says what was wrong and at which byte.

Supported data model: unsigned/negative integers in [-2**64, 2**64 - 1], byte strings, UTF-8 text,
arrays (decoded as lists, encoded from lists or tuples), maps with int, text or bytes keys, false,
true, null, and (only when `allow_floats=True`) floats in their shortest exact form.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from protocol.errors import (
    DecodeError,
    DuplicateKeyError,
    IndefiniteLengthError,
    InvalidUtf8Error,
    LimitError,
    NonCanonicalError,
    OversizeError,
    TrailingBytesError,
    TruncatedError,
    UnsortedKeysError,
    UnsupportedTypeError,
)

MAX_SIZE = 1 << 20  # default cap on one encoded message (1 MiB)
MAX_DEPTH = 32
MAX_ITEMS = 1 << 16  # per array or map
_UINT64_MAX = (1 << 64) - 1

__all__ = ["encode", "decode", "encode_into", "MAX_SIZE", "MAX_DEPTH", "MAX_ITEMS"]


# --- encoding ----------------------------------------------------------------------------------

# Heads are the hot path of both directions; precomputed one-byte heads and struct packers keep them cheap.
_SMALL_HEADS = tuple(tuple(bytes((major << 5 | ai,)) for ai in range(24)) for major in range(8))
_PACK_1 = struct.Struct(">BB").pack
_PACK_2 = struct.Struct(">BH").pack
_PACK_4 = struct.Struct(">BI").pack
_PACK_8 = struct.Struct(">BQ").pack


def _head(major: int, arg: int) -> bytes:
    """Shortest head for a major type and argument (the core of deterministic encoding)."""
    if arg < 24:
        return _SMALL_HEADS[major][arg]
    mt = major << 5
    if arg < 0x100:
        return _PACK_1(mt | 24, arg)
    if arg < 0x10000:
        return _PACK_2(mt | 25, arg)
    if arg < 0x100000000:
        return _PACK_4(mt | 26, arg)
    return _PACK_8(mt | 27, arg)


def _encode_float(value: float) -> bytes:
    """Shortest of half, single and double precision that holds the value exactly."""
    if math.isnan(value):
        return b"\xf9\x7e\x00"
    for fmt, ai in (("e", 25), ("f", 26)):
        try:
            packed = struct.pack(">" + fmt, value)
        except OverflowError:
            continue
        if struct.unpack(">" + fmt, packed)[0] == value:
            return bytes((0xE0 | ai,)) + packed
    return b"\xfb" + struct.pack(">d", value)


def encode_int(out: bytearray, obj: int) -> None:
    """Append an integer; refuse anything outside the 64-bit range (bignums are tags, and tags are out)."""
    if obj >= 0:
        if obj < 24:
            out.append(obj)
        elif obj > _UINT64_MAX:
            raise UnsupportedTypeError(f"integer {obj} does not fit in 64 bits (bignums are not allowed)")
        else:
            out += _head(0, obj)
    elif obj < -(1 << 64):
        raise UnsupportedTypeError(f"integer {obj} does not fit in 64 bits (bignums are not allowed)")
    else:
        out += _head(1, -1 - obj)


def encode_text(out: bytearray, obj: str) -> None:
    try:
        raw = obj.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidUtf8Error(f"text cannot be encoded as UTF-8: {exc.reason}") from None
    out += _head(3, len(raw))
    out += raw


def encode_into(out: bytearray, obj: Any, allow_floats: bool = False, depth: int = 0) -> None:
    """Append the encoding of `obj` (nested `depth` containers deep) to `out`; schema.py builds on this."""
    t = type(obj)
    if t is int:
        encode_int(out, obj)
    elif t is bytes or t is bytearray or t is memoryview:
        out += _head(2, len(obj))
        out += obj
    elif t is str:
        encode_text(out, obj)
    elif t is list or t is tuple:
        if depth >= MAX_DEPTH:
            raise LimitError(f"value nests deeper than {MAX_DEPTH} containers (or is cyclic)")
        out += _head(4, len(obj))
        for item in obj:
            if type(item) is int and 0 <= item < 0x10000:  # inline: weight vectors are lists of u16
                if item < 24:
                    out.append(item)
                elif item < 0x100:
                    out += _PACK_1(0x18, item)
                else:
                    out += _PACK_2(0x19, item)
            else:
                encode_into(out, item, allow_floats, depth + 1)
    elif t is dict:
        if depth >= MAX_DEPTH:
            raise LimitError(f"value nests deeper than {MAX_DEPTH} containers (or is cyclic)")
        pairs = []
        for key, val in obj.items():
            kt = type(key)
            if kt is str:
                kb = bytearray()
                encode_text(kb, key)
            elif kt is int:
                kb = bytearray()
                encode_int(kb, key)
            elif kt is bytes:
                kb = _head(2, len(key)) + key
            else:
                raise UnsupportedTypeError(f"map key {key!r} must be an int, text or bytes")
            pairs.append((bytes(kb), val))
        pairs.sort(key=_first)
        out += _head(5, len(pairs))
        for kb, val in pairs:
            out += kb
            encode_into(out, val, allow_floats, depth + 1)
    elif obj is None:
        out.append(0xF6)
    elif obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    elif t is float:
        if not allow_floats:
            raise UnsupportedTypeError("floats are not allowed here (consensus data is integer-only)")
        out += _encode_float(obj)
    elif isinstance(obj, int):  # IntEnum and friends encode as their integer value
        encode_int(out, int(obj))
    else:
        raise UnsupportedTypeError(f"cannot encode a value of type {t.__name__}")


def _first(pair: tuple[bytes, Any]) -> bytes:
    return pair[0]


def encode(obj: Any, *, allow_floats: bool = False) -> bytes:
    """Deterministic CBOR encoding of `obj`; map keys sorted bytewise by their encodings."""
    out = bytearray()
    encode_into(out, obj, allow_floats)
    return bytes(out)


# --- decoding ----------------------------------------------------------------------------------

_MIN_FOR_AI = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}
_LEN_FOR_AI = {24: 1, 25: 2, 26: 4, 27: 8}
_MAJOR_NAMES = {2: "byte string", 3: "text string", 4: "array", 5: "map"}
_MISS = object()  # "the inline fast path did not take this item"


class _Decoder:
    """Recursive-descent decoder over one buffer; `item` returns (value, next offset).

    The array and map loops inline the commonest items (integers below 2**16, byte strings shorter than 256,
    short text keys) and fall back to `item` for everything else, including any inline candidate that is not
    canonical or runs past the end, so that `item` raises the error; the fast path only ever accepts what `item`
    would accept.
    """

    __slots__ = ("data", "n", "max_depth", "max_items", "allow_floats")

    def __init__(self, data: bytes, max_depth: int, max_items: int, allow_floats: bool) -> None:
        self.data = data
        self.n = len(data)
        self.max_depth = max_depth
        self.max_items = max_items
        self.allow_floats = allow_floats

    def item(self, pos: int, depth: int) -> tuple[Any, int]:
        """One item from `pos`: its head, then its body (arrays and maps recursively).

        Long on purpose: this is the decoder's hot loop, so the head, the containers and their inline fast
        paths stay in one frame; each extra call per item or container costs a few percent of
        `python -m bench.codec`'s decode rate (measured: moving arrays and maps into their own methods made it
        about 2% slower)."""
        data = self.data
        n = self.n
        if pos >= n:
            raise TruncatedError("input ends where an item should start", pos)
        start = pos
        ib = data[pos]
        if ib < 24:
            return ib, pos + 1
        major = ib >> 5
        ai = ib & 0x1F
        pos += 1
        if major == 7:
            return self._simple_or_float(start, ai)
        if ai < 24:
            arg = ai
        elif ai < 28:
            size = _LEN_FOR_AI[ai]
            end = pos + size
            if end > n:
                raise TruncatedError("input ends inside an item head", start)
            arg = int.from_bytes(data[pos:end], "big")
            if arg < _MIN_FOR_AI[ai]:
                raise NonCanonicalError(f"argument {arg} is not encoded in its shortest form", start)
            pos = end
        elif ai == 31:
            if major in _MAJOR_NAMES:
                raise IndefiniteLengthError(f"indefinite-length {_MAJOR_NAMES[major]}", start)
            raise DecodeError(f"malformed head 0x{ib:02x} (indefinite length on major type {major})", start)
        else:
            raise DecodeError(f"malformed head 0x{ib:02x} (reserved additional info {ai})", start)

        if major == 0:
            return arg, pos
        if major == 1:
            return -1 - arg, pos
        if major == 2 or major == 3:
            end = pos + arg
            if end > n:
                raise TruncatedError(f"{_MAJOR_NAMES[major]} of length {arg} runs past the end", start)
            if major == 2:
                return data[pos:end], end
            try:
                return data[pos:end].decode("utf-8"), end
            except UnicodeDecodeError as exc:
                raise InvalidUtf8Error(f"text string is not valid UTF-8: {exc.reason}", start) from None
        if major == 6:
            raise UnsupportedTypeError(f"tag {arg} is not allowed", start)
        # arrays and maps
        if depth >= self.max_depth:
            raise LimitError(f"nesting deeper than {self.max_depth}", start)
        if arg > self.max_items:
            raise LimitError(f"{_MAJOR_NAMES[major]} of {arg} entries exceeds the cap of {self.max_items}", start)
        # Each entry takes at least one byte: refuse impossible claims before allocating anything.
        if arg * (1 if major == 4 else 2) > n - pos:
            raise TruncatedError(f"{_MAJOR_NAMES[major]} claims {arg} entries but the input is too short", start)
        depth += 1
        item = self.item
        if major == 4:
            items = []
            append = items.append
            for _ in range(arg):
                value = _MISS
                if pos < n:
                    b = data[pos]
                    if b < 24:
                        value = b
                        pos += 1
                    elif b == 0x19:  # uint16: weights, uids, netuids
                        if pos + 3 <= n:
                            x = data[pos + 1] << 8 | data[pos + 2]
                            if x >= 0x100:
                                value = x
                                pos += 3
                    elif b == 0x18:
                        if pos + 2 <= n and data[pos + 1] >= 24:
                            value = data[pos + 1]
                            pos += 2
                    elif b == 0x58:  # bytes of 24-255: keys, digests, signatures, small payloads
                        if pos + 2 <= n:
                            x = data[pos + 1]
                            end = pos + 2 + x
                            if x >= 24 and end <= n:
                                value = data[pos + 2 : end]
                                pos = end
                    elif 0x40 <= b < 0x58:
                        end = pos + 1 + b - 0x40
                        if end <= n:
                            value = data[pos + 1 : end]
                            pos = end
                if value is _MISS:
                    value, pos = item(pos, depth)
                append(value)
            return items, pos
        result: dict[Any, Any] = {}
        prev_key = b""
        for i in range(arg):
            kstart = pos
            b = data[pos] if pos < n else 0xFF
            if 0x60 <= b < 0x78:  # short text key: field names
                pos += 1 + b - 0x60
                if pos > n:
                    raise TruncatedError(f"text string of length {b - 0x60} runs past the end", kstart)
                try:
                    key: Any = data[kstart + 1 : pos].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InvalidUtf8Error(f"text string is not valid UTF-8: {exc.reason}", kstart) from None
            else:
                key, pos = item(pos, depth)
                if type(key) not in (int, str, bytes):
                    raise UnsupportedTypeError("map key must be an int, text or bytes", kstart)
            kbytes = data[kstart:pos]
            if i and kbytes <= prev_key:
                if kbytes == prev_key:
                    raise DuplicateKeyError(f"duplicate map key {key!r}", kstart)
                raise UnsortedKeysError(f"map key {key!r} is out of canonical order", kstart)
            prev_key = kbytes
            value = _MISS
            if pos < n:
                b = data[pos]
                if b < 24:
                    value = b
                    pos += 1
                elif b == 0x19:  # uint16: weights, uids, netuids
                    if pos + 3 <= n:
                        x = data[pos + 1] << 8 | data[pos + 2]
                        if x >= 0x100:
                            value = x
                            pos += 3
                elif b == 0x18:
                    if pos + 2 <= n and data[pos + 1] >= 24:
                        value = data[pos + 1]
                        pos += 2
                elif b == 0x58:  # bytes of 24-255: keys, digests, signatures, small payloads
                    if pos + 2 <= n:
                        x = data[pos + 1]
                        end = pos + 2 + x
                        if x >= 24 and end <= n:
                            value = data[pos + 2 : end]
                            pos = end
                elif 0x40 <= b < 0x58:
                    end = pos + 1 + b - 0x40
                    if end <= n:
                        value = data[pos + 1 : end]
                        pos = end
            if value is _MISS:
                value, pos = item(pos, depth)
            result[key] = value
        return result, pos

    def _simple_or_float(self, start: int, ai: int) -> tuple[Any, int]:
        if ai == 20:
            return False, start + 1
        if ai == 21:
            return True, start + 1
        if ai == 22:
            return None, start + 1
        if ai == 23:
            raise UnsupportedTypeError("undefined is not allowed", start)
        if ai in (25, 26, 27):
            if not self.allow_floats:
                raise UnsupportedTypeError("floats are not allowed here (consensus data is integer-only)", start)
            size = _LEN_FOR_AI[ai]
            end = start + 1 + size
            if end > self.n:
                raise TruncatedError("input ends inside a float", start)
            value = struct.unpack(">" + "efd"[ai - 25], self.data[start + 1 : end])[0]
            if _encode_float(value) != self.data[start:end]:
                raise NonCanonicalError("float is not in its shortest exact form", start)
            return value, end
        if ai == 31:
            raise DecodeError("unexpected break code outside an indefinite-length item", start)
        if ai in (28, 29, 30):
            raise DecodeError(f"malformed head 0x{0xE0 | ai:02x} (reserved additional info {ai})", start)
        raise UnsupportedTypeError("simple values other than false, true and null are not allowed", start)


def decode(
    data: bytes,
    *,
    max_size: int = MAX_SIZE,
    max_depth: int = MAX_DEPTH,
    max_items: int = MAX_ITEMS,
    allow_floats: bool = False,
) -> Any:
    """Decode exactly one canonical CBOR item, or raise a typed `DecodeError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    size = data.nbytes if type(data) is memoryview else len(data)
    if size > max_size:
        raise OversizeError(f"message of {size} bytes exceeds the cap of {max_size}")
    if size == 0:
        raise TruncatedError("empty input", 0)
    raw = bytes(data)
    try:
        value, pos = _Decoder(raw, max_depth, max_items, allow_floats).item(0, 0)
    except RecursionError:  # only reachable when a caller raises max_depth past Python's stack
        raise LimitError(f"nesting too deep for max_depth={max_depth}") from None
    if pos != len(raw):
        raise TrailingBytesError(f"{len(raw) - pos} bytes after the end of the item", pos)
    return value
