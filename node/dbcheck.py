"""`tensornet node db check`: verify a node's store without running the node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node.config import GENESIS_FILE
from node.errors import NodeError
from node.storage import CommitRecord, Store
from protocol import crypto
from protocol.consensus.block import DagRef
from protocol.consensus.core import vertex_from_bytes
from protocol.consensus.linearizer import commit_digest
from protocol.messages import Commit
from protocol.state.genesis import load_genesis
from protocol.state.state import State
from protocol.state.transition import apply_commit


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
