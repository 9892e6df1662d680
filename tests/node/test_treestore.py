"""The state tree in chain.db (node/treestore.py): restart without a rebuild, damaged nodes, db check, old stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from node.chain import Chain
from node.dbcheck import check_tree, drop_stored_tree
from node.storage import TREE_ROOT, CommitRecord, Store
from node.treestore import TreeStore
from protocol import crypto
from protocol.crypto import Keypair
from protocol.state.genesis import Genesis, build_genesis
from protocol.state.tree import Tree, TreeError

UNIT = 10**9
ACCOUNTS = 10_000
KEY = Keypair(b"\x01" * 32)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def genesis() -> Genesis:
    """One validator (it commits alone) and 10^4 funded accounts: a rebuild would write over 2 x 10^4 nodes."""
    balances = {crypto.digest(b"account-%d" % i): UNIT + i for i in range(ACCOUNTS)}
    return build_genesis("treestore-test", validators=[(KEY.public, 1000 * UNIT)], balances=balances)


def run_chain(home: Path, genesis: Genesis, clock: FakeClock, commits: int) -> Chain:
    """A one-validator chain that snapshots every 3 commits, run until `commits` more commits."""
    chain = Chain(home, genesis, keypair=KEY, clock=clock, snapshot_every=3)
    target = chain.height + commits
    for _ in range(20 * commits):
        if chain.height >= target:
            break
        clock.t += 0.3
        chain.propose()
    assert chain.height >= target
    return chain


def tree_writes(chain: Chain) -> int:
    tree = chain.store.tree
    assert isinstance(tree, TreeStore)
    return tree.writes


def test_restart_takes_the_stored_tree_instead_of_rebuilding(tmp_path: Path, genesis: Genesis) -> None:
    clock = FakeClock()
    chain = run_chain(tmp_path, genesis, clock, 8)
    height, root = chain.height, chain.state.root()
    snap_height = chain.store.latest_snapshot()[0]
    assert chain.store.stored_tree() == (snap_height, chain.store.commits(snap_height, snap_height)[0].state_root)
    assert snap_height < height  # the restart replays commits after the snapshot on the stored tree
    chain.close()

    restarted = Chain(tmp_path, genesis, keypair=KEY, clock=clock, snapshot_every=3)
    assert (restarted.height, restarted.state.root()) == (height, root)
    # a rebuild writes every node (over 2 x ACCOUNTS); the replay of a few commits writes a few dozen
    assert tree_writes(restarted) < ACCOUNTS // 10
    restarted.close()
    restarted = run_chain(tmp_path, genesis, clock, 5)  # it keeps committing on the stored tree
    assert restarted.state.root() == restarted.state.rebuild_root()
    assert check_tree(restarted.store) == []
    restarted.close()


def test_a_store_without_a_tree_builds_it_once_and_stores_it(tmp_path: Path, genesis: Genesis) -> None:
    """A chain.db written before trees were stored (here: its tree dropped) rebuilds at the first start only."""
    clock = FakeClock()
    chain = run_chain(tmp_path, genesis, clock, 4)
    height, root = chain.height, chain.state.root()
    chain.close()
    drop_stored_tree(tmp_path)

    first = Chain(tmp_path, genesis, keypair=KEY, clock=clock, snapshot_every=3)
    assert (first.height, first.state.root()) == (height, root)
    assert tree_writes(first) > 2 * ACCOUNTS  # built from nothing
    assert first.store.stored_tree() is not None and check_tree(first.store) == []  # and stored at once
    first.close()
    second = Chain(tmp_path, genesis, keypair=KEY, clock=clock, snapshot_every=3)
    assert second.state.root() == root and tree_writes(second) < ACCOUNTS // 10
    second.close()


def test_db_check_catches_a_damaged_or_mismatched_tree_and_drop_tree_repairs_it(
    tmp_path: Path, genesis: Genesis
) -> None:
    clock = FakeClock()
    chain = run_chain(tmp_path, genesis, clock, 4)
    root = chain.state.root()
    stored_root = chain.store.stored_tree()[1]
    chain.close()
    db = tmp_path / "chain.db"

    with sqlite3.connect(db) as con:  # a leaf's value changed on disk
        victim, node = con.execute("SELECT hash, node FROM state_nodes WHERE substr(node, 1, 1) = x'00'").fetchone()
        con.execute("UPDATE state_nodes SET node = ? WHERE hash = ?", (node + b"\x00", victim))
    store = Store(db)
    problems = check_tree(store)
    assert len(problems) == 1 and "damaged" in problems[0] and "--drop-tree" in problems[0]
    store.close()

    with sqlite3.connect(db) as con:  # the tree named with another root than the commit records
        con.execute("UPDATE meta SET value = ? WHERE key = ?", (b"\x07" * 32, TREE_ROOT))
    store = Store(db)
    problems = check_tree(store)
    assert len(problems) == 1 and "not the root recorded" in problems[0] and "--drop-tree" in problems[0]
    store.close()

    drop_stored_tree(tmp_path)
    repaired = Chain(tmp_path, genesis, keypair=KEY, clock=clock, snapshot_every=3)
    assert repaired.state.root() == root and repaired.store.stored_tree()[1] == stored_root
    assert check_tree(repaired.store) == []
    repaired.close()


def stored_tree(tmp_path: Path) -> tuple[Path, bytes, dict[bytes, bytes]]:
    """A tree of 200 keys stored in a fresh chain.db as the tree of height 1; its root and its map."""
    store = Store(tmp_path / "chain.db")
    nodes = TreeStore(store)
    items = {b"key-%d" % i: b"value-%d" % i for i in range(200)}
    root = Tree(nodes, history=False).update(items)
    store.put_tree(1, root)
    store.close()
    return tmp_path / "chain.db", root, items


def test_a_damaged_or_missing_node_is_a_typed_error(tmp_path: Path) -> None:
    db, root, items = stored_tree(tmp_path)
    store = Store(db)
    assert dict(Tree(TreeStore(store), root).items()) == items  # read back whole from disk
    store.close()

    with sqlite3.connect(db) as con:
        con.execute("UPDATE state_nodes SET node = ? WHERE hash = ?", (b"\x01" + b"\x00" * 64, root))
    store = Store(db)
    with pytest.raises(TreeError, match="damaged"):
        Tree(TreeStore(store), root).get(b"key-1")
    store.close()

    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM state_nodes WHERE hash = ?", (root,))
    store = Store(db)
    with pytest.raises(TreeError, match="lacks node"):
        Tree(TreeStore(store), root).get(b"key-1")
    store.close()


def test_tree_writes_reach_disk_only_with_a_snapshot_in_its_transaction(tmp_path: Path) -> None:
    """Between snapshots the writes wait in memory; a commit that fails to store keeps them for the next try."""
    store = Store(tmp_path / "chain.db")
    nodes = TreeStore(store)
    tree = Tree(nodes, history=False)
    r1 = tree.update({b"a": b"1", b"b": b"2"})
    store.put_commit(CommitRecord(1, b"d" * 32, b"x", r1))  # no snapshot: nothing of the tree on disk
    assert store.tree_node_count() == 0 and store.stored_tree() is None
    r2 = tree.update({b"a": b"3"})
    with pytest.raises(Exception, match="not the next one"):
        store.put_commit(CommitRecord(3, b"d" * 32, b"x", r2), snapshot=b"snap")
    assert store.tree_node_count() == 0 and nodes.pending()[0]  # rolled back, still pending
    store.put_commit(CommitRecord(2, b"d" * 32, b"x", r2), snapshot=b"snap")
    assert store.stored_tree() == (2, r2) and nodes.pending() == ({}, set())
    assert store.tree_node_count() == 3  # exactly the tree at r2: two leaves and their parent, nothing replaced
    store.close()
    store = Store(tmp_path / "chain.db")
    assert dict(Tree(TreeStore(store, cache_nodes=1), r2).items()) == {b"a": b"3", b"b": b"2"}
    store.close()
