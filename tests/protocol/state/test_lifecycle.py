"""Subnet lifecycle (spec/economics.md §1): scores, immunity, replacement at the limit, deregistration."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.economics.emission import UNIT
from protocol.messages import AddStake, CreateSubnet, Register, RemoveStake, ServeAxon, SetWeights, Transfer
from protocol.state.lifecycle import SCORE_PERIOD, SubnetInfo, final_payout, next_score, subnets_to_replace
from protocol.state.state import State
from tests.protocol.state.test_state import KEYS, OWNER, Chain, make_chain

BIG = 10**15  # a max_burn that never refuses


def lifecycle_chain(max_subnets: int = 2, immunity: int = 5, hp: dict | None = None) -> Chain:
    """One genesis subnet owned by OWNER; subnet price at its 1-token floor two heights after a creation."""
    return make_chain(
        hp, max_subnets=max_subnets, subnet_immunity_period=immunity, subnet_min_burn=UNIT, subnet_burn_interval=1
    )


def test_score_is_an_integer_ema_of_subnet_stake():
    c = lifecycle_chain()
    c.ok(KEYS[3], Register(1, KEYS[4].public, BIG))
    c.ok(KEYS[3], AddStake(KEYS[4].public, 7 * UNIT))  # commit at height 2: the score has seen 0 stake once
    want = next_score(0, 0)
    want = next_score(want, 7 * UNIT)
    assert c.state.lifecycle.scores[1] == want
    c.idle(3)
    for _ in range(3):
        want = next_score(want, 7 * UNIT)
    assert c.state.lifecycle.scores[1] == want
    assert 0 < want < 7 * UNIT
    assert next_score(0, SCORE_PERIOD) == 1 and next_score(5, 5) == 5


def test_replacement_rule_weakest_first_ties_by_netuid():
    subs = [SubnetInfo(1, 0, 50), SubnetInfo(2, 0, 10), SubnetInfo(3, 0, 10), SubnetInfo(4, 90, 0)]
    assert subnets_to_replace(subs, height=100, max_subnets=4, immunity_period=20) == [2]
    assert subnets_to_replace(subs, height=100, max_subnets=3, immunity_period=20) == [2, 3]
    assert subnets_to_replace(subs, height=100, max_subnets=5, immunity_period=20) == []
    # subnet 4 (score 0) is immune until height 110; from then on it is the weakest
    assert subnets_to_replace(subs, height=110, max_subnets=4, immunity_period=20) == [4]


def test_all_immune_is_refused_with_the_height_it_could_succeed():
    c = lifecycle_chain(max_subnets=1, immunity=5)
    msg = c.fail(KEYS[2], CreateSubnet("x", BIG), "subnet limit")
    assert "1 are inside their registration immunity (5 heights)" in msg
    assert "possible from height 5 (when subnet 1 leaves immunity), now 1" in msg
    c.idle(2)  # height 3
    c.fail(KEYS[2], CreateSubnet("x", BIG), "subnet limit")  # height 4
    c.ok(KEYS[2], CreateSubnet("x", BIG))  # height 5
    assert sorted(c.state.subnets) == [1] and c.state.subnets[1].owner == KEYS[2].public
    (d,) = c.state.lifecycle.history
    assert (d.netuid, d.name, d.owner, d.height, d.replaced_by) == (1, "sn1", OWNER.public, 5, KEYS[2].public)


def test_limit_zero_refuses_every_creation():
    c = lifecycle_chain(max_subnets=1, immunity=0)
    c.state.params = dataclasses.replace(c.state.params, max_subnets=0)  # as governance could not: bounds >= 1
    assert "the subnet limit (max_subnets) is 0" in c.fail(KEYS[2], CreateSubnet("x", BIG), "subnet limit")


def test_below_the_limit_nothing_is_replaced():
    c = lifecycle_chain(max_subnets=3, immunity=0)
    c.ok(KEYS[2], CreateSubnet("x", BIG))
    assert sorted(c.state.subnets) == [1, 2] and c.state.lifecycle.history == []


def _populated(immunity: int = 3):
    """Subnet 1 (weak: one staked miner) and subnet 2 (strong), both past immunity, limit 2; no epoch runs."""
    c = lifecycle_chain(max_subnets=2, immunity=immunity, hp={"tempo": 1000})
    c.ok(KEYS[2], CreateSubnet("strong", BIG))
    c.ok(KEYS[3], Register(1, KEYS[4].public, BIG))
    c.ok(KEYS[3], AddStake(KEYS[4].public, 2 * UNIT))
    c.ok(KEYS[5], AddStake(KEYS[4].public, 3 * UNIT))  # a second staker on the same hotkey
    c.ok(KEYS[6], Register(2, KEYS[7].public, BIG))
    c.ok(KEYS[6], AddStake(KEYS[7].public, 50 * UNIT))
    c.idle(immunity)
    return c


def test_create_at_limit_replaces_the_weakest_and_returns_its_stake():
    c = _populated()
    s = c.state
    assert s.lifecycle.scores[1] < s.lifecycle.scores[2]
    bal3, bal5 = s.balances[KEYS[3].public], s.balances[KEYS[5].public]
    score1 = s.lifecycle.scores[1]
    pending = s.subnets[1].pending
    owner_pending = s.subnets[1].pending_owner
    issued = s.issued
    price = s.subnet_price_at(s.height + 1)
    owner_bal = s.balances[OWNER.public]
    c.ok(KEYS[8], CreateSubnet("new", BIG))
    assert sorted(s.subnets) == [1, 2]
    assert s.subnets[1].name == "new" and s.subnets[1].owner == KEYS[8].public and s.subnets[1].neurons == []
    assert s.subnets[2].name == "strong"
    assert s.stake_of(KEYS[3].public, KEYS[4].public) == 0 and s.stake_of(KEYS[5].public, KEYS[4].public) == 0
    assert s.hotkey_stake.get(KEYS[4].public, 0) == 0
    assert s.balances[KEYS[3].public] == bal3 + 2 * UNIT
    assert s.balances[KEYS[5].public] == bal5 + 3 * UNIT
    assert s.stake_of(KEYS[6].public, KEYS[7].public) == 50 * UNIT  # the other subnet is untouched
    (d,) = s.lifecycle.history
    assert (d.netuid, d.name, d.neurons, d.stake_returned, d.stake_positions) == (1, "sn1", 1, 5 * UNIT, 2)
    assert d.score == score1  # create_subnet runs before this height's score update
    # no epoch paid anybody yet (no weights): the owner pot is paid, the rest returns to the unissued supply
    assert d.owner_paid == owner_pending and d.unissued == pending - owner_pending and d.neurons_paid == 0
    assert s.balances[OWNER.public] == owner_bal + owner_pending
    assert s.issued > issued - d.unissued  # this height's mint, after the pot left the supply
    assert s.burned >= price


def test_hotkey_registered_elsewhere_or_with_endpoint_keeps_its_stake():
    c = _populated()
    c.ok(KEYS[3], Register(2, KEYS[4].public, BIG))  # the weak subnet's hotkey is also on subnet 2
    c.ok(KEYS[9], Register(1, KEYS[10].public, BIG))
    c.ok(KEYS[9], AddStake(KEYS[10].public, UNIT))
    c.ok(KEYS[10], ServeAxon(0, "12D3KooWx", ("/ip4/1.2.3.4/tcp/1",)))  # a consensus endpoint
    c.ok(KEYS[11], Register(1, KEYS[11].public, BIG))
    c.ok(KEYS[11], AddStake(KEYS[11].public, UNIT))
    s = c.state
    weak = min(s.subnets, key=lambda n: (s.lifecycle.scores[n], n))
    assert weak == 1
    c.ok(KEYS[8], CreateSubnet("new", BIG))
    assert s.stake_of(KEYS[3].public, KEYS[4].public) == 2 * UNIT
    assert s.stake_of(KEYS[9].public, KEYS[10].public) == UNIT
    assert s.stake_of(KEYS[11].public, KEYS[11].public) == 0
    assert s.lifecycle.history[-1].stake_positions == 1


def test_pending_emission_is_paid_by_last_epoch_emission():
    c = lifecycle_chain(max_subnets=1, immunity=0, hp={"tempo": 4, "min_allowed_weights": 1})
    c.ok(KEYS[3], Register(1, KEYS[3].public, BIG))
    c.ok(KEYS[3], AddStake(KEYS[3].public, 5 * UNIT))
    c.ok(KEYS[4], Register(1, KEYS[4].public, BIG))
    s = c.state
    for _ in range(12):  # run epochs until uid 0 holds a permit, then weight uid 1
        if s.subnets[1].neurons[0].validator_permit:
            break
        c.idle(1)
    c.ok(KEYS[3], SetWeights(1, (1,), (65535,), 0))
    while not any(n.emission for n in s.subnets[1].neurons):
        c.idle(1)
    c.idle(1)  # pots refill after the epoch
    sn = s.subnets[1]
    last = [n.emission for n in sn.neurons]
    pot = sn.pending_miners + sn.pending_validators
    assert pot > 0
    hot = {KEYS[3].public, KEYS[4].public}
    want: dict[bytes, int] = {}
    for (cold, h), a in s.stakes.items():
        if h in hot:
            want[cold] = want.get(cold, 0) + a
    for n, share in zip(sn.neurons, final_payout(pot, last), strict=True):
        want[s.hotkey_owner[n.hotkey]] = want.get(s.hotkey_owner[n.hotkey], 0) + share
    before = {k: s.balances.get(k, 0) for k in want}
    c.ok(KEYS[8], CreateSubnet("new", BIG))
    d = s.lifecycle.history[-1]
    assert (d.neurons_paid, d.unissued) == (pot, 0)
    assert {k: s.balances.get(k, 0) - before[k] for k in want} == want
    assert all(h not in s.hotkey_stake for h in hot)


def test_deregistered_netuid_is_gone_for_later_transactions():
    c = _populated()
    c.ok(KEYS[8], CreateSubnet("new", BIG))  # replaces subnet 1, reusing netuid 1
    c.fail(KEYS[3], Register(3, KEYS[4].public, BIG), "unknown subnet")
    s = State.load(c.state.snapshot())
    assert s.root() == c.state.root() and s.lifecycle.history == c.state.lifecycle.history


# --- property test: two independent instances, random lifecycle traffic --------------------------------

N = 10
key_i = st.integers(0, N - 1)


def _call(draw):
    kind = draw(st.integers(0, 5))
    k = KEYS[draw(key_i)].public
    if kind == 0:
        return CreateSubnet("s", draw(st.sampled_from([0, 2 * UNIT, 50 * UNIT, 50 * UNIT])))
    if kind == 1:
        return Register(draw(st.integers(1, 4)), k, draw(st.sampled_from([0, UNIT])))
    if kind == 2:
        return AddStake(k, draw(st.integers(0, 20 * UNIT)))
    if kind == 3:
        return RemoveStake(k, draw(st.integers(0, 20 * UNIT)))
    if kind == 4:
        return ServeAxon(0, "12D3KooWx", ("/ip4/1.2.3.4/tcp/1",))
    return Transfer(k, draw(st.integers(0, UNIT)))


@st.composite
def schedules(draw):
    n_commits = draw(st.integers(1, 30))
    return [[(draw(key_i), _call(draw)) for _ in range(draw(st.integers(0, 4)))] for _ in range(n_commits)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_random_lifecycle_traffic_agrees_and_conserves(schedule):
    a = lifecycle_chain(max_subnets=3, immunity=2, hp={"tempo": 3})
    b = lifecycle_chain(max_subnets=3, immunity=2, hp={"tempo": 3})
    for chain in (a, b):
        for txs in schedule:
            chain.commit(*[chain.tx(KEYS[i], call) for i, call in txs])  # checks conservation every commit
    assert a.state.root() == b.state.root()
    assert len(a.state.subnets) <= 3
    loaded = State.load(a.state.snapshot())
    assert loaded.root() == a.state.root()
    loaded.check_invariants()
    for d in a.state.lifecycle.history:
        assert d.height - d.created_at >= 2  # nothing was replaced inside its immunity
