"""Verify a state proof: is `key -> value` (or `key` absent) in the state whose root is `root`?

A light client imports this module alone: it needs only the stdlib (hashlib) and protocol.errors, no codec, no
signatures, no state. The hashing below is the one the state tree (protocol/state/tree.py) builds with, so the two
cannot drift. Normative text: spec/state-tree.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from protocol.errors import ProtocolError

HASH_SIZE = 32
EMPTY = bytes(HASH_SIZE)  # the hash of a subtree with no leaf
LEAF_TAG = b"\x00"
INTERNAL_TAG = b"\x01"
MAX_DEPTH = 256  # paths are 256 bits; two distinct paths part by bit 255 at the latest
MAX_KEY_SIZE = 0xFFFF


class ProofError(ProtocolError):
    """A proof that is malformed or does not bind (key, value) to the root; the message says which check failed."""


def h(data: bytes) -> bytes:
    """BLAKE2b-256, the same function as protocol.crypto.digest (restated so this module stands alone)."""
    return hashlib.blake2b(data, digest_size=HASH_SIZE).digest()


def key_path(key: bytes) -> bytes:
    """The 256-bit position of a key in the tree: keys spread uniformly, so depth stays ~log2(n)."""
    return h(key)


def leaf_hash(path: bytes, value_hash: bytes) -> bytes:
    """A leaf commits to its full path, so it may sit at any depth (a one-leaf subtree is that leaf)."""
    return h(LEAF_TAG + path + value_hash)


def internal_hash(left: bytes, right: bytes) -> bytes:
    return h(INTERNAL_TAG + left + right)


def bit(path: bytes, depth: int) -> int:
    """Bit `depth` of a path, most significant first: 0 goes left, 1 goes right."""
    return (path[depth >> 3] >> (7 - (depth & 7))) & 1


@dataclass(frozen=True, slots=True)
class Proof:
    """The walk from the root along a key's path.

    `siblings`: the other child's hash at each depth, root first. `leaf`: what the walk ends on, either nothing
    (None: an empty subtree) or a leaf `(path, value_hash)`, the key's own for inclusion, another key's for
    non-inclusion.
    """

    siblings: tuple[bytes, ...]
    leaf: tuple[bytes, bytes] | None

    def to_bytes(self) -> bytes:
        """`0x00` or `0x01 || path || value_hash`, then the siblings, 32 bytes each, root first."""
        head = b"\x00" if self.leaf is None else b"\x01" + self.leaf[0] + self.leaf[1]
        return head + b"".join(self.siblings)

    @classmethod
    def from_bytes(cls, data: bytes) -> Proof:
        if type(data) is not bytes or not data:
            raise ProofError("a proof is a non-empty byte string")
        head = 1 if data[0] == 0 else 1 + 2 * HASH_SIZE if data[0] == 1 else 0
        if head == 0:
            raise ProofError(f"a proof starts with 0x00 (empty) or 0x01 (leaf), not {data[0]:#04x}")
        rest = len(data) - head
        if rest < 0 or rest % HASH_SIZE or rest // HASH_SIZE > MAX_DEPTH:
            raise ProofError(f"a proof of {len(data)} bytes is not a head and at most {MAX_DEPTH} 32-byte siblings")
        leaf = None if head == 1 else (data[1 : 1 + HASH_SIZE], data[1 + HASH_SIZE : head])
        sibs = tuple(data[i : i + HASH_SIZE] for i in range(head, len(data), HASH_SIZE))
        return cls(sibs, leaf)


def verify(root: bytes, key: bytes, value: bytes | None, proof: Proof) -> None:
    """Return if `proof` shows `key -> value` under `root` (`value` None: `key` is absent); else raise ProofError."""
    if type(root) is not bytes or len(root) != HASH_SIZE:
        raise ProofError("a root is 32 bytes")
    if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE:
        raise ProofError(f"a key is 1 to {MAX_KEY_SIZE} bytes")
    if value is not None and type(value) is not bytes:
        raise ProofError("a value is bytes, or None for an absent key")
    sibs, leaf = proof.siblings, proof.leaf
    if len(sibs) > MAX_DEPTH or any(type(s) is not bytes or len(s) != HASH_SIZE for s in sibs):
        raise ProofError(f"a proof has at most {MAX_DEPTH} siblings of 32 bytes each")
    path, depth = key_path(key), len(sibs)
    if leaf is None:
        if value is not None:
            raise ProofError("the proof shows the key absent (empty subtree), but a value was claimed")
        node = EMPTY
    else:
        lpath, lvalue = leaf
        if any(type(x) is not bytes or len(x) != HASH_SIZE for x in (lpath, lvalue)):
            raise ProofError("a proof's leaf is (32-byte path, 32-byte value hash)")
        if any(bit(lpath, d) != bit(path, d) for d in range(depth)):
            raise ProofError("the proof's leaf does not lie on the key's path")
        if value is None and lpath == path:
            raise ProofError("the proof shows the key present, but absence was claimed")
        if value is not None and lpath != path:
            raise ProofError("the proof shows another key's leaf (the key is absent), but a value was claimed")
        if value is not None and lvalue != h(value):
            raise ProofError("the value does not match the proof's leaf")
        node = leaf_hash(lpath, lvalue)
    for d in range(depth - 1, -1, -1):
        node = internal_hash(sibs[d], node) if bit(path, d) else internal_hash(node, sibs[d])
    if node != root:
        raise ProofError("the proof does not lead to the root")
