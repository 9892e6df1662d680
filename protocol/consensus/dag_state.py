"""The DAG store of one epoch: insert with validation, ancestry queries, and pruning (spec/consensus.md §4).

Pure and deterministic: no I/O, clock or randomness, and no result depends on the order in which blocks
were inserted or on dict iteration order (every choice between blocks is made on sorted refs). The
driver feeds verified blocks to `DagState.insert` and then calls `Committer.try_commit`
(protocol/consensus/committer.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import NamedTuple

from protocol.consensus.block import (
    GENESIS_ROUND,
    BadTimestamp,
    DagBlock,
    DagRef,
    Slot,
    TimestampBeforeParents,
    genesis_blocks,
    parent_ref,
)
from protocol.consensus.block_verifier import check_structure
from protocol.consensus.committee import Committee


class InsertStatus(Enum):
    ACCEPTED = "accepted"  # new, now in the DAG
    DUPLICATE = "duplicate"  # already in the DAG
    STALE = "stale"  # at or below the GC round: dropped, never needed again
    MISSING = "missing"  # some ancestors above the GC round are absent: not stored


class InsertResult(NamedTuple):
    status: InsertStatus
    missing: tuple[DagRef, ...] = ()


class DagState:
    """Accepted blocks of one epoch, indexed by ref, slot and round; forks (equivocations) allowed.

    A block enters only when it is structurally valid and all its ancestors above the GC round are
    present, so every stored block has its causal history (the commit rule relies on that).
    """

    def __init__(self, committee: Committee, epoch_seed: bytes) -> None:
        self.committee = committee
        self.epoch_seed = bytes(epoch_seed)
        self.genesis = genesis_blocks(committee, self.epoch_seed)
        self._genesis_digests = tuple(g.digest for g in self.genesis)
        self._blocks: dict[DagRef, DagBlock] = {}
        self._parents: dict[DagRef, tuple[DagRef, ...]] = {}
        self._slots: dict[Slot, list[DagRef]] = {}
        self._rounds: dict[int, list[DagRef]] = {}
        self.highest_round = GENESIS_ROUND
        self.gc_round = -1  # blocks at or below this round are pruned (genesis lives at round 0)
        for g in self.genesis:
            self._store(g.ref, g, ())

    # -- queries --

    def __len__(self) -> int:
        return len(self._blocks)

    def __contains__(self, ref: object) -> bool:
        return ref in self._blocks

    def get(self, ref: DagRef) -> DagBlock | None:
        return self._blocks.get(ref)

    def parents(self, ref: DagRef) -> tuple[DagRef, ...]:
        """The normalised parents of a stored block, in the block's own order."""
        return self._parents[ref]

    def refs_at_round(self, round: int) -> list[DagRef]:
        """Refs of a round sorted by (author, digest), so callers never see insertion order."""
        return sorted(self._rounds.get(round, ()))

    def blocks_at_round(self, round: int) -> list[DagBlock]:
        return [self._blocks[r] for r in self.refs_at_round(round)]

    def refs_at_slot(self, round: int, author: int) -> tuple[DagRef, ...]:
        """All blocks of one slot (more than one only if the author equivocated), sorted by digest."""
        refs = self._slots.get(Slot(round, author))
        if not refs:
            return ()
        return tuple(sorted(refs))

    def unordered_refs_at_round(self, round: int) -> Sequence[DagRef]:
        """Refs of a round in insertion order (append-only until pruned).

        Only for order-independent aggregates (stake sums) and for resuming a scan where it stopped.
        """
        return self._rounds.get(round, ())

    def unordered_refs_at_slot(self, round: int, author: int) -> Sequence[DagRef]:
        """Refs of a slot in insertion order (append-only until pruned); see `unordered_refs_at_round`."""
        return self._slots.get(Slot(round, author), ())

    def is_ancestor(self, ancestor: DagRef, descendant: DagRef) -> bool:
        """Whether `ancestor` is in the causal history of `descendant` (a block is its own ancestor)."""
        if ancestor == descendant:
            return True
        if ancestor.round >= descendant.round or descendant not in self._blocks:
            return False
        seen = {descendant}
        stack = [descendant]
        while stack:
            for p in self._parents.get(stack.pop(), ()):
                if p == ancestor:
                    return True
                if p.round > ancestor.round and p not in seen:
                    seen.add(p)
                    stack.append(p)
        return False

    def ancestors_at_round(self, ref: DagRef, round: int) -> list[DagRef]:
        """Blocks of `round` in the causal history of `ref`, sorted; walks only rounds above `round`."""
        if ref.round == round:
            return [ref]
        found: set[DagRef] = set()
        seen = {ref}
        stack = [ref]
        while stack:
            for p in self._parents.get(stack.pop(), ()):
                if p.round == round:
                    found.add(p)
                elif p.round > round and p not in seen:
                    seen.add(p)
                    stack.append(p)
        return sorted(found)

    # -- what the synchronizer must fetch --

    def missing_ancestors(self, block: DagBlock) -> tuple[DagRef, ...]:
        """Parents above the GC round that are not in the DAG (the synchronizer fetches these)."""
        gc = self.gc_round
        out = []
        for p in block.parents:
            ref = parent_ref(p)
            if ref.round > gc and ref not in self._blocks:
                out.append(ref)
        return tuple(out)

    # -- mutation --

    def insert(self, block: DagBlock) -> InsertResult:
        """Validate and store one block whose signature, epoch and chain id the caller has verified.

        Raises `BlockInvalid` for a block no honest node accepts. Returns MISSING (and stores nothing)
        when ancestors are absent: the caller buffers the block and fetches them. Insertion is
        idempotent and its outcome does not depend on what else was inserted, except for STALE/MISSING.
        """
        ref, parents = check_structure(self.committee, self._genesis_digests, block)
        if ref in self._blocks:
            return InsertResult(InsertStatus.DUPLICATE)
        if ref.round <= self.gc_round:
            return InsertResult(InsertStatus.STALE)
        gc = self.gc_round
        blocks = self._blocks
        max_ts = 0
        missing = None
        for p in parents:
            pb = blocks.get(p)
            if pb is not None:
                if pb.timestamp_ms > max_ts:
                    max_ts = pb.timestamp_ms
            elif p.round > gc:
                missing = [p] if missing is None else [*missing, p]
        if missing is not None:
            return InsertResult(InsertStatus.MISSING, tuple(missing))
        ts = block.timestamp_ms
        if type(ts) is not int or ts < 0:
            raise BadTimestamp(f"timestamp {ts!r}")
        if ts < max_ts:
            raise TimestampBeforeParents(f"{ts} below a parent's {max_ts}")
        self._store(ref, block, parents)
        return InsertResult(InsertStatus.ACCEPTED)

    def _store(self, ref: DagRef, block: DagBlock, parents: tuple[DagRef, ...]) -> None:
        self._blocks[ref] = block
        self._parents[ref] = parents
        self._slots.setdefault(Slot(ref.round, ref.author), []).append(ref)
        self._rounds.setdefault(ref.round, []).append(ref)
        if ref.round > self.highest_round:
            self.highest_round = ref.round

    def prune(self, gc_round: int) -> int:
        """Drop every block at or below `gc_round` (monotone); returns how many were dropped.

        Blocks later arriving at or below it are STALE, and parents at or below it are no longer
        required. Memory only: which blocks a commit holds is fixed by the committer's own GC round.
        """
        if gc_round <= self.gc_round:
            return 0
        dropped = 0
        for r in range(max(self.gc_round + 1, GENESIS_ROUND), gc_round + 1):
            for ref in self._rounds.pop(r, ()):
                del self._blocks[ref]
                del self._parents[ref]
                self._slots.pop(Slot(ref.round, ref.author), None)
                dropped += 1
        self.gc_round = gc_round
        return dropped
