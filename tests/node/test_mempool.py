"""The mempool: caps by count and bytes, fee-per-byte order, eviction, replacement, nonce gaps and fee coverage
(spec/state.md §3.3); and Chain.submit_tx's refusal of a signer who cannot pay, over a real store and state."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.chain import Chain
from node.mempool import (
    DuplicateTx,
    FeesNotCovered,
    Mempool,
    MempoolFull,
    NonceGap,
    SenderQuotaExceeded,
    Underpriced,
)
from protocol.consensus.block_verifier import MAX_BLOCK_TX_BYTES
from protocol.crypto import Keypair
from protocol.economics.emission import UNIT
from protocol.errors import TxRejected
from protocol.messages import SetWeights, SignedTransaction, Transaction, Transfer
from protocol.state.genesis import build_genesis

A, B, C = b"a" * 32, b"b" * 32, b"c" * 32
RICH = 10**15


def dg(sender: bytes, nonce: int, tag: int = 0) -> bytes:
    return sender[:1] + bytes([nonce, tag]) + bytes(29)


def add(m: Mempool, sender: bytes, nonce: int, fee: int, size: int = 100, *, tip: int = 0, base: int = 0,
        balance: int = RICH, tag: int = 0) -> bytes:
    d = dg(sender, nonce, tag)
    m.add(d, d[:3] + bytes(size - 3), sender, nonce, fee=fee, tip=tip, next_nonce=base, balance=balance)
    return d


def test_take_orders_by_fee_per_byte_then_arrival_and_nonce_within_a_sender() -> None:
    m = Mempool()
    add(m, A, 0, fee=100)  # 1 unit/byte
    add(m, B, 0, fee=500)  # 5 units/byte
    add(m, B, 1, fee=50)  # B's second: low, but only after B's first
    add(m, C, 0, fee=100)  # same rate as A, later
    order = [t[:2] for t in m.take(round_=1)]
    assert order == [b"b\x00", b"a\x00", b"c\x00", b"b\x01"]
    assert m.take(round_=2) == [], "in-flight transactions are not offered again at once"
    assert len(m.take(round_=1 + m.requeue_after)) == 4, "uncommitted ones come back"


def test_take_respects_the_byte_budget_and_never_passes_a_nonce_gap() -> None:
    m = Mempool()
    add(m, A, 0, fee=10_000, size=600)
    add(m, A, 1, fee=10_000, size=600)
    add(m, B, 0, fee=100, size=300)
    add(m, C, 2, fee=10_000, size=100, base=0)  # nonces 0 and 1 of C are missing: held, not offered
    taken = m.take(round_=1, max_bytes=1000)
    assert [t[:2] for t in taken] == [b"a\x00", b"b\x00"], "A's second does not fit; B's smaller one does"
    assert sum(len(t) for t in taken) <= 1000
    assert [t[:2] for t in m.take(round_=1, max_bytes=MAX_BLOCK_TX_BYTES)] == [b"a\x01"], "A's second, next block"


def test_removing_committed_transactions_drops_stale_nonces() -> None:
    m = Mempool()
    add(m, A, 0, fee=100)
    add(m, A, 1, fee=100)
    add(m, A, 2, fee=100)
    m.remove([dg(A, 1)])  # nonce 1 committed (by another node's block): 0 is now stale
    assert len(m) == 1 and m.next_nonce(A) == 3
    assert [t[:2] for t in m.take(round_=1)] == [b"a\x02"]


def test_caps_per_sender_by_count_and_bytes() -> None:
    m = Mempool(max_per_sender=3, max_sender_bytes=1000)
    for n in range(3):
        add(m, A, n, fee=100)
    with pytest.raises(SenderQuotaExceeded, match="3 pending"):
        add(m, A, 3, fee=100)
    add(m, B, 0, fee=100, size=900)
    with pytest.raises(SenderQuotaExceeded, match="caps 3 / 1000"):
        add(m, B, 1, fee=100, size=200)
    with pytest.raises(DuplicateTx):
        add(m, A, 0, fee=100)
    assert m.stats()["refused"] == {"duplicate": 1, "sender quota": 2}


def test_full_mempool_evicts_the_lowest_fee_per_byte_and_its_later_nonces() -> None:
    m = Mempool(max_txs=4)
    add(m, A, 0, fee=100)
    add(m, A, 1, fee=900)  # depends on A's nonce 0
    add(m, B, 0, fee=200)
    add(m, C, 0, fee=300)
    with pytest.raises(MempoolFull, match="lowest pending fee per byte is 1.0"):
        add(m, C, 1, fee=100)  # would itself be the lowest: refused
    displaced = m.add(dg(C, 1), b"c" * 100, C, 1, fee=150, next_nonce=0, balance=RICH)
    assert displaced == [dg(A, 0), dg(A, 1)], "A's nonce 0 goes, and the nonce after it that needs it"
    assert dg(A, 0) not in m and dg(A, 1) not in m
    assert len(m) == 3 and m.stats()["evicted"] == 2


def test_full_by_bytes_evicts_too() -> None:
    m = Mempool(max_bytes=1000)
    add(m, A, 0, fee=100, size=500)
    add(m, B, 0, fee=1000, size=500)
    add(m, C, 0, fee=5000, size=400)
    assert dg(A, 0) not in m and m.size_bytes == 900


def test_replacement_needs_a_higher_tip() -> None:
    m = Mempool()
    add(m, A, 0, fee=1000, tip=100)
    with pytest.raises(Underpriced, match="at least 110"):
        add(m, A, 0, fee=1009, tip=109, tag=1)
    m.add(dg(A, 0, 2), b"x" * 100, A, 0, fee=1010, tip=110, next_nonce=0, balance=RICH)
    assert dg(A, 0) not in m and dg(A, 0, 2) in m and len(m) == 1 and m.stats()["replaced"] == 1
    add(m, B, 0, fee=10, tip=0)
    with pytest.raises(Underpriced, match="at least 1"):
        add(m, B, 0, fee=10, tip=0, tag=1)


def test_future_nonces_within_the_gap_and_covered_by_the_balance() -> None:
    m = Mempool(max_nonce_gap=16)
    add(m, A, 15, fee=100, base=0, balance=1000)
    with pytest.raises(NonceGap, match="at most 15 ahead"):
        add(m, A, 16, fee=100, base=0, balance=1000)
    add(m, B, 0, fee=400, balance=1000)
    add(m, B, 1, fee=400, balance=1000)
    with pytest.raises(FeesNotCovered, match="800 units of fees are pending"):
        add(m, B, 2, fee=400, balance=1000)


def test_fee_free_transactions_only_at_the_next_nonce_or_after_a_pending_one() -> None:
    m = Mempool()
    with pytest.raises(NonceGap, match="fee-free"):
        add(m, A, 3, fee=0, base=0, balance=0)
    add(m, A, 0, fee=0, base=0, balance=0)
    add(m, A, 1, fee=0, base=0, balance=0)
    assert len(m) == 2


def test_stats_count_what_happened() -> None:
    m = Mempool(max_txs=1)
    add(m, A, 0, fee=100)
    with pytest.raises(MempoolFull):
        add(m, B, 0, fee=50)
    s = m.stats()
    assert (s["txs"], s["bytes"], s["admitted"], s["refused"]) == (1, 100, 1, {"mempool full": 1})


# --- through Chain.submit_tx: a real State judges the envelope and the fee ----------------------------


def test_chain_refuses_an_unfunded_signer_naming_fee_and_balance(tmp_path: Path) -> None:
    val, poor, rich = Keypair(b"\x01" * 32), Keypair(b"\x02" * 32), Keypair(b"\x03" * 32)
    g = build_genesis("fee-chain", validators=[(val.public, 1000 * UNIT)],
                      balances={poor.public: 1000, rich.public: 10 * UNIT})
    chain = Chain(tmp_path / "n", g, keypair=val)
    try:
        def tx(kp: Keypair, nonce: int, call, tip: int = 0) -> bytes:
            return SignedTransaction.create(Transaction("fee-chain", kp.public, nonce, call, tip), kp).to_bytes()

        data = tx(poor, 0, Transfer(rich.public, 1))
        fee = chain.state.fee_of(SignedTransaction.from_bytes(data))
        with pytest.raises(TxRejected) as exc:
            chain.submit_tx(data)
        msg = str(exc.value)
        assert exc.value.rule == "fee" and "\n" not in msg
        assert f"({fee} units), balance 0.000001 token (1000 units)" in msg
        assert len(chain.mempool) == 0
        # a fresh key cannot park future nonces either
        with pytest.raises(TxRejected, match="fee"):
            chain.submit_tx(tx(Keypair(b"\x04" * 32), 5, Transfer(rich.public, 1)))
        # fee-free weights from a key that holds nothing: the call is judged (not registered here)
        with pytest.raises(TxRejected, match="unknown subnet"):
            chain.submit_tx(tx(Keypair(b"\x05" * 32), 0, SetWeights(1, (0,), (1,), 0)))
        # a funded sender: future nonces only while the balance covers every pending fee
        chain.submit_tx(tx(rich, 0, Transfer(poor.public, UNIT)))
        chain.submit_tx(tx(rich, 1, Transfer(poor.public, UNIT), tip=10**9))
        with pytest.raises(FeesNotCovered, match="pending from this sender"):
            chain.submit_tx(tx(rich, 2, Transfer(poor.public, UNIT), tip=9 * UNIT))
        assert chain.next_nonce(rich.public) == 2
    finally:
        chain.close()
