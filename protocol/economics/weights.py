"""Weight-commit hashing and the pure parts of subtensor's set_weights checks.

The commit hash is BLAKE2b-256 over the canonical CBOR array
    ["tensornet/weights-commit/v1", hotkey, netuid, [uids...], [values...], salt, version_key]
so a validator can compute it offline and the chain recomputes it byte for byte at reveal.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol import codec, crypto
from protocol.economics.fixedpoint import U16_MAX, max_upscale_u16, u16_ratio

COMMIT_DOMAIN = "tensornet/weights-commit/v1"
MAX_UNREVEALED_COMMITS = 10


def weights_commit_hash(
    hotkey: bytes, netuid: int, uids: Sequence[int], values: Sequence[int], salt: bytes, version_key: int
) -> bytes:
    """The 32-byte hash a validator commits with commit_weights and the chain checks at reveal."""
    body = codec.encode([COMMIT_DOMAIN, bytes(hotkey), netuid, list(uids), list(values), bytes(salt), version_key])
    return crypto.digest(body)


def is_self_weight(uid: int, uids: Sequence[int], values: Sequence[int]) -> bool:
    """A lone weight on oneself: allowed without a permit and below min_allowed_weights (subtensor)."""
    return len(values) == 1 and len(uids) >= 1 and uids[0] == uid


def first_duplicate(uids: Sequence[int]) -> int | None:
    seen: set[int] = set()
    for u in uids:
        if u in seen:
            return u
        seen.add(u)
    return None


def upscale(values: Sequence[int]) -> tuple[int, ...]:
    """Stored form: max-upscaled so the largest weight is 65535 (subtensor's vec_u16_max_upscale_to_u16)."""
    return tuple(max_upscale_u16(list(values)))


def normalised_max(values: Sequence[int]) -> int:
    """The largest weight's share of the row in I32F32 (subtensor: inplace_normalize then max), 0 for an
    all-zero or empty row. I32F32(v) / I32F32(sum) truncates to floor(v * 2^32 / sum)."""
    total = sum(values)
    return (max(values) << 32) // total if total else 0


def max_weight_exceeded(uid: int, uids: Sequence[int], stored: Sequence[int], limit: int) -> int | None:
    """subtensor's max_weight_limited on the max-upscaled (stored) values: None when allowed (a lone
    self-weight, limit 65535 = off, or the largest normalised weight <= limit/65535), else that weight
    as I32F32 bits."""
    if is_self_weight(uid, uids, stored) or limit == U16_MAX:
        return None
    top = normalised_max(stored)
    return top if top > u16_ratio(limit) else None
