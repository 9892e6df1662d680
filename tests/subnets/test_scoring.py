"""Moving-average scores and the u16 weight vector, in integers."""

from __future__ import annotations

import pytest

from protocol.messages import MAX_WEIGHTS, SetWeights
from subnets.scoring import ONE, MovingScores, max_upscale_u16
from subnets.task import MAX_SCORE, ConfigError


def test_moving_average_tracks_a_float_reference():
    ms = MovingScores(alpha=ONE // 10)
    ref = 0.0
    for i, x in enumerate([65535, 0, 30000, 30000, 12345, 65535, 1, 40000] * 5):
        got = ms.update(3, x)
        ref += (ONE // 10) / ONE * (x - ref)
        assert abs(got - ref) <= 1, (i, got, ref)
    assert ms.get(99) == 0  # never scored


def test_first_score_moves_by_alpha_and_converges():
    ms = MovingScores(alpha=ONE // 4)
    assert ms.update(0, 40000) == 10000
    for _ in range(100):
        ms.update(0, 40000)
    assert ms.get(0) == 40000
    for _ in range(100):
        ms.update(0, 0)
    assert ms.get(0) == 0
    full = MovingScores(alpha=ONE)
    full.update(1, 123)
    assert full.update(1, 7) == 7


def test_reset_retain_snapshot_restore():
    ms = MovingScores()
    for uid in range(5):
        ms.update(uid, 1000 * (uid + 1))
    ms.reset(2)
    assert ms.get(2) == 0 and 2 not in ms.scores()
    ms.retain({0, 1, 4})
    assert sorted(ms.scores()) == [0, 1, 4]
    other = MovingScores()
    other.restore(ms.snapshot())
    assert other.scores() == ms.scores()
    with pytest.raises(ConfigError):
        other.restore({1: (MAX_SCORE + 1) << 16})


def test_invalid_inputs_are_refused():
    with pytest.raises(ConfigError):
        MovingScores(alpha=0)
    with pytest.raises(ConfigError):
        MovingScores(alpha=ONE + 1)
    ms = MovingScores()
    for uid, score in ((-1, 0), (1 << 16, 0), (0, -1), (0, MAX_SCORE + 1), (0, 0.5)):
        with pytest.raises(ConfigError):
            ms.update(uid, score)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        max_upscale_u16({0: -5})


def test_max_upscale_keeps_ratios():
    uids, values = max_upscale_u16({5: 100, 2: 50, 9: 0, 7: 25, 3: 1})
    assert uids == (2, 3, 5, 7)  # zeros dropped, sorted by uid
    assert values == (32768, 655, 65535, 16384)  # 65535 * v / 100, rounded half up
    assert max_upscale_u16({}) == ((), ())
    assert max_upscale_u16({1: 0, 2: 0}) == ((), ())
    assert max_upscale_u16({4: 3}) == ((4,), (65535,))


def test_weights_that_round_to_zero_are_dropped():
    assert max_upscale_u16({0: 10**9, 1: 1}) == ((0,), (65535,))


def test_cap_keeps_the_highest_scores():
    scores = {uid: uid % 97 + 1 for uid in range(MAX_WEIGHTS + 50)}
    uids, values = max_upscale_u16(scores)
    assert len(uids) == MAX_WEIGHTS
    kept = set(uids)
    dropped = set(scores) - kept
    assert min(scores[u] for u in kept) >= max(scores[u] for u in dropped)
    uids, _ = max_upscale_u16({1: 5, 2: 5, 3: 5}, max_len=2)
    assert uids == (1, 2)  # ties go to the lower uid


def test_weights_feed_a_valid_set_weights_message():
    ms = MovingScores()
    for uid, score in ((0, 60000), (1, 30000), (2, 0), (3, 15000)):
        ms.update(uid, score)
    uids, values = ms.weights()
    assert uids == (0, 1, 3) and values[0] == 65535 and values[1] == 32768
    msg = SetWeights(netuid=1, uids=uids, values=values, version_key=0)
    assert SetWeights.from_bytes(msg.to_bytes()) == msg
