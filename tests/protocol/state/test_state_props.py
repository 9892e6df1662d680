"""Property tests: random transaction sequences are deterministic and keep every invariant."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.economics.emission import UNIT
from protocol.economics.fees import DEFAULT_BASE_FEE, DEFAULT_BYTE_FEE
from protocol.economics.weights import weights_commit_hash
from protocol.messages import (
    AddStake,
    CommitWeights,
    CreateSubnet,
    Register,
    RemoveStake,
    RevealWeights,
    ServeAxon,
    SetHyperparameter,
    SetWeights,
    Transfer,
)
from protocol.state.state import State
from tests.protocol.state.test_state import KEYS, Chain, make_chain

N_KEYS = 8
key_i = st.integers(0, N_KEYS - 1)
amount = st.one_of(st.integers(0, 3 * UNIT), st.integers(0, 2000 * UNIT))
netuid = st.sampled_from([1, 1, 1, 1, 0, 2])
small_uids = st.lists(st.integers(0, 9), max_size=6)
hp_name = st.sampled_from(
    [
        "tempo",
        "kappa",
        "max_allowed_uids",
        "commit_reveal_enabled",
        "weights_rate_limit",
        "immunity_period",
        "min_allowed_weights",
        "reveal_period",
        "max_registrations_per_block",
        "target_registrations_per_interval",
        "adjustment_interval",
        "serving_rate_limit",
        "max_weights_limit",
        "bogus",
    ]
)


def _call(draw):
    kind = draw(st.integers(0, 9))
    k = KEYS[draw(key_i)].public
    if kind == 0:
        return Transfer(k, draw(amount))
    if kind == 1:
        return AddStake(k, draw(amount))
    if kind == 2:
        return RemoveStake(k, draw(amount))
    if kind == 3:
        return CreateSubnet("s", draw(st.integers(0, 500 * UNIT)))
    if kind == 4:
        return Register(draw(netuid), k, draw(st.integers(0, 10 * UNIT)))
    if kind == 5:
        return ServeAxon(draw(netuid), "12D3KooW", ("/ip4/1.1.1.1/tcp/1",))
    if kind == 6:
        uids = draw(small_uids)
        return SetWeights(
            draw(netuid),
            tuple(uids),
            tuple(draw(st.lists(st.integers(0, 65535), min_size=len(uids), max_size=len(uids)))),
            0,
        )
    if kind == 7:
        return SetHyperparameter(draw(netuid), draw(hp_name), draw(st.integers(0, 400)))
    if kind == 8:
        return CommitWeights(draw(netuid), weights_commit_hash(k, 1, (0,), (1,), b"s", 0))
    return RevealWeights(draw(netuid), (0,), (1,), b"s", 0)


@st.composite
def schedules(draw):
    """A list of commits, each a list of (signer index, call)."""
    n_commits = draw(st.integers(1, 25))
    return [[(draw(key_i), _call(draw)) for _ in range(draw(st.integers(0, 4)))] for _ in range(n_commits)]


# The subtensor caps, on or off (65535) per example, so that random schedules run into them.
limits = st.fixed_dictionaries(
    {
        "max_registrations_per_block": st.sampled_from([1, 2, 65535]),
        "target_registrations_per_interval": st.sampled_from([1, 65535]),
        "adjustment_interval": st.integers(0, 6),
        "serving_rate_limit": st.integers(0, 3),
        "max_weights_limit": st.sampled_from([40000, 65535]),
    }
)


def run(chain: Chain, schedule) -> list:
    receipts = []
    for txs in schedule:
        raws = [chain.tx(KEYS[i], call) for i, call in txs]
        out = chain.commit(*raws)
        receipts.append([(r.ok, r.rule) for r in out])
        if not any(r.ok and isinstance(c, SetHyperparameter) for r, (_, c) in zip(out, txs, strict=True)):
            for sn in chain.state.subnets.values():  # caps hold (an owner may change them mid-commit)
                hp = sn.hp
                assert hp.max_registrations_per_block == 65535 or sn.regs_this_block <= hp.max_registrations_per_block
                cap = 3 * hp.target_registrations_per_interval
                assert hp.target_registrations_per_interval == 65535 or sn.regs_this_interval <= cap
    return receipts


# transaction fees off, the defaults, and heavy (up to a whole token per transaction): all burned, conserved
fees = st.sampled_from([{"tx_base_fee": 0, "tx_byte_fee": 0}, {}, {"tx_base_fee": UNIT, "tx_byte_fee": 10**6}])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules(), limits, fees)
def test_two_instances_agree_and_invariants_hold(schedule, caps, fee_params):
    hp = {"tempo": 3, "max_allowed_uids": 4, "weights_rate_limit": 1} | caps
    defaults = {"tx_base_fee": DEFAULT_BASE_FEE, "tx_byte_fee": DEFAULT_BYTE_FEE}
    a = make_chain(hp, **(defaults | fee_params))
    b = make_chain(hp, **(defaults | fee_params))
    ra = run(a, schedule)  # Chain.commit checks the invariants after every commit
    rb = run(b, schedule)
    assert ra == rb and a.state.root() == b.state.root()
    loaded = State.load(a.state.snapshot())
    assert loaded.root() == a.state.root()
    loaded.check_invariants()
    for sn in a.state.subnets.values():
        assert sorted(sn.uid_of.values()) == list(range(len(sn.neurons)))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 5), min_size=1, max_size=6))
def test_root_differs_when_state_differs(amounts):
    a, b = make_chain(), make_chain()
    for x in amounts:
        a.ok(KEYS[2], Transfer(KEYS[3].public, x))
        b.ok(KEYS[2], Transfer(KEYS[3].public, x))
    assert a.state.root() == b.state.root()
    b.ok(KEYS[2], Transfer(KEYS[3].public, 1))
    a.ok(KEYS[2], Transfer(KEYS[4].public, 1))
    assert a.state.root() != b.state.root()
