"""The Yuma epoch as protocol/economics/yuma.py computed it before the speed-up (tensornet main @ f4ac776), kept as the
oracle that tests/protocol/economics/test_yuma_reference.py compares the fast epoch with, bit for bit, and as the
baseline that
``python -m bench.yuma`` times beside it.  Not consensus code: nothing in protocol/ imports it.  It carries
its own copies of the numpy kernels it used then (``_old_*``), so the baseline stays the old path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain

import numpy as np

from protocol.economics import fixedpoint as fp
from protocol.economics.fixedpoint import (
    _NP_EXP_LIMIT,
    E_I32F32,
    EXP_SAFE_MAX,
    EXP_SAFE_MIN,
    FRAC_BITS,
    HALF,
    I64_MAX,
    ONE,
    U16_MAX,
    U64_ALL,
    Int64Array,
    exp_safe,
    from_int,
    np_mul,
    np_to_u16,
    sat_div,
)
from protocol.economics.yuma import (
    EpochInputs,
    EpochOutputs,
    EpochParams,
    SparseRow,
    SparseRowsIn,
    _check_len,
    _check_params,
    _ema_alpha_disabled,
    _hamilton,
    _topk_nonzero,
)

U64_MAX = (1 << 64) - 1







# ----------------------------------------------------------------------------------------------------------
# Input canonicalisation
# ----------------------------------------------------------------------------------------------------------


def _rows(rows: SparseRowsIn, n: int, what: str) -> list[np.ndarray]:
    """Sparse rows -> list of (k, 2) int64 arrays sorted by column, columns >= n dropped (as subtensor)."""
    out: list[np.ndarray] = [np.zeros((0, 2), dtype=np.int64) for _ in range(n)]
    if isinstance(rows, Mapping):
        items = [(int(i), r) for i, r in rows.items()]
    else:
        if len(rows) > n:
            raise ValueError(f"{what}: {len(rows)} rows for {n} uids")
        items = list(enumerate(rows))
    for i, row in items:
        if not 0 <= i < n:
            raise ValueError(f"{what}: row uid {i} out of range")
        if len(row) == 0:
            continue
        try:
            flat = np.fromiter(chain.from_iterable(row), dtype=np.int64, count=2 * len(row))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what}: row {i} is not a list of (uid, u16) pairs") from exc
        a = flat.reshape(-1, 2)
        if int(a[:, 1].min()) < 0 or int(a[:, 1].max()) > U16_MAX or int(a[:, 0].min()) < 0:
            raise ValueError(f"{what}: row {i} has a value outside u16 or a negative uid")
        if int(a[:, 0].max()) >= n:
            a = a[a[:, 0] < n]
        if a.shape[0] > 1 and not bool((a[1:, 0] > a[:-1, 0]).all()):
            a = a[np.argsort(a[:, 0], kind="stable")]
        if a.shape[0] > 1 and bool((a[1:, 0] == a[:-1, 0]).any()):
            raise ValueError(f"{what}: row {i} has duplicate uids")
        out[i] = a
    return out






# ----------------------------------------------------------------------------------------------------------
# Vector helpers (I32F32 bits in int64 arrays)
# ----------------------------------------------------------------------------------------------------------


def _normalize(x: np.ndarray) -> np.ndarray:
    """``inplace_normalize`` for non-negative proportions: x / sum(x), unchanged when the sum is 0."""
    s = int(x.sum())
    if s == 0:
        return x.copy()
    return _old_np_div(x, np.int64(s))


def _col_normalize(v: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``inplace_col_normalize_sparse``: divide present entries by their column sum where non-zero."""
    colsum = np.where(p, v, 0).sum(axis=0)
    return np.where(p, _old_np_div(v, colsum[None, :]), v)






# ----------------------------------------------------------------------------------------------------------
# The epoch
# ----------------------------------------------------------------------------------------------------------


def epoch(inputs: EpochInputs) -> EpochOutputs:
    """Run one Yuma Consensus epoch (subtensor ``epoch_mechanism``) and return every per-uid result.

    Long on purpose: this is the frozen pre-speed-up epoch, kept as the bit-for-bit oracle, and it follows
    ``epoch_mechanism`` step by step like protocol/economics/yuma.py does; splitting it would change the
    baseline that it exists to preserve."""
    p = inputs.params
    _check_params(p)
    n = len(inputs.stakes)
    block = int(inputs.block)
    for name in ("validator_permits", "last_update", "block_at_registration"):
        _check_len(name, getattr(inputs, name), n)
    if inputs.emission < 0 or inputs.emission > U64_MAX:
        raise ValueError("emission must be a u64")
    stakes_raw = [int(s) for s in inputs.stakes]
    if any(s < 0 for s in stakes_raw) or sum(stakes_raw) >= (1 << 63):
        raise ValueError("stakes must be non-negative and sum below 2^63 (I64F64 range)")
    owner = inputs.owner_uid if inputs.owner_uid is not None and 0 <= inputs.owner_uid < n else None
    last_update = [int(x) for x in inputs.last_update]
    registered = [int(x) for x in inputs.block_at_registration]
    w_rows = _rows(inputs.weights, n, "weights")
    b_rows = _rows(inputs.bonds, n, "bonds")

    # == Active & updated ==
    cutoff = int(p.activity_cutoff)
    inactive = [min(lu + cutoff, U64_MAX) < block for lu in last_update]
    active = tuple(not x for x in inactive)

    # == Stake: threshold, I64F64 normalisation, then I32F32 ==
    filtered = [
        0 if (i != owner and s < p.stake_threshold) else s for i, s in enumerate(stakes_raw)
    ]
    total = sum(filtered)
    stake32 = [((s << 32) // total) if total else 0 for s in filtered]  # floor(floor(s*2^64/T) / 2^32)

    # == Validator permits ==
    prev_permit = [bool(x) for x in inputs.validator_permits]
    if owner is not None:
        prev_permit[owner] = True
    new_permit = _topk_nonzero(stake32, int(p.max_allowed_validators))
    if owner is not None:
        new_permit[owner] = True

    # == Active stake (previous permits) ==
    act = np.array(
        [0 if (inactive[i] or not prev_permit[i]) else stake32[i] for i in range(n)], dtype=np.int64
    )
    active_stake = _normalize(act)

    # == Weights: permit rows, diagonal, outdated, commit-reveal masks ==
    commit: list[int | None] | None = None
    if p.commit_reveal_enabled and inputs.commit_blocks is not None:
        _check_len("commit_blocks", inputs.commit_blocks, n)
        commit = [None if c is None else int(c) for c in inputs.commit_blocks]
    reg_arr = np.array(registered, dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
    masked_w: list[np.ndarray] = []
    for i in range(n):
        a = w_rows[i]
        if not prev_permit[i] or a.shape[0] == 0:
            masked_w.append(a[:0])
            continue
        js = a[:, 0]
        keep = (js != i) | (i == owner)
        keep &= ~(last_update[i] <= reg_arr[js])
        ci = commit[i] if commit is not None else None
        if ci is not None:
            keep &= ~(ci < reg_arr[js])
        masked_w.append(a[keep])

    # == Bonds: drop columns registered since the last epoch ==
    if inputs.last_epoch_block == 0:
        last_tempo = max(0, block - int(p.tempo))
    else:
        last_tempo = int(inputs.last_epoch_block) + 1
    masked_b: list[np.ndarray] = []
    for i in range(n):
        a = b_rows[i]
        if a.shape[0]:
            a = a[~(last_tempo <= reg_arr[a[:, 0]])]
        masked_b.append(a)

    # Dense block over the rows that carry anything; every other row is empty throughout.
    rows = [i for i in range(n) if masked_w[i].shape[0] or masked_b[i].shape[0] or prev_permit[i]]
    r = len(rows)
    w_u16 = np.zeros((r, n), dtype=np.int64)
    w_p = np.zeros((r, n), dtype=bool)
    b_u16 = np.zeros((r, n), dtype=np.int64)
    b_p = np.zeros((r, n), dtype=bool)
    for k, i in enumerate(rows):
        a = masked_w[i]
        if a.shape[0]:
            w_u16[k, a[:, 0]] = a[:, 1]
            w_p[k, a[:, 0]] = True
        a = masked_b[i]
        if a.shape[0]:
            b_u16[k, a[:, 0]] = a[:, 1]
            b_p[k, a[:, 0]] = True
    s_rows = active_stake[rows] if r else np.zeros(0, dtype=np.int64)

    # Row-normalise weights: u16 << 32 over a sum of u16 << 32 is floor(u * 2^32 / sum(u)).
    row_sum = w_u16.sum(axis=1)
    weights = np.where(row_sum[:, None] > 0, _old_np_div(w_u16, row_sum[:, None]), w_u16 << 32)

    # == Consensus: stake-weighted median per column ==
    kappa = fp.u16_ratio(int(p.kappa))
    consensus = _weighted_median_cols(active_stake, rows, weights, n, kappa)

    # == Clip at consensus; validator trust; ranks; incentive ==
    cons_row = consensus[None, :]
    above = weights > cons_row
    clip_p = w_p & ~(above & (cons_row <= 0))
    clipped = np.where(clip_p, np.minimum(weights, cons_row), 0)
    vtrust = np.zeros(n, dtype=np.int64)
    if r:
        vtrust[rows] = clipped.sum(axis=1)
    ranks = _old_np_mul_prop(s_rows[:, None], clipped).sum(axis=0) if r else np.zeros(n, dtype=np.int64)
    preranks = (
        _old_np_mul_prop(s_rows[:, None], np.where(w_p, weights, 0)).sum(axis=0) if r else np.zeros(n, dtype=np.int64)
    )
    trust = _old_np_div(np.minimum(ranks, preranks), preranks)
    incentive = _normalize(ranks)

    # == Weights for bonds: W + penalty * (Wc - W) ==
    penalty = fp.u16_ratio(int(p.bonds_penalty))
    if penalty == 0:
        wfb, wfb_p = np.where(w_p, weights, 0), w_p
    elif penalty == ONE:
        wfb, wfb_p = clipped, clip_p
    else:
        v1 = np.where(w_p, weights, 0)
        v2 = clipped
        interp = v1 + np_mul(v2 - v1, np.int64(penalty))
        wfb_p = interp > 0
        wfb = np.where(wfb_p, interp, 0)

    # == Bonds and dividends ==
    if p.yuma3:
        ema, ema_p, dividends = _bonds_yuma3(p, wfb, wfb_p, b_u16, b_p, consensus, incentive, s_rows, rows, n)
        store = ema
    else:
        ema, ema_p, dividends = _bonds_yuma2(p, wfb, wfb_p, b_u16, b_p, incentive, s_rows, rows, n)
        colmax = np.where(ema_p, ema, 0).max(axis=0) if r else np.zeros(n, dtype=np.int64)
        store = np.where(ema_p & (colmax[None, :] != 0), _old_np_div(ema, colmax[None, :]), ema)
    bonds_out: list[SparseRow] = [()] * n
    if r:
        rk, cj = np.nonzero(ema_p)  # row-major: sorted by row, then column
        vals = np_to_u16(store[rk, cj]).tolist()
        cols = cj.tolist()
        bounds = np.searchsorted(rk, np.arange(r + 1)).tolist()
        for k, i in enumerate(rows):
            if new_permit[i]:
                lo, hi = bounds[k], bounds[k + 1]
                bonds_out[i] = tuple(zip(cols[lo:hi], vals[lo:hi], strict=True))

    # == Emission ==
    inc_l = [int(x) for x in incentive]
    div_l = [int(x) for x in dividends]
    combined = [fp.sat_add(a, b) for a, b in zip(inc_l, div_l, strict=True)]
    emission_sum = sum(combined)
    stake_l = stake32
    act_l = [int(x) for x in active_stake]
    if emission_sum != 0:
        n_server = [fp.safe_div(x, emission_sum) for x in inc_l]
        n_valid = [fp.safe_div(x, emission_sum) for x in div_l]
        n_comb = fp.normalize(combined)
        pay_server, pay_valid = inc_l, div_l
    else:
        n_server = inc_l
        fallback = stake_l if sum(act_l) == 0 else act_l
        n_valid = list(fallback)
        n_comb = list(fallback)
        pay_server, pay_valid = [0] * n, list(fallback)
    e = int(inputs.emission)
    st_server = tuple(fp.to_u64_sat(fp.saturate(x * e, 128)) for x in n_server)
    st_valid = tuple(fp.to_u64_sat(fp.saturate(x * e, 128)) for x in n_valid)
    st_comb = tuple(fp.to_u64_sat(fp.saturate(x * e, 128)) for x in n_comb)
    split = _hamilton(pay_server + pay_valid, e)
    miner_emission = tuple(split[:n])
    validator_emission = tuple(split[n:])
    unallocated = e - sum(split)

    def u16s(xs: Sequence[int] | np.ndarray) -> tuple[int, ...]:
        return tuple(np_to_u16(np.asarray(xs, dtype=np.int64)).tolist())

    inc_u16 = u16s(incentive)
    return EpochOutputs(
        active=active,
        stake_weight=u16s(stake32),
        consensus=u16s(consensus),
        incentive=inc_u16,
        dividends=u16s(dividends),
        validator_trust=u16s(vtrust),
        rank=inc_u16,
        trust=u16s(trust),
        validator_permits=tuple(new_permit),
        bonds=tuple(bonds_out),
        miner_emission=miner_emission,
        validator_emission=validator_emission,
        unallocated=unallocated,
        subtensor_server_emission=st_server,
        subtensor_validator_emission=st_valid,
        subtensor_emission=st_comb,
    )


def _weighted_median_cols(
    active_stake: np.ndarray, rows: list[int], weights: np.ndarray, n: int, kappa: int
) -> np.ndarray:
    """``weighted_median_col_sparse`` in closed form.

    subtensor's mid-pivot partition search returns, per column, the smallest score v (over the rows with
    positive active stake, absent entries scoring 0) whose cumulative normalised stake S(score <= v)
    exceeds minority = sum(stake) - kappa, or the largest score when none does (proof in spec/yuma.md).
    Sums are exact integers, so the sort-and-scan gives the identical value.
    """
    use = [i for i in range(n) if int(active_stake[i]) > 0]
    if not use:
        return np.zeros(n, dtype=np.int64)
    use_stake = _normalize(active_stake[use])
    minority = int(use_stake.sum()) - kappa
    row_of = {i: k for k, i in enumerate(rows)}
    scores = np.zeros((len(use), n), dtype=np.int64)
    for u, i in enumerate(use):
        k = row_of.get(i)
        if k is not None:
            scores[u] = weights[k]
    # One sort per column of (score << 30 | row): scores are <= 2^32, rows < 2^30, so the key fits int64;
    # ties order by row, which does not change any cumulative sum at a tie group's end.
    packed = np.sort((scores << 30) | np.arange(len(use), dtype=np.int64)[:, None], axis=0)
    sorted_scores = packed >> 30
    cum = np.cumsum(use_stake[packed & ((1 << 30) - 1)], axis=0)
    hit = cum > minority
    first = hit.argmax(axis=0)
    cols = np.arange(n)
    return np.where(hit.any(axis=0), sorted_scores[first, cols], sorted_scores[-1, cols])




def _bonds_yuma3(
    p: EpochParams,
    wfb: np.ndarray,
    wfb_p: np.ndarray,
    b_u16: np.ndarray,
    b_p: np.ndarray,
    consensus: np.ndarray,
    incentive: np.ndarray,
    s_rows: np.ndarray,
    rows: list[int],
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Yuma 3 bonds (fixed-proportion u16 / 65535) and dividends."""
    old = np.where(b_p, (b_u16 << 32) // U16_MAX, 0)
    if p.liquid_alpha_enabled and bool((consensus != 0).any()):
        lo = fp.u16_ratio(int(p.alpha_low))
        hi = fp.u16_ratio(int(p.alpha_high))
        cons = np.broadcast_to(consensus[None, :], wfb.shape)
        alpha = np.zeros_like(wfb)
        sel = wfb_p
        alpha[sel] = _old_np_alpha_sigmoid(
            cons[sel], wfb[sel], old[sel], lo, hi, int(p.alpha_sigmoid_steepness)
        )
        decayed = _old_np_mul_prop(ONE - alpha, old)
        inc = _old_np_mul_prop(alpha, wfb)
        val = np.minimum(decayed + inc, ONE)
        ema_p = wfb_p & (val > 0)
        ema = np.where(ema_p, val, 0)
    else:
        alpha = _ema_alpha_disabled(p)
        acc = np.where(wfb_p, _old_np_mul_prop(np.int64(alpha), wfb), 0) + np.where(
            b_p, _old_np_mul_prop(np.int64(ONE - alpha), old), 0
        )
        ema_p = acc > 0
        ema = np.where(ema_p, acc, 0)
    ema_norm = _col_normalize(ema, ema_p)
    tbpv = _old_np_mul_prop(ema_norm, incentive[None, :]).sum(axis=1) if len(rows) else np.zeros(0, dtype=np.int64)
    div_rows = _old_np_mul_prop(tbpv, s_rows)
    dividends = np.zeros(n, dtype=np.int64)
    if rows:
        dividends[rows] = div_rows
    return ema, ema_p, _normalize(dividends)


def _bonds_yuma2(
    p: EpochParams,
    wfb: np.ndarray,
    wfb_p: np.ndarray,
    b_u16: np.ndarray,
    b_p: np.ndarray,
    incentive: np.ndarray,
    s_rows: np.ndarray,
    rows: list[int],
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Legacy Yuma (2) bonds: column-normalised EMA of stake-weighted weights, and dividends."""
    colsum = np.where(b_p, b_u16, 0).sum(axis=0)
    bonds = np.where(b_p, np.where(colsum[None, :] != 0, _old_np_div(b_u16, colsum[None, :]), b_u16 << 32), 0)
    delta = np.where(wfb_p, _old_np_mul_prop(wfb, s_rows[:, None]), 0)
    delta = _col_normalize(delta, wfb_p)
    alpha = _ema_alpha_disabled(p)
    acc = np.where(wfb_p, _old_np_mul_prop(np.int64(alpha), delta), 0) + np.where(
        b_p, _old_np_mul_prop(np.int64(ONE - alpha), bonds), 0
    )
    ema_p = acc > 0
    ema = _col_normalize(np.where(ema_p, acc, 0), ema_p)
    div_rows = _old_np_mul_prop(incentive[None, :], ema).sum(axis=1) if rows else np.zeros(0, dtype=np.int64)
    dividends = np.zeros(n, dtype=np.int64)
    if rows:
        dividends[rows] = div_rows
    return ema, ema_p, _normalize(dividends)


# ----------------------------------------------------------------------------------------------------------
# The numpy kernels as they were
# ----------------------------------------------------------------------------------------------------------


def _old_np_mul_prop(a: Int64Array, b: Int64Array) -> Int64Array:
    """floor(a * b / 2^32) for proportions 0 <= a, b <= 1.0 (2^32), the epoch's hot product.

    In uint64 the product is exact except for 1.0 * 1.0 = 2^64, which wraps to 0; bit 32 of ``a & b`` is
    set exactly in that case, and adds the missing 2^32 back.  Callers guarantee the range.
    """
    au = np.asarray(a, dtype=np.int64).view(np.uint64)
    bu = np.asarray(b, dtype=np.int64).view(np.uint64)
    r = ((au * bu) >> np.uint64(32)) + (((au & bu) >> np.uint64(32)) << np.uint64(32))
    return r.view(np.int64)


def _old_np_div(x: Int64Array | int, d: Int64Array | int) -> Int64Array:
    """np_div as it was: its uint64 path for numerators up to 1.0 allocated a temporary per step."""
    x = np.asarray(x, dtype=np.int64)
    d = np.asarray(d, dtype=np.int64)
    if x.size and (int(x.min()) < 0 or int(d.min()) < 0):
        raise ValueError("np_div expects non-negative operands")
    if x.size == 0 or int(x.max()) <= ONE:
        # fast path for proportions: x * 2^32 fits in uint64 except x == 1.0, where the numerator 2^64 is
        # replaced by 2^64 - 1 and the quotient corrected by one when d divides 2^64 (a power of two).
        xu = x.view(np.uint64) if x.ndim else x.reshape(1).view(np.uint64)
        du = np.where(d == 0, 1, d).astype(np.uint64)
        is_one = xu == np.uint64(ONE)
        num = np.where(is_one, np.uint64(U64_ALL), xu << np.uint64(32))
        q = num // du
        q = q + (is_one & ((du & (du - np.uint64(1))) == 0)).astype(np.uint64)
        overflow = q > np.uint64(I64_MAX)  # checked_div fails: safe_div gives 0
        res = np.where((d == 0) | overflow, 0, q.astype(np.int64))
        return res.reshape(np.broadcast_shapes(x.shape, d.shape))
    return fp.np_div(x, d)  # beyond 1.0: the two-step long division, unchanged since


def _old_np_exp_safe(x: Int64Array) -> Int64Array:
    """``exp_safe`` element-wise, bit-identical to :func:`exp_safe`.

    For |x| <= 8 the series runs vectorised (every term x^k/k! <= 8^8/8! < 2^9, so term bits <= 41 and
    operand bits <= 36); anything larger (only with very steep sigmoids) falls back to the scalar code.
    """
    x = np.asarray(x, dtype=np.int64)
    out = np.empty_like(x)
    small = np.abs(x) <= _NP_EXP_LIMIT
    if not bool(small.all()):
        for idx in np.flatnonzero(~small):
            out.flat[idx] = exp_safe(int(x.flat[idx]))
    xs = x[small]
    # Identical inputs give identical outputs: evaluate each distinct value once.
    uniq, inverse = np.unique(xs, return_inverse=True)
    op = np.abs(uniq)
    op_hi = op >> 16  # the series multiplies by the same operand every step: split it once (see np_mul)
    op_lo = op & 0xFFFF
    result = op + ONE
    term = op.copy()
    for i in range(2, FRAC_BITS):
        # floor(term * op / 2^32) then truncating / i; term < 2^41 and op < 2^36 keep this inside int64
        term = ((term * op_hi + ((term * op_lo) >> 16)) >> 16) // i
        result += term
    inv = _old_np_div(np.full_like(result, ONE), result)
    res = np.where(uniq < 0, inv, result)
    res = np.where(uniq == 0, ONE, res)
    res = np.where(uniq == ONE, E_I32F32, res)
    res = res[inverse.reshape(-1)]
    out[small] = res
    return out


def _old_np_alpha_sigmoid(
    consensus: Int64Array,
    weight: Int64Array,
    bond: Int64Array,
    alpha_low: int,
    alpha_high: int,
    steepness: int,
) -> Int64Array:
    """:func:`alpha_sigmoid` element-wise on proportions in [0, 1] (bit-identical)."""
    diff_buy = np.clip(weight - consensus, 0, ONE)
    diff_sell = np.clip(bond - weight, 0, ONE)
    combined = np.where(weight >= bond, diff_buy, diff_sell)
    k = sat_div(from_int(steepness), from_int(-100))
    arg = np_mul(combined - HALF, np.full_like(combined, k))
    e = _old_np_exp_safe(np.clip(arg, EXP_SAFE_MIN, EXP_SAFE_MAX))
    sigmoid = _old_np_div(np.full_like(e, ONE), ONE + e)
    alpha = alpha_low + np_mul(sigmoid, np.full_like(sigmoid, alpha_high - alpha_low))
    return np.maximum(np.minimum(alpha, alpha_high), alpha_low)
