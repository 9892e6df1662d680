"""Blocks of a later consensus epoch: checked before they are held, held under a byte cap, and their
sender charged when they turn out invalid at the epoch switch (issue 13, defect 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.chain import EARLY_BYTES, EARLY_SENDER_BYTES, Chain
from protocol.consensus.block import BadAuthor
from protocol.consensus.core import WrongEpoch
from protocol.crypto import Keypair, digest
from protocol.errors import WrongChainError
from protocol.messages import Block, SignedBlock
from protocol.state.genesis import build_genesis
from tests.node.test_chain import FakeClock, step

UNIT = 10**9
EPOCH_ROUNDS = 8
TX = 60_000  # payload item size: a forged block of 16 of these is about 1 MB


def network(tmp_path: Path) -> tuple[list[Chain], list[Keypair], FakeClock]:
    keys = [Keypair(bytes([i + 1]) * 32) for i in range(4)]
    genesis = build_genesis(
        "test-chain", validators=[(k.public, 1000 * UNIT) for k in keys], epoch_rounds=EPOCH_ROUNDS
    )
    clock = FakeClock()
    return [Chain(tmp_path / f"n{i}", genesis, keypair=keys[i], clock=clock) for i in range(4)], keys, clock


def forged(key: Keypair, *, epoch: int = 1, author: int = 0, round_: int = 1, salt: int = 0,
           chain_id: str = "test-chain", txs: int = 16) -> bytes:
    payload = tuple(bytes([salt % 256, i]) + bytes(TX) for i in range(txs))
    block = Block(chain_id, epoch, round_, author, 1_000_000 + salt, (), payload, ())
    return SignedBlock.create(block, key).to_bytes()


def test_forged_future_blocks_stay_under_the_byte_cap_and_charge_their_sender(tmp_path: Path) -> None:
    chains, keys, clock = network(tmp_path)
    node = chains[3]
    charged: list[str] = []
    node.on_offence = charged.append
    stranger = Keypair(b"\x77" * 32)  # not in any committee: its signatures never verify
    for i in range(100):
        with pytest.raises(WrongEpoch):
            node.receive_block(forged(stranger, salt=i), sender="attacker")
        assert node.early.bytes <= EARLY_BYTES
    held = len(node.early)
    assert 0 < held and node.early.bytes <= EARLY_SENDER_BYTES, "one sender held more than its share"
    assert node.early.dropped == 100 - held
    # a second attacker cannot push the total past the cap either
    for i in range(100):
        with pytest.raises(WrongEpoch):
            node.receive_block(forged(stranger, salt=1000 + i), sender=f"sybil{i % 8}")
    assert node.early.bytes <= EARLY_BYTES
    # the chain crosses into epoch 1: every held forged block fails and its sender is charged
    step(chains, clock, 3 * EPOCH_ROUNDS)
    assert node.epoch >= 1
    assert len(node.early) == 0 and node.early.bytes == 0
    assert charged.count("attacker") == held
    assert {c for c in charged if c != "attacker"} <= {f"sybil{i}" for i in range(8)}
    assert len(charged) > held


def test_a_next_epoch_block_is_checked_before_it_is_held(tmp_path: Path) -> None:
    chains, keys, clock = network(tmp_path)
    node = chains[3]
    with pytest.raises(WrongChainError):
        node.receive_block(forged(keys[0], chain_id="other-chain", txs=1), sender="p")
    with pytest.raises(BadAuthor):
        node.receive_block(forged(keys[0], author=100_000, txs=1), sender="p")
    with pytest.raises(WrongEpoch):  # two epochs ahead: dropped, a node that far behind syncs by commits
        node.receive_block(forged(keys[0], epoch=2, txs=1), sender="p")
    assert len(node.early) == 0


def test_vouched_blocks_push_out_forged_ones(tmp_path: Path) -> None:
    chains, keys, clock = network(tmp_path)
    node = chains[3]
    stranger = Keypair(b"\x77" * 32)
    for i in range(4 * 16 + 4):  # enough senders, each within its share, to fill the whole buffer
        try:
            node.receive_block(forged(stranger, salt=i), sender=f"sybil{i}")
        except WrongEpoch:
            pass
    assert node.early.bytes > EARLY_BYTES - 2 * 1024 * 1024, "the buffer should be about full"
    honest = forged(keys[1], author=1, salt=999)  # signed by the key the next committee gives author 1
    with pytest.raises(WrongEpoch):
        node.receive_block(honest, sender="honest")
    assert node.early.bytes <= EARLY_BYTES
    assert any(e.data == honest for e in node.early.take())


def test_an_honest_next_epoch_block_is_replayed_at_the_switch(tmp_path: Path) -> None:
    chains, keys, clock = network(tmp_path)
    late = chains[3]
    charged: list[str] = []
    late.on_offence = charged.append
    step(chains, clock, EPOCH_ROUNDS + 6, down=frozenset({3}))
    ahead = chains[0]
    assert ahead.epoch >= 1 and late.epoch == 0
    epoch1 = ahead.blocks_by_round(1, 1, 1 << 40, 1000)
    assert epoch1, "the others should have blocks in epoch 1"
    for data in epoch1:
        with pytest.raises(WrongEpoch):
            late.receive_block(data, sender="peer")
    assert len(late.early) == len(epoch1)
    for r in range(1, 1 << 10):  # epoch 0's blocks: the late node commits up to the switch, then replays
        blocks = ahead.blocks_by_round(0, r, r, 64)
        if not blocks:
            break
        for data in blocks:
            late.receive_block(data, sender="peer")
    assert late.epoch == 1
    assert len(late.early) == 0 and not charged
    stored = [late.store.get_block(digest(x)) for x in epoch1]
    assert all(s is not None for s in stored), "the held blocks of epoch 1 were not accepted at the switch"
    for c in chains:
        c.close()
