"""The state tree's nodes in chain.db: a NodeStore over SQLite, with a write-back buffer and a cache of hot nodes.

What is on disk (spec/state-tree.md §5.1): the tree of the latest state snapshot, exactly, in `state_nodes`, named by
its height and root in `meta`. The nodes an update writes or drops wait in memory (`TreeStore`'s buffer) and reach
disk with the next snapshot, in the transaction that stores that snapshot and its commit (`Store.put_commit`). So a
crash leaves the snapshot and its tree together, both at the snapshot's height, whose root the commit row records.
A restart (`load_state`) loads the snapshot, takes the tree on disk as it is (no O(n) rebuild), and the chain then
replays the later commits on both, checking each recorded root as before.

Reads go buffer, then cache (an LRU of the nodes read or flushed last: the top levels stay in it, as every update
walks them), then SQLite; a node read from disk is checked against its hash, so a damaged row is a TreeError, never a
wrong root.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from node.storage import Store, StoreError
from protocol.state.genesis import Genesis
from protocol.state.state import State
from protocol.state.tree import TreeError, node_hash

log = logging.getLogger(__name__)

CACHE_NODES = 1 << 16  # ~15 MB: the top 16 levels of the tree, or the most recently used nodes below them
REBUILD_HINT = "run `tensornet node db check --drop-tree`; the next start rebuilds the tree from the latest snapshot"


class TreeStore:
    """A NodeStore (protocol/state/tree.py) over chain.db's `state_nodes`; attaches itself to the store's snapshots."""

    __slots__ = ("store", "cache_nodes", "_puts", "_dels", "_cache", "disk_reads", "writes")

    def __init__(self, store: Store, cache_nodes: int = CACHE_NODES) -> None:
        self.store = store
        self.cache_nodes = cache_nodes
        self._puts: dict[bytes, bytes] = {}  # written since the last snapshot
        self._dels: set[bytes] = set()  # dropped since the last snapshot (disjoint from _puts)
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self.disk_reads = 0
        self.writes = 0  # nodes put: a build from nothing writes one per leaf and internal node
        store.tree = self

    def get(self, node_hash_: bytes) -> bytes | None:
        node = self._puts.get(node_hash_)
        if node is not None:
            return node
        if node_hash_ in self._dels:
            return None
        node = self._cache.get(node_hash_)
        if node is not None:
            self._cache.move_to_end(node_hash_)
            return node
        node = self.store.tree_node(node_hash_)
        if node is None:
            return None
        self.disk_reads += 1
        try:
            ok = node_hash(node) == node_hash_
        except TreeError:
            ok = False
        if not ok:
            raise TreeError(f"chain.db's state tree node {node_hash_.hex()} is damaged (its bytes hash to another "
                            f"node): {REBUILD_HINT}")
        self._remember(node_hash_, node)
        return node

    def put(self, node_hash_: bytes, node: bytes) -> None:
        self._puts[node_hash_] = node
        self._dels.discard(node_hash_)
        self.writes += 1

    def delete(self, node_hash_: bytes) -> None:
        self._puts.pop(node_hash_, None)
        self._cache.pop(node_hash_, None)
        self._dels.add(node_hash_)  # maybe never on disk (written and replaced since the snapshot): a no-op there

    def pending(self) -> tuple[dict[bytes, bytes], set[bytes]]:
        return self._puts, self._dels

    def flushed(self) -> None:
        """The buffer is on disk: what it wrote last is what the next updates walk first, so it stays cached."""
        puts, self._puts, self._dels = self._puts, {}, set()
        for item in list(puts.items())[-self.cache_nodes :]:
            self._remember(*item)

    def _remember(self, node_hash_: bytes, node: bytes) -> None:
        self._cache[node_hash_] = node
        if len(self._cache) > self.cache_nodes:
            self._cache.popitem(last=False)

    def verify(self, root: bytes) -> int:
        """Walk the whole tree under `root` on disk, checking every node (O(n)); the number of nodes it has.
        TreeError names the first node missing or damaged."""
        count, stack = 0, [root]
        while stack:
            h = stack.pop()
            if h == bytes(32):
                continue
            node = self.get(h)
            if node is None:
                raise TreeError(f"chain.db's state tree lacks node {h.hex()}: {REBUILD_HINT}")
            count += 1
            if node[0] == 1:  # internal: two children
                stack += (node[1:33], node[33:65])
        return count


def load_state(store: Store, genesis: Genesis, cache_nodes: int = CACHE_NODES) -> State:
    """The state at the latest snapshot (genesis if none), its tree kept in chain.db.

    The stored tree is taken as it is when it is this snapshot's and its root is the one recorded for the snapshot's
    height; otherwise (first start, no snapshot yet, a store written before trees were stored, a dropped tree) it is
    built once from the state (O(n)) and stored at once. The chain replays later commits on top."""
    snap = store.latest_snapshot()
    state = State.load(snap[1]) if snap else State.from_genesis(genesis)
    height = snap[0] if snap else 0
    recorded = _recorded_root(store, height)
    nodes = TreeStore(store, cache_nodes)
    stored = store.stored_tree()
    if recorded is not None and stored == (height, recorded) and nodes.get(recorded) is not None:
        state.use_tree(nodes, recorded)
        return state
    if stored is not None:
        log.warning("the stored state tree (height %d) is not the snapshot's (height %d): rebuilding it", stored[0],
                    height)
    store.drop_tree()
    state.use_tree(nodes, None)
    root = state.root()  # builds the tree from nothing
    if recorded is not None:
        if root != recorded:
            raise StoreError(f"the state snapshot at height {height} has root {root.hex()[:16]}…, the commit there "
                             f"records {recorded.hex()[:16]}…: run `tensornet node db check`")
        store.put_tree(height, root)
    return state


def _recorded_root(store: Store, height: int) -> bytes | None:
    rows = store.commits(height, height) if height else []
    return rows[0].state_root if rows else None
