"""Where every issued unit is: the conservation identity's record (spec/economics.md §7). It is computed one
way, by protocol/state/state.py's `supply_of`, for the state's own invariant check, the `GET /supply` route
and `tensornet chain supply`; the record sits below the state so the state can build it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from protocol.economics.emission import decimal_tokens


@dataclass(frozen=True, slots=True)
class Supply:
    """All amounts in units. `burned` includes `fees_burned`; `deposits` are governance deposits of voting
    proposals; `pending` is minted emission in the subnets' pots, not yet paid out by an epoch."""

    height: int
    issued: int
    burned: int
    fees_burned: int
    balances: int
    stake: int
    escrow: int
    deposits: int
    pending: int

    @property
    def held(self) -> int:
        """Every place an issued unit can be; equals `issued` in a sound state."""
        return self.balances + self.stake + self.escrow + self.deposits + self.pending + self.burned

    @property
    def balanced(self) -> bool:
        return self.held == self.issued

    def to_json(self) -> dict[str, Any]:
        """Units as integers, the same amounts as exact decimal token strings under `tokens`, and the check."""
        amounts = {k: v for k, v in asdict(self).items() if k != "height"}
        return {
            "height": self.height,
            **amounts,
            "held": self.held,
            "tokens": {k: decimal_tokens(v) for k, v in (amounts | {"held": self.held}).items()},
            "identity": "issued == balances + stake + escrow + deposits + pending + burned",
            "balanced": self.balanced,
        }
