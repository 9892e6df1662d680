"""Halving schedule, supply cap, exact splits, burn pricing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.economics.emission import TOTAL_SUPPLY, UNIT, apportion, block_emission, halvings, subnet_split, take
from protocol.economics.pricing import Q32_ONE, bumped_burn, decay_factor_q32, decayed_burn, pow_q32, subnet_price


def test_halving_thresholds():
    assert halvings(0) == 0
    assert halvings(10_500_000 * UNIT - 1) == 0
    assert halvings(10_500_000 * UNIT) == 1
    assert halvings(15_750_000 * UNIT - 1) == 1
    assert halvings(15_750_000 * UNIT) == 2
    assert halvings(18_375_000 * UNIT) == 3
    assert halvings(TOTAL_SUPPLY - 1) == 54  # 2^54 <= 21e15 < 2^55


def test_block_emission_halves_and_caps():
    base = UNIT
    assert block_emission(base, 0) == UNIT
    assert block_emission(base, 10_500_000 * UNIT) == UNIT // 2
    assert block_emission(base, 15_750_000 * UNIT) == UNIT // 4
    assert block_emission(base, TOTAL_SUPPLY) == 0
    assert block_emission(10**18, TOTAL_SUPPLY - 5) <= 5  # never passes the cap


def test_issuance_never_passes_cap():
    issued, base, last = TOTAL_SUPPLY - 1000 * UNIT, 10**15, 10**15
    for _ in range(200):
        e = block_emission(base, issued)
        assert e <= last  # the rate never rises
        issued, last = issued + e, e
        assert issued <= TOTAL_SUPPLY
    issued = TOTAL_SUPPLY - 5
    issued += block_emission(10**18, issued)
    assert issued == TOTAL_SUPPLY and block_emission(10**18, issued) == 0


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**16))
def test_subnet_split_exact(amount):
    o, m, v = subnet_split(amount)
    assert o + m + v == amount and o == amount * 11796 // 65535 and 0 <= v - m <= 1


def test_split_is_18_41_41():
    o, m, v = subnet_split(10**9)
    assert (o, m, v) == (179995422, 410002289, 410002289)
    assert take(65535) == 11796


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**15), st.lists(st.integers(0, 10**12), min_size=1, max_size=20))
def test_apportion_exact_and_fair(total, weights):
    if sum(weights) == 0:
        return
    parts = apportion(total, weights)
    assert sum(parts) == total and all(p >= 0 for p in parts)
    wsum = sum(weights)
    for p, w in zip(parts, weights, strict=True):
        assert abs(p * wsum - total * w) < wsum  # off from the exact share by less than one unit


def test_apportion_ties_to_lower_index():
    assert apportion(1, [1, 1, 1]) == [1, 0, 0]
    assert apportion(2, [1, 1, 1]) == [1, 1, 0]
    assert apportion(0, [0, 0]) == [0, 0]


def test_burn_decay_factor_halves_over_half_life():
    f = decay_factor_q32(360)
    assert pow_q32(f, 360) <= Q32_ONE // 2 < pow_q32(f + 1, 360)
    assert decay_factor_q32(0) == Q32_ONE
    b = 10**9
    for _ in range(360):
        b = decayed_burn(b, 360, 0, 10**12)
    assert 499_000_000 <= b <= 500_000_000
    assert decayed_burn(10, 360, 500, 10**12) == 500  # clamped at min


def test_burn_bump_and_clamp():
    assert bumped_burn(10**8, 0, 10**12) == 126_000_000
    assert bumped_burn(10**12, 0, 10**12) == 10**12


def test_subnet_price_doubles_then_falls_linearly():
    assert subnet_price(1000, None, 5, 100, 10) == 1000
    assert subnet_price(1000, 5, 5, 100, 10) == 2000
    assert subnet_price(1000, 5, 10, 100, 10) == 2000 - 100 * 5
    assert subnet_price(1000, 5, 100, 100, 10) == 100  # floor
