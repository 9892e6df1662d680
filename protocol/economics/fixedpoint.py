"""Integer fixed-point arithmetic that reproduces substrate-fixed bit for bit.

Yuma Consensus must give the same answer on every machine, so nothing here touches a float.  Numbers are
plain Python ints holding the raw bits of a signed fixed-point type, exactly as ``substrate_fixed`` stores
them (encointer/substrate-fixed v0.6.0, the version subtensor pins):

* ``I32F32``: 64-bit signed, 32 fractional bits, the working type of the epoch (``ONE == 1 << 32``).
* ``I64F64``: 128-bit signed, 64 fractional bits, used for stake normalisation.
* ``I96F32``: 128-bit signed, 32 fractional bits, used to turn shares into emission units.

Rounding rules copied from substrate-fixed (read from its ``arith.rs`` and ``transcendental.rs``):

* multiplication is ``(a * b) >> frac`` on the double-width product: floor (towards -inf);
* division is ``(a << frac) / b`` with Rust integer division: truncation towards zero;
* fixed -> narrower fixed and fixed -> integer conversions drop bits: floor;
* ``round()`` rounds half away from zero;
* saturating ops clamp to the type's range, ``checked`` ops return ``None`` and ``safe_div`` returns 0 on
  a zero divisor or an overflow (subtensor's ``SafeDiv``).

The second half of the module holds numpy versions of the few element-wise kernels the epoch runs on
large matrices.  They operate on ``int64`` arrays of I32F32 bits and are exact, not approximations: every
product is split into 16-bit halves so no intermediate leaves int64 (bounds are stated per function).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

FRAC_BITS = 32
ONE = 1 << FRAC_BITS
HALF = 1 << (FRAC_BITS - 1)
U16_MAX = 0xFFFF

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
U64_ALL = (1 << 64) - 1
I128_MIN = -(1 << 127)
I128_MAX = (1 << 127) - 1

FRAC_BITS_64 = 64
ONE_64 = 1 << FRAC_BITS_64

# e as substrate-fixed's transcendental module holds it: U2F126 constant shifted to I9F23, then widened to
# I32F32.  exp(1) returns this value, not the series sum (a quirk we must reproduce).
_E_U2F126 = 0xADF8_5458_A2BB_4A9A_AFDC_5620_273D_3CF1
E_I32F32 = (_E_U2F126 >> 103) << (FRAC_BITS - 23)

Int64Array = npt.NDArray[np.int64]


# ----------------------------------------------------------------------------------------------------------
# Scalar primitives on raw bits
# ----------------------------------------------------------------------------------------------------------


def saturate(x: int, bits: int = 64) -> int:
    """Clamp to the range of a signed ``bits``-wide integer (the fixed type's storage)."""
    lo = -(1 << (bits - 1))
    hi = (1 << (bits - 1)) - 1
    return lo if x < lo else hi if x > hi else x


def _trunc_div(a: int, b: int) -> int:
    """Integer division rounding towards zero, as Rust's ``/`` does."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def sat_add(a: int, b: int, bits: int = 64) -> int:
    return saturate(a + b, bits)


def sat_sub(a: int, b: int, bits: int = 64) -> int:
    return saturate(a - b, bits)


def sat_mul(a: int, b: int, frac: int = FRAC_BITS, bits: int = 64) -> int:
    """Fixed-point product, floored, saturated (substrate-fixed ``saturating_mul``)."""
    return saturate((a * b) >> frac, bits)


def checked_mul(a: int, b: int, frac: int = FRAC_BITS, bits: int = 64) -> int | None:
    r = (a * b) >> frac
    return r if saturate(r, bits) == r else None


def checked_div(a: int, b: int, frac: int = FRAC_BITS, bits: int = 64) -> int | None:
    """Fixed-point quotient truncated towards zero; ``None`` on a zero divisor or overflow."""
    if b == 0:
        return None
    r = _trunc_div(a << frac, b)
    return r if saturate(r, bits) == r else None


def safe_div(a: int, b: int, frac: int = FRAC_BITS, bits: int = 64) -> int:
    """subtensor's ``SafeDiv::safe_div``: the quotient, or 0 when it does not exist."""
    r = checked_div(a, b, frac, bits)
    return 0 if r is None else r


def sat_div(a: int, b: int, frac: int = FRAC_BITS, bits: int = 64) -> int:
    """substrate-fixed ``saturating_div`` (a zero divisor is a caller bug, as it panics in Rust)."""
    if b == 0:
        raise ZeroDivisionError("fixed-point division by zero")
    return saturate(_trunc_div(a << frac, b), bits)


def from_int(v: int, frac: int = FRAC_BITS, bits: int = 64) -> int:
    """``saturating_from_num`` of an integer."""
    return saturate(v << frac, bits)


def to_int_floor(x: int, frac: int = FRAC_BITS) -> int:
    """``to_num::<integer>``: drop the fraction, rounding towards -inf."""
    return x >> frac


def to_u16_sat(x: int, frac: int = FRAC_BITS) -> int:
    """``saturating_to_num::<u16>``."""
    v = x >> frac
    return 0 if v < 0 else U16_MAX if v > U16_MAX else v


def to_u64_sat(x: int, frac: int = FRAC_BITS) -> int:
    """``saturating_to_num::<u64>``."""
    v = x >> frac
    return 0 if v < 0 else min(v, (1 << 64) - 1)


def round_half_away(x: int, frac: int = FRAC_BITS) -> int:
    """substrate-fixed ``round()`` to an integer value (returned as an integer, not as bits)."""
    half = 1 << (frac - 1)
    return (x + half) >> frac if x >= 0 else -((-x + half) >> frac)


def fixed64_to_fixed32(x: int) -> int:
    """I64F64 -> I32F32 (floor, saturating)."""
    return saturate(x >> (FRAC_BITS_64 - FRAC_BITS), 64)


def u16_to_fixed(x: int) -> int:
    """A u16 read as an I32F32 integer value."""
    return x << FRAC_BITS


def u16_proportion_to_fixed(x: int) -> int:
    """u16 / 65535 as I32F32: floor(x * 2^32 / 65535)."""
    return (x << FRAC_BITS) // U16_MAX


def fixed_proportion_to_u16(x: int) -> int:
    """floor(x * 65535) saturated to u16: how subtensor stores a proportion."""
    return to_u16_sat(sat_mul(x, U16_MAX << FRAC_BITS))


def u16_ratio(v: int) -> int:
    """A u16 hyperparameter (kappa, bonds penalty, alpha) divided by 65535 in I32F32."""
    return safe_div(v << FRAC_BITS, U16_MAX << FRAC_BITS)


def clamp(x: int, lo: int, hi: int) -> int:
    """subtensor ``clamp_value``: min with high first, then max with low."""
    return max(min(x, hi), lo)


def fsum(xs: Iterable[int]) -> int:
    """Plain sum; the epoch's sums stay far from the I32F32 bounds (see spec/yuma.md)."""
    return sum(xs)


def normalize(xs: Sequence[int]) -> list[int]:
    """``inplace_normalize``: divide by the sum unless the sum is zero."""
    s = sum(xs)
    if s == 0:
        return list(xs)
    return [safe_div(x, s) for x in xs]


def normalize_64(xs: Sequence[int]) -> list[int]:
    """``inplace_normalize_64`` on I64F64 bits."""
    s = sum(xs)
    if s == 0:
        return list(xs)
    return [safe_div(x, s, FRAC_BITS_64, 128) for x in xs]


def max_upscale_u16(values: Sequence[int]) -> list[int]:
    """``vec_u16_max_upscale_to_u16``: scale u16 weights so the largest becomes 65535 (set_weights storage).

    Two branches because subtensor divides before multiplying when the maximum exceeds 32768.
    """
    if not values:
        return []
    vmax = max(values)
    if vmax == 0:
        return [to_u16_sat(sat_mul(v << FRAC_BITS, U16_MAX << FRAC_BITS)) for v in values]
    out: list[int] = []
    if vmax > 32768:
        ratio = safe_div(U16_MAX << FRAC_BITS, vmax << FRAC_BITS)
        for v in values:
            r = round_half_away(sat_mul(v << FRAC_BITS, ratio))
            out.append(max(0, min(U16_MAX, r)))
    else:
        for v in values:
            r = round_half_away(safe_div(sat_mul(v << FRAC_BITS, U16_MAX << FRAC_BITS), vmax << FRAC_BITS))
            out.append(max(0, min(U16_MAX, r)))
    return out


# ----------------------------------------------------------------------------------------------------------
# Transcendental: exp and the liquid-alpha sigmoid
# ----------------------------------------------------------------------------------------------------------


def exp_fixed(x: int) -> int | None:
    """substrate-fixed ``transcendental::exp`` for I32F32 -> I32F32; ``None`` where it returns Err.

    A 30-term Taylor series (i = 2..31) on |x|, each term floored by the multiply and truncated by the
    divide, then inverted for negative input.  exp(0) = 1 and exp(1) = the I9F23 constant e.
    """
    if x == 0:
        return ONE
    if x == ONE:
        return E_I32F32
    neg = x < 0
    op = -x if neg else x
    if op > I64_MAX:
        return None
    result = op + ONE
    term = op
    for i in range(2, FRAC_BITS):
        term = checked_mul(term, op)
        if term is None:
            return None
        term = checked_div(term, i << FRAC_BITS)
        if term is None:
            return None
        result += term
        if result > I64_MAX:
            return None
    if neg:
        return checked_div(ONE, result)
    return result


EXP_SAFE_MIN = -20 * ONE
EXP_SAFE_MAX = 20 * ONE


def exp_safe(x: int) -> int:
    """subtensor ``exp_safe``: clamp the input to [-20, 20] before ``exp_fixed``."""
    x = clamp(x, EXP_SAFE_MIN, EXP_SAFE_MAX)
    r = exp_fixed(x)
    if r is None:
        return 0 if x <= 0 else I64_MAX
    return r


def sigmoid_exp_arg(steepness: int, combined_diff: int) -> int:
    """``(steepness / -100) * (diff - 0.5)`` exactly as subtensor's ``alpha_sigmoid`` builds it."""
    k = sat_div(from_int(steepness), from_int(-100))
    return sat_mul(k, sat_sub(combined_diff, HALF))


def alpha_sigmoid(
    consensus: int, weight: int, bond: int, alpha_low: int, alpha_high: int, steepness: int
) -> int:
    """Liquid alpha for one (validator, miner) bond, I32F32 in [alpha_low, alpha_high].

    ``steepness`` is the raw i16 hyperparameter; ``alpha_low``/``alpha_high`` are I32F32 bits.
    """
    diff_buy = clamp(sat_sub(weight, consensus), 0, ONE)
    diff_sell = clamp(sat_sub(bond, weight), 0, ONE)
    combined = diff_buy if weight >= bond else diff_sell
    e = exp_safe(sigmoid_exp_arg(steepness, combined))
    sigmoid = sat_div(ONE, sat_add(ONE, e))
    alpha = sat_add(alpha_low, sat_mul(sigmoid, sat_sub(alpha_high, alpha_low)))
    return clamp(alpha, alpha_low, alpha_high)


# ----------------------------------------------------------------------------------------------------------
# Exact numpy kernels on int64 arrays of I32F32 bits
# ----------------------------------------------------------------------------------------------------------

_DIV_BOUND = 1 << 46


def _max_bits(a: Int64Array) -> int:
    return int(np.abs(a).max()).bit_length() if a.size else 0


def np_mul(a: Int64Array | int, b: Int64Array | int, check: bool = True) -> Int64Array:
    """Element-wise I32F32 product floor(a * b / 2^32), exact in int64, any signs.

    Split b = bh * 2^16 + bl (bl in [0, 2^16)); then floor(ab / 2^32) = (a*bh + ((a*bl) >> 16)) >> 16.
    The partial products stay inside int64 when bits(a) + bits(b) <= 78 and bits(a) <= 46; this is checked
    unless the caller proves it (``check=False``).
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if check:
        ba = _max_bits(a)
        if ba > 46 or ba + _max_bits(b) > 78:
            raise OverflowError("np_mul operands out of range")
    bh = b >> 16
    bl = b & 0xFFFF
    return (a * bh + ((a * bl) >> 16)) >> 16


def np_mul_prop(a: Int64Array, b: Int64Array) -> Int64Array:
    """floor(a * b / 2^32) for proportions 0 <= a, b <= 1.0 (2^32), the epoch's hot product.

    In uint64 the product is exact except for 1.0 * 1.0 = 2^64, which wraps to 0; bit 32 of ``a & b`` is
    set exactly in that case, and adds the missing 2^32 back.  Callers guarantee the range.
    """
    au = np.asarray(a, dtype=np.int64).view(np.uint64)
    bu = np.asarray(b, dtype=np.int64).view(np.uint64)
    r = au * bu  # in place from here: two arrays instead of five
    r >>= np.uint64(32)
    wrap = au & bu
    wrap >>= np.uint64(32)
    wrap <<= np.uint64(32)
    r += wrap
    return r.view(np.int64)


def np_div(x: Int64Array | int, d: Int64Array | int) -> Int64Array:
    """Element-wise I32F32 quotient floor(x * 2^32 / d) for x >= 0, d >= 0 (``safe_div`` on proportions).

    Long division in two 16-bit steps, exact while x, d < 2^46 and the quotient < 2^46; the rare elements
    outside that box (huge exp values in steep sigmoids) are done with Python integers.  d == 0 gives 0, as
    ``safe_div`` does.
    """
    x = np.asarray(x, dtype=np.int64)
    d = np.asarray(d, dtype=np.int64)
    if x.size and (int(x.min()) < 0 or int(d.min()) < 0):
        raise ValueError("np_div expects non-negative operands")
    if x.size == 0 or int(x.max()) <= ONE:
        # fast path for proportions: x * 2^32 fits in uint64 except x == 1.0, where the numerator 2^64 is
        # replaced by 2^64 - 1 and the quotient corrected by one when d divides 2^64 (a power of two).
        # In place where it can be: the epoch divides whole matrices, and fresh temporaries cost more than
        # the division.
        out_shape = np.broadcast_shapes(x.shape, d.shape)
        xu = x.view(np.uint64) if x.ndim else x.reshape(1).view(np.uint64)
        shape = np.broadcast_shapes(xu.shape, d.shape)
        zero = d == 0
        any_zero = bool(zero.any())
        du = np.where(zero, 1, d).astype(np.uint64) if any_zero else d.astype(np.uint64)
        is_one = xu == np.uint64(ONE)
        any_one = bool(is_one.any())
        q = np.broadcast_to(xu << np.uint64(32), shape).copy() if xu.shape != shape else xu << np.uint64(32)
        if any_one:
            q[np.broadcast_to(is_one, shape)] = np.uint64(U64_ALL)
        q //= du
        if any_one:
            q += np.broadcast_to(is_one & ((du & (du - np.uint64(1))) == 0), shape)
        q[q > np.uint64(I64_MAX)] = 0  # checked_div fails: safe_div gives 0
        if any_zero:
            q[np.broadcast_to(zero, shape)] = 0
        return q.view(np.int64).reshape(out_shape)
    x, d = np.broadcast_arrays(x, d)
    big = (x >= _DIV_BOUND) | (d >= _DIV_BOUND)
    zero = d == 0
    dd = np.where(zero | big, 1, d)
    xx = np.where(big, 0, x)
    x1 = xx << 16
    q1 = x1 // dd
    r1 = x1 - q1 * dd
    huge = q1 >= _DIV_BOUND  # quotient too large for the two-step form: scalar path
    big = big | huge
    q1 = np.where(huge, 0, q1)
    q = (q1 << 16) + ((r1 << 16) // dd)
    out: Int64Array = np.where(zero, 0, q)
    if bool(big.any()):
        for idx in np.flatnonzero(big & ~zero):
            out.flat[idx] = safe_div(int(x.flat[idx]), int(d.flat[idx]))
    return out


def np_to_u16(x: Int64Array) -> Int64Array:
    """``fixed_proportion_to_u16`` element-wise: floor(x * 65535 / 2^32), clamped to [0, 65535]."""
    x = np.asarray(x, dtype=np.int64)
    if x.size and int(np.abs(x).max()) >= (1 << 46):
        raise OverflowError("np_to_u16 operand out of range")
    return np.clip((x * U16_MAX) >> FRAC_BITS, 0, U16_MAX)


_NP_EXP_LIMIT = 8 * ONE  # |x| <= 8: terms < 2^41 and x < 2^36, so np_mul's 78-bit budget holds


def _np_exp_series(op: Int64Array) -> Int64Array:
    """substrate-fixed's Taylor series (terms i = 2..31) for 0 <= op <= 8.0, element-wise.

    Each term is floor(term * op / 2^32) (np_mul's split product: term < 2^41 and op < 2^36 keep it inside
    int64) truncated by / i.  The arithmetic runs in place: fresh multi-megabyte temporaries cost more than
    the arithmetic itself.
    """
    result = op + ONE
    term = op.copy()
    op_hi = op >> 16  # the series multiplies by the same operand every step: split it once
    op_lo = op & 0xFFFF
    low = np.empty_like(term)
    for i in range(2, FRAC_BITS):
        np.multiply(term, op_lo, out=low)
        low >>= 16
        term *= op_hi
        term += low
        term >>= 16
        term //= i
        result += term
    return result


def np_exp_safe(x: Int64Array) -> Int64Array:
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
    if xs.size == 0:
        return out
    result = _np_exp_series(np.abs(xs))
    inv = np_div(np.int64(ONE), result)
    res = np.where(xs < 0, inv, result)
    res = np.where(xs == 0, ONE, res)
    res = np.where(xs == ONE, E_I32F32, res)
    out[small] = res
    return out


def np_alpha_sigmoid(
    consensus: Int64Array,
    weight: Int64Array,
    bond: Int64Array,
    alpha_low: int,
    alpha_high: int,
    steepness: int,
) -> Int64Array:
    """:func:`alpha_sigmoid` element-wise on proportions in [0, 1] (bit-identical).

    The result depends only on the combined difference, which is often exactly 0 (a weight at or below
    consensus): that value is computed once with the scalar code, the others vectorised.
    """
    # Proportions in [0, 1]: each difference is at most 1.0, so only the lower clamp can bite.
    combined = bond - weight
    np.maximum(combined, 0, out=combined)
    diff_buy = weight - consensus
    np.maximum(diff_buy, 0, out=diff_buy)
    np.copyto(combined, diff_buy, where=weight >= bond)
    nz = combined != 0
    out = np.full(combined.shape, alpha_sigmoid(0, 0, 0, alpha_low, alpha_high, steepness), dtype=np.int64)
    if not bool(nz.any()):
        return out
    c = combined[nz]
    k = sat_div(from_int(steepness), from_int(-100))
    arg = np_mul(c - HALF, np.int64(k))
    e = np_exp_safe(np.clip(arg, EXP_SAFE_MIN, EXP_SAFE_MAX))
    sigmoid = np_div(np.int64(ONE), ONE + e)
    alpha = alpha_low + np_mul(sigmoid, np.int64(alpha_high - alpha_low))
    out[nz] = np.maximum(np.minimum(alpha, alpha_high), alpha_low)
    return out
