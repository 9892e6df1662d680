"""Typed messages: round trips for every type, each schema rejection, and signed envelopes.

Everything is driven by each class's compiled `_fields`, so a message or field added to protocol/messages.py
is covered without editing this file.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import codec, crypto, messages
from protocol.crypto import Keypair
from protocol.errors import (
    BadSignatureError,
    DecodeError,
    FieldTypeError,
    LimitError,
    MissingFieldError,
    OversizeError,
    SchemaError,
    UnknownFieldError,
    UnsupportedTypeError,
    WrongChainError,
)
from protocol.schema import Bool, Bytes, Kind, ListOf, Message, Nested, OneOf, Text, UInt
from protocol.testing.wire_strategies import all_message_types, message_strategy, random_message, signed_types

TYPES = all_message_types()
SIGNED = signed_types()
CHAIN = "tensornet-test"
ids = [c.__name__ for c in TYPES]


def _sample(cls: type[Message], seed: int = 0) -> Message:
    import random

    return random_message(cls, random.Random(seed))


def test_every_message_type_is_found():
    names = {c.__name__ for c in TYPES}
    assert set(messages.WIRE_TYPES) <= names
    assert {"Transaction", "Block", "SetWeights", "SignedBlock", "SignedTransaction"} <= names
    for cls in messages.CALLS:
        assert cls in TYPES and cls.KIND


def test_fields_match_the_dataclass():
    for cls in TYPES:
        assert [n for n, _ in cls._fields] == [f.name for f in dataclasses.fields(cls)]
        assert all(isinstance(k, Kind) for _, k in cls._fields)


@pytest.mark.parametrize("cls", TYPES, ids=ids)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_round_trip(cls, data):
    msg = data.draw(message_strategy(cls))
    raw = msg.to_bytes()
    back = cls.from_bytes(raw)
    assert back == msg
    assert back.to_bytes() == raw
    assert raw == codec.encode(msg.to_obj())  # the compiled encoder matches the generic one
    assert cls.from_obj(codec.decode(raw, max_size=cls.MAX_SIZE)) == msg


# --- schema rejections ----------------------------------------------------------------------------


def _bad_value(kind: Kind):
    """A value of the wrong wire type for `kind`."""
    if isinstance(kind, UInt):
        return "1"
    if isinstance(kind, Bool):
        return 1
    if isinstance(kind, Bytes):
        return "x" * (kind.size or 1)
    if isinstance(kind, Text):
        return b"x"
    if isinstance(kind, (Nested, OneOf)):
        return 7
    if isinstance(kind, ListOf):
        return {"0": 0}
    raise NotImplementedError(type(kind).__name__)


def _fields_of(kind_type) -> list[tuple[type[Message], str, Kind]]:
    return [(cls, name, kind) for cls in TYPES for name, kind in cls._fields if isinstance(kind, kind_type)]


def _expect(cls: type[Message], obj, exc: type[SchemaError], where: str) -> None:
    """Both from_obj and from_bytes reject `obj` with `exc`, naming the field."""
    with pytest.raises(exc) as info:
        cls.from_obj(obj)
    assert where in str(info.value)
    data = codec.encode(obj)
    if len(data) <= cls.MAX_SIZE:
        with pytest.raises(exc):
            cls.from_bytes(data)


@pytest.mark.parametrize("cls", TYPES, ids=ids)
def test_unknown_field(cls):
    obj = _sample(cls).to_obj()
    for extra in ("zz_unknown", "", 0, b"field"):
        _expect(cls, obj | {extra: 0}, UnknownFieldError, str(extra))


@pytest.mark.parametrize("cls", TYPES, ids=ids)
def test_missing_field(cls):
    obj = _sample(cls).to_obj()
    for name, _ in cls._fields:
        _expect(cls, {k: v for k, v in obj.items() if k != name}, MissingFieldError, name)


@pytest.mark.parametrize("cls", TYPES, ids=ids)
def test_renamed_field_is_unknown(cls):
    obj = _sample(cls).to_obj()
    name = cls._fields[0][0]
    renamed = {(k + "_" if k == name else k): v for k, v in obj.items()}
    _expect(cls, renamed, UnknownFieldError, name + "_")


@pytest.mark.parametrize("cls", TYPES, ids=ids)
def test_wrong_type(cls):
    obj = _sample(cls).to_obj()
    for name, kind in cls._fields:
        _expect(cls, obj | {name: _bad_value(kind)}, FieldTypeError, f"{cls.__name__}.{name}")
        if not isinstance(kind, Bool):
            _expect(cls, obj | {name: None}, FieldTypeError, f"{cls.__name__}.{name}")


@pytest.mark.parametrize("top", [cls for cls in TYPES if cls._fields], ids=lambda c: c.__name__)
def test_not_a_map(top):
    for obj in ([], 0, "x", b"", None):
        with pytest.raises(FieldTypeError):
            top.from_obj(obj)
        with pytest.raises(FieldTypeError):
            top.from_bytes(codec.encode(obj))


@pytest.mark.parametrize(("cls", "name", "kind"), _fields_of(UInt), ids=lambda x: getattr(x, "__name__", str(x)))
def test_out_of_range_ints(cls, name, kind):
    obj = _sample(cls).to_obj()
    for value in (-1, kind.limit, True):
        if value == 1 << 64:  # not even encodable: the codec refuses it before the schema could
            with pytest.raises(UnsupportedTypeError):
                codec.encode(obj | {name: value})
            with pytest.raises(FieldTypeError):
                cls.from_obj(obj | {name: value})
            continue
        _expect(cls, obj | {name: value}, FieldTypeError, name)
    assert cls.from_obj(obj | {name: kind.limit - 1}).to_obj()[name] == kind.limit - 1
    assert cls.from_obj(obj | {name: 0}).to_obj()[name] == 0


@pytest.mark.parametrize(("cls", "name", "kind"), _fields_of(Bytes), ids=lambda x: getattr(x, "__name__", str(x)))
def test_bytes_sizes(cls, name, kind):
    obj = _sample(cls).to_obj()
    if kind.size is not None:
        for n in (kind.size - 1, kind.size + 1, 0):
            _expect(cls, obj | {name: b"\x01" * n}, FieldTypeError, name)
    if kind.max_size is not None:
        _expect_oversize(cls, obj | {name: b"\x01" * (kind.max_size + 1)}, name)
        assert cls.from_obj(obj | {name: b"\x01" * kind.max_size})


@pytest.mark.parametrize(("cls", "name", "kind"), _fields_of(Text), ids=lambda x: getattr(x, "__name__", str(x)))
def test_text_caps(cls, name, kind):
    obj = _sample(cls).to_obj()
    _expect(cls, obj | {name: "é" * (kind.max_len + 1)}, FieldTypeError, name)
    assert cls.from_obj(obj | {name: "é" * kind.max_len})


def _expect_oversize(cls: type[Message], obj, name: str) -> None:
    """Over a field cap: the schema names the field; over the message or item cap, the codec refuses first."""
    with pytest.raises(FieldTypeError) as info:
        cls.from_obj(obj)
    assert name in str(info.value) and "cap" in str(info.value)
    data = codec.encode(obj)
    with pytest.raises((FieldTypeError, OversizeError, LimitError)):
        cls.from_bytes(data)


@pytest.mark.parametrize(("cls", "name", "kind"), _fields_of(ListOf), ids=lambda x: getattr(x, "__name__", str(x)))
def test_list_caps(cls, name, kind):
    obj = _sample(cls).to_obj()
    item = random_message(kind.item.cls, __import__("random").Random(1)) if isinstance(kind.item, Nested) else None
    one = item.to_obj() if item is not None else _leaf_value(kind.item)
    _expect_oversize(cls, obj | {name: [one] * (kind.max_len + 1)}, name)
    assert len(cls.from_obj(obj | {name: [one] * kind.max_len}).to_obj()[name]) == kind.max_len


def _leaf_value(kind: Kind):
    if isinstance(kind, UInt):
        return 1
    if isinstance(kind, Bytes):
        return b"\x00" * (kind.size or 1)
    if isinstance(kind, Text):
        return "a"
    if isinstance(kind, Bool):
        return True
    raise NotImplementedError(type(kind).__name__)


@pytest.mark.parametrize(("cls", "name", "kind"), _fields_of(ListOf), ids=lambda x: getattr(x, "__name__", str(x)))
def test_list_item_errors_name_the_index(cls, name, kind):
    obj = _sample(cls).to_obj()
    good = _leaf_value(kind.item) if not isinstance(kind.item, Nested) else _sample(kind.item.cls).to_obj()
    with pytest.raises(FieldTypeError) as info:
        cls.from_obj(obj | {name: [good, good, _bad_value(kind.item)]})
    assert f"{name}[2]" in str(info.value)


def test_nested_error_paths():
    kp = Keypair(bytes(range(32)))
    call = messages.SetWeights(netuid=1, uids=(1, 2, 3), values=(4, 5, 6), version_key=0)
    stx = messages.SignedTransaction.create(messages.Transaction(CHAIN, kp.public, 1, call, 0), kp)
    obj = stx.to_obj()
    obj["body"]["call"][1]["values"][1] = 1 << 16
    with pytest.raises(FieldTypeError) as info:
        messages.SignedTransaction.from_bytes(codec.encode(obj))
    assert "SignedTransaction.body.call.set_weights.values[1]" in str(info.value)
    obj["body"]["call"] = ["no_such_call", {}]
    with pytest.raises(FieldTypeError) as info:
        messages.SignedTransaction.from_bytes(codec.encode(obj))
    assert "no_such_call" in str(info.value) and "transfer" in str(info.value)
    for bad in (["transfer"], ["transfer", {}, 1], [1, {}], "transfer"):
        obj["body"]["call"] = bad
        with pytest.raises(FieldTypeError):
            messages.SignedTransaction.from_bytes(codec.encode(obj))


@pytest.mark.parametrize("cls", TYPES, ids=ids)
def test_floats_rejected(cls):
    obj = _sample(cls).to_obj()
    for name, _ in cls._fields:
        bad = obj | {name: 1.0}
        with pytest.raises(UnsupportedTypeError):  # the codec refuses the float before the schema sees it
            cls.from_bytes(codec.encode(bad, allow_floats=True))
        with pytest.raises(FieldTypeError):
            cls.from_obj(bad)


@pytest.mark.parametrize("cls", TYPES, ids=ids)
def test_non_canonical_message_bytes_rejected(cls):
    raw = _sample(cls, 3).to_bytes()
    obj = codec.decode(raw, max_size=cls.MAX_SIZE)
    if len(obj) >= 2:  # swap two keys: same value, unsorted encoding
        items = sorted(obj.items(), key=lambda kv: codec.encode(kv[0]))
        a, b = items[0], items[1]
        swapped = bytearray(codec._head(5, len(items)))
        for k, v in [b, a] + items[2:]:
            swapped += codec.encode(k) + codec.encode(v)
        with pytest.raises(DecodeError):
            cls.from_bytes(bytes(swapped))
    with pytest.raises(DecodeError):
        cls.from_bytes(raw + b"\x00")
    widened = bytes([0xB8, raw[0] & 0x1F]) + raw[1:]  # the map head in a two-byte form
    with pytest.raises(DecodeError):
        cls.from_bytes(widened)


def test_oneof_dump_refuses_foreign_variant():
    tx = messages.Transaction(CHAIN, bytes(32), 0, messages.BlockRef(1, 2, bytes(32)), 0)
    with pytest.raises(SchemaError):
        tx.to_bytes()
    with pytest.raises(SchemaError):
        tx.to_obj()


def test_message_max_size_applies_before_parsing():
    with pytest.raises(OversizeError):
        messages.SignedTransaction.from_bytes(b"\xff" * (messages.MAX_TX_SIZE + 1))
    with pytest.raises(OversizeError):
        messages.SignedBlock.from_bytes(b"\xff" * (messages.MAX_BLOCK_SIZE + 1))


# --- signed envelopes -----------------------------------------------------------------------------


def _signed(cls: type[messages.Signed], seed: int = 5, chain: str = CHAIN) -> tuple[messages.Signed, Keypair]:
    import random

    rng = random.Random(seed)
    kp = Keypair(rng.randbytes(32))
    body_cls = dict(cls._fields)["body"].cls
    body = random_message(body_cls, rng)
    changes = {"chain_id": chain}
    if isinstance(getattr(body, cls.SIGNER), bytes):
        changes[cls.SIGNER] = kp.public
    body = dataclasses.replace(body, **changes)
    return cls.create(body, kp), kp


@pytest.mark.parametrize("cls", SIGNED, ids=lambda c: c.__name__)
@pytest.mark.parametrize("seed", range(5))
def test_sign_verify_round_trip(cls, seed):
    msg, kp = _signed(cls, seed)
    msg.verify(CHAIN, kp.public)
    back = cls.from_bytes(msg.to_bytes())
    back.verify(CHAIN, kp.public)
    if isinstance(getattr(msg.body, cls.SIGNER), bytes):
        back.verify(CHAIN)  # the key is in the body
    assert back.digest == msg.digest == crypto.digest(msg.to_bytes())
    assert cls.create(msg.body, kp).signature == msg.signature  # ed25519 is deterministic


@pytest.mark.parametrize("cls", SIGNED, ids=lambda c: c.__name__)
def test_tampered_signature(cls):
    msg, kp = _signed(cls)
    for i in (0, 31, 32, 63):
        sig = bytearray(msg.signature)
        sig[i] ^= 0x01
        bad = dataclasses.replace(msg, signature=bytes(sig))
        with pytest.raises(BadSignatureError):
            cls.from_bytes(bad.to_bytes()).verify(CHAIN, kp.public)


@pytest.mark.parametrize("cls", SIGNED, ids=lambda c: c.__name__)
def test_tampered_body(cls):
    msg, kp = _signed(cls)
    for name, kind in msg.body._fields:
        if isinstance(kind, UInt) and name != cls.SIGNER:
            value = getattr(msg.body, name)
            changed = dataclasses.replace(msg, body=dataclasses.replace(msg.body, **{name: value ^ 1}))
            with pytest.raises(BadSignatureError):
                changed.verify(CHAIN, kp.public)


@pytest.mark.parametrize("cls", SIGNED, ids=lambda c: c.__name__)
def test_wrong_signer(cls):
    msg, _ = _signed(cls)
    other = Keypair(b"\x42" * 32)
    with pytest.raises(BadSignatureError):
        msg.verify(CHAIN, other.public)


@pytest.mark.parametrize("cls", SIGNED, ids=lambda c: c.__name__)
def test_wrong_chain(cls):
    msg, kp = _signed(cls)
    with pytest.raises(WrongChainError):
        msg.verify("tensornet-main", kp.public)
    # re-labelled for another chain: the chain id is inside the signature, so the relabel does not verify
    moved = dataclasses.replace(msg, body=dataclasses.replace(msg.body, chain_id="tensornet-main"))
    with pytest.raises(BadSignatureError):
        moved.verify("tensornet-main", kp.public)


@pytest.mark.parametrize("cls", SIGNED, ids=lambda c: c.__name__)
def test_signature_is_domain_separated(cls):
    msg, kp = _signed(cls)
    for other in SIGNED:
        if other.DOMAIN == cls.DOMAIN:
            continue
        with pytest.raises(BadSignatureError):
            crypto.verify(kp.public, other.DOMAIN, CHAIN, cls.covered(msg.body), msg.signature)
    crypto.verify(kp.public, cls.DOMAIN, CHAIN, cls.covered(msg.body), msg.signature)


def test_domains_are_distinct():
    # SignedHeader carries a block's own signature (equivocation evidence), so it shares BLOCK
    distinct = [c for c in SIGNED if c is not messages.SignedHeader]
    assert len({cls.DOMAIN for cls in distinct}) == len(distinct)


def test_block_signature_covers_the_header():
    msg, kp = _signed(messages.SignedBlock)
    header = msg.signed_header()
    header.verify(CHAIN, kp.public)
    assert header.body.payload_digest == messages.payload_digest(msg.body.payload)
    other = dataclasses.replace(msg.body, payload=msg.body.payload + (b"more",))
    with pytest.raises(BadSignatureError):  # the payload digest binds the payload
        messages.SignedBlock(other, msg.signature).verify(CHAIN, kp.public)


def test_block_verify_needs_the_committee_key():
    msg, kp = _signed(messages.SignedBlock)
    msg.verify(CHAIN, kp.public)
    with pytest.raises(BadSignatureError):  # author is a committee index, not a key
        msg.verify(CHAIN)
    assert msg.signer_key((b"\x00" * 32,) * msg.body.author + (kp.public,)) == kp.public
    assert msg.ref.digest == msg.digest and msg.ref.round == msg.body.round


def _over_limit_items(kind: Kind) -> list:
    """Items of the right type but outside the item kind's limits (empty when the kind has none)."""
    if isinstance(kind, UInt):
        return [kind.limit, -1]
    if isinstance(kind, Bytes):
        return [b"\x00" * (kind.size + 1)] if kind.size is not None else [b"\x00" * (kind.max_size + 1)]
    if isinstance(kind, Text):
        return ["a" * (kind.max_len + 1)]
    return []


@pytest.mark.parametrize(
    ("cls", "name", "kind"),
    [f for f in _fields_of(ListOf) if not isinstance(f[2].item, Nested)],
    ids=lambda x: getattr(x, "__name__", str(x)),
)
def test_list_item_limits(cls, name, kind):
    """The whole-list fast path must refuse exactly what the per-item check refuses."""
    obj = _sample(cls).to_obj()
    good = _leaf_value(kind.item)
    for bad in _over_limit_items(kind.item):
        with pytest.raises(FieldTypeError) as info:
            cls.from_obj(obj | {name: [good, bad]})
        assert f"{name}[1]" in str(info.value)
    if isinstance(kind.item, UInt):
        top = kind.item.limit - 1
        assert cls.from_obj(obj | {name: [0, top]}).to_obj()[name] == [0, top]
        with pytest.raises(FieldTypeError):
            cls.from_obj(obj | {name: [1, True]})
