"""Leader reputation: scores from committed sub-DAGs and the swap table they give (spec/consensus.md §2.1).

Idea from Sui's `leader_schedule.rs` / `leader_scoring.rs` (vote scoring), rules our own. Everything here is a
function of the commit sequence alone (committed blocks and their parent lists), which every honest node
derives identically, so every node swaps the same leaders from the same slot on. Integers only; no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from protocol.consensus.block import DagRef
from protocol.consensus.committee import Committee, blake2b256
from protocol.consensus.linearizer import CommittedSubDag

DEFAULT_REPUTATION_WINDOW = 20  # commits per scoring window; 0 turns reputation off
_SWAP_DOMAIN = b"tensornet/leader-swap/v1"

ParentsOf = Callable[[DagRef], Sequence[DagRef]]


@dataclass(frozen=True)
class SwapTable:
    """Who loses its leader slots (`bad`) and who may take them (`good`, ascending index)."""

    bad: frozenset[int] = frozenset()
    good: tuple[int, ...] = ()


NO_SWAPS = SwapTable()


def swap_table(committee: Committee, scores: Sequence[int]) -> SwapTable:
    """The swap table for one window's scores.

    Low scorers are those with 2*score < the highest score. Walking authorities by (score, index) ascending, each
    low scorer joins `bad` while their stake together stays <= f; the walk stops at the first that does not fit
    (so at most f stake, which cannot stop a quorum, ever loses its slots). `good` is every authority with
    2*score >= the highest score. An all-zero window (or one where nobody is low) swaps nothing.
    """
    if len(scores) != committee.size:
        raise ValueError(f"{len(scores)} scores for a committee of {committee.size}")
    high = max(scores)
    bad: set[int] = set()
    stake = 0
    for a in sorted(range(committee.size), key=lambda i: (scores[i], i)):
        if 2 * scores[a] >= high or stake + committee.stakes[a] > committee.max_faulty:
            break
        bad.add(a)
        stake += committee.stakes[a]
    good = tuple(a for a in range(committee.size) if 2 * scores[a] >= high)
    if not bad or not good:
        return NO_SWAPS
    return SwapTable(frozenset(bad), good)


def apply_swaps(
    committee: Committee, epoch_seed: bytes, round: int, base: Sequence[int], table: SwapTable
) -> tuple[int, ...]:
    """The leaders of `round` after swapping out `table.bad`.

    Offset k's bad leader is replaced by a stake-weighted draw (`Committee.draw`) from
    h = H("tensornet/leader-swap/v1" || epoch_seed || u64(round) || u32(k)) among the good authorities that are not
    already a leader of the round (after the swaps of lower offsets); with none left it stays.
    """
    out = list(base)
    if not table.bad:
        return tuple(out)
    for k, a in enumerate(base):
        if a not in table.bad:
            continue
        candidates = [g for g in table.good if g not in out]
        if not candidates:
            continue
        h = blake2b256(_SWAP_DOMAIN + bytes(epoch_seed) + round.to_bytes(8, "big") + k.to_bytes(4, "big"))
        allowed = set(candidates)
        out[k] = committee.draw(h, frozenset(i for i in range(committee.size) if i not in allowed))
    return tuple(out)


class ScoreWindow:
    """Vote scores over the commits of one window (Sui's vote scoring).

    A committed block B of author a scores a point for each parent P with P.round = B.round - 1 that is the leader of
    a commit recorded earlier in this window: a voted, in the very next round, for a leader that committed. A
    crashed validator casts no votes; a slow one's blocks miss the next round.
    """

    def __init__(self, size: int) -> None:
        self.scores = [0] * size
        self.commits = 0
        self._leaders: set[DagRef] = set()

    def add(self, sub: CommittedSubDag, parents_of: ParentsOf) -> None:
        self._leaders.add(sub.leader)  # before the blocks: a vote is always committed after its leader
        for ref in sub.blocks:
            for p in parents_of(ref):
                if p.round == ref.round - 1 and p in self._leaders:
                    self.scores[ref.author] += 1
        self.commits += 1


class Reputation:
    """The swap tables of one epoch, and the window being scored.

    Window k holds commits `start_index + k*W + 1 .. start_index + (k+1)*W`. When commit `start_index + (k+1)*W`
    (leader round b) is recorded, `swap_table(window k's scores)` takes effect for every round > b.
    """

    def __init__(self, committee: Committee, epoch_seed: bytes, window: int, start_index: int = 0) -> None:
        if window < 1:
            raise ValueError("reputation window must be >= 1 commit")
        self.committee = committee
        self.epoch_seed = bytes(epoch_seed)
        self.window = window
        self.start_index = start_index
        self._scoring = ScoreWindow(committee.size)
        # (first round, table), first rounds strictly increasing; the last two cover every undecided slot.
        self._tables: list[tuple[int, SwapTable]] = [(0, NO_SWAPS)]
        self.last_scores: tuple[int, ...] = ()

    def table_for(self, round: int) -> SwapTable:
        for first, table in reversed(self._tables):
            if first <= round:
                return table
        return self._tables[0][1]  # a round below every kept table is decided already: never asked for a decision

    def leaders(self, round: int, base: Sequence[int]) -> tuple[int, ...]:
        return apply_swaps(self.committee, self.epoch_seed, round, base, self.table_for(round))

    def record(self, sub: CommittedSubDag, parents_of: ParentsOf) -> int | None:
        """Score one commit (in index order). Returns the first round of a new table when it closes a window."""
        self._scoring.add(sub, parents_of)
        if self._scoring.commits < self.window:
            return None
        self.last_scores = tuple(self._scoring.scores)
        first = sub.leader.round + 1
        table = swap_table(self.committee, self.last_scores)
        if self._tables[-1][0] == first:
            self._tables[-1] = (first, table)  # two windows closed in one round (W = 1, several leaders per round)
        else:
            self._tables = [self._tables[-1], (first, table)]
        self._scoring = ScoreWindow(self.committee.size)
        return first

    def restore(self, commits: Sequence[CommittedSubDag], parents_of: ParentsOf) -> None:
        """Replay the scoring from the tail of the commit log (oldest first): it must hold every commit of the two
        windows before the current one, or reach back to the epoch's first commit."""
        last = commits[-1].index
        done = (last - self.start_index) // self.window  # complete windows
        need = self.start_index + max(0, done - 2) * self.window + 1
        if commits[0].index > need:
            raise ValueError(f"restoring leader reputation needs commits from index {need}, got {commits[0].index}")
        for sub in commits:
            if sub.index >= need:
                self.record(sub, parents_of)
