"""Per-subnet hyperparameters: subtensor's defaults, the bounds an owner may move them within.

A subnet owner changes one value at a time with `set_hyperparameter`; `with_value` checks the name
and the bounds, so a typo or an out-of-range value is refused with a message that names both.
Booleans travel as 0/1. u16 ratios (kappa, alpha, bonds penalty) are value/65535, as on subtensor.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from protocol.errors import TxRejected

U16_MAX = 65535
U64_MAX = (1 << 64) - 1
MAX_UIDS_CEILING = 256  # subtensor's DefaultMaxAllowedUids: the largest a subnet may be
MIN_ACTIVITY_CUTOFF = 360  # subtensor's DefaultMinActivityCutoff
MIN_REVEAL_PERIOD, MAX_REVEAL_PERIOD = 1, 100  # subtensor MIN/MAX_COMMIT_REVEAL_PEROIDS
ALPHA_FLOOR = U16_MAX // 40  # 1638: subtensor's lowest alpha_low and alpha_high
MAX_BONDS_MOVING_AVERAGE = 975_000


@dataclass(frozen=True, slots=True)
class Hyperparams:
    """One subnet's tunables. Defaults follow subtensor (research/yuma-consensus.md §Defaults)."""

    tempo: int = 360
    max_allowed_uids: int = 256
    max_allowed_validators: int = 64
    immunity_period: int = 5000
    min_allowed_weights: int = 1
    weights_rate_limit: int = 100
    weights_version_key: int = 0
    weights_min_stake: int = 0
    kappa: int = 32767
    bonds_moving_average: int = 900_000
    bonds_penalty: int = U16_MAX
    liquid_alpha_enabled: bool = False
    alpha_low: int = 45875
    alpha_high: int = 58982
    alpha_sigmoid_steepness: int = 1000
    commit_reveal_enabled: bool = False
    reveal_period: int = 1
    activity_cutoff: int = 5000
    min_non_immune_uids: int = 10
    min_burn: int = 500_000
    max_burn: int = 100_000_000_000
    burn_half_life: int = 360
    # Registration caps (subtensor's MaxRegistrationsPerBlock and 3 x TargetRegistrationsPerInterval per
    # AdjustmentInterval, as its burned registration applied them). 65535 turns a cap off: subtensor
    # dropped both from subnet registration, so they are off by default (spec/state.md §4).
    max_registrations_per_block: int = U16_MAX
    target_registrations_per_interval: int = U16_MAX
    adjustment_interval: int = 100
    serving_rate_limit: int = 50  # heights between two serve_axon of one neuron (subtensor ServingRateLimit)
    max_weights_limit: int = U16_MAX  # largest normalised weight, x/65535; 65535 = no limit (subtensor)

    def to_obj(self) -> dict[str, int | bool]:
        return dataclasses.asdict(self)

    @classmethod
    def from_obj(cls, obj: Any, path: str = "hyperparameters") -> Hyperparams:
        """Strict load (genesis, snapshots): unknown names and out-of-bound values are refused."""
        if type(obj) is not dict:
            raise TxRejected("hyperparameter", f"{path}: expected a map of name to value")
        values: dict[str, Any] = {}
        for name in sorted(obj):
            if name not in _FIELDS:
                raise TxRejected(
                    "hyperparameter", f"{path}: unknown hyperparameter {name!r} (known: {', '.join(NAMES)})"
                )
            values[name] = _typed(name, obj[name], path)
        hp = dataclasses.replace(cls(), **values)
        hp.check_all(path=path)
        return hp

    def with_value(self, name: str, value: Any, *, n_uids: int, path: str = "set_hyperparameter") -> Hyperparams:
        """A copy with `name` set to `value`, or TxRejected('hyperparameter', ...) naming the bound broken."""
        if name not in _FIELDS:
            raise TxRejected("hyperparameter", f"{path}: unknown hyperparameter {name!r} (known: {', '.join(NAMES)})")
        new = dataclasses.replace(self, **{name: _typed(name, value, path)})
        lo, hi = new.bounds(name, n_uids)
        got = int(getattr(new, name))
        if not lo <= got <= hi:
            raise TxRejected("hyperparameter", f"{path}: {name}={got} is outside its bounds [{lo}, {hi}]")
        return new

    def bounds(self, name: str, n_uids: int = 0) -> tuple[int, int]:
        """Inclusive [lo, hi] for `name`, given the other values (some bounds depend on them)."""
        b: dict[str, tuple[int, int]] = {
            "tempo": (1, U16_MAX),
            "max_allowed_uids": (max(1, n_uids), MAX_UIDS_CEILING),
            "max_allowed_validators": (1, MAX_UIDS_CEILING),
            "immunity_period": (0, U16_MAX),
            "min_allowed_weights": (0, U16_MAX),
            "weights_rate_limit": (0, U64_MAX),
            "weights_version_key": (0, U64_MAX),
            "weights_min_stake": (0, U64_MAX),
            "kappa": (0, U16_MAX),
            "bonds_moving_average": (0, MAX_BONDS_MOVING_AVERAGE),
            "bonds_penalty": (0, U16_MAX),
            "liquid_alpha_enabled": (0, 1),
            "alpha_low": (ALPHA_FLOOR, self.alpha_high),
            "alpha_high": (max(ALPHA_FLOOR, self.alpha_low), U16_MAX),
            "alpha_sigmoid_steepness": (0, 32767),
            "commit_reveal_enabled": (0, 1),
            "reveal_period": (MIN_REVEAL_PERIOD, MAX_REVEAL_PERIOD),
            "activity_cutoff": (MIN_ACTIVITY_CUTOFF, U16_MAX),
            "min_non_immune_uids": (0, MAX_UIDS_CEILING),
            "min_burn": (0, self.max_burn),
            "max_burn": (self.min_burn, U64_MAX),
            "burn_half_life": (0, U16_MAX),
            "max_registrations_per_block": (0, U16_MAX),
            "target_registrations_per_interval": (0, U16_MAX),
            "adjustment_interval": (0, U16_MAX),
            "serving_rate_limit": (0, U64_MAX),
            "max_weights_limit": (0, U16_MAX),
        }
        return b[name]

    def check_all(self, n_uids: int = 0, path: str = "hyperparameters") -> None:
        """Every value within its bounds (an invariant the property tests check)."""
        for name in NAMES:
            lo, hi = self.bounds(name, n_uids)
            v = int(getattr(self, name))
            if not lo <= v <= hi:
                raise TxRejected("hyperparameter", f"{path}: {name}={v} is outside its bounds [{lo}, {hi}]")


def _typed(name: str, value: Any, path: str) -> int | bool:
    """The value in its field's type: switches take 0/1 (or a bool), the rest plain integers."""
    if _FIELDS[name] is bool:
        if type(value) is bool:
            return value
        if type(value) is not int or value not in (0, 1):
            raise TxRejected("hyperparameter", f"{path}: {name} is a switch (0 or 1), got {value!r}")
        return bool(value)
    if type(value) is not int:
        raise TxRejected("hyperparameter", f"{path}: {name} must be an integer, got {value!r}")
    return value


_FIELDS: dict[str, type] = {
    f.name: (bool if f.type in ("bool", bool) else int) for f in dataclasses.fields(Hyperparams)
}
NAMES: tuple[str, ...] = tuple(sorted(_FIELDS))
