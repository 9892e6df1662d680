"""Subnet lifecycle: each subnet's strength score, registration immunity, and which subnets a new one replaces.

spec/economics.md §1 is normative. Pure integer rules and records; state.py stores them and
handlers/subnets.py (create_subnet, deregister) moves the funds.

- Score: an integer exponential moving average of the subnet's stake (the total stake of the hotkeys
  registered on it), updated once per commit height for every subnet:
  `score' = (score * (SCORE_PERIOD - 1) + stake) // SCORE_PERIOD`. A new subnet starts at 0.
- Immunity: a subnet created at height c is immune while `height < c + subnet_immunity_period`.
- At the limit, create_subnet deregisters the `len(subnets) - max_subnets + 1` weakest non-immune subnets,
  weakest first by (score, netuid); if fewer are non-immune, it is refused (`subnet limit`) with the height
  at which enough subnets will have left immunity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from protocol.economics.emission import apportion
from protocol.errors import TxRejected

SCORE_PERIOD = 1024  # heights: the EMA's weight on each new sample is 1/SCORE_PERIOD


def next_score(score: int, stake: int) -> int:
    """One height of the score EMA: (score * (P - 1) + stake) // P."""
    return (score * (SCORE_PERIOD - 1) + stake) // SCORE_PERIOD


def immune_until(created_at: int, immunity_period: int) -> int:
    """The first height at which a subnet created at `created_at` is no longer immune."""
    return created_at + immunity_period


@dataclass(frozen=True, slots=True)
class SubnetInfo:
    """What the replacement rule needs to know of one subnet."""

    netuid: int
    created_at: int
    score: int


def subnets_to_replace(
    subnets: Sequence[SubnetInfo], *, height: int, max_subnets: int, immunity_period: int
) -> list[int]:
    """The netuids a create_subnet at `height` deregisters (weakest first), or TxRejected('subnet limit')."""
    need = len(subnets) - max_subnets + 1
    if need <= 0:
        return []
    if max_subnets == 0:
        raise TxRejected("subnet limit", "the subnet limit (max_subnets) is 0: no subnet can be created")
    free = sorted((s.score, s.netuid) for s in subnets if height >= immune_until(s.created_at, immunity_period))
    if len(free) >= need:
        return [netuid for _, netuid in free[:need]]
    waiting = sorted((immune_until(s.created_at, immunity_period), s.netuid) for s in subnets
                     if height < immune_until(s.created_at, immunity_period))
    at, netuid = waiting[need - len(free) - 1]
    raise TxRejected(
        "subnet limit",
        f"{len(subnets)} subnets exist, the limit is {max_subnets}, and {len(subnets) - len(free)} are inside "
        f"their registration immunity ({immunity_period} heights); {need} must be replaceable: "
        f"possible from height {at} (when subnet {netuid} leaves immunity), now {height}",
    )


@dataclass(frozen=True, slots=True)
class Deregistration:
    """The record of one subnet removed to make room for a new one (kept in state, served by the API)."""

    netuid: int
    name: str
    owner: bytes
    created_at: int
    height: int  # the commit height of the create_subnet that replaced it
    replaced_by: bytes  # the coldkey whose create_subnet removed it
    score: int
    neurons: int
    owner_paid: int  # pending owner emission paid to the owner's balance
    neurons_paid: int  # pending miner + validator emission paid to hotkey owners' balances
    unissued: int  # pending emission returned to the unissued supply (nobody to pay)
    stake_returned: int  # stake moved back to coldkey balances
    stake_positions: int  # number of (coldkey, hotkey) positions closed

    def to_obj(self) -> list:
        return [
            self.netuid,
            self.name,
            self.owner,
            self.created_at,
            self.height,
            self.replaced_by,
            self.score,
            self.neurons,
            self.owner_paid,
            self.neurons_paid,
            self.unissued,
            self.stake_returned,
            self.stake_positions,
        ]

    @classmethod
    def from_obj(cls, o: list) -> Deregistration:
        if len(o) != 13:
            raise ValueError("a deregistration record has 13 fields")
        return cls(*o)


@dataclass(slots=True)
class Lifecycle:
    """Lifecycle state: each subnet's score and the history of deregistrations (oldest first)."""

    scores: dict[int, int] = field(default_factory=dict)
    history: list[Deregistration] = field(default_factory=list)

    def update_scores(self, stakes: Mapping[int, int]) -> None:
        """One height: every subnet's score moves toward its current stake (`stakes`: netuid -> stake)."""
        for netuid in sorted(stakes):
            self.scores[netuid] = next_score(self.scores.get(netuid, 0), stakes[netuid])

    def to_obj(self) -> list:
        return [[[n, s] for n, s in sorted(self.scores.items())], [d.to_obj() for d in self.history]]

    @classmethod
    def from_obj(cls, o: list) -> Lifecycle:
        if type(o) is not list or len(o) != 2:
            raise ValueError("lifecycle state is [scores, history]")
        return cls({n: s for n, s in o[0]}, [Deregistration.from_obj(d) for d in o[1]])


def final_payout(pot: int, last_emission: Sequence[int]) -> list[int] | None:
    """Split a dying subnet's pending miner + validator pot over its uids by their last epoch emission
    (apportion: floors, then the largest remainders, ties to the lower uid); None when nobody was paid."""
    if pot == 0 or sum(last_emission) == 0:
        return None
    return apportion(pot, list(last_emission))
