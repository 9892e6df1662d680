"""Visible concentration: how few entities hold the stake and take the emission (spec/economics.md §5).

Display metrics, not consensus: nothing here feeds back into the chain. An **entity** is a hotkey's owner
coldkey (a coldkey running several hotkeys counts once). Per subnet, the validator weight is the stake of
the neurons holding a validator permit (all neurons before the first epoch gives permits); for the
committee, the stake of the running consensus committee.

- Nakamoto coefficient: the fewest entities whose combined stake reaches a threshold: a strict majority
  of the subnet's validator stake (enough to decide Yuma's consensus at the default kappa of 1/2), or the
  committee's validity threshold T - Q + 1 (about 1/3: enough to stop commits).
- top-5 stake share: the five largest entities' part of the stake.
- top-5 emission share: the five largest recipients' part of the emission paid at the last epoch (per
  subnet; for the network, summed over all subnets).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from protocol.state.state import State, Subnet

TOP = 5


def group(pairs: Iterable[tuple[bytes, int]]) -> list[int]:
    """Amounts summed per entity, largest first (ties in any order: only the amounts matter)."""
    out: dict[bytes, int] = {}
    for who, amount in pairs:
        out[who] = out.get(who, 0) + amount
    return sorted((a for a in out.values() if a > 0), reverse=True)


def nakamoto(amounts: Sequence[int], threshold: int) -> int:
    """The fewest of `amounts` (largest first) whose sum reaches `threshold`; 0 when the total is 0."""
    if not amounts or threshold <= 0:
        return 0
    acc = 0
    for i, a in enumerate(sorted(amounts, reverse=True), 1):
        acc += a
        if acc >= threshold:
            return i
    return len(amounts)


def top_share(amounts: Sequence[int], k: int = TOP) -> float:
    """The k largest amounts' fraction of the total (0.0 for an empty or zero total), rounded to 4 places."""
    total = sum(amounts)
    return round(sum(sorted(amounts, reverse=True)[:k]) / total, 4) if total else 0.0


def _owner(state: State, hotkey: bytes) -> bytes:
    return state.hotkey_owner.get(hotkey, hotkey)


def subnet_concentration(state: State, sn: Subnet) -> dict[str, Any]:
    permitted = [n for n in sn.neurons if n.validator_permit] or sn.neurons
    stake = group((_owner(state, n.hotkey), state.hotkey_stake.get(n.hotkey, 0)) for n in permitted)
    emission = group((_owner(state, n.hotkey), n.emission) for n in sn.neurons)
    total = sum(stake)
    return {
        "validator_entities": len(stake),
        "validator_stake": total,
        "nakamoto": nakamoto(stake, total // 2 + 1),
        "top5_stake_share": top_share(stake),
        "emission_recipients": len(emission),
        "top5_emission_share": top_share(emission),
    }


def committee_concentration(state: State, keys: Sequence[bytes], stakes: Sequence[int]) -> dict[str, Any]:
    amounts = group((_owner(state, k), s) for k, s in zip(keys, stakes, strict=True))
    total = sum(amounts)
    validity = total - (2 * total // 3 + 1) + 1
    return {
        "members": len(keys),
        "entities": len(amounts),
        "stake": total,
        "nakamoto": nakamoto(amounts, validity),
        "top5_stake_share": top_share(amounts),
    }


def network_concentration(state: State, keys: Sequence[bytes], stakes: Sequence[int]) -> dict[str, Any]:
    """The committee's figures, every subnet's, and the network-wide top-5 share of the last epochs' emission."""
    emission = group(
        (_owner(state, n.hotkey), n.emission) for _, sn in sorted(state.subnets.items()) for n in sn.neurons
    )
    return {
        "height": state.height,
        "committee": committee_concentration(state, keys, stakes),
        "subnets": {str(netuid): subnet_concentration(state, sn) for netuid, sn in sorted(state.subnets.items())},
        "emission_recipients": len(emission),
        "top5_emission_share": top_share(emission),
    }
