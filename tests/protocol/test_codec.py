"""The one canonical CBOR codec: RFC 8949 Appendix A vectors, every rejection, limits and round trips."""

from __future__ import annotations

import ast
import json
import math
import struct
import tracemalloc
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.errors import (
    DecodeError,
    DuplicateKeyError,
    IndefiniteLengthError,
    InvalidUtf8Error,
    LimitError,
    NonCanonicalError,
    OversizeError,
    ProtocolError,
    TrailingBytesError,
    TruncatedError,
    UnsortedKeysError,
    UnsupportedTypeError,
)
from protocol.testing.wire_strategies import cbor_values

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "spec/vectors/cbor-rfc-appendix-a.json").read_text())


def _rejects(data: bytes, exc: type[DecodeError], offset: int | None, **kw) -> DecodeError:
    """Decode must raise exactly-or-a-subclass-of `exc`, reporting `offset` in both attribute and message."""
    with pytest.raises(exc) as info:
        codec.decode(data, **kw)
    err = info.value
    assert err.offset == offset, (data.hex(), err)
    if offset is not None:
        assert f"at byte {offset}" in str(err)
    return err


# --- RFC 8949 Appendix A ---------------------------------------------------------------------


def _category(v: dict) -> str:
    first = bytes.fromhex(v["hex"])[0]
    if first >> 5 == 6:
        return "tag"
    if first in (0xF9, 0xFA, 0xFB):
        return "float"
    if first == 0xF7:
        return "undefined"
    if first >> 5 == 7 and first not in (0xF4, 0xF5, 0xF6):
        return "simple"
    if not v["roundtrip"]:
        return "indefinite"
    return "plain"


def _plain_value(v: dict):
    if "decoded" in v:
        return v["decoded"]
    diag = v["diagnostic"]
    if diag.startswith("h'"):
        return bytes.fromhex(diag[2:-1])
    return ast.literal_eval(diag)  # "{1: 2, 3: 4}": JSON cannot hold int keys


def _float_value(v: dict) -> float:
    return float(v["decoded"]) if "decoded" in v else float(v["diagnostic"].lower().replace("infinity", "inf"))


def test_vector_file_is_the_shared_copy():
    shared = Path("/work/shared/vectors/cbor-rfc-appendix-a.json")
    if not shared.exists():
        pytest.skip("shared vectors not mounted (CI): the repo copy is authoritative")
    assert json.loads(shared.read_text()) == VECTORS


def test_vector_categories_cover_the_whole_file():
    counts: dict[str, int] = {}
    for v in VECTORS:
        counts[_category(v)] = counts.get(_category(v), 0) + 1
    assert sum(counts.values()) == len(VECTORS) == 82
    assert counts == {"plain": 37, "tag": 8, "float": 22, "undefined": 1, "simple": 3, "indefinite": 11}


@pytest.mark.parametrize("v", [v for v in VECTORS if _category(v) == "plain"], ids=lambda v: v["hex"][:24])
def test_rfc_plain_items_decode_and_reencode(v):
    data = bytes.fromhex(v["hex"])
    value = codec.decode(data)
    expected = _plain_value(v)
    assert value == expected and type(value) is type(expected)
    assert codec.encode(value) == data


@pytest.mark.parametrize("v", [v for v in VECTORS if _category(v) == "tag"], ids=lambda v: v["hex"][:24])
def test_rfc_tags_rejected(v):
    err = _rejects(bytes.fromhex(v["hex"]), UnsupportedTypeError, 0)
    assert "tag" in str(err)


@pytest.mark.parametrize("v", [v for v in VECTORS if _category(v) in ("simple", "undefined")], ids=lambda v: v["hex"])
def test_rfc_simple_values_and_undefined_rejected(v):
    err = _rejects(bytes.fromhex(v["hex"]), UnsupportedTypeError, 0)
    assert ("undefined" if v["hex"] == "f7" else "simple") in str(err)


@pytest.mark.parametrize("v", [v for v in VECTORS if _category(v) == "indefinite"], ids=lambda v: v["hex"][:24])
def test_rfc_indefinite_lengths_rejected(v):
    data = bytes.fromhex(v["hex"])
    with pytest.raises(IndefiniteLengthError) as info:
        codec.decode(data)
    assert data[info.value.offset] & 0x1F == 31  # the offset points at the indefinite head


@pytest.mark.parametrize("v", [v for v in VECTORS if _category(v) == "float"], ids=lambda v: v["hex"])
def test_rfc_floats_refused_by_default(v):
    err = _rejects(bytes.fromhex(v["hex"]), UnsupportedTypeError, 0)
    assert "float" in str(err)


@pytest.mark.parametrize("v", [v for v in VECTORS if _category(v) == "float"], ids=lambda v: v["hex"])
def test_rfc_floats_with_allow_floats_shortest_form_only(v):
    data = bytes.fromhex(v["hex"])
    expected = _float_value(v)
    if v["roundtrip"]:
        value = codec.decode(data, allow_floats=True)
        assert type(value) is float
        assert (math.isnan(value) and math.isnan(expected)) or (value == expected and str(value) == str(expected))
        assert codec.encode(value, allow_floats=True) == data
    else:  # Infinity and NaN in single or double precision: half precision is shorter
        _rejects(data, NonCanonicalError, 0, allow_floats=True)
        assert len(codec.encode(expected, allow_floats=True)) == 3


# --- rejections, one by one ----------------------------------------------------------------------

# (major type, additional info, argument): each argument fits a shorter head than the one used.
_WIDTHS = [(24, 1, 23), (25, 2, 255), (26, 4, 0xFFFF), (27, 8, 0xFFFFFFFF)]


@pytest.mark.parametrize("major", [0, 1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize(("ai", "size", "arg"), _WIDTHS)
def test_non_canonical_heads_every_width(major, ai, size, arg):
    head = bytes([major << 5 | ai]) + arg.to_bytes(size, "big")
    for small in (0, arg):  # both the smallest and the largest argument that a shorter head holds
        data = bytes([major << 5 | ai]) + small.to_bytes(size, "big") + b"\x00" * 2
        err = _rejects(b"\x82\x00" + data[: len(head)], NonCanonicalError, 2)  # as an array item
        assert "shortest" in str(err)
        _rejects(b"\xa1\x00" + data[: len(head)], NonCanonicalError, 2)  # as a map value
        _rejects(data[: len(head)], NonCanonicalError, 0)  # at the top


@pytest.mark.parametrize(("ai", "size", "arg"), _WIDTHS)
def test_smallest_argument_for_each_width_is_canonical(ai, size, arg):
    data = bytes([ai]) + (arg + 1).to_bytes(size, "big")
    assert codec.decode(data) == arg + 1
    assert codec.encode(arg + 1) == data


def test_non_canonical_float_and_simple_forms():
    _rejects(b"\xfa\x3f\x80\x00\x00", NonCanonicalError, 0, allow_floats=True)  # 1.0 as single
    _rejects(b"\xfb\x3f\xf0" + b"\x00" * 6, NonCanonicalError, 0, allow_floats=True)  # 1.0 as double
    _rejects(b"\xf9\x7e\x01", NonCanonicalError, 0, allow_floats=True)  # a NaN payload other than 7e00
    _rejects(b"\xf8\x14", UnsupportedTypeError, 0)  # false, in the two-byte simple form


@pytest.mark.parametrize(
    ("head", "name"), [(0x5F, "byte string"), (0x7F, "text string"), (0x9F, "array"), (0xBF, "map")]
)
def test_indefinite_lengths(head, name):
    err = _rejects(b"\x81" + bytes([head]) + b"\xff", IndefiniteLengthError, 1)
    assert name in str(err)


@pytest.mark.parametrize("data", [b"\x1f", b"\x3f", b"\xdf", b"\xff"])
def test_indefinite_on_ints_tags_and_break_are_malformed(data):
    err = _rejects(data, DecodeError, 0)
    assert not isinstance(err, IndefiniteLengthError)


@pytest.mark.parametrize("major", range(8))
@pytest.mark.parametrize("ai", [28, 29, 30])
def test_reserved_additional_info(major, ai):
    err = _rejects(bytes([major << 5 | ai]), DecodeError, 0)
    assert "reserved" in str(err)


@pytest.mark.parametrize("data", ["c1 00", "d8 20 60", "d9 d9f7 00", "c2 41 01", "c3 41 01", "81 d8 18 40"])
def test_tags_rejected(data):
    raw = bytes.fromhex(data.replace(" ", ""))
    err = _rejects(raw, UnsupportedTypeError, 1 if raw[0] == 0x81 else 0)
    assert "tag" in str(err)


def test_duplicate_keys():
    _rejects(bytes.fromhex("a2 01 00 01 00".replace(" ", "")), DuplicateKeyError, 3)
    _rejects(bytes.fromhex("a2 61 61 00 61 61 01".replace(" ", "")), DuplicateKeyError, 4)
    # 1 and "1" and b"1" are different keys
    assert codec.decode(codec.encode({1: 0, "1": 1, b"1": 2})) == {1: 0, "1": 1, b"1": 2}


def test_unsorted_keys():
    _rejects(bytes.fromhex("a2 02 00 01 00".replace(" ", "")), UnsortedKeysError, 3)
    _rejects(bytes.fromhex("a3 01 00 03 00 02 00".replace(" ", "")), UnsortedKeysError, 5)


@pytest.mark.parametrize(
    ("small", "big"),
    [
        (1000, "a"),  # 19 03e8 < 61 61: the longer key comes first
        (1000, -1),  # 19 03e8 < 20
        (b"\x00" * 30, "a"),  # 58 1e ... < 61 61
        ("\u00e9" * 12 + "a", "\u00e9" * 13),  # same major type, different bytes
    ],
)
def test_keys_sorted_bytewise_not_length_first(small, big):
    """RFC 8949 §4.2.1 orders keys by their encoded bytes; RFC 7049 §3.9 (length first) is rejected."""
    ks, kb = codec.encode(small), codec.encode(big)
    assert ks < kb
    good = b"\xa2" + ks + b"\x00" + kb + b"\x00"
    assert codec.encode({big: 0, small: 0}) == good
    assert codec.decode(good) == {small: 0, big: 0}
    _rejects(b"\xa2" + kb + b"\x00" + ks + b"\x00", UnsortedKeysError, 2 + len(kb))
    if len(ks) > len(kb):  # cbor2's canonical mode sorts length-first, so it differs from us here
        assert cbor2.dumps({small: 0, big: 0}, canonical=True) != good


@pytest.mark.parametrize("key", ["80", "a0", "f6", "f5", "8100"])
def test_map_keys_must_be_int_text_or_bytes(key):
    err = _rejects(bytes.fromhex("a1" + key + "00"), UnsupportedTypeError, 1)
    assert "key" in str(err)
    with pytest.raises(UnsupportedTypeError):
        codec.encode({(1, 2): 0})


def test_trailing_bytes():
    _rejects(b"\x00\x00", TrailingBytesError, 1)
    err = _rejects(codec.encode({"a": [1, 2]}) + b"\xf6\xf6", TrailingBytesError, 6)
    assert "2 bytes" in str(err)


@pytest.mark.parametrize("data", ["f7", "f0", "e0", "f3", "f8 20", "f8 ff", "f8 18", "f8 00", "81 f7"])
def test_undefined_and_simple_values(data):
    raw = bytes.fromhex(data.replace(" ", ""))
    _rejects(raw, UnsupportedTypeError, 1 if raw[0] == 0x81 else 0)


@pytest.mark.parametrize(
    "text",
    [
        "c3 28",  # bad continuation
        "c0 80",  # overlong NUL
        "e0 80 af",  # overlong '/'
        "ed a0 80",  # UTF-16 surrogate
        "f4 90 80 80",  # above U+10FFFF
        "61 c3",  # truncated sequence
        "ff",
    ],
)
def test_invalid_utf8(text):
    raw = bytes.fromhex(text.replace(" ", ""))
    data = b"\x82\x00" + bytes([0x60 | len(raw)]) + raw
    _rejects(data, InvalidUtf8Error, 2)
    assert codec.decode(b"\x82\x00" + bytes([0x40 | len(raw)]) + raw) == [0, raw]  # fine as bytes


def test_lone_surrogate_cannot_be_encoded():
    with pytest.raises(InvalidUtf8Error):
        codec.encode(["ok", "\ud800"])


def test_oversize_checked_before_parsing():
    garbage = b"\xff" * 101  # a parse would fail on the first byte; the size check must come first
    err = _rejects(garbage, OversizeError, None, max_size=100)
    assert "101" in str(err) and "100" in str(err)
    assert codec.decode(codec.encode(b"x" * 98), max_size=100) == b"x" * 98  # 2-byte head + 98 = 100
    _rejects(codec.encode(b"x" * 99), OversizeError, None, max_size=100)
    with pytest.raises(OversizeError):
        codec.decode(memoryview(b"\x00" * 11), max_size=10)
    with pytest.raises(OversizeError):
        codec.decode(b"\x00" * (codec.MAX_SIZE + 1))


@pytest.mark.parametrize(
    ("data", "exc"),
    [
        (b"\x5b" + b"\xff" * 8 + b"abc", TruncatedError),  # a 2**64-1 byte string in 12 bytes
        (b"\x7b" + b"\x7f" + b"\xff" * 7 + b"abc", TruncatedError),
        (b"\x9b" + b"\xff" * 8 + b"\x00" * 8, LimitError),  # 2**64-1 entries: beyond the item cap
        (b"\xbb" + b"\xff" * 8 + b"\x00" * 8, LimitError),
        (b"\x99\xff\xff" + b"\x00" * 100, TruncatedError),  # within the cap, impossible for the input size
        (b"\xb9\xff\xff" + b"\x00" * 100, TruncatedError),
        (b"\x81" * 30 + b"\x99\xff\xff" + b"\x00" * 100, TruncatedError),
    ],
)
def test_huge_length_claims_fail_fast_without_allocating(data, exc):
    tracemalloc.start()
    try:
        with pytest.raises(exc):
            codec.decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, f"decoder allocated {peak} bytes for a {len(data)}-byte input"


def test_depth_cap():
    def nested(depth: int) -> bytes:
        return b"\x81" * depth + b"\x00"

    assert codec.decode(nested(codec.MAX_DEPTH)) is not None
    _rejects(nested(codec.MAX_DEPTH + 1), LimitError, codec.MAX_DEPTH)
    _rejects(b"\xa1\x00" * 5 + b"\x00", LimitError, 8, max_depth=4)
    assert codec.decode(nested(4), max_depth=4) == [[[[0]]]]
    _rejects(nested(5), LimitError, 4, max_depth=4)


def test_depth_cap_beyond_python_stack_is_still_typed():
    with pytest.raises(LimitError):
        codec.decode(b"\x81" * 50_000 + b"\x00", max_depth=10**6)


def test_length_caps():
    assert codec.decode(codec.encode(list(range(4))), max_items=4) == [0, 1, 2, 3]
    _rejects(codec.encode(list(range(5))), LimitError, 0, max_items=4)
    _rejects(codec.encode({i: 0 for i in range(5)}), LimitError, 0, max_items=4)
    _rejects(codec.encode([[1, 2, 3, 4, 5]]), LimitError, 1, max_items=4)
    big = codec.encode([0] * (codec.MAX_ITEMS + 1))
    _rejects(big, LimitError, 0)


@given(cbor_values())
@settings(max_examples=200, deadline=None)
def test_every_proper_prefix_is_truncated(value):
    data = codec.encode(value)
    for cut in range(len(data)):
        with pytest.raises(TruncatedError):
            codec.decode(data[:cut])


def test_truncated_offsets():
    _rejects(b"", TruncatedError, 0)
    _rejects(b"\x19\x01", TruncatedError, 0)
    _rejects(b"\x82\x00", TruncatedError, 0)  # two entries cannot fit in one byte: refused at the head
    _rejects(b"\x83\x00\x00\x19\x01", TruncatedError, 3)
    _rejects(b"\x82\x00\x43ab", TruncatedError, 2)
    _rejects(b"\xf9\x00", TruncatedError, 0, allow_floats=True)


@pytest.mark.parametrize("value", [1 << 64, -(1 << 64) - 1, 10**30, -(10**30)])
def test_integers_beyond_64_bits(value):
    with pytest.raises(UnsupportedTypeError) as info:
        codec.encode(value)
    assert "64 bits" in str(info.value)


def test_integer_extremes():
    assert codec.encode((1 << 64) - 1) == b"\x1b" + b"\xff" * 8
    assert codec.encode(-(1 << 64)) == b"\x3b" + b"\xff" * 8
    assert codec.decode(b"\x3b" + b"\xff" * 8) == -(1 << 64)
    _rejects(b"\xc2\x49\x01" + b"\x00" * 8, UnsupportedTypeError, 0)  # bignum: a tag


def test_floats_refused_when_encoding():
    with pytest.raises(UnsupportedTypeError):
        codec.encode({"w": 0.5})
    assert codec.encode({"w": 0.5}, allow_floats=True) == b"\xa1\x61\x77\xf9\x38\x00"


@pytest.mark.parametrize("value", [object(), {1, 2}, 1j, bytearray(b"\x01").decode, type])
def test_unencodable_types(value):
    with pytest.raises(UnsupportedTypeError):
        codec.encode(value)


def test_cycles_and_over_deep_values_fail_typed():
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(LimitError):
        codec.encode(cyclic)
    deep: list = [0]
    for _ in range(codec.MAX_DEPTH):
        deep = [deep]
    with pytest.raises(LimitError):
        codec.encode(deep)


@pytest.mark.parametrize("value", ["abc", 5, None, [b"x"], bytearray(b"\x00")])
def test_decode_input_type(value):
    if isinstance(value, bytearray):
        assert codec.decode(value) == 0
        return
    with pytest.raises(DecodeError):
        codec.decode(value)


def test_encode_accepts_tuples_bytearray_and_int_enums():
    import enum

    class Colour(enum.IntEnum):
        RED = 300

    assert codec.encode((1, bytearray(b"a"), memoryview(b"b"), Colour.RED)) == codec.encode([1, b"a", b"b", 300])


# --- properties ----------------------------------------------------------------------------------


@given(cbor_values())
@settings(max_examples=500, deadline=None)
def test_round_trip(value):
    data = codec.encode(value)
    assert codec.decode(data) == value
    assert codec.encode(codec.decode(data)) == data
    assert cbor2.loads(data) == value  # an independent decoder reads the same value


@given(st.floats(allow_nan=True, allow_infinity=True))
@settings(max_examples=500, deadline=None)
def test_floats_shortest_form(value):
    data = codec.encode(value, allow_floats=True)
    back = codec.decode(data, allow_floats=True)
    assert (math.isnan(back) and math.isnan(value)) or (
        back == value and math.copysign(1, back) == math.copysign(1, value)
    )
    # no shorter width holds it exactly
    if len(data) > 3 and not math.isnan(value):
        fmt, width = ("e", 2) if len(data) == 5 else ("f", 4)
        try:
            shorter = struct.unpack(">" + fmt, struct.pack(">" + fmt, value))[0]
        except OverflowError:
            shorter = None
        assert shorter != value
        assert width + 1 < len(data)


@given(st.binary(max_size=64))
@settings(max_examples=2000, deadline=None)
def test_random_bytes_decode_or_raise_typed(data):
    try:
        value = codec.decode(data)
    except ProtocolError:
        return
    assert codec.encode(value) == data  # anything accepted is canonical: it re-encodes to the same bytes
