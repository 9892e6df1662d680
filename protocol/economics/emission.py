"""Token units, issuance-based halving, and exact integer splits of minted emission.

All amounts are integer units (1 token = 10**9 units, like rao). Every split here returns parts
that sum exactly to the input, so issuance is conserved to the unit.
"""

from __future__ import annotations

from collections.abc import Sequence

UNIT = 10**9  # units per token
TOTAL_SUPPLY = 21_000_000 * UNIT  # the hard cap on issuance
OWNER_CUT_U16 = 11_796  # 18% of 65535, subtensor's SubnetOwnerCut
VALIDATOR_TAKE_U16 = 11_796  # 18% of 65535, subtensor's default delegate take
U16_MAX = 65535


def decimal_tokens(units: int) -> str:
    """'0.1' for 100000000 units, exactly (no float): how JSON shows an amount in tokens beside its units."""
    whole, frac = divmod(abs(units), UNIT)
    return ("-" if units < 0 else "") + (f"{whole}.{frac:09d}".rstrip("0") if frac else str(whole))


def format_tokens(units: int) -> str:
    """'0.1 token (100000000 units)', exactly (no float); zero is '0 token'. How messages show an amount."""
    text = decimal_tokens(units)
    return f"{text} token" if units == 0 else f"{text} token ({units} units)"


def halvings(issued: int) -> int:
    """k = floor(log2(S / (S - issued))): 0 below S/2 (10.5M tokens), 1 below 3S/4 (15.75M), and so on.

    Integer form of subtensor's `get_block_emission_for_issuance`: the largest k with 2^k (S - issued) <= S.
    """
    if issued < 0:
        raise ValueError(f"issuance {issued} is negative")
    left = TOTAL_SUPPLY - issued
    if left <= 0:
        raise ValueError(f"issuance {issued} has reached the cap {TOTAL_SUPPLY}")
    k = 0
    while (left << (k + 1)) <= TOTAL_SUPPLY:
        k += 1
    return k


def block_emission(base: int, issued: int) -> int:
    """Units minted at one commit height: base >> halvings(issued), never past the cap."""
    if issued >= TOTAL_SUPPLY:
        return 0
    return min(base >> halvings(issued), TOTAL_SUPPLY - issued)


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` in proportion to non-negative integer `weights`, exactly (largest remainder).

    Each part is floor(total * w / W); the units left over go one each to the largest remainders,
    ties to the lower index. All weights zero: everything to nobody is impossible, so it raises.
    """
    if total < 0:
        raise ValueError(f"cannot split a negative amount {total}")
    if any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative")
    wsum = sum(weights)
    if wsum == 0:
        if total == 0:
            return [0] * len(weights)
        raise ValueError(f"cannot split {total} over all-zero weights")
    parts = [total * w // wsum for w in weights]
    left = total - sum(parts)
    if left:
        order = sorted(range(len(weights)), key=lambda i: (-((total * weights[i]) % wsum), i))
        for i in order[:left]:
            parts[i] += 1
    return parts


def subnet_split(amount: int) -> tuple[int, int, int]:
    """(owner, miners, validators): 18% to the owner (11796/65535, floor), the rest halved, miners floor."""
    owner = amount * OWNER_CUT_U16 // U16_MAX
    rest = amount - owner
    miners = rest // 2
    return owner, miners, rest - miners


def take(amount: int, take_u16: int = VALIDATOR_TAKE_U16) -> int:
    """The validator's take of a dividend: floor(amount * take / 65535); the rest goes pro rata to stakers."""
    return amount * take_u16 // U16_MAX
