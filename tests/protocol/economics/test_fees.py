"""Transaction fees in the state machine (spec/economics.md §6, spec/state.md §3): computed, burned, governed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.consensus.block import BlockInvalid
from protocol.consensus.block_verifier import MAX_BLOCK_TX_BYTES, check_payload
from protocol.crypto import Keypair
from protocol.economics.emission import UNIT
from protocol.economics.fees import (
    BYTE_FEE_BOUNDS,
    DEFAULT_BASE_FEE,
    DEFAULT_BYTE_FEE,
    FEE_FREE_CALLS,
    claim_fee,
    is_fee_free,
    tx_fee,
)
from protocol.errors import TxRejected
from protocol.messages import (
    ClaimPayment,
    CommitWeights,
    OpenEscrow,
    Register,
    ReportEquivocation,
    SetWeights,
    SignedTransaction,
    Transfer,
)
from protocol.state import governance
from protocol.state.escrow import fee_split
from protocol.state.genesis import GenesisError, build_genesis, parse_genesis
from protocol.state.transition import check_tx
from tests.protocol.state.test_escrow import CLIENT, proof, voucher
from tests.protocol.state.test_state import CHAIN, KEYS, VAL, make_chain

BASE, BYTE = 100_000, 1_000
POOR = KEYS[11]


def fee_chain(base: int = BASE, byte: int = BYTE):
    c = make_chain(tx_base_fee=base, tx_byte_fee=byte)
    c.state.balances[POOR.public] = 1000  # below any paid fee (test setup; conservation restored below)
    c.state.issued -= 1000 * UNIT - 1000
    c.state.check_invariants()
    return c


def test_fee_is_base_plus_bytes_plus_tip_and_weights_pay_only_the_tip() -> None:
    t = Transfer(KEYS[1].public, 5)
    assert tx_fee(200, t, KEYS[0].public, 7, BASE, BYTE) == BASE + 200 * BYTE + 7
    for call in (SetWeights(1, (0,), (1,), 0), CommitWeights(1, bytes(32))):
        assert tx_fee(200, call, KEYS[0].public, 7, BASE, BYTE) == 7
    assert ReportEquivocation in FEE_FREE_CALLS
    # the defaults: a ~200-byte transfer costs 0.0003 token; a full block of transactions over a token
    assert tx_fee(200, t, KEYS[0].public, 0, DEFAULT_BASE_FEE, DEFAULT_BYTE_FEE) == 300_000
    assert MAX_BLOCK_TX_BYTES * DEFAULT_BYTE_FEE > UNIT


def test_a_transfer_burns_its_fee_and_conservation_holds() -> None:
    c = fee_chain()
    raw = c.tx(KEYS[2], Transfer(KEYS[3].public, 7 * UNIT), tip=11)
    fee = BASE + BYTE * len(raw) + 11
    assert c.state.fee_of(SignedTransaction.from_bytes(raw)) == fee
    burned = c.state.burned
    (r,) = c.commit(raw)  # commit() checks issued == balances + stakes + escrow + ... + burned
    assert r.ok
    assert c.state.balances[KEYS[2].public] == 1000 * UNIT - 7 * UNIT - fee
    assert c.state.balances[KEYS[3].public] == 1007 * UNIT
    assert c.state.burned - burned == fee


def test_a_failing_call_still_pays_and_consumes_its_nonce() -> None:
    c = fee_chain()
    raw = c.tx(KEYS[2], Transfer(KEYS[3].public, 5000 * UNIT))
    (r,) = c.commit(raw)
    assert not r.ok and r.rule == "balance"
    assert c.state.next_nonce(KEYS[2].public) == 1
    assert c.state.balances[KEYS[2].public] == 1000 * UNIT - (BASE + BYTE * len(raw))


def test_a_signer_who_cannot_pay_is_skipped_without_effect() -> None:
    c = fee_chain()
    burned = c.state.burned
    raw = c.tx(POOR, Transfer(KEYS[3].public, 1))
    fee = BASE + BYTE * len(raw)
    (r,) = c.commit(raw)
    assert not r.ok and r.rule == "fee"
    assert f"({fee} units), balance 0.000001 token (1000 units) (short by {fee - 1000} units)" in r.message
    assert c.state.next_nonce(POOR.public) == 0 and c.state.burned == burned
    assert c.state.balances[POOR.public] == 1000
    with pytest.raises(TxRejected, match="fee"):
        check_tx(c.state, SignedTransaction.from_bytes(raw))


def test_mempool_check_judges_the_call_after_the_fee() -> None:
    c = fee_chain()
    everything = c.state.balances[KEYS[2].public]
    stx = SignedTransaction.from_bytes(c.tx(KEYS[2], Transfer(KEYS[3].public, everything)))
    with pytest.raises(TxRejected, match="balance"):
        check_tx(c.state, stx)
    fee = c.state.fee_of(stx)
    ok = SignedTransaction.from_bytes(c.tx(KEYS[2], Transfer(KEYS[3].public, everything - fee - 9), nonce=0))
    check_tx(c.state, ok)  # the tip-free fee of this one is the same size
    assert c.state.fee_hold is None


def test_fee_free_weights_from_a_key_without_balance_but_a_tip_must_be_paid() -> None:
    c = fee_chain()
    (r,) = c.commit(c.tx(POOR, SetWeights(1, (0,), (1,), 0)))
    assert r.rule == "too many weights", "the envelope passed (fee 0); the call was judged"
    assert c.state.next_nonce(POOR.public) == 1
    (r,) = c.commit(c.tx(POOR, SetWeights(1, (0,), (1,), 0), tip=1001))
    assert r.rule == "fee" and c.state.next_nonce(POOR.public) == 1


def test_fee_parameters_are_governed_within_bounds() -> None:
    c = fee_chain()
    params, _ = governance.check_change("tx_byte_fee", 5, c.state.params, c.state.governance.default_hp)
    assert params.tx_byte_fee == 5
    with pytest.raises(TxRejected, match=r"outside its bounds \[0, 1000000\]"):
        governance.check_change("tx_byte_fee", BYTE_FEE_BOUNDS[1] + 1, c.state.params, c.state.governance.default_hp)
    assert "tx_base_fee" in governance.parameter_names()


def test_genesis_carries_fee_parameters_and_bounds_them() -> None:
    g = build_genesis(CHAIN, validators=[(VAL.public, UNIT)], tx_base_fee=3, tx_byte_fee=4)
    assert parse_genesis(g.to_json()) == g and '"tx_byte_fee": 4' in g.to_json()
    assert build_genesis(CHAIN, validators=[(VAL.public, UNIT)]).tx_base_fee == DEFAULT_BASE_FEE
    with pytest.raises(GenesisError, match="network.tx_byte_fee"):
        parse_genesis(g.to_json().replace('"tx_byte_fee": 4', f'"tx_byte_fee": {BYTE_FEE_BOUNDS[1] + 1}'))


def test_block_payload_bound() -> None:
    check_payload((bytes(MAX_BLOCK_TX_BYTES // 2), bytes(MAX_BLOCK_TX_BYTES // 2)))
    with pytest.raises(BlockInvalid, match=f"{MAX_BLOCK_TX_BYTES + 1} bytes of transactions"):
        check_payload((bytes(MAX_BLOCK_TX_BYTES // 2), bytes(MAX_BLOCK_TX_BYTES // 2 + 1)))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11), st.integers(0, 3 * UNIT), st.integers(0, 2 * UNIT)),
             max_size=12),
    st.sampled_from([(0, 0), (BASE, BYTE), (UNIT, 10**6)]),
)
def test_burned_grows_by_exactly_the_fees_of_the_transactions_that_applied(txs, fees) -> None:
    c = fee_chain(*fees)
    raws = [c.tx(KEYS[s], Transfer(KEYS[d].public, amount), tip=tip) for s, d, amount, tip in txs]
    burned, nonces = c.state.burned, dict(c.state.nonces)
    receipts = c.commit(*raws)  # conservation checked here
    charged = 0
    for raw, r in zip(raws, receipts, strict=True):
        if r.rule not in ("fee", "nonce"):
            charged += c.state.fee_of(SignedTransaction.from_bytes(raw))
    assert c.state.burned - burned == charged
    paid_or_not = sum(1 for r in receipts if r.rule not in ("fee", "nonce"))
    assert sum(c.state.nonces.values()) - sum(nonces.values()) == paid_or_not


# --- payment claims: the miner's hotkey holds nothing; the fee comes out of its share (§6.1) ---------------

HOT, COLD = Keypair(b"h" * 32), KEYS[8]


def claim_chain():
    """Fees on; COLD owns the miner hotkey HOT, which holds no balance; CLIENT has escrow 1 open."""
    c = make_chain({"tempo": 1000}, tx_base_fee=BASE, tx_byte_fee=BYTE)
    c.ok(COLD, Register(1, HOT.public, 100 * UNIT))
    c.ok(CLIENT, OpenEscrow(1, 10 * UNIT, c.state.height + 50))
    assert c.state.balances.get(HOT.public, 0) == 0
    return c


def miner_claim(nonce: int, price: int) -> ClaimPayment:
    v = voucher(1, nonce, price, miner=HOT)
    return ClaimPayment(v, proof(v, miner=HOT))


def test_a_claim_signed_by_its_miner_hotkey_pays_its_fee_from_the_miners_share() -> None:
    c = claim_chain()
    call = miner_claim(1, UNIT)
    raw = c.tx(HOT, call)
    fee = BASE + BYTE * len(raw)
    assert is_fee_free(call, HOT.public) and claim_fee(len(raw), call, HOT.public, BASE, BYTE) == fee
    assert c.state.fee_of(SignedTransaction.from_bytes(raw)) == 0
    check_tx(c.state, SignedTransaction.from_bytes(raw))  # the mempool admits it (before: rule "fee")
    cold, burned = c.state.balances[COLD.public], c.state.burned
    (r,) = c.commit(raw)  # conservation checked
    assert r.ok, r.message
    assert c.state.balances[COLD.public] - cold == fee_split(UNIT)[0] - fee
    assert c.state.burned - burned == fee and c.state.escrows.get(1).claimed == UNIT
    assert c.state.balances.get(HOT.public, 0) == 0


def test_a_claim_whose_miner_share_is_below_its_fee_is_refused() -> None:
    """Self-dealt claims of 1-unit vouchers would otherwise put 100,000 free transactions per escrow on chain."""
    c = claim_chain()
    raw = c.tx(HOT, miner_claim(1, 1000))
    with pytest.raises(TxRejected, match="claim fee") as exc:
        check_tx(c.state, SignedTransaction.from_bytes(raw))
    assert "price queries higher" in str(exc.value)
    burned = c.state.burned
    (r,) = c.commit(raw)
    assert r.rule == "claim fee" and c.state.burned == burned and c.state.escrows.get(1).claimed == 0


def test_a_claim_submitted_by_another_key_pays_the_ordinary_fee_and_the_miner_its_whole_share() -> None:
    c = claim_chain()
    call = miner_claim(1, UNIT)
    raw = c.tx(KEYS[9], call)
    fee = BASE + BYTE * len(raw)
    assert not is_fee_free(call, KEYS[9].public) and claim_fee(len(raw), call, KEYS[9].public, BASE, BYTE) == 0
    payer, cold = c.state.balances[KEYS[9].public], c.state.balances[COLD.public]
    (r,) = c.commit(raw)
    assert r.ok, r.message
    assert payer - c.state.balances[KEYS[9].public] == fee
    assert c.state.balances[COLD.public] - cold == fee_split(UNIT)[0]
