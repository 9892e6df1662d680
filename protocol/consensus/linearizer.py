"""The linearizer: turns each committed leader into a `CommittedSubDag` and chains the commit digests
(spec/consensus.md §6). Pure and deterministic: its state is a function of the commit sequence alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from protocol.consensus.block import DIGEST_LEN, GENESIS_ROUND, ZERO_DIGEST, DagRef
from protocol.consensus.dag_state import DagState
from protocol.crypto import digest

DEFAULT_GC_DEPTH = 60  # rounds below the last committed leader that are still linearised (as in Sui)

_COMMIT_DOMAIN = b"tensornet/commit/v1"


class CommittedSubDag(NamedTuple):
    """One commit: the chain's unit of height. `blocks` is sorted by (round, author, digest)."""

    index: int  # 1, 2, 3, ...
    leader: DagRef
    blocks: tuple[DagRef, ...]
    timestamp_ms: int  # max(leader timestamp, previous commit's): monotone
    prev_digest: bytes
    digest: bytes


def _ref_bytes(ref: DagRef) -> bytes:
    return ref.round.to_bytes(8, "big") + ref.author.to_bytes(4, "big") + ref.digest


def commit_digest(index: int, leader: DagRef, refs: Sequence[DagRef], prev_digest: bytes) -> bytes:
    """BLAKE2b-256 of the fixed-width encoding in spec/consensus.md §6.

    "tensornet/commit/v1" || u64 index || ref(leader) || u32 len(refs) || ref(refs[0]) || ...
    || prev_digest (32 bytes), where ref(x) = u64 round || u32 author || 32-byte digest, all big-endian.
    Fixed widths make the encoding injective without a codec.
    """
    if len(prev_digest) != DIGEST_LEN:
        raise ValueError("prev_digest must be 32 bytes")
    parts = [_COMMIT_DOMAIN, index.to_bytes(8, "big"), _ref_bytes(leader), len(refs).to_bytes(4, "big")]
    parts.extend(_ref_bytes(r) for r in refs)
    parts.append(prev_digest)
    return digest(b"".join(parts))


class Linearizer:
    """The commit chain: index, digest, timestamp, and each author's last committed round."""

    def __init__(
        self,
        dag: DagState,
        *,
        gc_depth: int = DEFAULT_GC_DEPTH,
        genesis_commit_digest: bytes = ZERO_DIGEST,
        start_index: int = 0,
    ) -> None:
        self.dag = dag
        self.gc_depth = gc_depth
        self.last_index = start_index  # the chain height before this epoch's first commit
        self.last_digest = bytes(genesis_commit_digest)
        self.last_timestamp_ms = 0
        self.last_committed_leader_round = GENESIS_ROUND
        self.last_committed_rounds = [GENESIS_ROUND] * dag.committee.size

    @property
    def gc_round(self) -> int:
        """Blocks at or below this round are never linearised; fixed by the last committed leader."""
        return max(GENESIS_ROUND, self.last_committed_leader_round - self.gc_depth)

    def linearize(self, leader: DagRef) -> CommittedSubDag:
        """The leader's ancestors not yet committed, above the GC round, sorted by (round, author, digest).

        A block at or below its author's last committed round is never committed, and of several
        blocks of one slot in a sub-DAG only the smallest digest is, so a slot commits at most one block.
        """
        dag = self.dag
        gc = self.gc_round
        lcr = self.last_committed_rounds
        seen = {leader}
        stack = [leader]
        while stack:
            for p in dag.parents(stack.pop()):
                if p.round > gc and p.round > lcr[p.author] and p not in seen:
                    seen.add(p)
                    stack.append(p)
        refs = sorted(seen)
        blocks: list[DagRef] = []
        for ref in refs:
            if blocks and blocks[-1].round == ref.round and blocks[-1].author == ref.author:
                continue  # an equivocating sibling with a larger digest
            blocks.append(ref)
        for ref in blocks:
            if ref.round > lcr[ref.author]:
                lcr[ref.author] = ref.round
        leader_block = dag.get(leader)
        assert leader_block is not None
        index = self.last_index + 1
        ts = max(self.last_timestamp_ms, leader_block.timestamp_ms)
        refs_t = tuple(blocks)
        digest_ = commit_digest(index, leader, refs_t, self.last_digest)
        sub = CommittedSubDag(index, leader, refs_t, ts, self.last_digest, digest_)
        self.last_index = index
        self.last_digest = digest_
        self.last_timestamp_ms = ts
        self.last_committed_leader_round = leader.round
        return sub

    def restore(self, commits: Sequence[CommittedSubDag]) -> None:
        """Resume the commit chain from the tail of the commit log (oldest first, not empty)."""
        for sub in commits:
            for ref in sub.blocks:
                if ref.round > self.last_committed_rounds[ref.author]:
                    self.last_committed_rounds[ref.author] = ref.round
        last = commits[-1]
        self.last_index = last.index
        self.last_digest = last.digest
        self.last_timestamp_ms = last.timestamp_ms
        self.last_committed_leader_round = last.leader.round
