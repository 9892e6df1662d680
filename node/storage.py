"""The node's SQLite store (WAL mode): blocks, commits, state snapshots and proposer safety data.

Durability rules (spec/consensus.md §Storage):
- WAL with `synchronous=NORMAL`: a committed transaction survives kill -9; our own blocks are
  written with `synchronous=FULL` (fsync before return), so a validator that stores its own block
  before broadcasting it never forgets having signed it, even across a power loss.
- A commit row, its state root, the applied index and (every `snapshot_every` commits) a state
  snapshot are written in ONE transaction, so a crash leaves either all or none of them.
- A state snapshot is the state tree's nodes (node/treestore.py) and the proposals' stake positions, both written
  as the changes since the last one, in its commit's transaction: the tree and positions on disk are always the
  state of the latest snapshot, whose root is the one recorded for that height (spec/state-tree.md §5.1). Table
  `snapshots` (one full encoding of the state) is what older builds wrote: read once at start-up, dropped by the
  next snapshot.
- SQLite's WAL frames carry checksums: a torn frame at the tail is discarded on open, which is
  what repairs a torn write. `check()` then verifies our own invariants on top.

All methods are synchronous; `AsyncStore` runs them on one worker thread at a time via
`trio.to_thread`, so the Trio loop never blocks on disk.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import trio

SCHEMA_VERSION = 1
# How the state roots in `commits` are computed: 1 hashed one encoding of the whole state; 2 is the state tree's
# root (spec/state.md §9). Roots of another version can be neither replayed nor extended.
STATE_ROOT_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    digest BLOB PRIMARY KEY,
    epoch INTEGER NOT NULL,
    round INTEGER NOT NULL,
    author INTEGER NOT NULL,
    data BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blocks_by_round ON blocks (epoch, round, author);
CREATE TABLE IF NOT EXISTS commits (
    idx INTEGER PRIMARY KEY,
    digest BLOB NOT NULL,
    data BLOB NOT NULL,
    state_root BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (height INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS commit_votes (
    height INTEGER NOT NULL,
    signer BLOB NOT NULL,
    vote BLOB NOT NULL,
    block BLOB NOT NULL,
    PRIMARY KEY (height, signer)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS boundary_proofs (
    height INTEGER NOT NULL,
    key BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    value BLOB,
    proof BLOB NOT NULL,
    PRIMARY KEY (height, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS own_blocks (
    epoch INTEGER NOT NULL,
    round INTEGER NOT NULL,
    digest BLOB NOT NULL,
    PRIMARY KEY (epoch, round)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state_nodes (hash BLOB PRIMARY KEY, node BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stake_positions (digest BLOB PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
"""
# meta keys naming the tree in state_nodes: the snapshot height it belongs to and its root (spec/state-tree.md §5.1)
TREE_HEIGHT, TREE_ROOT = "state_tree_height", "state_tree_root"


class StoreError(Exception):
    """The store is missing, corrupt, or from another chain."""


@dataclass(frozen=True)
class CommitRecord:
    index: int
    digest: bytes
    data: bytes
    state_root: bytes


@dataclass(frozen=True)
class StateSnapshot:
    """What a state snapshot writes beside the state tree's buffered nodes (`Store.tree`): the state outside the
    tree, as changes since the last snapshot (node/treestore.snapshot_changes)."""

    positions: dict[bytes, bytes] = field(default_factory=dict)  # digest -> encoded stake positions, new ones
    dropped: frozenset[bytes] = frozenset()  # digests of positions no proposal names any more


@dataclass(frozen=True)
class BoundaryProof:
    """What an epoch's closing commit keeps (spec/state-tree.md §7): `key`'s value (None: absent) and proof under the
    commit's state root, so a client walking its trust from one committee to the next reads them long after."""

    epoch: int  # the epoch this commit closes
    key: bytes
    value: bytes | None
    proof: bytes


class TreeWrites(Protocol):
    """The state tree's node writes since the last snapshot (node/treestore.py), which `put_commit` stores with the
    next snapshot."""

    def pending(self) -> tuple[dict[bytes, bytes], set[bytes]]:
        """(nodes written: hash -> encoding, hashes deleted), disjoint."""
        ...

    def flushed(self) -> None:
        """The pending writes are on disk now."""
        ...


T = TypeVar("T")


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.tree: TreeWrites | None = None  # the state tree's buffer, stored with each snapshot (node/treestore.py)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._tx():
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    self._db.execute(stmt)
            version = self._meta("schema_version")
            if version is None:
                self._set_meta("schema_version", SCHEMA_VERSION)
            elif version != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {version}, this build reads {SCHEMA_VERSION}")
            self._check_state_root_version()

    def _check_state_root_version(self) -> None:
        """Refuse a store whose commits carry state roots of another version, naming how to rebuild it."""
        version = self._meta("state_root_version")
        if version is None and self._db.execute("SELECT 1 FROM commits LIMIT 1").fetchone() is not None:
            version = 1  # written before the version was recorded
        if version is None:
            self._set_meta("state_root_version", STATE_ROOT_VERSION)
        elif version != STATE_ROOT_VERSION:
            raise StoreError(
                f"{self.path} was written by an older format (state root v{version}); this build computes state "
                f"root v{STATE_ROOT_VERSION} (spec/state.md §9). Remove {self.path} and restart the node "
                "(`tensornet node run`): it resyncs the chain from its peers, and its keys and config.toml stay"
            )

    # --- plumbing ------------------------------------------------------------------------------

    def _tx(self) -> _Transaction:
        return _Transaction(self._db, self._lock)

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        # One connection shared by threads: every statement runs under the lock.
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- identity ------------------------------------------------------------------------------

    def bind_genesis(self, genesis_hash: bytes) -> None:
        """Tie the store to one chain; refuse to open another chain's data."""
        with self._tx():
            stored = self._meta("genesis_hash")
            if stored is None:
                self._set_meta("genesis_hash", genesis_hash)
            elif bytes(stored) != genesis_hash:
                raise StoreError(
                    f"{self.path} holds chain with genesis {bytes(stored).hex()[:16]}…, "
                    f"not {genesis_hash.hex()[:16]}…; use another --home or delete the database"
                )

    # --- blocks --------------------------------------------------------------------------------

    def put_blocks(self, rows: Iterable[tuple[bytes, int, int, int, bytes]]) -> None:
        """Store (digest, epoch, round, author, data) rows; existing digests are left alone."""
        with self._tx():
            self._db.executemany(
                "INSERT OR IGNORE INTO blocks (digest, epoch, round, author, data) VALUES (?, ?, ?, ?, ?)", rows
            )

    def record_own_block(self, epoch: int, round_: int, digest: bytes, data: bytes, author: int) -> None:
        """Durably record our own block before it is broadcast; refuses a second block for a round.

        Other writes run with synchronous=NORMAL (safe against kill -9, since WAL frames reach the
        OS at commit); this one also survives power loss, because signing twice is not recoverable."""
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")
        try:
            self._record_own_block(epoch, round_, digest, data, author)
        finally:
            with self._lock:
                self._db.execute("PRAGMA synchronous=NORMAL")

    def own_block(self, epoch: int, round_: int) -> bytes | None:
        rows = self._query("SELECT digest FROM own_blocks WHERE epoch = ? AND round = ?", (epoch, round_))
        return bytes(rows[0][0]) if rows else None

    def _record_own_block(self, epoch: int, round_: int, digest: bytes, data: bytes, author: int) -> None:
        with self._tx():
            row = self._db.execute(
                "SELECT digest FROM own_blocks WHERE epoch = ? AND round = ?", (epoch, round_)
            ).fetchone()
            if row is not None and bytes(row[0]) != digest:
                raise StoreError(f"refusing to sign a second block for epoch {epoch} round {round_}")
            self._db.execute(
                "INSERT OR IGNORE INTO own_blocks (epoch, round, digest) VALUES (?, ?, ?)", (epoch, round_, digest)
            )
            self._db.execute(
                "INSERT OR IGNORE INTO blocks (digest, epoch, round, author, data) VALUES (?, ?, ?, ?, ?)",
                (digest, epoch, round_, author, data),
            )

    def last_own_round(self, epoch: int) -> int:
        rows = self._query("SELECT MAX(round) FROM own_blocks WHERE epoch = ?", (epoch,))
        return rows[0][0] or 0

    def get_block(self, digest: bytes) -> bytes | None:
        rows = self._query("SELECT data FROM blocks WHERE digest = ?", (digest,))
        return bytes(rows[0][0]) if rows else None

    def blocks_in_rounds(self, epoch: int, first: int, last: int, limit: int = 1 << 16) -> list[bytes]:
        rows = self._query(
            "SELECT data FROM blocks WHERE epoch = ? AND round BETWEEN ? AND ? ORDER BY round, author, digest LIMIT ?",
            (epoch, first, last, limit),
        )
        return [bytes(r[0]) for r in rows]

    def last_block_by(self, epoch: int, author: int) -> bytes | None:
        rows = self._query(
            "SELECT data FROM blocks WHERE epoch = ? AND author = ? ORDER BY round DESC LIMIT 1", (epoch, author)
        )
        return bytes(rows[0][0]) if rows else None

    def prune_blocks(self, epoch: int, below_round: int) -> int:
        """Drop blocks of `epoch` below a round that every kept commit no longer needs."""
        with self._tx():
            cur = self._db.execute("DELETE FROM blocks WHERE epoch = ? AND round < ?", (epoch, below_round))
            return cur.rowcount

    # --- commits and state ---------------------------------------------------------------------

    def put_commit(
        self, record: CommitRecord, snapshot: StateSnapshot | None = None, meta: dict[str, Any] | None = None,
        boundary: BoundaryProof | None = None,
    ) -> None:
        """Append the next commit with its state root (and maybe a snapshot) atomically. A snapshot is the state
        tree's writes since the last one and `snapshot`'s stake positions, in the same transaction: the caller has
        taken the state's root at this height, so the state stored is the one with root `record.state_root`.
        `boundary`: the commit closes an epoch, and its proof is kept in the same transaction, because a restart
        replays stored commits without switching epochs and so could not write it later (spec/state-tree.md §7)."""
        if snapshot is not None and self.tree is None:
            raise StoreError("a state snapshot is the state tree's writes: attach the tree first (node/treestore.py)")
        with self._tx():
            last = self._db.execute("SELECT MAX(idx) FROM commits").fetchone()[0]
            expected = 1 if last is None else last + 1
            if record.index != expected:
                raise StoreError(f"commit {record.index} is not the next one (expected {expected})")
            self._db.execute(
                "INSERT INTO commits (idx, digest, data, state_root) VALUES (?, ?, ?, ?)",
                (record.index, record.digest, record.data, record.state_root),
            )
            if snapshot is not None:
                self._db.executemany("DELETE FROM stake_positions WHERE digest = ?", ((d,) for d in snapshot.dropped))
                self._db.executemany(
                    "INSERT OR REPLACE INTO stake_positions (digest, data) VALUES (?, ?)", snapshot.positions.items()
                )
                self._db.execute("DELETE FROM snapshots")  # an older build's full snapshot, superseded now
                self._write_tree(record.index, record.state_root)
            if boundary is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO boundary_proofs (height, key, epoch, value, proof) VALUES (?, ?, ?, ?, ?)",
                    (record.index, boundary.key, boundary.epoch, boundary.value, boundary.proof),
                )
            for key, value in (meta or {}).items():
                self._set_meta(key, value)
        if snapshot is not None and self.tree is not None:
            self.tree.flushed()

    def last_commit(self) -> CommitRecord | None:
        rows = self._query("SELECT idx, digest, data, state_root FROM commits ORDER BY idx DESC LIMIT 1")
        return CommitRecord(rows[0][0], bytes(rows[0][1]), bytes(rows[0][2]), bytes(rows[0][3])) if rows else None

    def commits(self, start: int, end: int) -> list[CommitRecord]:
        rows = self._query(
            "SELECT idx, digest, data, state_root FROM commits WHERE idx BETWEEN ? AND ? ORDER BY idx", (start, end)
        )
        return [CommitRecord(r[0], bytes(r[1]), bytes(r[2]), bytes(r[3])) for r in rows]

    def latest_snapshot(self) -> tuple[int, bytes] | None:
        """(height, full encoding) of the state snapshot an older build wrote (table `snapshots`), until this build
        takes its own; None once it has (the state is then the stored tree and positions, `stored_tree`)."""
        rows = self._query("SELECT height, data FROM snapshots ORDER BY height DESC LIMIT 1")
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    # --- the state tree (node/treestore.py) ----------------------------------------------------

    def _write_tree(self, height: int, root: bytes) -> None:
        """Inside a transaction: apply the tree's pending writes and name it the tree at `height` with `root`."""
        if self.tree is None:
            return
        puts, dels = self.tree.pending()
        # in key order, so the B-tree pages are visited in turn rather than at random (half the CPU, a fraction of the
        # wall time at 10^5 accounts)
        self._db.executemany("DELETE FROM state_nodes WHERE hash = ?", ((d,) for d in sorted(dels)))
        self._db.executemany("INSERT OR REPLACE INTO state_nodes (hash, node) VALUES (?, ?)", sorted(puts.items()))
        self._set_meta(TREE_HEIGHT, height)
        self._set_meta(TREE_ROOT, root)

    def put_tree(self, height: int, root: bytes) -> None:
        """Store the tree's pending writes now as the tree at `height` (a tree rebuilt at start-up)."""
        with self._tx():
            self._write_tree(height, root)
        if self.tree is not None:
            self.tree.flushed()

    def leaf_nodes(self) -> Iterator[bytes]:
        """Every leaf node in state_nodes, in no order: the records of the stored state, read in one scan at
        start-up (O(n)). The store's lock is held until the iteration ends."""
        with self._lock:
            yield from (row[0] for row in self._db.execute("SELECT node FROM state_nodes WHERE node < x'01'"))

    def positions(self) -> dict[bytes, bytes]:
        """digest -> encoding of every proposal's stake positions stored with the state (a handful of rows)."""
        return {bytes(d): bytes(v) for d, v in self._query("SELECT digest, data FROM stake_positions")}

    def position_digests(self) -> set[bytes]:
        return {bytes(r[0]) for r in self._query("SELECT digest FROM stake_positions")}

    def tree_node(self, node_hash: bytes) -> bytes | None:
        rows = self._query("SELECT node FROM state_nodes WHERE hash = ?", (node_hash,))
        return bytes(rows[0][0]) if rows else None

    def stored_tree(self) -> tuple[int, bytes] | None:
        """(snapshot height, root) of the tree in state_nodes; None if none is named (never stored, or dropped)."""
        with self._lock:
            height, root = self._meta(TREE_HEIGHT), self._meta(TREE_ROOT)
        return None if height is None or root is None else (height, bytes(root))

    def tree_node_count(self) -> int:
        return self._query("SELECT COUNT(*) FROM state_nodes")[0][0]

    def drop_tree(self) -> None:
        """Forget the stored state (tree and stake positions): the next start rebuilds it from an older build's full
        snapshot if one is left, else by replaying the commits from genesis."""
        with self._tx():
            self._db.execute("DELETE FROM state_nodes")
            self._db.execute("DELETE FROM stake_positions")
            self._db.execute("DELETE FROM meta WHERE key IN (?, ?)", (TREE_HEIGHT, TREE_ROOT))

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._lock:
            value = self._meta(key)
        return default if value is None else value

    def set_meta(self, key: str, value: Any) -> None:
        with self._tx():
            self._set_meta(key, value)

    # --- verification --------------------------------------------------------------------------

    def check(self, verify_commit: Callable[[CommitRecord, bytes | None], None] | None = None) -> list[str]:
        """Problems found in the store (empty when healthy): SQLite integrity, contiguous commits,
        and, through `verify_commit(record, prev_digest)`, each commit's own consistency."""
        problems = []
        result = self._query("PRAGMA integrity_check")[0][0]
        if result != "ok":
            problems.append(f"sqlite integrity_check: {result}")
        prev: CommitRecord | None = None
        for row in self._query("SELECT idx, digest, data, state_root FROM commits ORDER BY idx"):
            record = CommitRecord(row[0], bytes(row[1]), bytes(row[2]), bytes(row[3]))
            expected = 1 if prev is None else prev.index + 1
            if record.index != expected:
                problems.append(f"commit index gap: expected {expected}, found {record.index}")
            if verify_commit is not None:
                try:
                    verify_commit(record, None if prev is None else prev.digest)
                except Exception as exc:  # report every bad row, not only the first
                    problems.append(f"commit {record.index}: {exc}")
            prev = record
        for snap in (self.latest_snapshot(), self.stored_tree()):
            if snap is not None and (prev is None or snap[0] > prev.index):
                problems.append(f"state snapshot at height {snap[0]} is past the last commit")
        return problems

    # --- state-root votes (node/certificates.py) ---------------------------------------------------

    def put_votes(self, rows: Iterable[tuple[int, bytes, bytes, bytes]]) -> None:
        """Store (height, signer key, vote digest, block digest) rows; a signer's first vote for a height stays."""
        with self._tx():
            self._db.executemany(
                "INSERT OR IGNORE INTO commit_votes (height, signer, vote, block) VALUES (?, ?, ?, ?)", rows
            )

    def votes_at(self, height: int) -> list[tuple[bytes, bytes, bytes]]:
        """(signer key, vote digest, block digest) of each vote stored for `height`, in key order."""
        rows = self._query("SELECT signer, vote, block FROM commit_votes WHERE height = ? ORDER BY signer", (height,))
        return [(bytes(s), bytes(v), bytes(b)) for s, v, b in rows]

    # --- proofs at epoch boundaries (spec/state-tree.md §7) ------------------------------------------

    def boundary_proof(self, height: int, key: bytes) -> tuple[bytes | None, bytes] | None:
        """(value or None for absent, proof bytes) kept for `key` at `height`; None if none is kept there."""
        rows = self._query("SELECT value, proof FROM boundary_proofs WHERE height = ? AND key = ?", (height, key))
        if not rows:
            return None
        value, proof = rows[0]
        return (None if value is None else bytes(value)), bytes(proof)

    def boundaries(self, from_epoch: int = 0, limit: int = 1 << 62) -> list[tuple[int, int]]:
        """(epoch, height of its closing commit) of each boundary with a proof kept, from `from_epoch` on."""
        return self._query(
            "SELECT DISTINCT epoch, height FROM boundary_proofs WHERE epoch >= ? ORDER BY epoch, height LIMIT ?",
            (from_epoch, limit),
        )

    def boundary_rows(self) -> list[tuple[int, BoundaryProof]]:
        """(height, what is kept there) of every boundary proof, by height then key (`tensornet node db check`)."""
        rows = self._query("SELECT height, epoch, key, value, proof FROM boundary_proofs ORDER BY height, key")
        return [(h, BoundaryProof(e, bytes(k), None if v is None else bytes(v), bytes(p))) for h, e, k, v, p in rows]

    def boundary_span(self) -> tuple[int, int | None, int | None]:
        """(how many boundary heights have a proof kept, the first, the last)."""
        row = self._query("SELECT COUNT(DISTINCT height), MIN(height), MAX(height) FROM boundary_proofs")[0]
        return row[0], row[1], row[2]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT under the store's lock; ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self.db = db
        self.lock = lock

    def __enter__(self) -> None:
        self.lock.acquire()
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self.lock.release()


class AsyncStore:
    """Runs Store calls on a worker thread, one at a time, so disk waits never block Trio."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._limiter = trio.CapacityLimiter(1)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
