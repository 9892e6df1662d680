"""The Mysticeti-C committer: leader slots, direct and indirect decisions (spec/consensus.md §2, §5).

Pure and deterministic: no I/O, clock or randomness; every choice between blocks is made on sorted refs.
It decides leader slots in order and hands each committed leader to the `Linearizer`
(protocol/consensus/linearizer.py), which orders its sub-DAG. With a reputation window W > 0, every W-th
commit installs a new swap table (protocol/consensus/leader_schedule.py) for the rounds after its leader's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from protocol.consensus.block import GENESIS_ROUND, ZERO_DIGEST, DagRef, Slot
from protocol.consensus.dag_state import DagState
from protocol.consensus.leader_schedule import ParentsOf, Reputation
from protocol.consensus.linearizer import DEFAULT_GC_DEPTH, CommittedSubDag, Linearizer

DEFAULT_WAVE_LENGTH = 3


class Decision(Enum):
    COMMIT = "commit"
    SKIP = "skip"
    UNDECIDED = "undecided"


class LeaderStatus(NamedTuple):
    """The fate of one leader slot. `direct` is informational only: nodes may differ on it."""

    slot: Slot
    offset: int  # which of the round's leaders (0 when one leader per round)
    decision: Decision
    block: DagRef | None = None  # the committed block
    direct: bool = False

    @property
    def decided(self) -> bool:
        return self.decision is not Decision.UNDECIDED


class SafetyViolation(RuntimeError):
    """Two certified blocks in one slot: more than f stake is Byzantine. The driver must halt."""


@dataclass
class _SlotMemo:
    """Facts about one undecided leader slot; all are fixed once computed, so they are cached."""

    support: dict[DagRef, DagRef | None] = field(default_factory=dict)  # block -> block it supports
    certificate: dict[tuple[DagRef, DagRef], bool] = field(default_factory=dict)
    direct: LeaderStatus | None = None  # a decided direct status, final
    from_anchor: dict[DagRef, LeaderStatus] = field(default_factory=dict)
    # Incremental tallies: round lists only grow, so each scan resumes where the last one stopped.
    blame_seen: int = 0  # voting-round refs examined
    blamers: set[int] = field(default_factory=set)
    blame_stake: int = 0
    support_tally: dict[DagRef, _Tally] = field(default_factory=dict)  # leader block -> certificates


@dataclass
class _Tally:
    seen: int = 0  # decision-round refs examined
    authors: set[int] = field(default_factory=set)
    stake: int = 0


LeaderSchedule = Callable[[int, int], int]  # (round, offset) -> author


class Committer:
    """Mysticeti-C: decides leader slots in order and linearises each committed leader's sub-DAG.

    `try_commit` is idempotent: a slot is decided once, and only the longest decided prefix is output.
    """

    def __init__(
        self,
        dag: DagState,
        *,
        wave_length: int = DEFAULT_WAVE_LENGTH,
        leaders_per_round: int = 1,
        gc_depth: int = DEFAULT_GC_DEPTH,
        leader_schedule: LeaderSchedule | None = None,
        auto_prune: bool = True,
        genesis_commit_digest: bytes = ZERO_DIGEST,
        start_index: int = 0,
        reputation_window: int = 0,
    ) -> None:
        if wave_length < 3:
            raise ValueError("wave_length must be >= 3")
        if not 1 <= leaders_per_round <= dag.committee.size:
            raise ValueError("leaders_per_round must be in 1..committee size")
        if gc_depth < wave_length:
            raise ValueError("gc_depth must be >= wave_length")
        if reputation_window < 0:
            raise ValueError("reputation_window must be >= 0 (0 = off)")
        self.dag = dag
        self.committee = dag.committee
        self.wave_length = wave_length
        self.leaders_per_round = leaders_per_round
        self.gc_depth = gc_depth
        self.auto_prune = auto_prune
        self._schedule = leader_schedule
        self._leaders_cache: dict[int, tuple[int, ...]] = {}
        self._memo: dict[Slot, _SlotMemo] = {}
        # Commit state: a deterministic function of the commit sequence alone.
        self.linearizer = Linearizer(
            dag, gc_depth=gc_depth, genesis_commit_digest=genesis_commit_digest, start_index=start_index
        )
        self.last_decided: tuple[int, int] = (GENESIS_ROUND, leaders_per_round - 1)  # (round, offset)
        self.last_decisions: tuple[LeaderStatus, ...] = ()
        # Off (None) for the DAG vectors, which pin the plain schedule; on for real nodes (CoreParams).
        self.reputation = (
            Reputation(self.committee, dag.epoch_seed, reputation_window, start_index) if reputation_window else None
        )

    # -- leader schedule --

    def leaders(self, round: int) -> tuple[int, ...]:
        """The leader authorities of `round`, by offset: the drawn schedule, then the swap table in force."""
        got = self._leaders_cache.get(round)
        if got is None:
            if self._schedule is not None:
                got = tuple(self._schedule(round, k) for k in range(self.leaders_per_round))
            else:
                got = self.committee.leaders(round, self.dag.epoch_seed, self.leaders_per_round)
            if self.reputation is not None:
                got = self.reputation.leaders(round, got)
            self._leaders_cache[round] = got
        return got

    def _schedule_changed(self, first_round: int) -> None:
        """A new swap table rules rounds >= first_round: forget leaders and slot facts cached for them.

        Every node changes at the same commit (the window's last), and slots after it were never output, so all
        nodes decide them under the new table alone (spec/consensus.md §2.1).
        """
        for r in [x for x in self._leaders_cache if x >= first_round]:
            del self._leaders_cache[r]
        for slot in [s for s in self._memo if s.round >= first_round]:
            del self._memo[slot]

    def leader(self, round: int, offset: int = 0) -> Slot:
        return Slot(round, self.leaders(round)[offset])

    @property
    def gc_round(self) -> int:
        """Blocks at or below this round are never linearised; fixed by the last committed leader."""
        return self.linearizer.gc_round

    # -- votes and certificates --

    def _supported(self, ref: DagRef, slot: Slot, memo: _SlotMemo) -> DagRef | None:
        """The one block of `slot` that `ref` supports: the first met in a depth-first walk of its parents.

        Parents are walked in block order and parents[0] is the author's own previous block, so a later
        block by the same author supports what its earlier block did: a voter backs one block per slot.
        """
        if ref.round <= slot.round:
            return None
        cached = memo.support.get(ref, memo)
        if cached is not memo:
            return cached  # type: ignore[return-value]
        result = None
        for p in self.dag.parents(ref):
            if p.round == slot.round and p.author == slot.author:
                result = p
                break
            if p.round > slot.round:
                result = self._supported(p, slot, memo)
                if result is not None:
                    break
        memo.support[ref] = result
        return result

    def _is_certificate(self, cert: DagRef, leader: DagRef, slot: Slot, memo: _SlotMemo) -> bool:
        """Whether `cert`'s parents that vote for `leader` hold a quorum of stake."""
        key = (cert, leader)
        got = memo.certificate.get(key)
        if got is not None:
            return got
        stakes = self.committee.stakes
        quorum = self.committee.quorum
        stake = 0
        result = False
        for p in self.dag.parents(cert):  # one parent per author, so no double counting
            if self._supported(p, slot, memo) == leader:
                stake += stakes[p.author]
                if stake >= quorum:
                    result = True
                    break
        memo.certificate[key] = result
        return result

    def _memo_for(self, slot: Slot) -> _SlotMemo:
        m = self._memo.get(slot)
        if m is None:
            m = self._memo[slot] = _SlotMemo()
        return m

    # -- decisions --

    def _direct(self, slot: Slot, offset: int) -> LeaderStatus:
        """The direct rule, tallied incrementally: each new voting/decision-round block is examined once."""
        memo = self._memo_for(slot)
        if memo.direct is not None:
            return memo.direct
        dag = self.dag
        r = slot.round
        stakes = self.committee.stakes
        quorum = self.committee.quorum
        # Direct skip: a quorum of voting-round authors each has a block supporting no block of the slot.
        # Such an honest author can never vote for the slot, so no block of it can ever be certified.
        voters = dag.unordered_refs_at_round(r + 1)
        if memo.blame_seen < len(voters):
            blamers = memo.blamers
            for v in voters[memo.blame_seen:]:
                if v.author not in blamers and self._supported(v, slot, memo) is None:
                    blamers.add(v.author)
                    memo.blame_stake += stakes[v.author]
            memo.blame_seen = len(voters)
            if memo.blame_stake >= quorum:
                memo.direct = LeaderStatus(slot, offset, Decision.SKIP, None, True)
                return memo.direct
        # Direct commit: a quorum of decision-round authors each has a certificate for the block.
        deciders = dag.unordered_refs_at_round(r + self.wave_length - 1)
        committed = []
        for leader in dag.unordered_refs_at_slot(r, slot.author):
            tally = memo.support_tally.get(leader)
            if tally is None:
                tally = memo.support_tally[leader] = _Tally()
            if tally.seen < len(deciders):
                for d in deciders[tally.seen:]:
                    if d.author not in tally.authors and self._is_certificate(d, leader, slot, memo):
                        tally.authors.add(d.author)
                        tally.stake += stakes[d.author]
                tally.seen = len(deciders)
            if tally.stake >= quorum:
                committed.append(leader)
        if len(committed) > 1:
            raise SafetyViolation(f"two blocks of slot {slot!r} directly committed: {sorted(committed)}")
        if committed:
            memo.direct = LeaderStatus(slot, offset, Decision.COMMIT, committed[0], True)
            return memo.direct
        return LeaderStatus(slot, offset, Decision.UNDECIDED)

    def _indirect(self, slot: Slot, offset: int, later: Iterable[LeaderStatus]) -> LeaderStatus:
        """Decide through the first committed anchor at round >= slot.round + wave_length."""
        for anchor in later:
            if anchor.slot.round < slot.round + self.wave_length:
                continue
            if anchor.decision is Decision.COMMIT:
                assert anchor.block is not None
                return self._from_anchor(slot, offset, anchor.block)
            if anchor.decision is Decision.UNDECIDED:
                break
        return LeaderStatus(slot, offset, Decision.UNDECIDED)

    def _from_anchor(self, slot: Slot, offset: int, anchor: DagRef) -> LeaderStatus:
        """Commit the slot's block with a certificate in the anchor's history; else skip the slot."""
        memo = self._memo_for(slot)
        got = memo.from_anchor.get(anchor)
        if got is not None:
            return got
        certs = self.dag.ancestors_at_round(anchor, slot.round + self.wave_length - 1)
        committed = [
            leader
            for leader in self.dag.refs_at_slot(slot.round, slot.author)
            if any(self._is_certificate(c, leader, slot, memo) for c in certs)
        ]
        if len(committed) > 1:
            raise SafetyViolation(f"two blocks of slot {slot!r} certified under anchor {anchor!r}")
        if committed:
            status = LeaderStatus(slot, offset, Decision.COMMIT, committed[0], False)
        else:
            status = LeaderStatus(slot, offset, Decision.SKIP, None, False)
        memo.from_anchor[anchor] = status
        return status

    def peek_statuses(self) -> list[LeaderStatus]:
        """Status of every leader slot after the last decided one, up to the highest decidable round.

        Does not advance the commit state; slots after the first undecided one may show a decision
        that `try_commit` will only output once that one is decided.
        """
        top = self.dag.highest_round - (self.wave_length - 1)
        last_round, last_offset = self.last_decided
        statuses: deque[LeaderStatus] = deque()
        for r in range(top, last_round - 1, -1):
            if r <= GENESIS_ROUND:
                break
            for off in range(self.leaders_per_round - 1, -1, -1):
                if (r, off) <= (last_round, last_offset):
                    break
                slot = self.leader(r, off)
                status = self._direct(slot, off)
                if not status.decided:
                    status = self._indirect(slot, off, statuses)
                statuses.appendleft(status)
        return list(statuses)

    def try_commit(self) -> list[CommittedSubDag]:
        """Decide the longest prefix of leader slots possible now, and linearise its committed leaders.

        Skipped slots are consumed silently; `last_decisions` lists every slot decided by this call. A commit that
        closes a reputation window ends the prefix: the slots after it are decided again under the new table.
        """
        decided: list[LeaderStatus] = []
        out = []
        changed = True
        while changed:
            changed = False
            for status in self.peek_statuses():
                if not status.decided:
                    break
                if status.decision is Decision.COMMIT:
                    assert status.block is not None
                    sub = self.linearizer.linearize(status.block)
                    out.append(sub)
                    first = self.reputation.record(sub, self.dag.parents) if self.reputation is not None else None
                    changed = first is not None
                self.last_decided = (status.slot.round, status.offset)
                self._memo.pop(status.slot, None)
                decided.append(status)
                if changed:
                    self._schedule_changed(first)
                    break
        self.last_decisions = tuple(decided)
        if decided:
            last_round = self.last_decided[0]
            for r in [x for x in self._leaders_cache if x <= last_round]:
                del self._leaders_cache[r]
            if self.auto_prune and out:
                self.dag.prune(self.gc_round)
        return out

    # -- recovery --

    def restore(self, commits: Sequence[CommittedSubDag], parents_of: ParentsOf | None = None) -> None:
        """Resume after a restart from the tail of the commit log (oldest first).

        Pass at least every commit whose leader round is >= last leader round - gc_depth, so that the
        per-author last committed rounds above the GC round are exact, and with reputation on every commit of
        the two windows before the current one, with `parents_of` giving a committed block's parents (the DAG
        no longer holds them). Slots skipped after the last commit are decided again, with the same outcome.
        """
        if not commits:
            return
        self.linearizer.restore(commits)
        self._memo.clear()
        self._leaders_cache.clear()
        if self.reputation is not None:
            if parents_of is None:
                raise ValueError("restoring with leader reputation needs parents_of")
            self.reputation.restore(commits, parents_of)
        last = commits[-1]
        offset = self.leaders(last.leader.round).index(last.leader.author)
        self.last_decided = (last.leader.round, offset)
