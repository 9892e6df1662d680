"""Typed keys of the state tree: one key per piece of state, in a fixed byte layout (spec/state-tree.md §3).

A key is one family byte, then the family's fields in order: a public key as its 32 raw bytes, an integer as 8
bytes big-endian unsigned, a global name as its ASCII bytes (last, so it needs no length). The layout is
injective, so two pieces of state never share a key, and `parse` inverts it for the API and for state sync.
"""

from __future__ import annotations

import enum
import re

from protocol.errors import StateError

PUBKEY_SIZE = 32
INT_SIZE = 8
_GLOBAL_NAME = re.compile(rb"[a-z][a-z0-9_]{0,31}")


class BadKeyError(StateError):
    """Fields that make no state key, or bytes that parse as none."""


class Family(enum.IntEnum):
    """The first byte of a key; a new family takes the next number, never a used one."""

    GLOBAL = 0  # a chain-wide record by name: "epoch", "supply", "params", ...
    ACCOUNT = 1  # address -> balance
    NONCE = 2  # address -> next nonce
    STAKE = 3  # (hotkey, coldkey) -> stake units
    HOTKEY = 4  # hotkey -> owner coldkey, consensus endpoint, jail record
    SUBNET = 5  # netuid -> the subnet's own fields (its neurons are keys of their own)
    NEURON = 6  # (netuid, uid) -> neuron
    ESCROW = 7  # escrow id -> open escrow
    PROPOSAL = 8  # proposal id -> governance proposal
    LIFECYCLE = 9  # sequence number -> deregistration record


# Each family's fields: "k" a 32-byte public key, "i" a u64.
_FIELDS: dict[Family, str] = {
    Family.ACCOUNT: "k",
    Family.NONCE: "k",
    Family.STAKE: "kk",
    Family.HOTKEY: "k",
    Family.SUBNET: "i",
    Family.NEURON: "ii",
    Family.ESCROW: "i",
    Family.PROPOSAL: "i",
    Family.LIFECYCLE: "i",
}


def _pack(family: Family, *fields: bytes | int) -> bytes:
    out = bytearray([family])
    for kind, f in zip(_FIELDS[family], fields, strict=True):
        if kind == "k":
            if type(f) is not bytes or len(f) != PUBKEY_SIZE:
                raise BadKeyError(f"{family.name.lower()} key: a public key is {PUBKEY_SIZE} bytes")
            out += f
        else:
            if type(f) is not int or not 0 <= f < 1 << 64:
                raise BadKeyError(f"{family.name.lower()} key: an integer field is in [0, 2^64), got {f!r}")
            out += f.to_bytes(INT_SIZE, "big")
    return bytes(out)


def account(address: bytes) -> bytes:
    return _pack(Family.ACCOUNT, address)


def nonce(address: bytes) -> bytes:
    return _pack(Family.NONCE, address)


def stake(hotkey: bytes, coldkey: bytes) -> bytes:
    """Hotkey first: the order is part of the layout (State's own dict is keyed (coldkey, hotkey))."""
    return _pack(Family.STAKE, hotkey, coldkey)


def hotkey(hotkey: bytes) -> bytes:
    return _pack(Family.HOTKEY, hotkey)


def subnet(netuid: int) -> bytes:
    return _pack(Family.SUBNET, netuid)


def neuron(netuid: int, uid: int) -> bytes:
    return _pack(Family.NEURON, netuid, uid)


def escrow(escrow_id: int) -> bytes:
    return _pack(Family.ESCROW, escrow_id)


def proposal(pid: int) -> bytes:
    return _pack(Family.PROPOSAL, pid)


def lifecycle(seq: int) -> bytes:
    return _pack(Family.LIFECYCLE, seq)


def global_(name: str) -> bytes:
    """A chain-wide record, e.g. global_("epoch"): a lowercase ASCII name of 1 to 32 characters."""
    raw = name.encode() if type(name) is str and name.isascii() else b""
    if not _GLOBAL_NAME.fullmatch(raw):
        raise BadKeyError(f"global key: a name is [a-z][a-z0-9_]{{0,31}}, got {name!r}")
    return bytes([Family.GLOBAL]) + raw


def parse(key: bytes) -> tuple[Family, tuple[bytes | int | str, ...]]:
    """(family, fields) of a key; BadKeyError if the bytes are no key of the layout."""
    if type(key) is not bytes or not key:
        raise BadKeyError("a key is a non-empty byte string")
    try:
        family = Family(key[0])
    except ValueError:
        raise BadKeyError(f"unknown key family {key[0]}") from None
    if family is Family.GLOBAL:
        name = key[1:]
        if not _GLOBAL_NAME.fullmatch(name):
            raise BadKeyError("global key: the name is not [a-z][a-z0-9_]{0,31}")
        return family, (name.decode(),)
    kinds = _FIELDS[family]
    size = 1 + sum(PUBKEY_SIZE if k == "k" else INT_SIZE for k in kinds)
    if len(key) != size:
        raise BadKeyError(f"{family.name.lower()} key: {size} bytes, got {len(key)}")
    fields: list[bytes | int] = []
    at = 1
    for k in kinds:
        n = PUBKEY_SIZE if k == "k" else INT_SIZE
        chunk = key[at : at + n]
        fields.append(chunk if k == "k" else int.from_bytes(chunk, "big"))
        at += n
    return family, tuple(fields)
