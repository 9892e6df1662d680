"""Epoch changes and equivocation penalties in the deterministic simulator, over whole chains."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sim.chains import UNIT, ChainSimulation
from tests.sim.network import Faults


def run_until_epoch(sim: ChainSimulation, epoch: int, limit_ms: int = 60_000) -> None:
    t = 0
    while t < limit_ms and min(n.chain.epoch for n in sim.honest()) < epoch:
        t += 1_000
        sim.run(t)


@pytest.mark.parametrize("seed", [1, 2])
def test_committee_changes_at_the_epoch_boundary(tmp_path: Path, seed: int) -> None:
    # committee_size 3 out of 4 staked validators: epoch 1 keeps the top 3 by stake
    sim = ChainSimulation(tmp_path, [1, 2, 3, 4], seed, Faults(loss=0.02), epoch_rounds=15, committee_size=3)
    try:
        run_until_epoch(sim, 2)
        reached = max(len(n.commits) for n in sim.nodes)
        sim.run(sim.now + 3_000)
        sim.assert_consistent()
        states = [n.chain.state for n in sim.nodes]
        assert all(s.epoch >= 2 for s in states), [s.epoch for s in states]
        first = states[0]
        assert len(first.prev_committee) == 3 or first.epoch > 2
        members = {m.hotkey for m in first.epoch_committee}
        assert members == {k.public for k in sim.keys[1:]}, "the lowest-staked validator should have left"
        # the node that left keeps following the chain, it just stops proposing
        left = sim.nodes[0]
        assert not left.chain.is_validator
        assert left.commits[-1].index >= first.epoch_start
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
            # 10% (genesis default slash_ppm) of its 1000-token self-stake is gone
            assert st.hotkey_stake[offender] == 900 * UNIT
            assert offender not in {m.hotkey for m in st.epoch_committee}
            assert len(st.epoch_committee) == 3
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
