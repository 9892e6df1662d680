"""Rest when idle (spec/consensus.md §D.2a) in the deterministic simulator: an idle network slows to the idle
pace and keeps committing; a transaction that arrives during the rest is proposed at once and commits
within a few normal rounds, not after the idle interval. Times are simulated milliseconds."""

from __future__ import annotations

import pytest

from protocol.consensus.core import Committed, CoreParams
from protocol.testing.sim import Simulation

IDLE_MS = 1000


def rounds_per_s(sim: Simulation, from_ms: int, to_ms: int) -> float:
    before = max(n.core.quorum_round for n in sim.nodes)
    sim.run(to_ms)
    return (max(n.core.quorum_round for n in sim.nodes) - before) * 1000 / (to_ms - from_ms)


def test_idle_network_slows_to_the_idle_pace_and_still_commits() -> None:
    busy = Simulation([1, 1, 1, 1], seed=3, params=CoreParams(), auto_payload=False)
    resting = Simulation([1, 1, 1, 1], seed=3, params=CoreParams(idle_interval_ms=IDLE_MS), auto_payload=False)
    busy_rate = rounds_per_s(busy, 0, 10_000)
    rest_rate = rounds_per_s(resting, 0, 10_000)
    assert busy_rate > 10  # no idle interval: a round every few tens of simulated ms, as before
    assert 0.5 <= rest_rate <= 1.5, rest_rate  # about one round per idle interval
    assert min(len(n.commits) for n in resting.nodes) >= 5  # heights still grow while resting
    resting.assert_consistent()


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_transaction_during_rest_is_proposed_at_once_and_commits_in_a_few_rounds(seed: int) -> None:
    committed_at: dict[int, int] = {}  # node -> simulated time the transaction committed there
    sim: Simulation

    def on_commit(node: int, c: Committed) -> None:
        if any(b"hello" in v.payload for v in c.vertices):
            committed_at.setdefault(node, sim.now)

    sim = Simulation([1, 1, 1, 1], seed=seed, params=CoreParams(idle_interval_ms=IDLE_MS), auto_payload=False,
                     on_commit=on_commit)
    sim.run(5_000)
    submit_at = 5_437  # mid-rest: every node proposed its last block well under an idle interval ago
    round_before = max(n.core.quorum_round for n in sim.nodes)
    sim.submit(seed % 4, b"hello", submit_at)
    sim.run(submit_at + IDLE_MS // 2)
    assert sorted(committed_at) == [0, 1, 2, 3], "the transaction did not commit within half an idle interval"
    carrier = next(v for v in _blocks(sim) if v.payload == (b"hello",))
    assert carrier.timestamp_ms - submit_at < CoreParams().leader_timeout_ms  # proposed without the rest
    # a handful of rounds at full pace (min_round_delay_ms 25 and 5-20 ms links) carried it to commit
    assert max(committed_at.values()) - submit_at < 10 * 45
    assert max(n.core.quorum_round for n in sim.nodes) - round_before <= 8
    # then the network rests again: about one round per idle interval
    assert rounds_per_s(sim, submit_at + IDLE_MS // 2, submit_at + 10_500) <= 1.5
    sim.assert_consistent()


def _blocks(sim: Simulation) -> list:
    node = sim.nodes[0]
    return [v for c in node.commits for v in c.vertices]
