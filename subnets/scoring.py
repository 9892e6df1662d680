"""Validator-side score keeping: a per-uid moving average, and the u16 weight vector for set_weights.

Integers throughout: the same sequence of scores gives the same weights on every machine, so a
validator's weights can be replayed and audited, and tests can pin exact values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from protocol.messages import MAX_WEIGHTS
from subnets.task import MAX_SCORE, ConfigError

FRAC = 16
ONE = 1 << FRAC
U16_MAX = 65535
DEFAULT_ALPHA = 6554  # 0.1 in Q16: about ten queries to follow a change


def _check_uid(uid: int) -> None:
    if type(uid) is not int or not 0 <= uid <= U16_MAX:
        raise ConfigError(f"uid {uid!r} is not a u16")


class MovingScores:
    """Exponential moving average per uid, kept in Q16: s <- s + alpha * (x - s), rounded half up.

    A uid never scored counts as 0, so a new miner climbs over several queries rather than jumping
    to the top on one lucky answer. Call `reset` when a uid changes hands (a new hotkey registered).
    """

    def __init__(self, alpha: int = DEFAULT_ALPHA) -> None:
        if type(alpha) is not int or not 1 <= alpha <= ONE:
            raise ConfigError(f"alpha {alpha!r} must be an int in [1, {ONE}] (Q16)")
        self.alpha = alpha
        self._state: dict[int, int] = {}

    def update(self, uid: int, score: int) -> int:
        """Fold one score (0..MAX_SCORE) into uid's average; returns the new average as a u16."""
        _check_uid(uid)
        if type(score) is not int or not 0 <= score <= MAX_SCORE:
            raise ConfigError(f"score {score!r} outside 0..{MAX_SCORE}")
        s = self._state.get(uid, 0)
        s += (self.alpha * ((score << FRAC) - s) + (1 << (FRAC - 1))) >> FRAC
        self._state[uid] = s
        return self.get(uid)

    def get(self, uid: int) -> int:
        return (self._state.get(uid, 0) + (1 << (FRAC - 1))) >> FRAC

    def reset(self, uid: int) -> None:
        self._state.pop(uid, None)

    def retain(self, uids: Iterable[int]) -> None:
        """Forget every uid not in `uids` (deregistered miners)."""
        keep = set(uids)
        for uid in [u for u in self._state if u not in keep]:
            del self._state[uid]

    def scores(self) -> dict[int, int]:
        return {uid: self.get(uid) for uid in sorted(self._state)}

    def weights(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return max_upscale_u16(self.scores())

    def snapshot(self) -> dict[int, int]:
        """The raw Q16 state, to persist across restarts."""
        return dict(self._state)

    def restore(self, state: Mapping[int, int]) -> None:
        for uid, value in state.items():
            _check_uid(uid)
            if type(value) is not int or not 0 <= value <= MAX_SCORE << FRAC:
                raise ConfigError(f"saved score {value!r} for uid {uid} is out of range")
        self._state = dict(state)


def max_upscale_u16(scores: Mapping[int, int], max_len: int = MAX_WEIGHTS) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(uids, values) for SetWeights: zeros dropped, the largest score becomes 65535 and the others
    keep their ratio to it, rounded half up (subtensor's max-upscale normalisation, in integers).

    At most `max_len` entries are kept, the highest scores first (lower uid on ties). All-zero
    scores give empty vectors: the caller should not set weights then.
    """
    for uid, value in scores.items():
        _check_uid(uid)
        if type(value) is not int or value < 0:
            raise ConfigError(f"score {value!r} for uid {uid} must be a non-negative int")
    live = sorted(((v, u) for u, v in scores.items() if v > 0), key=lambda p: (-p[0], p[1]))[:max_len]
    if not live:
        return (), ()
    top = live[0][0]
    upscaled = ((u, (v * U16_MAX + top // 2) // top) for v, u in live)
    pairs = sorted((u, w) for u, w in upscaled if w > 0)  # a weight that rounds to 0 is no weight
    return tuple(u for u, _ in pairs), tuple(w for _, w in pairs)
