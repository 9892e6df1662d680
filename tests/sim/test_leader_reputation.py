"""Leader reputation in the deterministic simulator (spec/consensus.md §2.1): a crashed validator's slots stop
costing leader timeouts after a window, an equivocating leader breaks no agreement, and every node decides the
same schedule. Rates are rounds per *simulated* second, so nothing here depends on the machine's speed."""

from __future__ import annotations

import pytest

from protocol.consensus.core import CoreParams
from protocol.testing.sim import Faults, Simulation

ALL_UP_MS = 3_000
CRASHED = 3


def _record_decisions(sim: Simulation) -> dict[int, list[tuple[int, int, str]]]:
    """Every slot each node decides, in order: the schedule as the nodes used it (skipped slots included)."""
    decided: dict[int, list[tuple[int, int, str]]] = {n.index: [] for n in sim.nodes}
    for n in sim.nodes:
        committer = n.core.committer
        inner = committer.try_commit

        def hook(inner=inner, committer=committer, out=decided[n.index]):  # noqa: ANN001, ANN202 - instrumentation
            subs = inner()
            out.extend((s.slot.round, s.slot.author, s.decision.value) for s in committer.last_decisions)
            return subs

        committer.try_commit = hook  # type: ignore[method-assign]
    return decided


def _same_schedule(sim: Simulation, decided: dict[int, list[tuple[int, int, str]]]) -> None:
    seqs = [decided[n.index] for n in sim.honest()]
    longest = max(seqs, key=len)
    assert len(longest) > 50
    for s in seqs:
        assert s == longest[: len(s)]


def _round(sim: Simulation) -> int:
    return min(n.core.quorum_round for n in sim.honest())


def _crash_run(seed: int, window: int) -> tuple[Simulation, float, float, dict]:
    """All up for ALL_UP_MS, then validator CRASHED stops for good; returns (sim, all-up rate, rate from the third
    simulated second after the crash to the end), both in rounds per simulated second."""
    sim = Simulation([1, 1, 1, 1], seed=seed, params=CoreParams(reputation_window=window))
    decided = _record_decisions(sim)
    sim.run(ALL_UP_MS)
    all_up = _round(sim) * 1000 / ALL_UP_MS
    sim.faults.silent = frozenset({CRASHED})
    sim.run(ALL_UP_MS + 3_000)
    r0 = _round(sim)
    sim.run(ALL_UP_MS + 9_000)
    return sim, all_up, (_round(sim) - r0) * 1000 / 6_000, decided


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_crashed_validator_is_swapped_out_and_rounds_per_s_recover(seed: int) -> None:
    sim, all_up, crashed, decided = _crash_run(seed, window=20)
    sim.assert_consistent()
    _same_schedule(sim, decided)
    assert crashed >= 0.8 * all_up, (crashed, all_up)
    late = [d for d in decided[0] if d[0] > _round(sim) - 100]
    assert late and all(author != CRASHED for _, author, _ in late)  # its slots went to others


def test_without_reputation_a_crashed_leader_costs_a_timeout_per_slot() -> None:
    """The same run on the plain schedule: what the swap table buys (and proof the test above can fail)."""
    sim, all_up, crashed, decided = _crash_run(1, window=0)
    sim.assert_consistent()
    assert crashed < 0.6 * all_up, (crashed, all_up)
    assert any(author == CRASHED and d == "skip" for _, author, d in decided[0][-60:])


@pytest.mark.parametrize("seed", [4, 5])
def test_equivocating_leader_breaks_no_agreement(seed: int) -> None:
    faults = Faults(equivocators=frozenset({CRASHED}), latency_ms=(5, 40))
    sim = Simulation([1, 1, 1, 1], seed=seed, faults=faults, params=CoreParams(reputation_window=10))
    decided = _record_decisions(sim)
    sim.run(8_000)
    sim.assert_consistent()
    _same_schedule(sim, decided)
    assert min(len(n.commits) for n in sim.honest()) > 100
    # the equivocator's slots never commit two blocks: at most one commit per slot in every node's sequence
    for n in sim.honest():
        slots = [(c.sub.leader.round, c.sub.leader.author) for c in n.commits]
        assert len(slots) == len(set(slots))


def test_schedule_identical_on_all_nodes_under_loss_and_late_start() -> None:
    faults = Faults(loss=0.05, tail_p=0.05, start_ms={2: 1_500}, drift_ms={1: 40})
    sim = Simulation([1, 2, 3, 4], seed=9, faults=faults, params=CoreParams(reputation_window=5))
    decided = _record_decisions(sim)
    sim.run(8_000)
    sim.assert_consistent()
    _same_schedule(sim, decided)
    tables = {tuple(n.core.committer.reputation._tables) for n in sim.honest()
              if len(n.commits) == max(len(m.commits) for m in sim.honest())}
    assert len(tables) == 1
