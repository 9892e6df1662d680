"""Hypothesis strategies for the wire: CBOR data-model values and every message type.

Message strategies are built from each class's compiled `_fields` kinds, so a message or field added to
protocol/messages.py is covered without touching this file; a new `Kind` subclass fails loudly here until it
gets a strategy. Reusable by the fuzzers (`message_strategy`, `all_message_types`, `valid_samples`).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from hypothesis import strategies as st

from protocol import messages
from protocol.schema import Bool, Bytes, Kind, ListOf, Message, Nested, OneOf, Text, UInt

# Caps on generated sizes: enough to cross every CBOR head width boundary without slow examples.
GEN_BYTES = 300
GEN_TEXT = 30
GEN_LIST = 6

# --- plain CBOR data model ---------------------------------------------------------------------

UINT64_MAX = (1 << 64) - 1
# Integers concentrated on head-width boundaries (23/24, 255/256, ...), where canonical encoding can go wrong.
_EDGES = [0, 23, 24, 255, 256, 65535, 65536, (1 << 32) - 1, 1 << 32, UINT64_MAX]
cbor_ints = st.one_of(
    st.integers(-(1 << 64), UINT64_MAX),
    st.sampled_from(_EDGES + [-1 - e for e in _EDGES]),
    st.integers(-30, 30),
)
cbor_keys = st.one_of(cbor_ints, st.text(max_size=8), st.binary(max_size=8))
cbor_leaves = st.one_of(
    cbor_ints, st.binary(max_size=GEN_BYTES), st.text(max_size=GEN_TEXT), st.sampled_from([None, True, False])
)


def cbor_values(floats: bool = False) -> st.SearchStrategy[Any]:
    """Any value of the codec's data model (lists, not tuples, so decode(encode(v)) == v)."""
    leaves = st.one_of(cbor_leaves, st.floats(allow_nan=False)) if floats else cbor_leaves
    return st.recursive(
        leaves,
        lambda kids: st.one_of(st.lists(kids, max_size=GEN_LIST), st.dictionaries(cbor_keys, kids, max_size=GEN_LIST)),
        max_leaves=20,
    )


# --- messages ----------------------------------------------------------------------------------


def all_message_types() -> list[type[Message]]:
    """Every concrete message class defined in protocol.messages (decorated with @message)."""
    return [
        obj
        for obj in vars(messages).values()
        if isinstance(obj, type)
        and issubclass(obj, Message)
        and dataclasses.is_dataclass(obj)
        and "_fields" in obj.__dict__
        and obj.__module__ == messages.__name__
    ]


def signed_types() -> list[type[messages.Signed]]:
    return [cls for cls in all_message_types() if issubclass(cls, messages.Signed)]


def _uint(bits: int) -> st.SearchStrategy[int]:
    top = (1 << bits) - 1
    return st.one_of(st.integers(0, top), st.sampled_from([e for e in _EDGES if e <= top] + [top]))


def kind_strategy(kind: Kind) -> st.SearchStrategy[Any]:
    """Valid Python values for one wire kind."""
    if isinstance(kind, UInt):
        return _uint(kind.bits)
    if isinstance(kind, Bool):
        return st.booleans()
    if isinstance(kind, Bytes):
        if kind.size is not None:
            return st.binary(min_size=kind.size, max_size=kind.size)
        cap = GEN_BYTES if kind.max_size is None else min(kind.max_size, GEN_BYTES)
        return st.binary(max_size=cap)
    if isinstance(kind, Text):
        return st.text(max_size=min(kind.max_len, GEN_TEXT))
    if isinstance(kind, Nested):
        return st.deferred(lambda: message_strategy(kind.cls))
    if isinstance(kind, ListOf):
        item = kind_strategy(kind.item)
        return st.lists(item, max_size=min(kind.max_len, GEN_LIST)).map(tuple)
    if isinstance(kind, OneOf):
        return st.one_of([st.deferred(lambda v=v: message_strategy(v)) for v in kind.variants])
    raise NotImplementedError(f"protocol/testing/wire_strategies.py has no strategy for {type(kind).__name__}; add one")


_CACHE: dict[type[Message], st.SearchStrategy[Any]] = {}


def message_strategy(cls: type[Message]) -> st.SearchStrategy[Any]:
    """Valid instances of `cls` (signatures are random bytes: structurally valid, cryptographically not)."""
    if cls not in _CACHE:
        fields = {name: kind_strategy(kind) for name, kind in cls._fields}
        _CACHE[cls] = st.builds(cls, **fields)
    return _CACHE[cls]


# --- seeded samples without hypothesis (for the byte-level fuzzers) ------------------------------


def random_value(kind: Kind, rng: random.Random) -> Any:
    """A random valid value for `kind`, drawn from a seeded RNG (deterministic for a given seed)."""
    if isinstance(kind, UInt):
        top = (1 << kind.bits) - 1
        return rng.choice([rng.randint(0, top), rng.randint(0, 30), min(top, rng.choice(_EDGES))])
    if isinstance(kind, Bool):
        return rng.random() < 0.5
    if isinstance(kind, Bytes):
        n = kind.size if kind.size is not None else rng.randint(0, min(kind.max_size or GEN_BYTES, 40))
        return rng.randbytes(n)
    if isinstance(kind, Text):
        n = rng.randint(0, min(kind.max_len, 12))
        return "".join(rng.choice("abcxyz-_/0123456789é水😀") for _ in range(n))
    if isinstance(kind, Nested):
        return random_message(kind.cls, rng)
    if isinstance(kind, ListOf):
        return tuple(random_value(kind.item, rng) for _ in range(rng.randint(0, min(kind.max_len, 4))))
    if isinstance(kind, OneOf):
        return random_message(rng.choice(kind.variants), rng)
    raise NotImplementedError(f"wire_strategies.py has no random value for {type(kind).__name__}; add one")


def random_message(cls: type[Message], rng: random.Random) -> Message:
    return cls(**{name: random_value(kind, rng) for name, kind in cls._fields})


def valid_samples(seed: int, per_type: int) -> list[tuple[type[Message], bytes]]:
    """`per_type` encoded valid messages of every type, deterministic in `seed`."""
    rng = random.Random(seed)
    return [(cls, random_message(cls, rng).to_bytes()) for cls in all_message_types() for _ in range(per_type)]
