"""Weight-commit hashing and the pure parts of subtensor's set_weights checks.

The commit hash is BLAKE2b-256 over the canonical CBOR array
    ["tensornet/weights-commit/v1", hotkey, netuid, [uids...], [values...], salt, version_key]
so a validator can compute it offline and the chain recomputes it byte for byte at reveal.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol import codec, crypto
from protocol.fixedpoint import max_upscale_u16

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
