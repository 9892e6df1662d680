"""Leader reputation (protocol/consensus/leader_schedule.py, spec/consensus.md §2.1): the pure score and swap
rules, and the committer with reputation on: a crashed author's slots are swapped out after a window, every
delivery order gives the same commits, and a restart resumes the same schedule."""

from __future__ import annotations

import random

import pytest

from protocol.consensus.block import DagRef
from protocol.consensus.committee import Committee
from protocol.consensus.committer import Committer, Decision
from protocol.consensus.dag_state import DagState, InsertStatus
from protocol.consensus.leader_schedule import (
    NO_SWAPS,
    Reputation,
    ScoreWindow,
    SwapTable,
    apply_swaps,
    swap_table,
)
from protocol.consensus.linearizer import CommittedSubDag
from protocol.testing.dag_dsl import TestBlock, deliver, genesis_digest, make_block

SEED = b"tensornet-reputation"


def _ref(round: int, author: int) -> DagRef:
    return DagRef(round, author, bytes([round % 256, author]) * 16)


def _sub(index: int, leader: DagRef, blocks: list[DagRef]) -> CommittedSubDag:
    return CommittedSubDag(index, leader, tuple(sorted(blocks)), 0, bytes(32), bytes(32))


# --- swap table (pure) ---------------------------------------------------------------------------------------------


def test_crashed_validator_is_the_one_swapped() -> None:
    c = Committee.for_test([1, 1, 1, 1])
    assert swap_table(c, [20, 19, 0, 20]) == SwapTable(frozenset({2}), (0, 1, 3))


@pytest.mark.parametrize("scores", [[20, 20, 20, 20], [0, 0, 0, 0], [20, 11, 10, 20]])
def test_no_swap_when_nobody_is_below_half_the_best(scores: list[int]) -> None:
    assert swap_table(Committee.for_test([1, 1, 1, 1]), scores) == NO_SWAPS


def test_bad_set_never_exceeds_f_stake() -> None:
    seven = Committee.for_test([1] * 7)  # f = 2
    t = swap_table(seven, [0, 0, 0, 10, 10, 10, 10])
    assert t.bad == {0, 1}  # the third low scorer would take the bad stake past f
    assert t.good == (3, 4, 5, 6)  # and, being low, it gets no swapped slots either
    skewed = Committee.for_test([1, 2, 3, 4])  # T = 10, f = 3
    assert swap_table(skewed, [0, 0, 5, 5]).bad == {0, 1}
    assert swap_table(skewed, [5, 5, 5, 0]) == NO_SWAPS  # its 4 stake alone exceeds f: it is never swapped


def test_ties_break_by_index() -> None:
    seven = Committee.for_test([1] * 7)
    assert swap_table(seven, [9, 1, 1, 1, 9, 9, 9]).bad == {1, 2}


def test_swap_table_rejects_wrong_length() -> None:
    with pytest.raises(ValueError, match="3 scores"):
        swap_table(Committee.for_test([1, 1, 1, 1]), [1, 2, 3])


def test_apply_swaps_replaces_only_bad_leaders_deterministically() -> None:
    c = Committee.for_test([1, 2, 3, 4])
    table = SwapTable(frozenset({0}), (1, 2, 3))
    picks = [apply_swaps(c, SEED, r, (0,), table)[0] for r in range(1, 601)]
    assert picks == [apply_swaps(c, SEED, r, (0,), table)[0] for r in range(1, 601)]
    assert set(picks) == {1, 2, 3}
    assert picks.count(1) < picks.count(2) < picks.count(3)  # stake-weighted, like the base draw (§2)
    assert apply_swaps(c, SEED, 5, (2, 3), table) == (2, 3)
    assert apply_swaps(c, SEED, 5, (1,), NO_SWAPS) == (1,)


def test_apply_swaps_keeps_a_rounds_leaders_distinct() -> None:
    c = Committee.for_test([1] * 7)
    table = SwapTable(frozenset({0, 1}), (4, 5))
    for r in range(1, 200):
        # offset 0 takes the only good node not leading yet; offset 1 finds none free and keeps its leader
        assert apply_swaps(c, SEED, r, (0, 1, 4), table) == (5, 1, 4)


# --- scores ----------------------------------------------------------------------------------------------------------


def test_scores_count_next_round_votes_for_committed_leaders() -> None:
    leader1 = _ref(1, 0)
    voters = [_ref(2, a) for a in (0, 1, 3)]  # author 2 crashed: no round-2 block
    late = _ref(3, 1)  # cites leader 1 two rounds up (not a vote) and a round-2 block that leads nothing
    parents = {v: (leader1,) for v in voters} | {late: (leader1, _ref(2, 0)), leader1: ()}
    w = ScoreWindow(4)
    w.add(_sub(1, leader1, [leader1]), lambda r: parents[r])
    w.add(_sub(2, voters[1], voters[:2]), lambda r: parents[r])
    w.add(_sub(3, late, [voters[2], late]), lambda r: parents[r])
    assert w.scores == [1, 1, 0, 1]
    assert w.commits == 3


def test_window_closes_at_every_wth_commit_and_rules_later_rounds_only() -> None:
    c = Committee.for_test([1, 1, 1, 1])
    rep = Reputation(c, SEED, window=2, start_index=10)
    parents = _full_parents(alive=(0, 1, 3), rounds=8)
    subs = [_sub(11 + k, _ref(r, 0), [_ref(r, a) for a in (0, 1, 3)]) for k, r in enumerate(range(1, 6))]
    assert rep.record(subs[0], parents) is None
    assert rep.record(subs[1], parents) == 3  # commit 12 (leader round 2) closes the window: rounds >= 3
    assert rep.last_scores == (1, 1, 0, 1)
    assert rep.table_for(2) == NO_SWAPS and rep.table_for(3).bad == {2}
    assert all(2 not in rep.leaders(r, (2,)) for r in range(3, 40))


def test_restore_needs_two_windows_before_the_current_one() -> None:
    c = Committee.for_test([1, 1, 1, 1])
    parents = _full_parents(alive=(0, 1, 3), rounds=12)
    subs = [_sub(1 + k, _ref(r, 0), [_ref(r, a) for a in (0, 1, 3)]) for k, r in enumerate(range(1, 10))]
    live = Reputation(c, SEED, window=2)
    for s in subs:
        live.record(s, parents)
    again = Reputation(c, SEED, window=2)
    again.restore(subs[4:], parents)  # 9 commits, 4 windows done: needs windows 3 and 4 (commits 5..8) on
    assert again._tables == live._tables
    with pytest.raises(ValueError, match="from index 5"):
        Reputation(c, SEED, window=2).restore(subs[5:], parents)


def _full_parents(alive: tuple[int, ...], rounds: int):  # noqa: ANN202 - a test lookup
    table = {_ref(r, a): tuple(_ref(r - 1, b) for b in alive) for r in range(1, rounds + 1) for a in alive}
    return lambda ref: table[ref]


# --- the committer with reputation on ------------------------------------------------------------------------------


def _crash_dag(committee: Committee, rounds: int, dead: int, crash_round: int, rng: random.Random) -> list[TestBlock]:
    """Every live author cites its own block and a random quorum-or-more of the previous round; `dead` stops
    producing after `crash_round`."""
    n = committee.size
    prev = {a: DagRef(0, a, genesis_digest(SEED, a)) for a in range(n)}
    out = []
    for r in range(1, rounds + 1):
        here = {}
        producers = [a for a in range(n) if a != dead or r <= crash_round]
        for a in producers:
            others = [x for x in prev if x != a]
            rng.shuffle(others)
            need = committee.quorum - (committee.stakes[a] if a in prev else 0)
            chosen, stake = [], 0
            for x in others:
                if stake >= need and rng.random() < 0.3:
                    continue
                chosen.append(x)
                stake += committee.stakes[x]
            own = prev[a] if a in prev else None
            blk = make_block(r, a, ([own] if own else []) + [prev[x] for x in chosen])
            out.append(blk)
            here[a] = blk.ref
        prev = here
    return out


def _committer(committee: Committee, window: int) -> Committer:
    return Committer(DagState(committee, SEED), reputation_window=window)


def test_crashed_authors_slots_are_swapped_after_a_window() -> None:
    committee = Committee.for_test([1] * 4)
    blocks = _crash_dag(committee, 120, dead=2, crash_round=30, rng=random.Random(5))
    _, with_rep = deliver(_committer(committee, 10), blocks)
    _, without = deliver(_committer(committee, 0), blocks)

    def dead_slots_after(decisions: list, round_: int) -> int:
        return sum(1 for s in decisions if s.slot.author == 2 and s.slot.round > round_)

    assert dead_slots_after(without, 60) >= 5  # the plain schedule keeps electing it (each one a timeout live)
    assert dead_slots_after(with_rep, 60) == 0  # two windows (of 10 commits) after the crash it leads no more
    assert all(s.decision is Decision.COMMIT for s in with_rep if s.slot.round > 60)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_delivery_order_gives_the_same_commits_and_schedule(seed: int) -> None:
    rng = random.Random(seed)
    committee = Committee.for_test([1, 2, 3, 4, 5, 6, 7])
    blocks = _crash_dag(committee, 90, dead=0, crash_round=20, rng=rng)
    ref_commits, ref_decisions = deliver(_committer(committee, 3), blocks)
    assert len(ref_commits) > 40
    for _ in range(6):
        order = list(range(len(blocks)))
        rng.shuffle(order)
        commits, decisions = deliver(_committer(committee, 3), blocks, order)
        assert commits == ref_commits
        assert [d.slot for d in decisions] == [d.slot for d in ref_decisions]


def test_restart_resumes_the_same_schedule() -> None:
    committee = Committee.for_test([1] * 4)
    blocks = _crash_dag(committee, 100, dead=1, crash_round=25, rng=random.Random(8))
    reference, _ = deliver(_committer(committee, 4), blocks)
    half = len(blocks) * 2 // 3
    first = _committer(committee, 4)
    done, _ = deliver(first, blocks[:half])
    again = _committer(committee, 4)
    with pytest.raises(ValueError, match="parents_of"):
        again.restore(done)
    again = _committer(committee, 4)
    again.dag.prune(first.gc_round)
    for b in blocks[:half]:
        if b.round > first.gc_round:
            assert again.dag.insert(b).status is InsertStatus.ACCEPTED
    by_ref = {b.ref: b.parents for b in blocks}
    again.restore(done[-12:], lambda r: by_ref[r])  # three windows of 4: enough
    assert again.try_commit() == []
    rest, _ = deliver(again, blocks[half:])
    assert done + rest == reference
