"""Yuma Consensus: one epoch, pure, deterministic, integer fixed point.

This is subtensor's ``epoch_mechanism`` (sparse) re-derived in Python (opentensor/subtensor @ 14bc6f9f,
pallets/subtensor/src/epoch/run_epoch.rs and epoch/math.rs), with every intermediate held as I32F32 /
I64F64 / I96F32 raw bits (see protocol/economics/fixedpoint.py) so that the u16 outputs and bonds come out bit for bit
as subtensor stores them.  The normative text, the input and output formats and the deliberate deviations
are in spec/yuma.md.

The single public entry point is :func:`epoch`.  It reads nothing but its argument: no clock, no randomness,
no dict-order dependence.  Matrices are processed as dense ``int64`` blocks over the rows that carry any
weight or bond (the validators), using the exact kernels of fixedpoint; a value and a presence mask are kept
side by side because subtensor's sparse rows distinguish an explicit zero from an absent entry.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from protocol.economics import fixedpoint as fp
from protocol.economics.fixedpoint import ONE, U16_MAX, np_div, np_mul, np_mul_prop, np_to_u16

U64_MAX = (1 << 64) - 1

SparseRow = tuple[tuple[int, int], ...]
SparseRowsIn = Sequence[Sequence[tuple[int, int]]] | Mapping[int, Sequence[tuple[int, int]]]

__all__ = [
    "EpochParams",
    "EpochInputs",
    "EpochOutputs",
    "epoch",
    "activity_cutoff_blocks",
    "max_upscale_u16",
]

max_upscale_u16 = fp.max_upscale_u16


def activity_cutoff_blocks(factor_milli: int, tempo: int) -> int:
    """subtensor's ``get_activity_cutoff_blocks``: max(1, factor_milli * tempo // 1000)."""
    return max(1, (factor_milli * tempo) // 1000)


@dataclass(frozen=True)
class EpochParams:
    """Subnet hyperparameters the epoch reads, in subtensor's storage units (defaults: subtensor's)."""

    tempo: int = 360
    activity_cutoff: int = 5000  # blocks; see activity_cutoff_blocks
    kappa: int = 32767  # u16, consensus majority = kappa / 65535
    bonds_moving_average: int = 900_000  # parts per million
    bonds_penalty: int = U16_MAX  # u16
    liquid_alpha_enabled: bool = False
    alpha_low: int = 45875  # u16
    alpha_high: int = 58982  # u16
    alpha_sigmoid_steepness: int = 1000  # i16
    max_allowed_validators: int = 64
    yuma3: bool = True
    stake_threshold: int = 0  # stake units
    commit_reveal_enabled: bool = False


@dataclass(frozen=True)
class EpochInputs:
    """Everything one epoch reads.  Per-uid sequences all have length n = len(stakes).

    weights / bonds: one sparse row per uid of (uid, u16) pairs (a sequence of rows or a mapping uid -> row;
    missing uids have empty rows).  Weights are stored row-max-upscaled as set_weights leaves them (see
    :func:`max_upscale_u16`); bonds as the previous epoch returned them.  validator_permits are the PREVIOUS
    epoch's permits.  commit_blocks[i] is the block of i's earliest unexpired weight commit (None: none);
    it is read only when params.commit_reveal_enabled.  last_epoch_block is the block of the previous epoch
    (0: unknown, then block - tempo is used, as subtensor does).
    """

    block: int
    stakes: Sequence[int]
    weights: SparseRowsIn
    bonds: SparseRowsIn
    validator_permits: Sequence[bool]
    last_update: Sequence[int]
    block_at_registration: Sequence[int]
    emission: int
    params: EpochParams = field(default_factory=EpochParams)
    owner_uid: int | None = None
    last_epoch_block: int = 0
    commit_blocks: Sequence[int | None] | None = None


@dataclass(frozen=True)
class EpochOutputs:
    """Per-uid results.  u16 fields are floor(x * 65535) as subtensor stores them.

    miner_emission + validator_emission sum exactly to the epoch emission (minus ``unallocated``, which is
    non-zero only when no uid holds any stake).  The ``subtensor_*`` fields are subtensor's own floored
    emission figures, kept for audit and for the test vectors; they lose dust and are not paid out.
    """

    active: tuple[bool, ...]
    stake_weight: tuple[int, ...]
    consensus: tuple[int, ...]
    incentive: tuple[int, ...]
    dividends: tuple[int, ...]
    validator_trust: tuple[int, ...]
    rank: tuple[int, ...]
    trust: tuple[int, ...]
    validator_permits: tuple[bool, ...]
    bonds: tuple[SparseRow, ...]
    miner_emission: tuple[int, ...]
    validator_emission: tuple[int, ...]
    unallocated: int
    subtensor_server_emission: tuple[int, ...]
    subtensor_validator_emission: tuple[int, ...]
    subtensor_emission: tuple[int, ...]


# ----------------------------------------------------------------------------------------------------------
# Input canonicalisation
# ----------------------------------------------------------------------------------------------------------


def _flat_rows(rows: SparseRowsIn, n: int, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse rows -> (row, column, value) int64 arrays sorted by (row, column), columns >= n dropped (as
    subtensor's loaders do).  One conversion for all rows: the tuples are read once, in C."""
    if isinstance(rows, Mapping):
        items = sorted(((int(i), r) for i, r in rows.items()), key=lambda t: t[0])
    else:
        if len(rows) > n:
            raise ValueError(f"{what}: {len(rows)} rows for {n} uids")
        items = list(enumerate(rows))
    ids: list[int] = []
    lens: list[int] = []
    body: list[Sequence[tuple[int, int]]] = []
    for i, row in items:
        if not 0 <= i < n:
            raise ValueError(f"{what}: row uid {i} out of range")
        if len(row):
            ids.append(i)
            lens.append(len(row))
            body.append(row)
    total = sum(lens)
    if total == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    try:
        flat = np.fromiter(chain.from_iterable(chain.from_iterable(body)), dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{what}: a row is not a list of (uid, u16) pairs") from exc
    if flat.size != 2 * total:
        raise ValueError(f"{what}: a row is not a list of (uid, u16) pairs ({flat.size} numbers in {total} pairs)")
    pairs = flat.reshape(-1, 2)
    r = np.repeat(np.array(ids, dtype=np.int64), lens)
    c = pairs[:, 0]
    v = pairs[:, 1]
    bad = (v < 0) | (v > U16_MAX) | (c < 0)
    if bool(bad.any()):
        raise ValueError(f"{what}: row {int(r[int(bad.argmax())])} has a value outside u16 or a negative uid")
    if int(c.max()) >= n:
        keep = c < n
        r, c, v = r[keep], c[keep], v[keep]
    key = r * n + c
    if key.size > 1:
        step = np.diff(key)
        if not bool((step > 0).all()):
            order = np.argsort(key, kind="stable")
            r, c, v, key = r[order], c[order], v[order], key[order]
            step = np.diff(key)
            if not bool((step > 0).all()):
                raise ValueError(f"{what}: row {int(r[int((step == 0).argmax())])} has duplicate uids")
    return r, c, v


def _check_len(name: str, seq: Sequence[object], n: int) -> None:
    if len(seq) != n:
        raise ValueError(f"{name}: length {len(seq)} != n {n}")


def _check_params(p: EpochParams) -> None:
    """Reject hyperparameters subtensor's setters could never store (keeps every proportion in [0, 1])."""
    for name in ("kappa", "bonds_penalty", "alpha_low", "alpha_high"):
        v = getattr(p, name)
        if not 0 <= v <= U16_MAX:
            raise ValueError(f"{name} must be a u16")
    if not 0 <= p.bonds_moving_average <= 1_000_000:
        raise ValueError("bonds_moving_average must be in [0, 1_000_000]")
    if not -32768 <= p.alpha_sigmoid_steepness <= 32767:
        raise ValueError("alpha_sigmoid_steepness must be an i16")
    if p.tempo < 0 or p.activity_cutoff < 0 or p.max_allowed_validators < 0 or p.stake_threshold < 0:
        raise ValueError("tempo, activity_cutoff, max_allowed_validators, stake_threshold must be >= 0")


# ----------------------------------------------------------------------------------------------------------
# Vector helpers (I32F32 bits in int64 arrays)
# ----------------------------------------------------------------------------------------------------------


def _normalize(x: np.ndarray) -> np.ndarray:
    """``inplace_normalize`` for non-negative proportions: x / sum(x), unchanged when the sum is 0."""
    s = int(x.sum())
    if s == 0:
        return x.copy()
    return np_div(x, np.int64(s))


def _col_normalize(v: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``inplace_col_normalize_sparse``: divide present entries by their column sum where non-zero.

    Callers keep ``v`` at 0 wherever ``p`` is False, so absent entries neither add to a sum nor change
    (0 / s = 0, and np_div gives 0 for a zero sum, whose present entries are all 0 as well)."""
    return np_div(v, v.sum(axis=0)[None, :])


def _topk_nonzero(stake: list[int], k: int) -> list[bool]:
    """``is_topk_nonzero``: stable ascending sort, the n-k smallest lose (ties: the lower uid loses)."""
    n = len(stake)
    result = [s != 0 for s in stake]
    if n < k:
        return result
    order = sorted(range(n), key=lambda i: stake[i])  # Python's sort is stable, as Rust's sort_by_key
    for i in order[: n - k]:
        result[i] = False
    return result


def _hamilton(weights: list[int], total: int) -> list[int]:
    """Split ``total`` units in proportion to non-negative integer ``weights``, exactly.

    Largest-remainder method: floor shares, then one unit each to the largest remainders; ties go to the
    larger weight, then the lower index.  Sum(result) == total whenever sum(weights) > 0.
    """
    w_sum = sum(weights)
    if w_sum == 0 or total == 0:
        return [0] * len(weights)
    shares = [total * w // w_sum for w in weights]
    left = total - sum(shares)
    if left:
        rema = [(total * w) % w_sum for w in weights]
        ranked = sorted(zip([-x for x in rema], [-w for w in weights], range(len(weights)), strict=True))
        for _, _, k in ranked[:left]:
            shares[k] += 1
    return shares


# ----------------------------------------------------------------------------------------------------------
# The epoch
# ----------------------------------------------------------------------------------------------------------


def epoch(inputs: EpochInputs) -> EpochOutputs:
    """Run one Yuma Consensus epoch (subtensor ``epoch_mechanism``) and return every per-uid result.

    Long on purpose: it transcribes ``epoch_mechanism`` step by step, in its order (the ``# ==`` headings
    follow subtensor's), so that it can be read beside the Rust line by line; the steps share most of
    their intermediate values, and the per-step kernels already live in the helpers above."""
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
    wr, wc, wv = _flat_rows(inputs.weights, n, "weights")
    br, bc, bv = _flat_rows(inputs.bonds, n, "bonds")

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

    # == Weights: permit rows, diagonal, outdated, commit-reveal masks (on the flat entries) ==
    reg_arr = np.array(registered, dtype=np.int64)
    prev_arr = np.array(prev_permit, dtype=bool)
    commit = None
    if p.commit_reveal_enabled and inputs.commit_blocks is not None:
        _check_len("commit_blocks", inputs.commit_blocks, n)
        commit = list(inputs.commit_blocks)
    if wr.size:
        keep = prev_arr[wr] & ((wc != wr) | (wr == (-1 if owner is None else owner)))
        keep &= np.array(last_update, dtype=np.int64)[wr] > reg_arr[wc]
        if commit is not None:
            has = np.array([c is not None for c in commit], dtype=bool)
            cb = np.array([0 if c is None else int(c) for c in commit], dtype=np.int64)
            keep &= ~(has[wr] & (cb[wr] < reg_arr[wc]))
        wr, wc, wv = wr[keep], wc[keep], wv[keep]

    # == Bonds: drop columns registered since the last epoch ==
    if inputs.last_epoch_block == 0:
        last_tempo = max(0, block - int(p.tempo))
    else:
        last_tempo = int(inputs.last_epoch_block) + 1
    if br.size:
        keep = reg_arr[bc] < last_tempo
        br, bc, bv = br[keep], bc[keep], bv[keep]

    # Dense block over the rows that carry anything; every other row is empty throughout.
    present = prev_arr.copy()
    present[wr] = True
    present[br] = True
    rows = np.flatnonzero(present)
    r = len(rows)
    pos = np.full(n, -1, dtype=np.int64)
    pos[rows] = np.arange(r, dtype=np.int64)
    w_u16 = np.zeros((r, n), dtype=np.int64)
    w_p = np.zeros((r, n), dtype=bool)
    b_u16 = np.zeros((r, n), dtype=np.int64)
    b_p = np.zeros((r, n), dtype=bool)
    wk, bk = pos[wr], pos[br]
    w_u16[wk, wc] = wv
    w_p[wk, wc] = True
    b_u16[bk, bc] = bv
    b_p[bk, bc] = True
    s_rows = active_stake[rows] if r else np.zeros(0, dtype=np.int64)

    # Row-normalise weights: u16 << 32 over a sum of u16 << 32 is floor(u * 2^32 / sum(u)).
    # Absent entries are 0 and stay 0 (np_div gives 0 for a zero row sum, whose entries are all 0 anyway).
    weights = np_div(w_u16, w_u16.sum(axis=1)[:, None])

    # == Consensus: stake-weighted median per column ==
    kappa = fp.u16_ratio(int(p.kappa))
    consensus = _weighted_median_cols(active_stake, rows, weights, n, kappa)

    # == Clip at consensus; validator trust; ranks; incentive ==
    # Consensus and weights are >= 0 and absent weights are 0, so min(W, C) is already 0 off the clipped
    # support; the support itself drops entries above a zero consensus (explicit zeros stay present).
    cons_row = consensus[None, :]
    clip_p = w_p & ~((weights > 0) & (cons_row == 0))
    clipped = np.minimum(weights, cons_row)
    vtrust = np.zeros(n, dtype=np.int64)
    if r:
        vtrust[rows] = clipped.sum(axis=1)
    ranks = np_mul_prop(s_rows[:, None], clipped).sum(axis=0) if r else np.zeros(n, dtype=np.int64)
    preranks = np_mul_prop(s_rows[:, None], weights).sum(axis=0) if r else np.zeros(n, dtype=np.int64)
    trust = np_div(np.minimum(ranks, preranks), preranks)
    incentive = _normalize(ranks)

    # == Weights for bonds: W + penalty * (Wc - W) ==
    penalty = fp.u16_ratio(int(p.bonds_penalty))
    if penalty == 0:
        wfb, wfb_p = weights, w_p
    elif penalty == ONE:
        wfb, wfb_p = clipped, clip_p
    else:
        interp = weights + np_mul(clipped - weights, np.int64(penalty))
        wfb_p = interp > 0
        wfb = np.where(wfb_p, interp, 0)

    # == Bonds and dividends ==
    if p.yuma3:
        ema, ema_p, dividends = _bonds_yuma3(p, wfb, wfb_p, b_u16, b_p, consensus, incentive, s_rows, rows, n)
        store = ema
    else:
        ema, ema_p, dividends = _bonds_yuma2(p, wfb, wfb_p, b_u16, b_p, incentive, s_rows, rows, n)
        colmax = np.where(ema_p, ema, 0).max(axis=0) if r else np.zeros(n, dtype=np.int64)
        store = np.where(ema_p & (colmax[None, :] != 0), np_div(ema, colmax[None, :]), ema)
    bonds_out = _bond_rows(ema_p, store, rows, new_permit, n)

    # == Emission ==
    # Every figure here is a proportion in [0, 1] (I32F32 bits <= 2^32), so substrate-fixed's saturating
    # add/div and the I96F32 product never saturate: safe_div(x, s) = (x << 32) // s for 0 <= x <= s, and
    # to_u64_sat(x * e) = min((x * e) >> 32, U64_MAX) for e < 2^64.
    inc_l = incentive.tolist()
    div_l = dividends.tolist()
    combined = [a + b for a, b in zip(inc_l, div_l, strict=True)]
    emission_sum = sum(combined)
    stake_l = stake32
    act_l = active_stake.tolist()
    if emission_sum != 0:
        n_server = [(x << 32) // emission_sum for x in inc_l]
        n_valid = [(x << 32) // emission_sum for x in div_l]
        n_comb = [(x << 32) // emission_sum for x in combined]
        pay_server, pay_valid = inc_l, div_l
    else:
        n_server = inc_l
        fallback = stake_l if sum(act_l) == 0 else act_l
        n_valid = list(fallback)
        n_comb = list(fallback)
        pay_server, pay_valid = [0] * n, list(fallback)
    e = int(inputs.emission)
    st_server = tuple(min((x * e) >> 32, U64_MAX) for x in n_server)
    st_valid = tuple(min((x * e) >> 32, U64_MAX) for x in n_valid)
    st_comb = tuple(min((x * e) >> 32, U64_MAX) for x in n_comb)
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


def _bond_rows(
    ema_p: np.ndarray, store: np.ndarray, rows: np.ndarray, new_permit: list[bool], n: int
) -> list[SparseRow]:
    """The stored bond rows: for each uid with a new permit, its (column, u16) pairs sorted by column,
    entries floored to 0 kept; every other uid gets an empty row.  Building the ~n x validators tuples
    is most of the cost at large sizes, so the cyclic GC (which they cannot feed: no cycles) is paused."""
    out: list[SparseRow] = [()] * n
    keep_rows = np.array([new_permit[i] for i in rows.tolist()], dtype=bool)
    if not bool(keep_rows.any()):
        return out
    kept = ema_p & keep_rows[:, None]
    with _gc_paused():
        counts = kept.sum(axis=1).tolist()
        cols = np.nonzero(kept)[1].tolist()  # row-major order, as the boolean gather below
        pairs = list(zip(cols, np_to_u16(store[kept]).tolist(), strict=True))
        lo = 0
        for i, cnt in zip(rows.tolist(), counts, strict=True):
            if new_permit[i]:
                out[i] = tuple(pairs[lo : lo + cnt])
            lo += cnt
    return out


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (if it runs) while a block allocates many acyclic objects."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _weighted_median_cols(
    active_stake: np.ndarray, rows: Sequence[int] | np.ndarray, weights: np.ndarray, n: int, kappa: int
) -> np.ndarray:
    """``weighted_median_col_sparse`` in closed form.

    subtensor's mid-pivot partition search returns, per column, the smallest score v (over the rows with
    positive active stake, absent entries scoring 0) whose cumulative normalised stake S(score <= v)
    exceeds minority = sum(stake) - kappa, or the largest score when none does (proof in spec/yuma.md).
    Sums are exact integers, so the sort-and-scan gives the identical value.  ``weights`` holds the rows
    listed in ``rows``; a uid with stake but no row scores 0 everywhere.
    """
    use = np.flatnonzero(active_stake[:n] > 0)
    if use.size == 0:
        return np.zeros(n, dtype=np.int64)
    use_stake = _normalize(active_stake[use])
    minority = int(use_stake.sum()) - kappa
    pos = np.full(n, -1, dtype=np.int64)
    pos[np.asarray(rows, dtype=np.int64)] = np.arange(len(rows), dtype=np.int64)
    k = pos[use]
    # One row per column (transposed, so each sort and cumulative sum runs over contiguous memory) of
    # (score << 30 | index into use): scores are <= 2^32 and indices < 2^30, so the key fits int64.  Ties
    # order by index, which does not change any cumulative sum at a tie group's end.
    scores = np.zeros((n, use.size), dtype=np.int64)
    have = k >= 0
    if bool(have.any()):
        scores[:, have] = weights[k[have]].T
    packed = (scores << 30) | np.arange(use.size, dtype=np.int64)[None, :]
    packed.sort(axis=1)
    cum = np.cumsum(use_stake[packed & ((1 << 30) - 1)], axis=1)
    hit = cum > minority
    first = hit.argmax(axis=1)
    cols = np.arange(n)
    sorted_scores = packed >> 30
    return np.where(hit.any(axis=1), sorted_scores[cols, first], sorted_scores[:, -1])


def _ema_alpha_disabled(p: EpochParams) -> int:
    """1 - bonds_moving_average / 1e6, via I64F64 then floored to I32F32 (compute_disabled_liquid_alpha)."""
    bma64 = fp.safe_div(int(p.bonds_moving_average) << 64, 1_000_000 << 64, 64, 128)
    return fp.sat_sub(ONE, fp.fixed64_to_fixed32(bma64))


def _bonds_yuma3(
    p: EpochParams,
    wfb: np.ndarray,
    wfb_p: np.ndarray,
    b_u16: np.ndarray,
    b_p: np.ndarray,
    consensus: np.ndarray,
    incentive: np.ndarray,
    s_rows: np.ndarray,
    rows: np.ndarray,
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Yuma 3 bonds (fixed-proportion u16 / 65535) and dividends."""
    # wfb is 0 wherever wfb_p is False, and b_u16 wherever b_p is: no masking needed below.
    old = b_u16 << 32
    old //= U16_MAX
    if p.liquid_alpha_enabled and bool((consensus != 0).any()):
        lo = fp.u16_ratio(int(p.alpha_low))
        hi = fp.u16_ratio(int(p.alpha_high))
        # Only entries present in the weights for bonds survive, so alpha is needed there only.
        sel = wfb_p
        w_s, o_s = wfb[sel], old[sel]
        cons = np.broadcast_to(consensus[None, :], wfb.shape)[sel]
        alpha = fp.np_alpha_sigmoid(cons, w_s, o_s, lo, hi, int(p.alpha_sigmoid_steepness))
        val = np_mul_prop(ONE - alpha, o_s)
        val += np_mul_prop(alpha, w_s)
        np.minimum(val, ONE, out=val)
        ema = np.zeros_like(wfb)
        ema[sel] = val
    else:
        alpha = _ema_alpha_disabled(p)
        ema = np_mul_prop(np.int64(alpha), wfb)
        ema += np_mul_prop(np.int64(ONE - alpha), old)
    ema_p = ema > 0
    ema_norm = _col_normalize(ema, ema_p)
    tbpv = np_mul_prop(ema_norm, incentive[None, :]).sum(axis=1) if len(rows) else np.zeros(0, dtype=np.int64)
    div_rows = np_mul_prop(tbpv, s_rows)
    dividends = np.zeros(n, dtype=np.int64)
    if len(rows):
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
    rows: np.ndarray,
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Legacy Yuma (2) bonds: column-normalised EMA of stake-weighted weights, and dividends."""
    colsum = np.where(b_p, b_u16, 0).sum(axis=0)
    bonds = np.where(b_p, np.where(colsum[None, :] != 0, np_div(b_u16, colsum[None, :]), b_u16 << 32), 0)
    delta = np.where(wfb_p, np_mul_prop(wfb, s_rows[:, None]), 0)
    delta = _col_normalize(delta, wfb_p)
    alpha = _ema_alpha_disabled(p)
    acc = np.where(wfb_p, np_mul_prop(np.int64(alpha), delta), 0) + np.where(
        b_p, np_mul_prop(np.int64(ONE - alpha), bonds), 0
    )
    ema_p = acc > 0
    ema = _col_normalize(np.where(ema_p, acc, 0), ema_p)
    div_rows = np_mul_prop(incentive[None, :], ema).sum(axis=1) if len(rows) else np.zeros(0, dtype=np.int64)
    dividends = np.zeros(n, dtype=np.int64)
    if len(rows):
        dividends[rows] = div_rows
    return ema, ema_p, _normalize(dividends)
