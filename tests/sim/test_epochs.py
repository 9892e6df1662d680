"""Epoch changes and equivocation penalties in the deterministic simulator, over whole chains."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from node.testing.chains import UNIT, ChainNode, ChainSimulation
from protocol.testing.sim import Faults


def run_until(sim: ChainSimulation, done: Callable[[], bool], limit_ms: int = 60_000) -> None:
    """Run in 1 s steps (each long enough for the simulator's 100 ms synchronizer) until `done()` or the limit."""
    deadline = sim.now + limit_ms
    while sim.now < deadline and not done():
        sim.run(sim.now + 1_000)


def run_until_epoch(sim: ChainSimulation, epoch: int, limit_ms: int = 60_000) -> None:
    run_until(sim, lambda: min(n.chain.epoch for n in sim.honest()) >= epoch, limit_ms)


def in_its_epoch(n: ChainNode) -> bool:
    """The node applied a commit of its current epoch. False from an epoch's closing commit (which moves
    epoch_start to the next height) until the new DAG's first commit, about one wave later, on every node."""
    return bool(n.commits) and n.commits[-1].index >= n.chain.state.epoch_start


@pytest.mark.parametrize("seed", [1, 2])
def test_committee_changes_at_the_epoch_boundary(tmp_path: Path, seed: int) -> None:
    # committee_size 3 out of 4 staked validators: epoch 1 keeps the top 3 by stake
    sim = ChainSimulation(tmp_path, [1, 2, 3, 4], seed, Faults(loss=0.02), epoch_rounds=15, committee_size=3)
    try:
        run_until_epoch(sim, 2)
        reached = max(len(n.commits) for n in sim.nodes)
        left = sim.nodes[0]
        left_at = left.chain.state.epoch_start  # an epoch (>= 2) whose committee no longer has node 0
        sim.run(sim.now + 3_000)
        sim.assert_consistent()
        states = [n.chain.state for n in sim.nodes]
        assert all(s.epoch >= 2 for s in states), [s.epoch for s in states]
        first = states[0]
        assert len(first.prev_committee) == 3 or first.epoch > 2
        members = {m.hotkey for m in first.epoch_committee}
        assert members == {k.public for k in sim.keys[1:]}, "the lowest-staked validator should have left"
        # the node that left keeps following the chain, it just stops proposing
        assert not left.chain.is_validator
        assert left.commits[-1].index > left_at, "the follower committed nothing of the epochs after it left"
        # and commits in each new epoch: sampled at one instant it may sit between a closing commit and the
        # next epoch's first one (so may any member), so wait for it rather than expect it at a fixed time
        run_until(sim, lambda: in_its_epoch(left), limit_ms=10_000)
        assert in_its_epoch(left), (left.commits[-1].index, left.chain.state.epoch_start)
        # commits go on in the new epochs, every node agrees on each height's state root
        assert min(len(n.commits) for n in sim.nodes) > reached
        for s in states:
            s.check_invariants()
    finally:
        sim.close()


def test_equivocator_is_caught_slashed_and_removed(tmp_path: Path) -> None:
    faults = Faults(loss=0.01, equivocators=frozenset({3}))
    sim = ChainSimulation(tmp_path, [1, 1, 1, 1], 7, faults, epoch_rounds=25)
    try:
        run_until_epoch(sim, 1)
        honest = sim.honest()
        sim.assert_consistent()
        offender = sim.keys[3].public
        for n in honest:
            st = n.chain.state
            assert st.epoch >= 1
            assert (0, offender) in st.offences
            # left out of the next epoch's committee (it may return later if its stake still ranks, spec/economics.md
            # §4), so look at epoch 1's committee, not at whichever epoch the node has reached by now
            assert offender not in n.committees[1]
            assert len(n.committees[1]) == 3
            # 10% (genesis default slash_ppm) of its 1000-token self-stake is gone
            assert st.hotkey_stake[offender] == 900 * UNIT
            st.check_invariants()
        # the reporter got 10% of the slash; the rest was burned
        reporters = [k.public for k in sim.keys[:3] if honest[0].chain.state.balances.get(k.public)]
        assert len(reporters) == 1 and honest[0].chain.state.balances[reporters[0]] == 10 * UNIT
        assert honest[0].chain.state.burned >= 90 * UNIT
        # the honest three keep committing in the new epoch without the equivocator
        before = min(len(n.commits) for n in honest)
        sim.run(sim.now + 5_000)
        sim.assert_consistent()
        assert min(len(n.commits) for n in honest) > before
    finally:
        sim.close()
