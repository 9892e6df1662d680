"""The state in chain.db (node/treestore.py): snapshots that write what changed, restart from the stored tree's
records without a rebuild, damaged nodes, db check, stores an older build wrote."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from node.chain import Chain
from node.dbcheck import check_tree, drop_stored_tree
from node.storage import TREE_ROOT, CommitRecord, StateSnapshot, Store, StoreError
from node.treestore import TreeStore, snapshot_changes, stored_state
from protocol import crypto
from protocol.crypto import Keypair
from protocol.messages import Propose, SignedTransaction, Transaction
from protocol.state.genesis import Genesis, build_genesis
from protocol.state.state import State
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
    balances[KEY.public] = 1000 * UNIT  # pays a proposal's deposit
    return build_genesis("treestore-test", validators=[(KEY.public, 1000 * UNIT)], balances=balances)


def run_chain(home: Path, genesis: Genesis, clock: FakeClock, commits: int, *, proposal: bool = False) -> Chain:
    """A one-validator chain that snapshots every 3 commits, run until `commits` more commits (with `proposal`, the
    first of them opens a governance proposal)."""
    chain = Chain(home, genesis, keypair=KEY, clock=clock, snapshot_every=3)
    if proposal:
        propose(chain)
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


@pytest.fixture
def full_encodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every encoding of the whole state (State.snapshot and State.to_obj), whoever makes it."""
    calls: list[int] = []
    to_obj = State.to_obj
    monkeypatch.setattr(State, "to_obj", lambda self: calls.append(self.height) or to_obj(self))
    return calls


def propose(chain: Chain) -> None:
    """A proposal opened: its stake positions are the one part of the state that its tree record names by digest."""
    tx = Transaction(chain.chain_id, KEY.public, chain.next_nonce(KEY.public), Propose("max_subnets", 40, "t"), 0)
    chain.submit_tx(SignedTransaction.create(tx, KEY).to_bytes())


def test_snapshots_write_what_changed_and_a_restart_takes_the_stored_state(
    tmp_path: Path, genesis: Genesis, full_encodes: list[int]
) -> None:
    clock = FakeClock()
    chain = run_chain(tmp_path, genesis, clock, 8, proposal=True)
    assert chain.state.governance.proposals[1].snapshot  # the proposal is open: its positions are stored
    height, root = chain.height, chain.state.root()
    snap_height = chain.store.stored_tree()[0]
    assert chain.store.stored_tree() == (snap_height, chain.store.commits(snap_height, snap_height)[0].state_root)
    assert snap_height < height and snap_height % 3 == 0  # the restart replays commits after the snapshot
    assert chain.store.position_digests() == set(chain.state.positions())
    chain.close()

    restarted = Chain(tmp_path, genesis, keypair=KEY, clock=clock, snapshot_every=3)
    assert (restarted.height, restarted.state.root()) == (height, root)
    # a rebuild writes every node (over 2 x ACCOUNTS); the replay of a few commits writes a few dozen
    assert tree_writes(restarted) < ACCOUNTS // 10
    restarted.close()
    restarted = run_chain(tmp_path, genesis, clock, 5)  # it keeps committing on the stored tree
    assert restarted.state.root() == restarted.state.rebuild_root()
    assert check_tree(restarted.store) == []
    assert stored_state(restarted.store).positions() == restarted.state.positions()
    assert restarted.store.latest_snapshot() is None  # no full snapshot written
    restarted.close()
    assert full_encodes == []  # no snapshot, restart or replay encoded the whole state


def test_snapshot_changes_writes_positions_once_and_drops_them_after_the_tally(
    tmp_path: Path, genesis: Genesis
) -> None:
    clock = FakeClock()
    chain = run_chain(tmp_path, genesis, clock, 4, proposal=True)
    (digest,) = chain.state.positions()
    assert snapshot_changes(chain.state, chain.store) == StateSnapshot()  # stored already: nothing to write again
    chain.state.governance.proposals[1].snapshot = {}  # what the tally does
    assert snapshot_changes(chain.state, chain.store) == StateSnapshot({}, frozenset({digest}))
    chain.close()


def test_a_dropped_state_replays_from_genesis_and_is_stored_again(tmp_path: Path, genesis: Genesis) -> None:
    clock = FakeClock()
    chain = run_chain(tmp_path, genesis, clock, 4)
    height, root = chain.height, chain.state.root()
    chain.close()
    drop_stored_tree(tmp_path)

    first = Chain(tmp_path, genesis, keypair=KEY, clock=clock, snapshot_every=3)
    assert (first.height, first.state.root()) == (height, root)
    assert tree_writes(first) > 2 * ACCOUNTS  # built from nothing
    assert first.store.stored_tree() is None and check_tree(first.store) == []  # stored with the next snapshot
    first.close()
    second = run_chain(tmp_path, genesis, clock, 3)
    assert second.store.stored_tree()[0] > height and check_tree(second.store) == []
    second.close()


def older_build_store(tmp_path: Path, genesis: Genesis, clock: FakeClock, with_tree: bool) -> tuple[int, bytes]:
    """A chain.db as an older build left it: a full snapshot at the tree's height, no stake positions, and (with_tree
    False) no stored tree either. (height, root) of its chain."""
    chain = run_chain(tmp_path, genesis, clock, 4, proposal=True)
    height, root = chain.height, chain.state.root()
    snap_height = chain.store.stored_tree()[0]
    full = stored_state(chain.store).snapshot()
    chain.close()
    with sqlite3.connect(tmp_path / "chain.db") as con:
        con.execute("INSERT INTO snapshots (height, data) VALUES (?, ?)", (snap_height, full))
        con.execute("DELETE FROM stake_positions")
        if not with_tree:
            con.execute("DELETE FROM state_nodes")
            con.execute("DELETE FROM meta WHERE key LIKE 'state_tree_%'")
    return height, root


@pytest.mark.parametrize("with_tree", [True, False])
def test_an_older_builds_full_snapshot_is_loaded_then_replaced_by_the_next_snapshot(
    tmp_path: Path, genesis: Genesis, with_tree: bool, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    height, root = older_build_store(tmp_path, genesis, clock, with_tree)
    store = Store(tmp_path / "chain.db")
    assert check_tree(store) == []  # checked against the full snapshot
    store.close()
    with caplog.at_level("INFO", logger="node.treestore"):
        chain = Chain(tmp_path, genesis, keypair=KEY, clock=clock, snapshot_every=3)
    assert "older build's full state snapshot" in caplog.text
    assert (chain.height, chain.state.root()) == (height, root)
    assert (tree_writes(chain) < ACCOUNTS // 10) == with_tree  # its tree taken, or built once
    chain.close()
    chain = run_chain(tmp_path, genesis, clock, 3)  # the next snapshot stores the positions, drops the full one
    assert chain.store.latest_snapshot() is None and chain.store.position_digests() == set(chain.state.positions())
    assert check_tree(chain.store) == []
    height, root = chain.height, chain.state.root()
    chain.close()
    restarted = Chain(tmp_path, genesis, keypair=KEY, clock=clock, snapshot_every=3)
    assert (restarted.height, restarted.state.root()) == (height, root) and tree_writes(restarted) < ACCOUNTS // 10
    restarted.close()


def test_db_check_catches_a_damaged_or_mismatched_tree_and_drop_tree_repairs_it(
    tmp_path: Path, genesis: Genesis
) -> None:
    clock = FakeClock()
    chain = run_chain(tmp_path, genesis, clock, 4)
    root = chain.state.root()
    chain.close()
    db = tmp_path / "chain.db"

    with sqlite3.connect(db) as con:  # a leaf's value changed on disk
        victim, node = con.execute("SELECT hash, node FROM state_nodes WHERE substr(node, 1, 1) = x'00'").fetchone()
        con.execute("UPDATE state_nodes SET node = ? WHERE hash = ?", (node + b"\x00", victim))
    store = Store(db)
    problems = check_tree(store)
    assert len(problems) == 1 and "damaged" in problems[0] and "--drop-tree" in problems[0]
    store.close()
    with pytest.raises(StoreError, match=r"stored state \(height \d+\) is damaged.*--drop-tree"):
        Chain(tmp_path, genesis, keypair=KEY, clock=clock, snapshot_every=3)

    with sqlite3.connect(db) as con:  # the tree named with another root than the commit records
        con.execute("UPDATE meta SET value = ? WHERE key = ?", (b"\x07" * 32, TREE_ROOT))
    store = Store(db)
    problems = check_tree(store)
    assert len(problems) == 1 and "not the root recorded" in problems[0] and "--drop-tree" in problems[0]
    store.close()
    with pytest.raises(StoreError, match="not the one recorded"):
        Chain(tmp_path, genesis, keypair=KEY, clock=clock, snapshot_every=3)

    drop_stored_tree(tmp_path)
    repaired = run_chain(tmp_path, genesis, clock, 3)  # replayed from genesis, then stored at the next snapshot
    assert repaired.state.root() != root and repaired.store.stored_tree() is not None
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
    snap = StateSnapshot({b"p" * 32: b"positions"})
    with pytest.raises(Exception, match="not the next one"):
        store.put_commit(CommitRecord(3, b"d" * 32, b"x", r2), snapshot=snap)
    assert store.tree_node_count() == 0 and nodes.pending()[0] and store.positions() == {}  # rolled back
    store.put_commit(CommitRecord(2, b"d" * 32, b"x", r2), snapshot=snap)
    assert store.stored_tree() == (2, r2) and nodes.pending() == ({}, set())
    assert store.positions() == {b"p" * 32: b"positions"}
    assert store.tree_node_count() == 3  # exactly the tree at r2: two leaves and their parent, nothing replaced
    store.close()
    store = Store(tmp_path / "chain.db")
    assert dict(Tree(TreeStore(store, cache_nodes=1), r2).items()) == {b"a": b"3", b"b": b"2"}
    store.close()


def test_a_snapshot_without_the_tree_attached_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "chain.db")
    with pytest.raises(StoreError, match="attach the tree"):
        store.put_commit(CommitRecord(1, b"d" * 32, b"x", b"r" * 32), snapshot=StateSnapshot())
    assert store.last_commit() is None
    store.close()
