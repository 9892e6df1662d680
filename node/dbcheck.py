"""`tensornet node db check`: verify a node's store without running the node.

Besides the commits, it checks the stored state (node/treestore.py): that the tree's root is the one recorded for its
height, that every node under it is there and hashes to its name and the table holds no other, and that the state
rebuilt from its leaves and stake positions gives that root and needs exactly the positions stored. A store still
holding an older build's full snapshot is checked against that snapshot instead. Each proof kept at an epoch boundary
must lead to the root recorded at its height and prove the record of the next epoch starting right after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node.config import GENESIS_FILE
from node.errors import NodeError
from node.storage import BoundaryProof, CommitRecord, Store
from node.treestore import REBUILD_HINT, TreeStore, stored_state
from protocol import crypto
from protocol.consensus.block import DagRef
from protocol.consensus.core import vertex_from_bytes
from protocol.consensus.linearizer import commit_digest
from protocol.errors import StateError
from protocol.lightclient import BoundaryError, next_committee
from protocol.messages import Commit
from protocol.proof import Proof, ProofError, verify
from protocol.state import keys
from protocol.state.genesis import load_genesis
from protocol.state.state import State
from protocol.state.transition import apply_commit
from protocol.state.tree import TreeError


def check_store(home: Path, *, replay: bool = True) -> dict[str, Any]:
    db = home / "chain.db"
    if not db.exists():
        raise NodeError(f"{db} does not exist: nothing to check (has the node run yet?)")
    genesis = load_genesis(str(home / GENESIS_FILE))
    store = Store(db)
    state = State.from_genesis(genesis) if replay else None
    checked = 0

    def verify(rec: CommitRecord, prev: bytes | None) -> None:
        nonlocal checked
        c = Commit.from_bytes(rec.data)
        if c.index != rec.index:
            raise ValueError(f"row says index {rec.index}, commit says {c.index}")
        if prev is not None and c.prev_digest != prev:
            raise ValueError("prev_digest does not match the previous commit's digest")
        refs = [DagRef(b.round, b.author, b.digest) for b in c.blocks]
        leader = DagRef(c.leader.round, c.leader.author, c.leader.digest)
        if commit_digest(c.index, leader, refs, c.prev_digest) != rec.digest:
            raise ValueError("commit digest does not match its contents")
        txs: list[bytes] = []
        for ref in refs:
            data = store.get_block(ref.digest)
            if data is None:
                raise ValueError(f"block {ref.digest.hex()[:16]}… is missing")
            if crypto.digest(data) != ref.digest:
                raise ValueError(f"block {ref.digest.hex()[:16]}… is corrupt")
            txs.extend(vertex_from_bytes(data).payload)
        if state is not None:
            apply_commit(state, rec.index, txs, leader_round=c.leader.round, commit_digest=rec.digest)
            if state.root() != rec.state_root:
                raise ValueError("state root differs from a replay from genesis")
        checked += 1

    try:
        problems = store.check(verify)
        problems += check_tree(store)
        problems += check_boundaries(store)
        last = store.last_commit()
    finally:
        store.close()
    if state is not None and state.root() != state.rebuild_root():  # the incremental tree against one from nothing
        problems.append("the replayed state's incremental root differs from its root rebuilt from the whole state")
    return {
        "database": str(db),
        "commits": checked,
        "height": last.index if last else 0,
        "replayed": replay,
        "problems": problems,
        "ok": not problems,
    }


def check_tree(store: Store) -> list[str]:
    """Problems with the stored state (empty when it is whole and agrees with the commit recorded at its height)."""
    legacy, stored = store.latest_snapshot(), store.stored_tree()
    if stored is None or (legacy is not None and legacy[0] != stored[0]):
        # no state stored (no snapshot taken yet, or dropped), or an older build's tree beside a later full snapshot:
        # the next start builds it (from that snapshot, or by replaying the commits)
        return []
    height, root = stored
    rows = store.commits(height, height)
    if not rows or rows[0].state_root != root:
        recorded = rows[0].state_root.hex()[:16] + "…" if rows else "nothing"
        return [f"the stored state tree's root {root.hex()[:16]}… is not the root recorded at height {height} "
                f"({recorded}): {REBUILD_HINT}"]
    try:
        count = TreeStore(store).verify(root)
    except TreeError as exc:
        return [str(exc)]
    problems = []
    if count != store.tree_node_count():
        problems.append(f"the state tree table holds {store.tree_node_count()} nodes, {count} under its root: "
                        f"{REBUILD_HINT}")
    try:
        state = State.load(legacy[1]) if legacy else stored_state(store)
    except StateError as exc:
        return [*problems, f"the stored state at height {height} makes no state: {exc}: {REBUILD_HINT}"]
    if state.rebuild_root() != root:
        problems.append(f"the stored state at height {height} does not give its recorded root: {REBUILD_HINT}")
    if not legacy and store.position_digests() != state.positions().keys():
        problems.append(f"chain.db holds stake positions no proposal names: {REBUILD_HINT}")
    return problems


# no past state is kept to prove anything at an old height again: a node that executes the commits anew proves it
BOUNDARY_HINT = ("light clients walking through that epoch stop at this node; only executing the commits anew proves "
                 "it again: sync a fresh home from the network (`tensornet node join`) and use its chain.db")


def check_boundaries(store: Store) -> list[str]:
    """Problems with the proofs kept at epoch boundaries (spec/state-tree.md §7): each must lead to the state root
    recorded at its height, and the `epoch` record it proves must name the next epoch starting at height + 1."""
    problems = []
    for height, kept in store.boundary_rows():
        fault = _boundary_fault(store, height, kept)
        if fault is not None:
            problems.append(f"the boundary proof kept at height {height} (epoch {kept.epoch}'s closing commit) "
                            f"{fault}: {BOUNDARY_HINT}")
    return problems


def _boundary_fault(store: Store, height: int, kept: BoundaryProof) -> str | None:
    rows = store.commits(height, height)
    if not rows:
        return "is at a height with no commit recorded"
    try:
        verify(rows[0].state_root, kept.key, kept.value, Proof.from_bytes(kept.proof))
    except ProofError as exc:
        return f"does not check out against the root recorded there ({exc})"
    if kept.key == keys.global_("epoch"):
        try:
            next_committee(kept.epoch, height, kept.value)
        except BoundaryError as exc:
            return f"proves no next committee: {exc.reason}"
    return None


def drop_stored_tree(home: Path) -> None:
    """Forget the stored state (`db check --drop-tree`): the next start rebuilds it (an older build's full snapshot if
    one is left, else a replay of the commits from genesis)."""
    db = home / "chain.db"
    if not db.exists():
        raise NodeError(f"{db} does not exist: no state tree to drop")
    store = Store(db)
    try:
        store.drop_tree()
    finally:
        store.close()
