"""The subtensor rate and size limits of the state machine: registrations per block and per interval,
the serving rate limit, and the max weight limit (spec/state.md §3, §4)."""

from __future__ import annotations

import pytest

from protocol import codec
from protocol.economics.emission import UNIT
from protocol.economics.hyperparams import U16_MAX, Hyperparams
from protocol.economics.weights import max_weight_exceeded, normalised_max, weights_commit_hash
from protocol.errors import StateError, TxRejected
from protocol.messages import (
    CommitWeights,
    Register,
    RevealWeights,
    ServeAxon,
    SetHyperparameter,
    SetWeights,
    SignedTransaction,
)
from protocol.state.state import State, next_epoch_height
from protocol.state.transition import check_tx
from tests.protocol.state.test_state import KEYS, OWNER, Chain, make_chain, permitted, registered

AX = ("/ip4/1.2.3.4/tcp/5",)


def reg(c: Chain, i: int) -> bytes:
    return c.tx(KEYS[i], Register(1, KEYS[i].public, 100 * UNIT))


def test_defaults_follow_subtensor_and_caps_are_off():
    hp = Hyperparams()
    assert (hp.serving_rate_limit, hp.adjustment_interval) == (50, 100)
    assert hp.max_registrations_per_block == hp.target_registrations_per_interval == hp.max_weights_limit == U16_MAX
    c = make_chain()
    receipts = c.commit(*(reg(c, i) for i in range(2, 8)))  # six in one height: no cap by default
    assert all(r.ok for r in receipts), [r.message for r in receipts]


# --- registrations per block -----------------------------------------------------------------------------


def test_registrations_per_block():
    c = make_chain({"max_registrations_per_block": 2})
    c.idle(1)
    balance = c.state.balances[KEYS[4].public]
    r1, r2, r3 = c.commit(reg(c, 2), reg(c, 3), reg(c, 4))
    h = c.state.height
    assert r1.ok and r2.ok and not r3.ok and r3.rule == "registrations per block"
    assert r3.message == (
        f"registrations per block: 2 registrations on subnet 1 at height {h}, "
        f"max_registrations_per_block is 2; next allowed at height {h + 1}"
    )
    assert c.state.balances[KEYS[4].public] == balance and KEYS[4].public not in c.state.subnet(1).uid_of
    assert c.state.subnet(1).regs_this_block == 2
    (r,) = c.commit(reg(c, 4))  # the next height starts from zero
    assert r.ok and c.state.subnet(1).regs_this_block == 1


def test_registration_closed_at_zero_until_owner_raises_it():
    c = make_chain({"max_registrations_per_block": 0})
    msg = c.fail(KEYS[2], Register(1, KEYS[2].public, 100 * UNIT), "registrations per block")
    assert msg.endswith("max_registrations_per_block is 0; closed until the subnet owner raises it")
    c.ok(OWNER, SetHyperparameter(1, "max_registrations_per_block", 1))
    c.ok(KEYS[2], Register(1, KEYS[2].public, 100 * UNIT))


def test_mempool_judges_registrations_at_the_next_height():
    c = make_chain({"max_registrations_per_block": 1})
    c.commit(reg(c, 2))
    root = c.state.root()
    check_tx(c.state, SignedTransaction.from_bytes(reg(c, 3)))  # full at this height, empty at the next
    assert c.state.root() == root


# --- registrations per interval --------------------------------------------------------------------------


def test_registrations_per_interval():
    c = make_chain({"target_registrations_per_interval": 1, "adjustment_interval": 10})
    for i in (2, 3, 4):  # heights 1, 2, 3: three = 3 x target
        c.ok(KEYS[i], Register(1, KEYS[i].public, 100 * UNIT))
    sn = c.state.subnet(1)
    assert (sn.regs_this_interval, sn.reg_interval_start) == (3, 0)
    msg = c.fail(KEYS[5], Register(1, KEYS[5].public, 100 * UNIT), "registrations per interval")
    assert msg == (
        "registrations per interval: 3 registrations on subnet 1 since height 0, "
        "limit 3 x target_registrations_per_interval 1 = 3 per 10 heights (adjustment_interval); "
        "next allowed at height 10, now 4"
    )
    c.idle(8 - c.state.height)
    raw = reg(c, 5)
    with pytest.raises(TxRejected, match="next allowed at height 10, now 9"):  # mempool: judged at height 9
        check_tx(c.state, SignedTransaction.from_bytes(raw))
    c.idle(1)
    check_tx(c.state, SignedTransaction.from_bytes(raw))  # at height 10 the interval restarts
    (r,) = c.commit(raw)
    assert r.ok, r.message
    assert c.state.height == 10 and (sn.regs_this_interval, sn.reg_interval_start) == (1, 10)


def test_interval_starts_at_subnet_creation_and_mempool_refuses_when_full():
    c = make_chain({"target_registrations_per_interval": 0, "adjustment_interval": 5})
    msg = c.fail(KEYS[2], Register(1, KEYS[2].public, 100 * UNIT), "registrations per interval")
    assert "= 0 per 5 heights" in msg and "closed until the subnet owner raises it" in msg
    c.ok(OWNER, SetHyperparameter(1, "target_registrations_per_interval", 1))
    for i in (2, 3, 4):
        c.ok(KEYS[i], Register(1, KEYS[i].public, 100 * UNIT))  # heights 3, 4, 5 (reset at 5)
    c.ok(KEYS[5], Register(1, KEYS[5].public, 100 * UNIT))  # height 6, interval from 5: 2 so far
    c.ok(KEYS[6], Register(1, KEYS[6].public, 100 * UNIT))  # height 7: 3
    with pytest.raises(TxRejected) as e:
        check_tx(c.state, SignedTransaction.from_bytes(reg(c, 7)))
    assert e.value.rule == "registrations per interval"
    assert str(e.value).endswith(
        "since height 5, limit 3 x target_registrations_per_interval 1 = 3 per 5 "
        "heights (adjustment_interval); next allowed at height 10, now 8"
    )


# --- serving rate limit ----------------------------------------------------------------------------------


def test_serving_rate_limit():
    c = make_chain({"serving_rate_limit": 4})
    registered(c, KEYS[2:3])
    c.ok(KEYS[2], ServeAxon(1, "12D3KooWxyz", AX))
    first = c.state.height
    n = c.state.subnet(1).neurons[0]
    assert n.served_at == first
    msg = c.fail(KEYS[2], ServeAxon(1, "12D3KooWabc", AX), "serving rate limit")
    assert msg == (
        f"serving rate limit: axon last served at height {first}, next allowed at {first + 4}, now {first + 1} "
        "(serving_rate_limit 4 on subnet 1)"
    )
    assert n.axon.peer_id == "12D3KooWxyz"
    c.idle(2)  # the mempool already judges the height the transaction would commit at
    raw = c.tx(KEYS[2], ServeAxon(1, "12D3KooWabc", AX))
    check_tx(c.state, SignedTransaction.from_bytes(raw))
    (r,) = c.commit(raw)
    assert r.ok, r.message
    assert n.served_at == first + 4 and n.axon.peer_id == "12D3KooWabc"
    c.ok(OWNER, SetHyperparameter(1, "serving_rate_limit", 0))  # 0: no limit
    c.ok(KEYS[2], ServeAxon(1, "12D3KooWdef", AX))


def test_consensus_endpoint_has_no_serving_limit():
    c = make_chain()
    c.ok(KEYS[0], ServeAxon(0, "12D3KooWa", AX))
    c.ok(KEYS[0], ServeAxon(0, "12D3KooWb", AX))
    assert c.state.endpoints[KEYS[0].public].peer_id == "12D3KooWb"


# --- max weight limit ------------------------------------------------------------------------------------


def test_normalised_max_matches_i32f32():
    assert normalised_max([]) == 0 and normalised_max([0, 0]) == 0
    assert normalised_max([65535, 65535]) == 1 << 31
    assert normalised_max([1, 2]) == (2 << 32) // 3
    limit = 32768  # u16_ratio(32768) = floor(32768 * 2^32 / 65535) > 2^31: an even split passes
    assert max_weight_exceeded(0, [1, 2], [65535, 65535], limit) is None
    assert max_weight_exceeded(0, [1, 2], [65535, 65534], 32767) == (65535 << 32) // (65535 + 65534)
    assert max_weight_exceeded(0, [0], [65535], 0) is None  # lone self-weight
    assert max_weight_exceeded(0, [1], [65535], U16_MAX) is None  # off


def test_max_weight_limit_on_set_and_reveal():
    c = make_chain({"max_weights_limit": 30000})
    keys = permitted(c, 2, 3)
    v, m = keys[0], keys[3]
    msg = c.fail(v, SetWeights(1, (2, 3, 4), (1, 1, 2), 0), "max weight limit")
    # stored (32767, 32767, 65535): uid 4 holds floor(65535 * 2^32 / 131069) -> 32767/65535 of the row
    assert msg == (
        "max weight limit: uid 4 gets 32767/65535 of the weight, above max_weights_limit 30000/65535 "
        "on subnet 1; spread the weight over more uids"
    )
    c.ok(m, SetWeights(1, (3,), (9,), 0))  # a lone self-weight is exempt, as on subtensor
    c.ok(v, SetWeights(1, (2, 3, 4), (1, 1, 1), 0))  # a third each is below 30000/65535
    c.ok(OWNER, SetHyperparameter(1, "commit_reveal_enabled", 1))
    sn = c.state.subnet(1)
    salt = b"pepper"
    h = weights_commit_hash(v.public, 1, (2, 4), (1, 3), salt, 0)
    c.ok(v, CommitWeights(1, h))
    c.idle(next_epoch_height(c.state.height, 1, sn.hp.tempo) - c.state.height)
    msg = c.fail(v, RevealWeights(1, (2, 4), (1, 3), salt, 0), "max weight limit")
    assert msg.startswith("max weight limit: uid 4 gets")


def test_max_weights_limit_bounds():
    c = make_chain()
    msg = c.fail(OWNER, SetHyperparameter(1, "max_weights_limit", 65536), "hyperparameter")
    assert "max_weights_limit=65536 is outside its bounds [0, 65535]" in msg
    c.fail(OWNER, SetHyperparameter(1, "max_registrations_per_block", 65536), "hyperparameter")
    c.fail(OWNER, SetHyperparameter(1, "adjustment_interval", 65536), "hyperparameter")


# --- snapshot --------------------------------------------------------------------------------------------


def test_counters_are_in_the_root_and_snapshot():
    c = make_chain({"target_registrations_per_interval": 5, "serving_rate_limit": 3})
    registered(c, KEYS[2:4])
    c.ok(KEYS[2], ServeAxon(1, "12D3KooWxyz", AX))
    snap = c.state.snapshot()
    loaded = State.load(snap)
    sn, ln = c.state.subnet(1), loaded.subnet(1)
    assert (ln.regs_this_interval, ln.reg_interval_start, ln.neurons[0].served_at) == (
        sn.regs_this_interval,
        sn.reg_interval_start,
        sn.neurons[0].served_at,
    )
    assert loaded.root() == c.state.root()
    before = c.state.root()
    sn.regs_this_interval += 1
    assert c.state.root() != before
    sn.regs_this_interval -= 1
    sn.neurons[0].served_at += 1
    assert c.state.root() != before
    old = codec.decode(snap, max_size=1 << 30, max_items=1 << 20)
    old[0] = 2  # escrows, but no registration counters
    with pytest.raises(StateError, match="known version"):
        State.load(codec.encode(old))
