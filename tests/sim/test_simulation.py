"""Seeded simulations of the consensus core under faults: safety always, liveness with a quorum."""

from __future__ import annotations

import random

import pytest

from protocol.testing.sim import Faults, Simulation

STAKE_SETS = ([1, 1, 1, 1], [1, 2, 3, 4], [11, 11, 11, 67], [1] * 7)


def scenario(seed: int) -> tuple[list[int], Faults, str]:
    """A random but reproducible mix of faults that leaves >= Q stake honest and connected."""
    rng = random.Random(seed)
    stakes = list(rng.choice(STAKE_SETS))
    n = len(stakes)
    total = sum(stakes)
    max_faulty_stake = total - (2 * total // 3 + 1)
    faults = Faults(
        loss=rng.choice([0.0, 0.02, 0.1]),
        tail_p=rng.choice([0.0, 0.01, 0.05]),
        drift_ms={i: rng.randint(-200, 200) for i in range(n) if rng.random() < 0.3},
    )
    kind = rng.choice(["none", "silent", "equivocate", "late"])
    order = list(range(n))
    rng.shuffle(order)
    bad: set[int] = set()
    for i in order:  # greedily pick faulty nodes while their stake stays <= f
        if sum(stakes[j] for j in bad) + stakes[i] <= max_faulty_stake:
            bad.add(i)
    if kind == "silent" and bad:
        faults.silent = frozenset(bad)
    elif kind == "equivocate" and bad:
        faults.equivocators = frozenset(bad)
    elif kind == "late":
        faults.start_ms = {order[0]: rng.randint(100, 400)}
    return stakes, faults, kind


@pytest.mark.parametrize("seed", range(200))
def test_seeded_run_is_safe_and_live(seed: int) -> None:
    stakes, faults, kind = scenario(seed)
    sim = Simulation(stakes, seed=seed, faults=faults)
    sim.run(1200 * (3 if kind == "silent" else 1))
    sim.assert_consistent()
    honest = sim.honest()
    assert max(len(n.commits) for n in honest) >= 3, f"{kind}: no progress with a quorum connected"
    # the same state on every honest node at every common height: here the commit digests chain
    # every ordered block, so equal digests mean equal inputs to the state machine
    for n in honest:
        assert [c.sub.index for c in n.commits] == list(range(1, len(n.commits) + 1))


def test_same_seed_replays_identically() -> None:
    stakes, faults, _ = scenario(11)
    runs = []
    for _ in range(2):
        sim = Simulation(stakes, seed=11, faults=faults)
        sim.run(800)
        runs.append([sim.commit_digests(n) for n in sim.nodes])
    assert runs[0] == runs[1]


@pytest.mark.parametrize("stakes,cut", [([1, 1, 1, 1], [{0, 1}, {2, 3}]), ([1, 2, 3, 4], [{0, 1, 2}, {3}])])
def test_partition_without_quorum_stops_commits_then_heals(stakes: list[int], cut: list[set[int]]) -> None:
    sim = Simulation(stakes, seed=5, faults=Faults(loss=0.02))
    sim.run(800)
    before = [len(n.commits) for n in sim.nodes]
    assert min(before) > 0
    sim.partition = cut
    sim.run(1100)  # let in-flight messages land
    during = [len(n.commits) for n in sim.nodes]
    sim.run(2500)
    assert [len(n.commits) for n in sim.nodes] == during, "committed without a quorum"
    sim.partition = None
    sim.run(4500)
    after = [len(n.commits) for n in sim.nodes]
    assert min(after) > max(during), "commits did not resume after the partition healed"
    sim.assert_consistent()


def test_quorum_side_of_partition_keeps_committing() -> None:
    sim = Simulation([1, 1, 1, 1], seed=9)
    sim.run(500)
    sim.partition = [{0, 1, 2}, {3}]
    sim.run(700)
    mid = [len(n.commits) for n in sim.nodes]
    sim.run(2000)
    end = [len(n.commits) for n in sim.nodes]
    assert all(end[i] > mid[i] for i in (0, 1, 2))
    assert end[3] == mid[3]
    sim.partition = None
    sim.run(3500)
    sim.assert_consistent()
    assert len(sim.nodes[3].commits) > end[3], "isolated node did not catch up after rejoining"
