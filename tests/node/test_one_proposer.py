"""One proposer per transaction (spec/state.md §3.3): the owner mapping and its fallback as pure functions and in
the mempool (rounds injected), then over 4 in-process chains sharing a clock: each transaction lands in one block,
with its owner down it still commits through the fallback, and a bulk submission to one validator's API reaches
the owners through /tensornet/push-txs/1 (served by the real RequestService, the stack stood in for)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from node.chain import Chain, ChainStats
from node.health import refresh_metrics
from node.mempool import Mempool, may_propose, tx_owner
from node.metrics import NodeMetrics
from node.service import PUSH_TXS_SPEC, RequestService, push_to_owners
from p2pnet.gossip import Verdict
from p2pnet.limits import INVALID_SIGNATURE
from p2pnet.reqresp import Refused, RequestError
from protocol import codec, crypto
from protocol.consensus.core import vertex_from_bytes
from protocol.crypto import Keypair
from protocol.messages import Commit, SignedTransaction, Transaction, Transfer
from protocol.state.genesis import Endpoint, build_genesis
from tests.node.test_chain import FakeClock, step

UNIT = 10**9
BOB = Keypair(b"\xbb" * 32)


def keys_owned_by(owner: int, size: int, count: int) -> list[Keypair]:
    """Sender keys whose transactions validator `owner` of `size` proposes."""
    out, i = [], 1
    while len(out) < count:
        k = Keypair(i.to_bytes(4, "big") * 8)
        if tx_owner(k.public, size) == owner:
            out.append(k)
        i += 1
    return out


# --- the mapping and the fallback, pure ----------------------------------------------------------------------


def test_owner_is_one_validator_per_signer_spread_over_the_committee() -> None:
    keys = [Keypair(bytes([i]) * 32) for i in range(1, 65)]
    owners = [tx_owner(k.public, 4) for k in keys]
    assert owners == [tx_owner(k.public, 4) for k in keys]  # the same on every node, every time
    assert set(owners) == {0, 1, 2, 3}
    assert max(Counter(owners).values()) < 32  # no validator gets half of 64 senders
    assert all(tx_owner(k.public, 1) == 0 for k in keys)


def test_fallback_adds_one_validator_in_committee_order_every_k_rounds() -> None:
    def allowed(waited: int) -> set[int]:
        return {v for v in range(4) if may_propose(2, v, 4, waited, fallback_after=10)}

    assert allowed(-5) == allowed(0) == allowed(9) == {2}  # the owner only (rounds restart at an epoch change)
    assert allowed(10) == allowed(19) == {2, 3}
    assert allowed(20) == {2, 3, 0}
    assert allowed(30) == allowed(1000) == {0, 1, 2, 3}  # in the end everyone: never lost


def test_duplicate_rate_is_duplicates_over_copies_in_committed_blocks() -> None:
    assert ChainStats().duplicate_rate == 0  # nothing committed yet: no division by zero
    st = ChainStats(txs_ok=6, txs_failed=1, txs_duplicate=1)
    assert st.tx_copies == 8 and st.duplicate_rate == 1 / 8


def _pool_with(sender: Keypair, nonces_at: dict[int, int]) -> Mempool:
    """A mempool holding a transfer of `sender` per nonce, admitted at the given round."""
    pool = Mempool(fallback_after=10)
    for nonce, round_ in nonces_at.items():
        data = SignedTransaction.create(Transaction("c", sender.public, nonce, Transfer(BOB.public, 1), 0),
                                        sender).to_bytes()
        pool.add(crypto.digest(data), data, sender.public, nonce, fee=1, next_nonce=0, balance=UNIT, round_=round_)
    return pool


def test_mempool_offers_a_transaction_to_its_owner_then_to_the_fallbacks_in_turn() -> None:
    (sender,) = keys_owned_by(1, 4, 1)
    pool = _pool_with(sender, {0: 5})
    assert pool.take(6, proposer=(2, 4)) == []  # next in order: not before it waited 10 rounds
    assert pool.take(14, proposer=(3, 4)) == [] and pool.take(14, proposer=(0, 4)) == []
    assert len(pool.take(6, proposer=(1, 4))) == 1  # the owner at once
    pool = _pool_with(sender, {0: 5})
    assert len(pool.take(15, proposer=(2, 4))) == 1
    pool = _pool_with(sender, {0: 5})
    assert pool.take(34, proposer=(0, 4)) == [] and len(pool.take(35, proposer=(0, 4))) == 1
    assert len(_pool_with(sender, {0: 5}).take(6)) == 1  # no proposer given: a committee of one


def test_a_later_nonce_waits_for_the_proposer_of_the_earlier_one() -> None:
    (sender,) = keys_owned_by(0, 4, 1)
    pool = _pool_with(sender, {1: 0, 0: 5})  # nonce 1 came first; nonce 0 has waited less
    assert pool.take(12, proposer=(1, 4)) == []  # never past a gap: nonce 1 alone would fail
    assert len(pool.take(15, proposer=(1, 4))) == 2


def test_waiting_counts_again_from_round_zero_after_an_epoch_change() -> None:
    (sender,) = keys_owned_by(0, 4, 1)
    pool = _pool_with(sender, {0: 500})
    pool.requeue_all()  # the new epoch's rounds start at 1
    assert pool.take(5, proposer=(1, 4)) == []
    assert len(pool.take(10, proposer=(1, 4))) == 1


# --- four chains ---------------------------------------------------------------------------------------------


def _network(tmp_path: Path, senders: list[Keypair]) -> tuple[list[Chain], FakeClock]:
    keys = [Keypair(bytes([i + 1]) * 32) for i in range(4)]
    validators = [(k.public, 1000 * UNIT, Endpoint(f"12D3KooWtest{i}", (f"/ip4/127.0.0.1/tcp/{4000 + i}",)))
                  for i, k in enumerate(keys)]
    genesis = build_genesis("test-chain", validators=validators, balances={s.public: 50 * UNIT for s in senders})
    clock = FakeClock()
    return [Chain(tmp_path / f"n{i}", genesis, keypair=keys[i], clock=clock) for i in range(4)], clock


def _transfers(senders: list[Keypair], per_sender: int) -> list[bytes]:
    return [SignedTransaction.create(Transaction("test-chain", s.public, n, Transfer(BOB.public, UNIT), 0),
                                     s).to_bytes() for s in senders for n in range(per_sender)]


def _carriers(chain: Chain) -> dict[bytes, list[int]]:
    """Each committed transaction's digest -> authors of the committed blocks that carry it."""
    out: dict[bytes, list[int]] = {}
    last = chain.store.last_commit()
    for rec in chain.store.commits(1, last.index if last else 0):
        for ref in Commit.from_bytes(rec.data).blocks:
            v = vertex_from_bytes(chain.store.get_block(ref.digest))
            for tx in v.payload:
                out.setdefault(crypto.digest(tx), []).append(v.author)
    return out


def test_each_gossiped_transaction_is_proposed_once(tmp_path: Path) -> None:
    """Every mempool holds every transaction (as gossip leaves them); each lands in one block, its owner's.
    Before, each validator carried each: 3 of every 4 copies were duplicates."""
    senders = [Keypair(bytes([0x40 + i]) * 32) for i in range(8)]
    chains, clock = _network(tmp_path, senders)
    txs = _transfers(senders, 3)
    try:
        for c in chains:
            for tx in txs:
                c.submit_tx(tx)
        step(chains, clock, 14)
        assert all(c.state.account(BOB.public)["balance"] == len(txs) * UNIT for c in chains)
        carriers = _carriers(chains[0])
        assert set(carriers) == {crypto.digest(t) for t in txs}
        for tx in txs:
            signer = SignedTransaction.from_bytes(tx).body.signer
            assert carriers[crypto.digest(tx)] == [tx_owner(signer, 4)]
        for c in chains:
            assert c.stats.txs_ok == len(txs) and c.stats.txs_duplicate == 0 and c.stats.duplicate_rate == 0
            assert c.stats.tx_copies == len(txs) and len(c.mempool) == 0
        metrics = NodeMetrics()
        metrics.tx_duplicate_ratio.set(1)
        refresh_metrics(metrics, chains[0], None)
        assert metrics.registry.get_sample_value("tensornet_committed_tx_duplicate_ratio") == 0
    finally:
        for c in chains:
            c.close()


def test_a_crashed_owner_delays_its_transactions_but_the_next_validator_commits_them(tmp_path: Path) -> None:
    senders = keys_owned_by(3, 4, 2)
    chains, clock = _network(tmp_path, senders)
    txs = _transfers(senders, 2)
    down = frozenset({3})
    try:
        for c in chains[:3]:  # the owner never got them (or crashed holding them)
            for tx in txs:
                c.submit_tx(tx)
        step(chains, clock, 6, down=down)
        assert chains[0].height > 0 and chains[0].state.account(BOB.public)["balance"] == 0  # still waiting
        step(chains, clock, 30, down=down)
        for c in chains[:3]:
            assert c.state.account(BOB.public)["balance"] == len(txs) * UNIT
            assert c.stats.txs_duplicate == 0 and len(c.mempool) == 0
        carriers = _carriers(chains[0])
        assert all(carriers[crypto.digest(t)] == [0] for t in txs)  # the first fallback after owner 3
    finally:
        for c in chains:
            c.close()


# --- POST /txs at a validator: pushed to the owners --------------------------------------------------------------


class Wire:
    """A stand-in for the p2p stack: chain peers by id, each push-txs request served by that chain's RequestService
    (peers in `down` fail as an unreachable peer does)."""

    def __init__(self, services: dict[str, RequestService]) -> None:
        self.services = services
        self.down: set[str] = set()
        self.handshake = SimpleNamespace(statuses=dict.fromkeys(services))
        self.reqresp = self

    async def request(self, peer: str, protocol_id: str, data: bytes) -> bytes:
        assert protocol_id == PUSH_TXS_SPEC.protocol_id
        if peer in self.down:
            raise RequestError(f"{peer} is down")
        return await self.services[peer].serve_push_txs(peer, data)


def _wired_network(tmp_path: Path, senders: list[Keypair]) -> tuple[list[Chain], FakeClock, Wire]:
    chains, clock = _network(tmp_path, senders)
    services = {m.peer_id: RequestService(c, on_push=lambda peer, data: Verdict.ACCEPT)
                for m, c in zip(chains[0].state.epoch_committee, chains, strict=True)}
    return chains, clock, Wire(services)


async def test_a_bulk_submission_reaches_each_owner_and_commits_once(tmp_path: Path) -> None:
    senders = [Keypair(bytes([0x60 + i]) * 32) for i in range(12)]
    chains, clock, wire = _wired_network(tmp_path, senders)
    txs = _transfers(senders, 2)
    owner_of = {crypto.digest(t): tx_owner(SignedTransaction.from_bytes(t).body.signer, 4) for t in txs}
    try:
        for t in txs:
            chains[0].submit_tx(t)  # what POST /txs admits at validator 0
        wire.down = {chains[0].state.epoch_committee[3].peer_id}  # one owner unreachable
        taken = await push_to_owners(chains[0], wire, [crypto.digest(t) for t in txs])
        assert taken == sum(1 for o in owner_of.values() if o in (1, 2))
        assert 0 < taken < len(txs)
        for j in (1, 2):
            assert {d for d, _ in chains[j].mempool.pending()} == {d for d, o in owner_of.items() if o == j}
        assert len(chains[3].mempool) == 0 and len(chains[0].mempool) == len(txs)
        step(chains, clock, 8, down=frozenset({3}))  # owners 0, 1, 2 propose theirs at once
        assert _carriers(chains[0]) == {d: [o] for d, o in owner_of.items() if o != 3}
        step(chains, clock, 20, down=frozenset({3}))  # owner 3's: validator 0, next in order, after 10 rounds
        assert _carriers(chains[0]) == {d: [o if o != 3 else 0] for d, o in owner_of.items()}
        for c in chains[:3]:
            assert c.state.account(BOB.public)["balance"] == len(txs) * UNIT
            assert c.stats.txs_duplicate == 0
    finally:
        for c in chains:
            c.close()


async def test_a_push_is_judged_like_its_pusher_checked_it(tmp_path: Path) -> None:
    senders = [Keypair(b"\x71" * 32)]
    chains, _, wire = _wired_network(tmp_path, senders)
    service = wire.services[chains[0].state.epoch_committee[1].peer_id]
    good = _transfers(senders, 2)
    try:
        assert codec.decode(await service.serve_push_txs("p", codec.encode(good))) == 2
        assert codec.decode(await service.serve_push_txs("p", codec.encode(good))) == 0  # held already: no fault
        body = SignedTransaction.from_bytes(_transfers(senders, 3)[2]).body
        forged = SignedTransaction(body, bytes(64)).to_bytes()
        with pytest.raises(Refused) as exc:
            await service.serve_push_txs("p", codec.encode([forged]))
        assert exc.value.penalty == INVALID_SIGNATURE  # the pusher verified before it pushed: its fault
        with pytest.raises(Refused, match="malformed") as exc:
            await service.serve_push_txs("p", b"\xff")
        assert exc.value.penalty == "bad_request"
        with pytest.raises(Refused, match="at most 256"):
            await service.serve_push_txs("p", codec.encode([b"x"] * 257))
    finally:
        for c in chains:
            c.close()
