"""The chain state in chain.db: its tree's nodes (a NodeStore over SQLite, with a write-back buffer and a cache of hot
nodes) and the proposals' stake positions, which together are the state snapshot.

What is on disk (spec/state-tree.md §5.1): the tree of the latest state snapshot, exactly, in `state_nodes`, named by
its height and root in `meta`, and the stake positions its proposal records name by digest, in `stake_positions`. The
nodes an update writes or drops wait in memory (`TreeStore`'s buffer) and reach disk with the next snapshot, with the
positions that changed (`snapshot_changes`), in the transaction that stores that snapshot's commit
(`Store.put_commit`): so a snapshot costs what changed since the last one, not the state's size, and a crash leaves
the tree, the positions and the recorded root together, all at the snapshot's height. A restart (`load_state`)
rebuilds the state from the tree's leaves and the positions (State.from_records), takes the tree on disk as it is
(no O(n) rebuild), and the chain then replays the later commits on both, checking each recorded root as before.

Reads go buffer, then cache (an LRU of the nodes read or flushed last: the top levels stay in it, as every update
walks them), then SQLite; a node read from disk is checked against its hash, so a damaged row is a TreeError, never a
wrong root.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from node.storage import StateSnapshot, Store, StoreError
from protocol.errors import StateError
from protocol.state.genesis import Genesis
from protocol.state.state import State
from protocol.state.tree import TreeError, decode_leaf, node_hash

log = logging.getLogger(__name__)

CACHE_NODES = 1 << 16  # ~15 MB: the top 16 levels of the tree, or the most recently used nodes below them
REBUILD_HINT = ("run `tensornet node db check --drop-tree`; the next start rebuilds the state from an older build's "
                "full snapshot if the store has one, else by replaying the stored commits from genesis")


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

    The state is rebuilt from the stored tree's leaves and stake positions, and the tree taken as it is (its root is
    the one recorded at its height, checked). A store an older build wrote keeps its latest full snapshot until this
    build's first snapshot replaces it: that one is loaded, as before. The chain replays later commits on top."""
    nodes = TreeStore(store, cache_nodes)
    legacy, stored = store.latest_snapshot(), store.stored_tree()
    if legacy is not None:
        log.info("chain.db holds an older build's full state snapshot (height %d): loading it; the next snapshot "
                 "stores the state as its tree and stake positions and drops it (spec/state-tree.md §5.1)", legacy[0])
        return _load_full(store, nodes, *legacy)
    if stored is None:  # nothing stored yet, or dropped: from genesis, with the tree built in the buffer
        store.drop_tree()
        state = State.from_genesis(genesis)
        state.use_tree(nodes, None)
        return state
    height, root = stored
    recorded = _recorded_root(store, height)
    try:
        if recorded != root:
            raise StateError(f"its root {root.hex()[:16]}… is not the one recorded at that height")
        state = stored_state(store)
        if state.height != height:
            raise StateError(f"its records say height {state.height}")
    except StateError as exc:
        raise StoreError(f"chain.db's stored state (height {height}) is damaged: {exc}: {REBUILD_HINT}") from None
    state.use_tree(nodes, root)
    return state


def stored_state(store: Store) -> State:
    """The state at the stored snapshot, from the tree's leaves (one table scan) and the stake positions; its tree is
    not attached. StateError for records that make no state."""
    return State.from_records((decode_leaf(n) for n in store.leaf_nodes()), store.positions())


def snapshot_changes(state: State, store: Store) -> StateSnapshot:
    """What a snapshot writes beside the tree's buffered nodes: the stake positions of proposals opened since the last
    one, and the digests of those tallied since. O(open proposals), plus one encoding of each new one's positions."""
    stored, wanted = store.position_digests(), state.positions()
    new = {d: state.encoded_positions(pid) for d, pid in wanted.items() if d not in stored}
    return StateSnapshot(new, frozenset(stored - wanted.keys()))


def _load_full(store: Store, nodes: TreeStore, height: int, data: bytes) -> State:
    """An older build's full snapshot, with the tree stored beside it if that tree is this snapshot's (its root the
    one recorded for the height); otherwise the tree is built once from the state (O(n)) and stored at once."""
    state = State.load(data)
    recorded = _recorded_root(store, height)
    if recorded is not None and store.stored_tree() == (height, recorded) and nodes.get(recorded) is not None:
        state.use_tree(nodes, recorded)
        return state
    if store.stored_tree() is not None:
        log.warning("the stored state tree is not the snapshot's (height %d): rebuilding it", height)
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
