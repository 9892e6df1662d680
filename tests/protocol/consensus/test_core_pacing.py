"""Rest when idle (spec/consensus.md §D.2a): the proposing decision of the sans-IO core, on its injected clock."""

from __future__ import annotations

from protocol.consensus.committee import Committee
from protocol.consensus.core import Core, CoreParams, Vertex
from protocol.crypto import Keypair

IDLE = CoreParams(idle_interval_ms=1000)  # min_round_delay_ms 25, leader_timeout_ms 250


def cores(params: CoreParams, n: int = 4) -> list[Core]:
    keys = [Keypair(bytes([i + 1]) * 32) for i in range(n)]
    committee = Committee(tuple(k.public for k in keys), (1,) * n)
    return [Core("pacing", 0, committee, b"seed", keypair=k, params=params) for k in keys]


def deliver(nodes: list[Core], blocks: list[Vertex], now_ms: int) -> None:
    """Every node inserts every other node's blocks (its own is already in)."""
    for c in nodes:
        for v in blocks:
            if v.author != c.own_index:
                c.add(v, now_ms)


def round_of(nodes: list[Core], now_ms: int, payload: tuple[bytes, ...] = ()) -> list[Vertex]:
    """Every node proposes at `now_ms` (each must be due), and all blocks are delivered."""
    blocks = []
    for c in nodes:
        v = c.build_block(now_ms, payload)
        assert v is not None, f"node {c.own_index} was not due at {now_ms}"
        c.add(v, now_ms)
        blocks.append(v)
    deliver(nodes, blocks, now_ms)
    return blocks


def test_idle_validator_waits_the_idle_interval_and_a_transaction_ends_the_rest() -> None:
    nodes = cores(IDLE)
    round_of(nodes, 0)  # round 1: the first block is due at once
    c = nodes[0]
    assert c.quorum_round == 1 and not c.payload_pending()
    assert c.next_proposal_at(10, has_txs=True) == 25  # leaders present: only the minimum round delay
    assert c.next_proposal_at(10, has_txs=False) == 1000  # nothing to propose or commit: rest
    assert c.build_block(500, ()) is None  # an empty block waits out the rest
    v = c.build_block(500, (b"tx",))  # a transaction is proposed at once
    assert v is not None and v.round == 2


def test_a_received_block_with_transactions_wakes_every_validator() -> None:
    nodes = cores(IDLE)
    round_of(nodes, 0)
    carrier = nodes[0].build_block(300, (b"tx",))
    assert carrier is not None
    nodes[0].add(carrier, 300)
    other = nodes[1]
    assert other.next_proposal_at(301, has_txs=False) == 1000
    other.add(carrier, 301)
    assert other.payload_pending()
    assert other.next_proposal_at(301, has_txs=False) == 25  # no rest while transactions wait to commit
    assert other.build_block(301, ()) is not None


def test_rest_resumes_once_the_transactions_commit() -> None:
    nodes = cores(IDLE)
    round_of(nodes, 0)
    now = 100
    round_of(nodes, now, (b"tx",))  # round 2 carries transactions
    committed = 0
    while nodes[0].payload_pending():
        now += 30
        round_of(nodes, now)  # empty blocks, proposed without rest because the payload is pending
        committed += sum(len(x.vertices) for x in nodes[0].try_commit())
        for c in nodes[1:]:
            c.try_commit()
        assert now < 1000, "the transactions of round 2 never committed"
    assert committed > 0
    assert nodes[0].next_proposal_at(now + 1, has_txs=False) == now + 1000  # resting again


def test_no_idle_interval_keeps_the_old_pace() -> None:
    nodes = cores(CoreParams())
    round_of(nodes, 0)
    assert nodes[0].next_proposal_at(10, has_txs=False) == nodes[0].next_proposal_at(10, has_txs=True) == 25


def test_a_missing_leader_still_costs_the_leader_timeout_not_less() -> None:
    params = CoreParams(idle_interval_ms=100, leader_timeout_ms=250)
    nodes = cores(params)
    first = [c.build_block(0, ()) for c in nodes]
    assert all(v is not None for v in first)
    for c, v in zip(nodes, first, strict=True):
        c.add(v, 0)
    leader = nodes[0].committer.leader(1).author
    deliver(nodes, [v for v in first if v is not None and v.author != leader], 5)  # quorum at 5, no leader
    waiting = next(c for c in nodes if c.own_index != leader)
    assert waiting.quorum_round == 1
    assert waiting.next_proposal_at(6, has_txs=False) == 5 + 250  # the leader timeout outlasts the rest
    assert waiting.next_proposal_at(6, has_txs=True) == 5 + 250
