"""Burn prices: neuron registration (decays, jumps x1.26 per registration) and subnet creation.

Integer forms of subtensor's rules (subnets/registration.rs, coinbase/root.rs, utils/misc.rs):
- registration burn decays each height by f with f^half_life = 1/2 in Q32, found by bisection, and is
  multiplied by 1.26 after each registration; both clamped to [min_burn, max_burn];
- the subnet creation price doubles after each creation and falls linearly back to the floor over
  `lock_reduction_interval` heights.
"""

from __future__ import annotations

from functools import lru_cache

Q32_ONE = 1 << 32
U64_MAX = (1 << 64) - 1
BURN_INCREASE_NUM, BURN_INCREASE_DEN = 126, 100  # subtensor's BurnIncreaseMult 1.26


def mul_q32(value: int, factor_q32: int) -> int:
    """value * factor in Q32, floored, saturating at u64."""
    return min((value * factor_q32) >> 32, U64_MAX)


def pow_q32(base_q32: int, exp: int) -> int:
    """base^exp in Q32 by squaring, each product floored like mul_q32."""
    result, factor = Q32_ONE, base_q32
    while exp > 0:
        if exp & 1:
            result = mul_q32(result, factor)
        exp >>= 1
        if exp:
            factor = mul_q32(factor, factor)
    return result


@lru_cache(maxsize=64)
def decay_factor_q32(half_life: int) -> int:
    """The largest Q32 f in [0, 1) with f^half_life <= 1/2 (bisection); 1.0 when half_life is 0."""
    if half_life == 0:
        return Q32_ONE
    lo, hi, half = 0, Q32_ONE, Q32_ONE >> 1
    while lo + 1 < hi:
        mid = lo + ((hi - lo) >> 1)
        if pow_q32(mid, half_life) > half:
            hi = mid
        else:
            lo = mid
    return lo


def clamp(value: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, value))


def decayed_burn(burn: int, half_life: int, min_burn: int, max_burn: int) -> int:
    """The registration price one height later."""
    return clamp(mul_q32(burn, decay_factor_q32(half_life)), min_burn, max_burn)


def bumped_burn(burn: int, min_burn: int, max_burn: int) -> int:
    """The registration price right after a registration: x1.26, floored and clamped."""
    return clamp(burn * BURN_INCREASE_NUM // BURN_INCREASE_DEN, min_burn, max_burn)


def subnet_price(last_price: int, last_height: int | None, height: int, min_price: int, interval: int) -> int:
    """Price to create a subnet now: 2x the last price, less last/interval per height since, floored at min."""
    if last_height is None:
        return max(last_price, min_price)
    fall = (last_price // interval) * (height - last_height) if interval > 0 else 0
    return max(2 * last_price - fall, min_price)
