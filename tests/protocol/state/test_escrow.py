"""Paid inference on chain (protocol/state/escrow.py, spec/economics.md §3): one test per rule, then property
tests of each transaction kind (open_escrow, claim_payment, close_escrow) over random schedules."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import crypto
from protocol.crypto import Keypair
from protocol.economics.emission import UNIT
from protocol.messages import (
    ClaimPayment,
    CloseEscrow,
    CreateSubnet,
    OpenEscrow,
    ServiceProof,
    SignedServiceProof,
    SignedVoucher,
    Transfer,
    Voucher,
)
from protocol.state.escrow import (
    FEE_DENOMINATOR,
    FEE_OWNER,
    FEE_VALIDATORS,
    MAX_ESCROW_HEIGHTS,
    MAX_OPEN_ESCROWS,
    fee_split,
)
from protocol.state.handlers.subnets import deregister
from protocol.state.state import State
from protocol.state.transition import check_tx
from tests.protocol.state.test_state import CHAIN, KEYS, OWNER, Chain, make_chain, registered

CLIENT, MINER, OTHER = KEYS[5], KEYS[6], KEYS[7]
QUERY = crypto.digest(b"a query")


def voucher(
    escrow_id: int, nonce: int, price: int, *, client: Keypair = CLIENT, miner: Keypair = MINER,
    signer: Keypair | None = None, chain_id: str = CHAIN, query: bytes = QUERY,
) -> SignedVoucher:
    body = Voucher(chain_id, escrow_id, nonce, client.public, miner.public, query, price)
    return SignedVoucher(body, (signer or client).sign(SignedVoucher.DOMAIN, chain_id, body.to_bytes()))


def proof(v: SignedVoucher, *, miner: Keypair = MINER, response: bytes = b"r", digest: bytes | None = None,
          chain_id: str = CHAIN) -> SignedServiceProof:
    body = ServiceProof(chain_id, miner.public, digest or v.digest, crypto.digest(response))
    return SignedServiceProof.create(body, miner)


def claim(v: SignedVoucher, p: SignedServiceProof | None = None) -> ClaimPayment:
    return ClaimPayment(v, p or proof(v))


def chain_with_miner() -> Chain:
    c = make_chain({"tempo": 1000})
    registered(c, [MINER])
    return c


def balance(c: Chain, k: Keypair) -> int:
    return c.state.balances.get(k.public, 0)


# --- open_escrow -------------------------------------------------------------------------------------


def test_open_locks_funds_and_numbers_escrows():
    c = chain_with_miner()
    before = balance(c, CLIENT)
    c.ok(CLIENT, OpenEscrow(1, 5 * UNIT, c.state.height + 50))
    c.ok(CLIENT, OpenEscrow(1, 2 * UNIT, c.state.height + 50))
    assert balance(c, CLIENT) == before - 7 * UNIT
    assert [e.escrow_id for e in c.state.escrows.of_client(CLIENT.public)] == [1, 2]
    assert c.state.escrows.total() == 7 * UNIT
    e = c.state.escrows.get(1)
    assert (e.client, e.netuid, e.remaining, e.opened_at) == (CLIENT.public, 1, 5 * UNIT, c.state.height - 1)


def test_open_refusals_name_the_rule_and_values():
    c = chain_with_miner()
    h = c.state.height
    assert "subnet 9" in c.fail(CLIENT, OpenEscrow(9, UNIT, h + 50), "unknown subnet")
    c.fail(CLIENT, OpenEscrow(1, 0, h + 50), "amount")
    msg = c.fail(CLIENT, OpenEscrow(1, UNIT, h + 3), "escrow expiry")  # lands at h+3: must expire later
    assert f"expires_at {h + 3} must be in ({h + 3}, " in msg and f"at height {h + 3}" in msg
    c.fail(CLIENT, OpenEscrow(1, UNIT, c.state.height + 2 + MAX_ESCROW_HEIGHTS), "escrow expiry")
    msg = c.fail(CLIENT, OpenEscrow(1, 10**6 * UNIT, c.state.height + 50), "balance")
    assert "short by" in msg
    assert c.state.escrows.open == {} and c.state.escrows.next_id == 1


def test_open_limit_per_client():
    c = chain_with_miner()
    for _ in range(MAX_OPEN_ESCROWS):
        c.ok(CLIENT, OpenEscrow(1, 1, c.state.height + 20))
    msg = c.fail(CLIENT, OpenEscrow(1, 1, c.state.height + 20), "escrow limit")
    assert "close one after it expires" in msg
    c.ok(OTHER, OpenEscrow(1, 1, c.state.height + 20))  # the limit is per client


# --- claim_payment -----------------------------------------------------------------------------------


def test_claim_pays_miner_owner_and_validators_once():
    c = chain_with_miner()
    c.ok(CLIENT, OpenEscrow(1, 10 * UNIT, c.state.height + 50))
    cold_miner = c.state.hotkey_owner[MINER.public]
    sn = c.state.subnet(1)
    before = (c.state.balances.get(cold_miner, 0), sn.pending_owner, sn.pending_validators, balance(c, CLIENT))
    price = 3 * UNIT + 7
    v = voucher(1, 42, price)
    c.ok(OTHER, claim(v))  # anyone may submit
    miner_share, owner_share, validator_share = fee_split(price)
    assert miner_share + owner_share + validator_share == price
    assert owner_share == price * FEE_OWNER // FEE_DENOMINATOR
    assert validator_share == price * FEE_VALIDATORS // FEE_DENOMINATOR
    assert c.state.balances.get(cold_miner, 0) - before[0] == miner_share
    assert sn.pending_owner - before[1] >= owner_share  # the pot also takes this height's emission
    assert balance(c, CLIENT) == before[3]
    e = c.state.escrows.get(1)
    assert (e.remaining, e.claimed, e.spent) == (10 * UNIT - price, price, {42})
    msg = c.fail(MINER, claim(v), "already claimed")
    assert "nonce 42 of escrow 1" in msg
    # the same nonce with another price or query is the same voucher slot: refused too
    c.fail(MINER, claim(voucher(1, 42, 1, query=crypto.digest(b"other"))), "already claimed")
    assert c.state.escrows.get(1).claimed == price


def test_claim_refusals():
    c = chain_with_miner()
    c.ok(CLIENT, OpenEscrow(1, 10, c.state.height + 30))
    assert "never opened" in c.fail(MINER, claim(voucher(2, 1, 1)), "unknown escrow")
    # signed by someone else than the escrow's client
    c.fail(MINER, claim(voucher(1, 1, 1, signer=OTHER)), "voucher signature")
    c.fail(MINER, claim(voucher(1, 1, 1, client=OTHER)), "voucher signature")
    c.fail(MINER, claim(voucher(1, 1, 1, chain_id="elsewhere")), "voucher signature")
    v = voucher(1, 1, 1)
    c.fail(MINER, claim(v, proof(v, miner=OTHER)), "service proof")  # the proof's miner is not the voucher's
    c.fail(MINER, claim(v, proof(v, digest=crypto.digest(b"x"))), "service proof")  # proof for another voucher
    forged = SignedServiceProof(proof(v).body, OTHER.sign(SignedServiceProof.DOMAIN, CHAIN, proof(v).body.to_bytes()))
    c.fail(MINER, claim(v, forged), "service proof")
    c.fail(MINER, claim(voucher(1, 1, 0)), "amount")
    assert "short by 0.000000001 token (1 units)" in c.fail(MINER, claim(voucher(1, 1, 11)), "escrow balance")
    unregistered = voucher(1, 1, 1, miner=OTHER)
    c.fail(MINER, claim(unregistered, proof(unregistered, miner=OTHER)), "not registered")
    assert c.state.escrows.get(1).claimed == 0
    c.ok(MINER, claim(voucher(1, 1, 10)))  # the whole deposit
    c.fail(MINER, claim(voucher(1, 2, 1)), "escrow balance")


def test_claim_until_expiry_then_close_refunds():
    c = chain_with_miner()
    expires = c.state.height + 4
    c.ok(CLIENT, OpenEscrow(1, 100, expires))
    before = balance(c, CLIENT)
    c.fail(CLIENT, CloseEscrow(1), "escrow not expired")
    while c.state.height < expires - 1:
        c.idle(1)
    c.ok(MINER, claim(voucher(1, 1, 30)))  # lands at height == expires_at: still on time
    assert c.state.height == expires
    msg = c.fail(MINER, claim(voucher(1, 2, 30)), "escrow expired")
    assert f"up to height {expires}" in msg
    c.fail(OTHER, CloseEscrow(1), "not escrow owner")
    c.ok(CLIENT, CloseEscrow(1))
    assert balance(c, CLIENT) == before + 70
    assert c.state.escrows.get(1) is None and c.state.escrows.total() == 0
    assert "was closed" in c.fail(MINER, claim(voucher(1, 3, 1)), "unknown escrow")
    c.fail(CLIENT, CloseEscrow(1), "unknown escrow")


def test_claim_when_subnet_is_gone_burns_the_fee_shares():
    c = chain_with_miner()
    c.ok(CLIENT, OpenEscrow(1, 1000, c.state.height + 30))
    deregister(c.state, 1, CLIENT.public)  # the subnet is replaced (spec/economics.md §1.4)
    burned = c.state.burned
    c.ok(MINER, claim(voucher(1, 1, 1000)))
    _, owner_share, validator_share = fee_split(1000)
    assert c.state.burned - burned == owner_share + validator_share


def test_claim_after_the_subnet_was_replaced_burns_the_fee_shares():
    """Lifecycle reuses the netuid of a replaced subnet: the new subnet must not receive the old one's fees."""
    c = make_chain({"tempo": 1000}, max_subnets=1, subnet_immunity_period=0, subnet_min_burn=UNIT,
                   subnet_burn_interval=1)
    registered(c, [MINER])
    c.ok(CLIENT, OpenEscrow(1, 1000, c.state.height + 30))
    c.ok(KEYS[2], CreateSubnet("newcomer", 10**15))  # at the limit: replaces subnet 1, same netuid
    new = c.state.subnet(1)
    assert new.owner == KEYS[2].public and new.created_at > c.state.escrows.get(1).opened_at
    pots = (new.pending_owner, new.pending_validators)
    c.idle(1)
    per_height = (new.pending_owner - pots[0], new.pending_validators - pots[1])  # emission alone
    pots, burned = (new.pending_owner, new.pending_validators), c.state.burned
    c.ok(MINER, claim(voucher(1, 1, 1000)))  # the miner served before the replacement: still paid
    _, owner_share, validator_share = fee_split(1000)
    assert c.state.burned - burned == owner_share + validator_share
    assert (new.pending_owner - pots[0], new.pending_validators - pots[1]) == per_height


def test_check_tx_and_snapshot_round_trip():
    c = chain_with_miner()
    c.ok(CLIENT, OpenEscrow(1, 100, c.state.height + 30))
    c.ok(MINER, claim(voucher(1, 5, 10)))
    root = c.state.root()
    from protocol.messages import SignedTransaction

    check_tx(c.state, SignedTransaction.from_bytes(c.tx(MINER, claim(voucher(1, 6, 10)))))
    assert c.state.root() == root  # check_tx changes nothing
    loaded = State.load(c.state.snapshot())
    assert loaded.root() == root and loaded.escrows.get(1).spent == {5}
    loaded.check_invariants()


def test_conservation_counts_escrow():
    c = chain_with_miner()
    c.ok(CLIENT, OpenEscrow(1, 100, c.state.height + 30))
    c.state.escrows.get(1).remaining += 1  # units out of nowhere
    try:
        c.state.check_invariants()
    except AssertionError as exc:
        assert "conservation" in str(exc)
    else:
        raise AssertionError("the invariant check missed escrowed units")


# --- properties -------------------------------------------------------------------------------------

PAYERS = [CLIENT, OTHER, OWNER]
MINERS = [MINER, KEYS[8]]


@st.composite
def escrow_schedules(draw):
    """Commits of (signer, call) drawing open/claim/close with valid and invalid values, and transfers."""
    commits = []
    for _ in range(draw(st.integers(1, 20))):
        txs = []
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(["open", "open", "claim", "claim", "claim", "close", "transfer"]))
            payer = draw(st.sampled_from(PAYERS))
            if kind == "open":
                netuid = draw(st.sampled_from([1, 1, 1, 2]))
                call = ("open", netuid, draw(st.integers(0, 3000)), draw(st.integers(0, 12)))
            elif kind == "claim":
                call = ("claim", draw(st.integers(1, 3)), draw(st.integers(0, 3)), draw(st.integers(0, 800)),
                        draw(st.sampled_from(MINERS)), draw(st.booleans()))
            elif kind == "close":
                call = ("close", draw(st.integers(1, 5)))
            else:
                call = ("transfer", draw(st.integers(1, 5000)))
            txs.append((payer, call))
        commits.append(txs)
    return commits


def _build(c: Chain, payer: Keypair, spec: tuple) -> tuple[Keypair, object]:
    if spec[0] == "open":
        return payer, OpenEscrow(spec[1], spec[2], c.state.height + spec[3])
    if spec[0] == "claim":
        _, eid, nonce, price, miner, honest = spec
        e = c.state.escrows.get(eid)
        client = next((k for k in PAYERS if e is not None and k.public == e.client), payer)
        v = voucher(eid, nonce, price, client=client, miner=miner, signer=client if honest else payer)
        return miner, claim(v, proof(v, miner=miner))
    if spec[0] == "close":
        return payer, CloseEscrow(spec[1])
    return payer, Transfer(KEYS[9].public, spec[1])


def _run(schedule) -> tuple[Chain, list, dict]:
    c = chain_with_miner()
    registered(c, [KEYS[8]])
    outcomes, paid = [], {}
    for txs in schedule:
        built = [_build(c, payer, spec) for payer, spec in txs]
        receipts = c.commit(*[c.tx(k, call) for k, call in built])  # checks the invariants after each commit
        for (_, call), r in zip(built, receipts, strict=True):
            outcomes.append((type(call).__name__, r.ok, r.rule))
            if r.ok and isinstance(call, ClaimPayment):
                key = (call.voucher.body.escrow_id, call.voucher.body.nonce)
                assert key not in paid, "a voucher was paid twice"
                paid[key] = call.voucher.body.price
    return c, outcomes, paid


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(escrow_schedules())
def test_escrow_transactions_are_deterministic_and_conserve(schedule):
    a, oa, paid = _run(schedule)
    b, ob, _ = _run(schedule)
    assert oa == ob and a.state.root() == b.state.root()
    loaded = State.load(a.state.snapshot())
    assert loaded.root() == a.state.root()
    loaded.check_invariants()
    for e in a.state.escrows.open.values():
        assert e.claimed == sum(p for (eid, _), p in paid.items() if eid == e.escrow_id)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 400)), min_size=1, max_size=12), st.integers(200, 3000))
def test_claims_never_charge_more_than_deposit_or_twice(vouchers, deposit):
    """open -> random claims (repeats included) -> close: the client pays exactly the distinct nonces
    that fit, the miner side receives exactly that, and the rest comes back."""
    c = chain_with_miner()
    start = balance(c, CLIENT)
    c.ok(CLIENT, OpenEscrow(1, deposit, c.state.height + 40))
    charged: dict[int, int] = {}
    left = deposit
    for nonce, price in vouchers:
        (r,) = c.commit(c.tx(MINER, claim(voucher(1, nonce, price))))
        expected = nonce not in charged and price <= left
        assert r.ok == expected, (r.rule, r.message)
        if r.ok:
            charged[nonce] = price
            left -= price
        else:
            assert r.rule in ("already claimed", "escrow balance")
    while c.state.height <= 40 + 2:
        c.idle(1)
    c.idle(40)
    c.ok(CLIENT, CloseEscrow(1))
    assert start - balance(c, CLIENT) == sum(charged.values())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 2**64 - 1))
def test_fee_split_is_exact(price):
    m, o, v = fee_split(price)
    assert m + o + v == price and min(m, o, v) >= 0 and m >= o >= v
