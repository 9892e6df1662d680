"""The commit-rule vectors in spec/vectors/dag/*.dag, each replayed several ways.

Every vector is run (1) block by block in file order with try_commit after each block, checking its
checkpoints; (2) all at once with a single try_commit; (3) in shuffled delivery orders through a
synchronizer-like buffer. All runs must agree on commits and digests, and match the expectations.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from protocol.consensus.block import Slot
from protocol.consensus.committer import Decision, LeaderStatus
from protocol.consensus.dag_state import InsertStatus
from protocol.consensus.linearizer import CommittedSubDag
from protocol.testing.dag_dsl import DagSpec, deliver, parse_dag

VECTOR_DIR = Path(__file__).resolve().parents[3] / "spec" / "vectors" / "dag"
VECTORS = sorted(VECTOR_DIR.glob("*.dag"))


def _names(spec: DagSpec, commits: list[CommittedSubDag]) -> list[str]:
    return [spec.name(c.leader) for c in commits]


def check_invariants(spec: DagSpec, commits: list[CommittedSubDag]) -> None:
    """No block or slot commits twice; indexes count up; digests chain; blocks are sorted."""
    seen_refs: set = set()
    seen_slots: set = set()
    prev = bytes(32)
    for i, c in enumerate(commits, start=1):
        assert c.index == i
        assert c.prev_digest == prev
        prev = c.digest
        assert list(c.blocks) == sorted(c.blocks)
        assert c.leader in c.blocks
        for ref in c.blocks:
            assert ref not in seen_refs, f"{spec.name(ref)} committed twice"
            slot = (ref.round, ref.author)
            assert slot not in seen_slots, f"slot of {spec.name(ref)} committed twice"
            seen_refs.add(ref)
            seen_slots.add(slot)
            assert ref.round <= c.leader.round


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_vector(path: Path) -> None:
    spec = parse_dag(path.read_text())
    assert spec.expects or spec.commits is not None, "a vector must expect something"

    # (1) file order, try_commit after every block, checkpoints along the way.
    committer = spec.new_committer()
    checkpoints = dict(spec.checkpoints)
    commits: list[CommittedSubDag] = []
    decisions: list[LeaderStatus] = []
    for i, block in enumerate(spec.blocks):
        if i in checkpoints:
            assert _names(spec, commits) == checkpoints[i], f"checkpoint before block {i}"
            assert committer.try_commit() == []
        assert committer.dag.insert(block).status is InsertStatus.ACCEPTED
        assert committer.dag.insert(block).status is InsertStatus.DUPLICATE
        commits.extend(committer.try_commit())
        decisions.extend(committer.last_decisions)
    if len(spec.blocks) in checkpoints:
        assert _names(spec, commits) == checkpoints[len(spec.blocks)], "final checkpoint"
    assert committer.try_commit() == []  # idempotent
    check_invariants(spec, commits)

    statuses: dict[Slot, LeaderStatus] = {d.slot: d for d in decisions}
    assert len(statuses) == len(decisions), "a slot was decided twice"
    for s in committer.peek_statuses():
        assert s.slot not in statuses
        statuses[s.slot] = s
    for e in spec.expects:
        got = statuses.get(e.slot)
        shown = f"{e.slot!r}: got {got}"
        if e.decision is Decision.UNDECIDED:
            assert got is None or got.decision is Decision.UNDECIDED, shown
            continue
        assert got is not None and got.decision is e.decision, shown
        if e.decision is Decision.COMMIT:
            assert e.block is not None and got.block == spec.names[e.block], shown
    if spec.commits is not None:
        assert _names(spec, commits) == spec.commits
    by_leader = {spec.name(c.leader): c for c in commits}
    for leader, blocks in spec.subdags.items():
        assert leader in by_leader, f"no commit of {leader}"
        assert [spec.name(r) for r in by_leader[leader].blocks] == blocks, f"sub-DAG of {leader}"
    for (r, k), author in spec.leaders.items():
        assert committer.leaders(r)[k] == author, f"leader of round {r}/{k}"

    # (2) everything first, one try_commit.
    batch = spec.new_committer()
    for block in spec.blocks:
        batch.dag.insert(block)
    assert batch.try_commit() == commits
    assert batch.try_commit() == []

    # (3) shuffled delivery through a buffer.
    rng = random.Random(path.stem)
    for _ in range(5):
        order = list(range(len(spec.blocks)))
        rng.shuffle(order)
        got, _ = deliver(spec.new_committer(), spec.blocks, order)
        assert got == commits


def test_vectors_exist() -> None:
    assert len(VECTORS) >= 12
