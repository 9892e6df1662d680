"""Fixed-point primitives: substrate-fixed semantics, and numpy kernels equal to the scalar reference."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.economics import fixedpoint as fp
from protocol.economics.fixedpoint import ONE
from protocol.economics.yuma import _topk_nonzero, _weighted_median_cols

prop = st.integers(min_value=0, max_value=ONE)
i64 = st.integers(min_value=fp.I64_MIN, max_value=fp.I64_MAX)


def test_mul_floors_and_div_truncates() -> None:
    assert fp.sat_mul(ONE // 2, 3) == 1  # 1.5 bits -> floor
    assert fp.sat_mul(-(ONE // 2), 3) == -2  # floor towards -inf, like the i128 shift in Rust
    assert fp.checked_div(-1, 3 * ONE) == 0  # truncation towards zero
    assert fp.checked_div(ONE, 3 * ONE) == ONE // 3
    assert fp.safe_div(ONE, 0) == 0
    assert fp.checked_div(fp.I64_MAX, 1) is None
    assert fp.safe_div(fp.I64_MAX, 1) == 0


def test_saturating_ops() -> None:
    assert fp.sat_add(fp.I64_MAX, 1) == fp.I64_MAX
    assert fp.sat_sub(fp.I64_MIN, 1) == fp.I64_MIN
    assert fp.sat_mul(fp.I64_MAX, fp.I64_MAX) == fp.I64_MAX
    assert fp.sat_mul(fp.I64_MAX, -fp.I64_MAX) == fp.I64_MIN
    assert fp.checked_mul(fp.I64_MAX, 2 * ONE) is None


def test_u16_conversions() -> None:
    assert fp.fixed_proportion_to_u16(ONE) == 65535
    assert fp.fixed_proportion_to_u16(ONE // 2) == 32767  # floor(0.5 * 65535)
    assert fp.fixed_proportion_to_u16(-5) == 0
    assert fp.fixed_proportion_to_u16(2 * ONE) == 65535
    assert fp.u16_proportion_to_fixed(65535) == ONE
    assert fp.u16_ratio(32767) == (32767 << 32) // 65535
    for v in (0, 1, 12345, 65535):
        assert fp.fixed_proportion_to_u16(fp.u16_proportion_to_fixed(v)) in (v, v - 1)


def test_max_upscale_matches_subtensor_tests() -> None:
    # subtensor tests/math.rs test_vec_u16_max_upscale_to_u16
    assert fp.max_upscale_u16([]) == []
    assert fp.max_upscale_u16([0, 0]) == [0, 0]
    assert fp.max_upscale_u16([1]) == [65535]
    assert fp.max_upscale_u16([0, 1]) == [0, 65535]
    assert fp.max_upscale_u16([65534]) == [65535]
    assert fp.max_upscale_u16([0, 1, 65534]) == [0, 1, 65535]
    assert fp.max_upscale_u16([0, 1, 2, 3, 4, 65533, 65535]) == [0, 1, 2, 3, 4, 65533, 65535]
    assert fp.max_upscale_u16([32767, 32767]) == [65535, 65535]


def test_normalize() -> None:
    assert fp.normalize([0, 0]) == [0, 0]
    assert fp.normalize([1, 1, 2]) == [ONE // 4, ONE // 4, ONE // 2]
    assert sum(fp.normalize([1, 1, 1])) == 3 * (ONE // 3)  # floors: sums to slightly under 1
    s = fp.normalize_64([1 << 64, 3 << 64])
    assert s == [1 << 62, 3 << 62]


def test_exp_matches_real_exp_and_quirks() -> None:
    assert fp.exp_safe(0) == ONE
    assert fp.exp_safe(ONE) == fp.E_I32F32  # the I9F23 constant, not the series
    assert abs(fp.E_I32F32 / ONE - math.e) < 2**-22
    for v in (-5.0, -1.0, -0.25, 0.5, 2.0, 5.0, 10.0):
        got = fp.exp_safe(round(v * ONE)) / ONE
        assert math.isclose(got, math.exp(v), rel_tol=1e-6, abs_tol=1e-8), v
    assert fp.exp_safe(100 * ONE) == fp.exp_safe(20 * ONE)
    assert fp.exp_safe(-100 * ONE) == fp.exp_safe(-20 * ONE)
    assert fp.exp_safe(fp.I64_MIN) == fp.exp_safe(-20 * ONE)


def test_alpha_sigmoid_range_and_midpoint() -> None:
    lo, hi = fp.u16_ratio(6553), fp.u16_ratio(19660)
    # weight == consensus and weight >= bond: diff 0, sigmoid(-5) small -> close to alpha_low
    a = fp.alpha_sigmoid(ONE // 4, ONE // 4, 0, lo, hi, 1000)
    assert lo <= a <= hi and a - lo < (hi - lo) // 100
    a = fp.alpha_sigmoid(0, ONE, 0, lo, hi, 1000)  # diff 1 -> close to alpha_high
    assert hi - a < (hi - lo) // 100
    assert fp.alpha_sigmoid(0, ONE // 2, 0, lo, hi, 1000) == lo + fp.sat_mul(ONE // 2, hi - lo)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(prop, prop), min_size=1, max_size=50))
def test_np_mul_prop_and_np_mul_equal_scalar(pairs: list[tuple[int, int]]) -> None:
    a = np.array([p for p, _ in pairs], dtype=np.int64)
    b = np.array([q for _, q in pairs], dtype=np.int64)
    want = [fp.sat_mul(p, q) for p, q in pairs]
    assert fp.np_mul_prop(a, b).tolist() == want
    assert fp.np_mul(a, b).tolist() == want
    assert fp.np_mul(-a, b).tolist() == [fp.sat_mul(-p, q) for p, q in pairs]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=1 << 50), st.integers(min_value=0, max_value=1 << 50)),
        min_size=1,
        max_size=50,
    )
)
def test_np_div_equals_safe_div(pairs: list[tuple[int, int]]) -> None:
    x = np.array([p for p, _ in pairs], dtype=np.int64)
    d = np.array([q for _, q in pairs], dtype=np.int64)
    assert fp.np_div(x, d).tolist() == [fp.safe_div(p, q) for p, q in pairs]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=-30 * ONE, max_value=30 * ONE), min_size=1, max_size=40))
def test_np_exp_equals_scalar(xs: list[int]) -> None:
    assert fp.np_exp_safe(np.array(xs, dtype=np.int64)).tolist() == [fp.exp_safe(x) for x in xs]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(prop, prop, prop), min_size=1, max_size=30),
    st.integers(min_value=-32768, max_value=32767),
)
def test_np_alpha_sigmoid_equals_scalar(cwb: list[tuple[int, int, int]], steep: int) -> None:
    lo, hi = fp.u16_ratio(1638), fp.u16_ratio(60000)
    c, w, b = (np.array(col, dtype=np.int64) for col in zip(*cwb, strict=True))
    got = fp.np_alpha_sigmoid(c, w, b, lo, hi, steep).tolist()
    assert got == [fp.alpha_sigmoid(ci, wi, bi, lo, hi, steep) for ci, wi, bi in cwb]


def _median_reference(stake: list[int], scores: list[int], minority: int) -> int:
    """subtensor's mid-pivot partition search, transcribed literally (the spec's proof is checked by this)."""
    part = list(range(len(stake)))
    lo, hi = 0, sum(stake)
    while True:
        if not part:
            return 0
        if len(part) == 1:
            return scores[part[0]]
        pivot = scores[part[len(part) // 2]]
        lower = [i for i in part if scores[i] < pivot]
        upper = [i for i in part if scores[i] > pivot]
        lo_s = sum(stake[i] for i in lower)
        hi_s = sum(stake[i] for i in upper)
        if minority < lo + lo_s and lower:
            part, hi = lower, lo + lo_s
        elif hi - hi_s <= minority and upper:
            part, lo = upper, hi - hi_s
        else:
            return pivot


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(min_value=1, max_value=10**6), st.integers(min_value=0, max_value=8)),
             min_size=1, max_size=12),
    st.integers(min_value=0, max_value=65535),
)
def test_weighted_median_closed_form_equals_partition_search(rows: list[tuple[int, int]], kappa_u16: int) -> None:
    n = len(rows)
    stake = np.array(fp.normalize([s for s, _ in rows]), dtype=np.int64)
    scores = [v * (ONE // 8) for _, v in rows]  # few distinct values: plenty of ties
    weights = np.zeros((n, n), dtype=np.int64)
    weights[:, 0] = scores  # column 0 carries the scores, the rest are empty
    kappa = fp.u16_ratio(kappa_u16)
    got = _weighted_median_cols(stake, list(range(n)), weights, n, kappa)
    use = [int(s) for s in stake if s > 0]
    use_idx = [i for i in range(n) if stake[i] > 0]
    norm = fp.normalize(use)
    want = _median_reference(norm, [scores[i] for i in use_idx], sum(norm) - kappa) if use else 0
    assert int(got[0]) == want


def test_topk_nonzero_is_stable_ascending() -> None:
    assert _topk_nonzero([3, 3, 3], 2) == [False, True, True]
    assert _topk_nonzero([0, 5, 1], 5) == [False, True, True]  # n < k: every non-zero
    assert _topk_nonzero([0, 5, 1], 3) == [False, True, True]
    assert _topk_nonzero([4, 0, 4, 9], 2) == [False, False, True, True]


def test_np_exp_early_stop_matches_scalar_on_a_wide_spread() -> None:
    # Thousands of inputs across [-9, 9]: small ones finish the series early and are dropped, large ones
    # run to the end or take the scalar path; every result must still equal the scalar exp_safe.
    rnd = np.random.default_rng(11)
    xs = np.concatenate(
        [rnd.integers(-9 * ONE, 9 * ONE, size=3000), rnd.integers(-ONE // 64, ONE // 64, size=500), [0, ONE, -ONE]]
    ).astype(np.int64)
    assert fp.np_exp_safe(xs).tolist() == [fp.exp_safe(int(x)) for x in xs]


def test_np_div_broadcasts_like_safe_div() -> None:
    # The epoch divides matrices by row or column sums and scalars by vectors; zero divisors give 0, 1.0
    # numerators take the 2^64 correction, and quotients past I64 give 0 (safe_div's overflow).
    x = np.array([[0, 1, ONE, ONE - 1], [ONE, 7, 0, ONE]], dtype=np.int64)
    cols = np.array([ONE, 0, 2, 3], dtype=np.int64)
    rows = np.array([[ONE], [1 << 33]], dtype=np.int64)
    assert fp.np_div(x, cols[None, :]).tolist() == [
        [fp.safe_div(int(v), int(c)) for v, c in zip(r, cols, strict=True)] for r in x
    ]
    by_row = [[fp.safe_div(int(v), int(r[0])) for v in xr] for xr, r in zip(x, rows, strict=True)]
    assert fp.np_div(x, rows).tolist() == by_row
    d = np.array([1, 2, 4, ONE, 3, 0], dtype=np.int64)
    assert fp.np_div(np.int64(ONE), d).tolist() == [fp.safe_div(ONE, int(v)) for v in d]
    assert int(fp.np_div(np.int64(5), np.int64(7))) == fp.safe_div(5, 7)
