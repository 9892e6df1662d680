"""State root cost per commit: the incremental tree against the full canonical re-encode, in the same run.

`python -m bench.state --json` prints one JSON object: `root_update_ms` (median time for the tree to take one batch
of `--changes` changed keys and return the new root) and `full_root_ms` (median time to hash the canonical CBOR of
the whole account map, as `State.root()` re-encodes its balances on every commit), each a map from account count
(as a string) to ms. The batch is a commit's worth of account churn: 80% balances changed, 10% new accounts, 10%
accounts emptied (deleted). Times are this process's CPU time (time.process_time), so that a figure taken on a
busy shared machine still says what the work costs. The goal (spec/state-tree.md §6): under 10 ms at 10^6
accounts, growing with log n.

`--state` adds the real thing, a `State` holding that many accounts: `state_root_ms` (median `State.root()` after a
commit's worth of writes through the ledger primitives, `--changes` accounts and the height: what a node pays per
commit) and `state_full_root_ms` (hashing one canonical encoding of the whole state, what the root cost before the
state tree, state root v1), each a map from account count to ms.

`root_update_sqlite_ms` is `root_update_ms` with the tree in a node's chain.db (node/treestore.py: a cold LRU cache
over SQLite, writes buffered), and `tree_flush_ms` the time to write the buffered changes of all `--updates` updates
to disk, as a node does with each state snapshot.

`--restart` adds what a node's start-up costs at each size, from a chain.db holding a snapshot of that many accounts:
`restart_s` (open the store, rebuild the state from the stored tree's leaves, take the tree: node/treestore.load_state)
against `restart_full_s` (load a full snapshot, an older build's, and take the stored tree beside it) and
`restart_rebuild_s` (load the full snapshot and build the tree from nothing, as before the tree was stored), all in
the same run, each a map from account count to seconds.

`--snapshot` adds the node's periodic snapshot step at each size, after `--snapshot-every` commits of `--changes`
accounts each: `snapshot_ms` (what it is: node/treestore.snapshot_changes and Store.put_commit, the tree's buffered
nodes written in the commit's transaction) against `snapshot_full_ms` (what the step did on top of that before: encode
the whole state, State.snapshot(), and write it; same run, same state), each a map from account count to ms.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from node.storage import CommitRecord, StateSnapshot, Store
from node.treestore import TreeStore, load_state, snapshot_changes
from protocol import codec, crypto
from protocol.economics.emission import UNIT
from protocol.state import keys
from protocol.state.genesis import Genesis, build_genesis
from protocol.state.state import State
from protocol.state.tree import MemoryStore, Tree


def _address(i: int) -> bytes:
    return crypto.digest(b"bench-account-%d" % i)


def _balance(i: int, version: int) -> int:
    return 10**9 + (i * 2654435761 + version * 40503) % 10**12


def _batch(n: int, changes: int, version: int) -> dict[int, int | None]:
    """Account index -> new balance (None: emptied) for one commit; spread over the accounts, new ones above n."""
    out: dict[int, int | None] = {}
    new, gone = changes // 10, changes // 10
    for j in range(changes - new - gone):
        i = (version * 7919 + j * 104729) % n
        out[i] = _balance(i, version)
    for j in range(gone):
        out[(version * 15485863 + j * 32452843 + 1) % n] = None
    for j in range(new):
        i = n + version * changes + j
        out[i] = _balance(i, version)
    return out


def _tree_changes(batch: dict[int, int | None]) -> dict[bytes, bytes | None]:
    return {keys.account(_address(i)): None if b is None else codec.encode(b) for i, b in batch.items()}


def measure(n: int, changes: int, updates: int, full_runs: int) -> dict[str, float]:
    balances = {_address(i): _balance(i, 0) for i in range(n)}
    tree = Tree(MemoryStore())
    t0 = time.process_time()
    tree.update({keys.account(a): codec.encode(b) for a, b in balances.items()})
    build_s = time.process_time() - t0

    update_ms = []
    for version in range(1, updates + 1):
        changed = _tree_changes(_batch(n, changes, version))  # encoding the values is the state's work, not the root's
        t0 = time.process_time()
        tree.update(changed)
        update_ms.append((time.process_time() - t0) * 1e3)

    full_ms = []
    for _ in range(full_runs):  # what State.root() does for the balances: sort, encode all, hash
        t0 = time.process_time()
        crypto.digest(codec.encode([[k, v] for k, v in sorted(balances.items())]))
        full_ms.append((time.process_time() - t0) * 1e3)
    return {
        "root_update_ms": round(statistics.median(update_ms), 3),
        "full_root_ms": round(statistics.median(full_ms), 3),
        "build_s": round(build_s, 3),
    }


def measure_sqlite(n: int, changes: int, updates: int) -> dict[str, float]:
    """root_update_ms with the tree in chain.db (cold cache, buffered writes), and one flush of those updates."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "chain.db")
        tree = Tree(TreeStore(store), history=False)
        tree.update({keys.account(_address(i)): codec.encode(_balance(i, 0)) for i in range(n)})
        store.put_tree(0, tree.root)
        store.close()
        store = Store(Path(tmp) / "chain.db")  # a fresh process's view: nothing cached
        tree = Tree(TreeStore(store), tree.root, history=False)
        update_ms = []
        for version in range(1, updates + 1):
            changed = _tree_changes(_batch(n, changes, version))
            t0 = time.process_time()
            tree.update(changed)
            update_ms.append((time.process_time() - t0) * 1e3)
        t0 = time.process_time()
        store.put_tree(updates, tree.root)
        flush_ms = (time.process_time() - t0) * 1e3
        store.close()
    return {"root_update_sqlite_ms": round(statistics.median(update_ms), 3), "tree_flush_ms": round(flush_ms, 3)}


def _state(n: int) -> tuple[State, Genesis]:
    """A state holding n funded accounts, and its genesis."""
    genesis = build_genesis("bench-state", validators=[(_address(-1), 10 * UNIT)])
    st = State.from_genesis(genesis)
    for i in range(n):
        st.credit(_address(i), _balance(i, 0))
    return st, genesis


def _churn(st: State, n: int, changes: int, version: int) -> None:
    """One commit's worth of account writes, through the ledger primitives (the root not taken)."""
    st.height += 1
    for i, b in _batch(n, changes, version).items():
        a = _address(i)
        if b is None:
            st.debit(a, st.balances.get(a, 0))
        else:
            st.credit(a, 1 + b % 1000)


def measure_restart(n: int) -> dict[str, float]:
    """A node's start-up at n accounts: from the stored tree's records, from a full snapshot beside the stored tree
    (an older build's store), and from the full snapshot with the tree built from nothing (before trees were stored)."""
    st, genesis = _state(n)
    st.height = 1
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "chain.db"
        store = Store(db)
        st.use_tree(TreeStore(store))
        root = st.root()
        store.put_commit(CommitRecord(1, bytes(32), b"", root), snapshot=StateSnapshot())  # the state, as its tree
        full = st.snapshot()
        store.close()
        del st
        restart_s = _start(db, genesis, root)
        with sqlite3.connect(db) as con:  # what an older build stored: a full snapshot beside the tree
            con.execute("INSERT INTO snapshots (height, data) VALUES (1, ?)", (full,))
        full_s = _start(db, genesis, root)
        t0 = time.process_time()
        store = Store(db)
        rebuilt = State.load(store.latest_snapshot()[1])
        rebuilt.root()  # a tree from nothing, in memory: start-up before the tree was stored
        rebuild_s = time.process_time() - t0
        assert rebuilt.root() == root
        store.close()
    return {"restart_s": round(restart_s, 3), "restart_full_s": round(full_s, 3),
            "restart_rebuild_s": round(rebuild_s, 3)}


def _start(db: Path, genesis: Genesis, root: bytes) -> float:
    """CPU seconds of a node's start-up on `db` (node/treestore.load_state), checking it took the stored tree."""
    t0 = time.process_time()
    store = Store(db)
    restarted = load_state(store, genesis)
    took = time.process_time() - t0
    assert restarted.root() == root and store.tree is not None and store.tree.writes == 0, "the tree was rebuilt"
    store.close()
    return took


def measure_snapshot(n: int, changes: int, every: int) -> dict[str, float]:
    """The node's snapshot step after `every` commits of `changes` accounts, against a full encoding of the state."""
    st, _ = _state(n)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "chain.db")
        st.use_tree(TreeStore(store))
        st.height = 1
        store.put_commit(CommitRecord(1, bytes(32), b"", st.root()), snapshot=StateSnapshot())  # the first: all of it
        for version in range(1, every + 1):
            _churn(st, n, changes, version)
            if version < every:
                store.put_commit(CommitRecord(st.height, bytes(32), b"", st.root()))
        t0 = time.process_time()
        store.put_commit(CommitRecord(st.height, bytes(32), b"", st.root()), snapshot_changes(st, store))
        snapshot_ms = (time.process_time() - t0) * 1e3
        store.close()
        t0 = time.process_time()  # what the step added before: encode the whole state, write it in the transaction
        with sqlite3.connect(Path(tmp) / "chain.db") as con:
            con.execute("INSERT INTO snapshots (height, data) VALUES (?, ?)", (st.height, st.snapshot()))
        full_ms = (time.process_time() - t0) * 1e3
    return {"snapshot_ms": round(snapshot_ms, 3), "snapshot_full_ms": round(full_ms, 3)}


def measure_state(n: int, changes: int, updates: int, full_runs: int) -> dict[str, float]:
    """State.root() per commit with `changes` accounts written, against the v1 root (one encoding of it all)."""
    st, _ = _state(n)
    t0 = time.process_time()
    st.root()  # the first root builds the tree from nothing, as State.load does at start-up
    build_s = time.process_time() - t0
    root_ms = []
    for version in range(1, updates + 1):
        _churn(st, n, changes, version)
        t0 = time.process_time()
        st.root()
        root_ms.append((time.process_time() - t0) * 1e3)
    full_ms = []
    for _ in range(full_runs):
        t0 = time.process_time()
        crypto.digest(codec.encode(st.to_obj()))
        full_ms.append((time.process_time() - t0) * 1e3)
    return {
        "state_root_ms": round(statistics.median(root_ms), 3),
        "state_full_root_ms": round(statistics.median(full_ms), 3),
        "state_build_s": round(build_s, 3),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--accounts", default="10000,100000,1000000", help="comma-separated account counts")
    ap.add_argument("--changes", type=int, default=100, help="changed keys per update (default 100)")
    ap.add_argument("--updates", type=int, default=21, help="timed updates per size; the median is reported")
    ap.add_argument("--full-runs", type=int, default=3, help="timed full re-encodes per size; the median is reported")
    ap.add_argument("--state", action="store_true", help="also time State.root() on a State of each size")
    ap.add_argument("--restart", action="store_true", help="also time a node's start-up from a snapshot of each size")
    ap.add_argument("--snapshot", action="store_true", help="also time a node's snapshot step at each size")
    ap.add_argument("--snapshot-every", type=int, default=50, help="commits between two snapshots (default 50)")
    args = ap.parse_args(argv)
    try:
        sizes = [int(s) for s in args.accounts.split(",")]
    except ValueError:
        ap.error(f"--accounts is a comma-separated list of integers, got {args.accounts!r}")
    if any(s < 10 for s in sizes) or args.changes < 10 or min(args.updates, args.full_runs, args.snapshot_every) < 1:
        ap.error("need --accounts >= 10 each, --changes >= 10, and --updates, --full-runs, --snapshot-every >= 1")

    out: dict[str, object] = {"changes": args.changes, "root_update_ms": {}, "full_root_ms": {}, "build_s": {},
                              "root_update_sqlite_ms": {}, "tree_flush_ms": {}}
    if args.state:
        out |= {"state_root_ms": {}, "state_full_root_ms": {}, "state_build_s": {}}
    if args.restart:
        out |= {"restart_s": {}, "restart_full_s": {}, "restart_rebuild_s": {}}
    if args.snapshot:
        out |= {"snapshot_ms": {}, "snapshot_full_ms": {}}
    for n in sizes:
        res = measure(n, args.changes, args.updates, args.full_runs)
        res |= measure_sqlite(n, args.changes, args.updates)
        if args.state:
            res |= measure_state(n, args.changes, args.updates, args.full_runs)
        if args.restart:
            res |= measure_restart(n)
        if args.snapshot:
            res |= measure_snapshot(n, args.changes, args.snapshot_every)
        for name, value in res.items():
            out[name][str(n)] = value  # type: ignore[index]
        if not args.json:
            print(f"{n:>9} accounts: update {res['root_update_ms']:8.2f} ms   full {res['full_root_ms']:10.2f} ms"
                  f"   (tree built in {res['build_s']} s)")
            print(f"{'':>9} in SQLite: update {res['root_update_sqlite_ms']:8.2f} ms   flush of all updates "
                  f"{res['tree_flush_ms']:8.2f} ms")
            if args.state:
                print(f"{'':>9} State.root() {res['state_root_ms']:8.2f} ms   v1 {res['state_full_root_ms']:10.2f} ms"
                      f"   (built in {res['state_build_s']} s)")
            if args.restart:
                print(f"{'':>9} restart {res['restart_s']:8.3f} s   from a full snapshot {res['restart_full_s']:8.3f} s"
                      f"   rebuilding the tree {res['restart_rebuild_s']:8.3f} s")
            if args.snapshot:
                print(f"{'':>9} snapshot step {res['snapshot_ms']:8.2f} ms   full encode "
                      f"{res['snapshot_full_ms']:10.2f} ms")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
