"""The authenticated state: a binary sparse Merkle tree over 256-bit key paths, updated incrementally.

A key sits at path BLAKE2b-256(key). A subtree holding no leaf hashes to EMPTY, a subtree holding one leaf IS that
leaf (the leaf hash binds its full path, so it may sit at any depth), and only a subtree of two or more leaves is an
internal node. The shape is thus fixed by the set of keys alone: the root does not depend on insertion order, and the
depth is ~log2(n), not 256. A batch of c changes rewrites only the c paths: O(c x log n) hashes. Normative text:
spec/state-tree.md; the hashing lives in protocol/proof.py, which a light client imports alone.

Nodes live in a NodeStore (node hash -> encoded node), content-addressed and never overwritten, so every past root
stays readable until the store prunes it; node/ can back it with SQLite and a cache of hot nodes. A tree made with
`history=False` (the chain state's, which serves only its current root) deletes the nodes each update replaces, so
its store holds one tree, not every version.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from protocol.errors import StateError
from protocol.proof import EMPTY, INTERNAL_TAG, LEAF_TAG, MAX_KEY_SIZE, Proof, bit, h, key_path, leaf_hash

_LEAF, _INTERNAL = 0, 1
_Item = tuple[bytes, bytes, bytes | None]  # (path, key, value or None to delete)


class TreeError(StateError):
    """A bad key or value handed to the tree, or a store that lacks a node the root needs."""


class NodeStore(Protocol):
    """Content-addressed node storage. `put` of a hash already stored writes the same bytes again."""

    def get(self, node_hash: bytes) -> bytes | None: ...

    def put(self, node_hash: bytes, node: bytes) -> None: ...

    def delete(self, node_hash: bytes) -> None:
        """Forget a node no kept root reaches (called only by a tree that keeps no history)."""
        ...


class MemoryStore:
    """A NodeStore in a dict: for tests, benches and throw-away trees."""

    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}

    def get(self, node_hash: bytes) -> bytes | None:
        return self.nodes.get(node_hash)

    def put(self, node_hash: bytes, node: bytes) -> None:
        self.nodes[node_hash] = node

    def delete(self, node_hash: bytes) -> None:
        self.nodes.pop(node_hash, None)


def encode_leaf(key: bytes, value: bytes) -> bytes:
    """`0x00 || u16 len(key) || key || value`: the stored form keeps the key, so the tree can be listed."""
    return LEAF_TAG + len(key).to_bytes(2, "big") + key + value


def decode_leaf(node: bytes) -> tuple[bytes, bytes]:
    n = int.from_bytes(node[1:3], "big")
    return node[3 : 3 + n], node[3 + n :]


def node_hash(node: bytes) -> bytes:
    """The hash a stored node encoding is filed under (spec/state-tree.md §5): how a store that reads a node back
    from disk checks it is the node asked for. TreeError for bytes that are no node encoding."""
    if node[:1] == INTERNAL_TAG and len(node) == 65:
        return h(node)
    if node[:1] == LEAF_TAG and len(node) >= 3 and 0 < int.from_bytes(node[1:3], "big") <= len(node) - 3:
        key, value = decode_leaf(node)
        return leaf_hash(key_path(key), h(value))
    raise TreeError(f"{len(node)} bytes that are no stored tree node (tag {node[:1].hex() or 'none'})")


def _split(items: list[_Item], lo: int, hi: int, depth: int) -> int:
    """The first index in items[lo:hi] (sorted, sharing `depth` leading bits) whose path has bit `depth` set: the
    bits there run 0...0 1...1, so a binary search finds it (a batch's top levels split ranges of ~all its keys)."""
    byte, mask = depth >> 3, 0x80 >> (depth & 7)
    while lo < hi:
        mid = (lo + hi) >> 1
        if items[mid][0][byte] & mask:
            hi = mid
        else:
            lo = mid + 1
    return lo


class Tree:
    """An authenticated map from key bytes to value bytes, with `root` the hash of the whole map."""

    __slots__ = ("root", "store", "_history", "_dropped")

    def __init__(self, store: NodeStore, root: bytes = EMPTY, *, history: bool = True) -> None:
        self.store = store
        self.root = root
        self._history = history  # False: an update deletes the nodes it replaces (only `root` stays readable)
        self._dropped: list[bytes] = []  # replaced nodes, deleted once the update succeeded (history=False)

    # --- reads ------------------------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        return self.prove(key)[0]

    def prove(self, key: bytes) -> tuple[bytes | None, Proof]:
        """The key's value (None: absent) and the proof of it under `root`, from one walk."""
        _check_key(key)
        path, node, siblings = key_path(key), self.root, []
        while node != EMPTY:
            enc = self._load(node)
            if enc[0] == _LEAF:
                k, v = decode_leaf(enc)
                return (v if k == key else None), Proof(tuple(siblings), (key_path(k), h(v)))
            left, right = enc[1:33], enc[33:65]
            node, sib = (right, left) if bit(path, len(siblings)) else (left, right)
            siblings.append(sib)
        return None, Proof(tuple(siblings), None)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value), in path order: for snapshots and state sync."""
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node == EMPTY:
                continue
            enc = self._load(node)
            if enc[0] == _LEAF:
                yield decode_leaf(enc)
            else:
                stack += (enc[33:65], enc[1:33])

    # --- writes -----------------------------------------------------------------------------------------

    def update(self, changes: Mapping[bytes, bytes | None]) -> bytes:
        """Set each key to its value, or delete it (None; deleting an absent key is a no-op); return the new root."""
        items: list[_Item] = []
        for key, value in changes.items():
            _check_key(key)
            if value is not None and type(value) is not bytes:
                raise TreeError(f"a value is bytes or None (delete), not {type(value).__name__}")
            items.append((key_path(key), key, value))
        items.sort(key=lambda it: it[0])
        try:
            root = self._update(self.root, 0, items, 0, len(items))[0]
            # A node hash sits at one place in a tree (a leaf binds its path, an internal node its leaves), and a
            # dropped node is never written again in the same update (an internal node whose children did not change
            # is kept, not dropped; a leaf that stays is not dropped: `_update`), so every dropped node is
            # unreachable from the new root. Deleting only after success keeps the old root whole if a load fails.
            for node in self._dropped:
                self.store.delete(node)
        finally:
            self._dropped = []
        self.root = root
        return root

    def _update(self, node: bytes, depth: int, items: list[_Item], lo: int, hi: int) -> tuple[bytes, bool | None]:
        """The subtree `node` at `depth` with items[lo:hi] applied: (hash, is it a leaf; None if unknown)."""
        if lo == hi:
            return node, None
        if node == EMPTY:
            return self._build(depth, [it for it in items[lo:hi] if it[2] is not None], 0, None)
        enc = self._load(node)
        if enc[0] == _LEAF:
            key, value = decode_leaf(enc)
            path = key_path(key)
            batch = items[lo:hi]
            mine = next((it for it in batch if it[0] == path), None)
            if mine is None:  # the old leaf stays, beside the new ones (maybe deeper: the same leaf hash)
                batch.append((path, key, value))
                batch.sort(key=lambda it: it[0])
            elif mine[2] != value:  # rewritten or deleted (written with its own value, it is the same leaf)
                self._drop(node)
            return self._build(depth, [it for it in batch if it[2] is not None], 0, None)
        left, right = enc[1:33], enc[33:65]
        mid = _split(items, lo, hi, depth)
        # An untouched side is not visited: most of the batch's paths part ways near the top.
        lnode, lleaf = self._update(left, depth + 1, items, lo, mid) if lo < mid else (left, None)
        rnode, rleaf = self._update(right, depth + 1, items, mid, hi) if mid < hi else (right, None)
        if lnode == left and rnode == right:
            return node, False
        self._drop(node)
        return self._join(lnode, lleaf, rnode, rleaf)

    def _build(self, depth: int, items: list[_Item], lo: int, hi: int | None) -> tuple[bytes, bool | None]:
        """The subtree at `depth` holding exactly items[lo:hi] (all with values), from nothing."""
        hi = len(items) if hi is None else hi
        if hi - lo == 0:
            return EMPTY, False
        if hi - lo == 1:
            path, key, value = items[lo]
            return self._put_leaf(path, key, value), True
        mid = _split(items, lo, hi, depth)
        lnode, lleaf = self._build(depth + 1, items, lo, mid)
        rnode, rleaf = self._build(depth + 1, items, mid, hi)
        return self._join(lnode, lleaf, rnode, rleaf)

    def _join(self, left: bytes, lleaf: bool | None, right: bytes, rleaf: bool | None) -> tuple[bytes, bool]:
        """The parent of two subtrees: nothing over nothing is EMPTY, one leaf over nothing is that leaf."""
        if right == EMPTY or left == EMPTY:
            only, leaf = (left, lleaf) if right == EMPTY else (right, rleaf)
            if only == EMPTY:
                return EMPTY, False
            if leaf is None:
                leaf = self._load(only)[0] == _LEAF
            if leaf:
                return only, True
        enc = INTERNAL_TAG + left + right  # its hash is proof.internal_hash(left, right)
        node = h(enc)
        self._put(node, enc)
        return node, False

    def _put_leaf(self, path: bytes, key: bytes, value: bytes) -> bytes:
        node = leaf_hash(path, h(value))
        self._put(node, encode_leaf(key, value))
        return node

    def _put(self, node: bytes, enc: bytes) -> None:
        self.store.put(node, enc)

    def _drop(self, node: bytes) -> None:
        if not self._history:
            self._dropped.append(node)

    def _load(self, node: bytes) -> bytes:
        enc = self.store.get(node)
        if enc is None:
            raise TreeError(f"the node store lacks node {node.hex()}: the tree at this root is incomplete")
        return enc


def _check_key(key: object) -> None:
    if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE:
        raise TreeError(f"a key is 1 to {MAX_KEY_SIZE} bytes, got {type(key).__name__} of length {_len(key)}")


def _len(x: object) -> int | None:
    return len(x) if isinstance(x, bytes | bytearray | str) else None

