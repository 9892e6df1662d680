"""Concentration metrics (spec/economics.md §5): Nakamoto coefficient, top-5 stake and emission shares."""

from __future__ import annotations

from node.concentration import (
    committee_concentration,
    group,
    nakamoto,
    network_concentration,
    subnet_concentration,
    top_share,
)
from protocol.economics.emission import UNIT
from protocol.messages import AddStake, Register
from tests.protocol.state.test_state import KEYS, VAL, make_chain


def test_nakamoto_and_top_share():
    assert nakamoto([50, 30, 20], 51) == 2  # strict majority of 100
    assert nakamoto([60, 30, 10], 51) == 1
    assert nakamoto([10] * 10, 51) == 6
    assert nakamoto([], 1) == 0 and nakamoto([0], 0) == 0
    assert top_share([10] * 10) == 0.5
    assert top_share([90, 5, 1, 1, 1, 1, 1]) == 0.98
    assert top_share([]) == 0.0
    assert group([(b"a", 5), (b"b", 3), (b"a", 4), (b"c", 0)]) == [9, 3]


def test_committee_groups_hotkeys_by_owner_and_uses_the_validity_threshold():
    c = make_chain()
    s = c.state
    keys = [KEYS[i].public for i in range(4)]
    for k in keys[1:]:
        s.hotkey_owner[k] = KEYS[9].public  # three hotkeys, one entity
    out = committee_concentration(s, keys, [40, 20, 20, 20])
    assert (out["members"], out["entities"], out["stake"]) == (4, 2, 100)
    assert out["nakamoto"] == 1  # validity threshold T-Q+1 = 100-67+1 = 34: either entity alone
    assert out["top5_stake_share"] == 1.0
    spread = committee_concentration(make_chain().state, [KEYS[i].public for i in range(7)], [10] * 7)
    assert spread["nakamoto"] == 3  # 70 total: Q = 47, validity 24 -> three members of 10


def test_subnet_figures_before_and_after_permits():
    c = make_chain({"tempo": 20})  # first epoch at height 19
    for i in (3, 4, 5):
        c.ok(KEYS[i], Register(1, KEYS[i].public, 10**15))
    c.ok(KEYS[3], AddStake(KEYS[3].public, 70 * UNIT))
    c.ok(KEYS[4], AddStake(KEYS[4].public, 20 * UNIT))
    c.ok(KEYS[5], AddStake(KEYS[5].public, 10 * UNIT))
    sn = c.state.subnets[1]
    before = subnet_concentration(c.state, sn)
    assert not any(n.validator_permit for n in sn.neurons)
    assert (before["validator_entities"], before["validator_stake"], before["nakamoto"]) == (3, 100 * UNIT, 1)
    assert before["top5_stake_share"] == 1.0 and before["emission_recipients"] == 0
    c.idle(19 - c.state.height)  # the epoch gives permits; it pays the stake-holding neurons
    after = subnet_concentration(c.state, sn)
    assert after["validator_entities"] == sum(n.validator_permit for n in sn.neurons) >= 1
    assert after["emission_recipients"] >= 1 and after["top5_emission_share"] == 1.0
    net = network_concentration(c.state, [VAL.public], [10 * UNIT])
    assert net["committee"]["nakamoto"] == 1 and net["subnets"]["1"] == after
    assert net["emission_recipients"] == after["emission_recipients"]
