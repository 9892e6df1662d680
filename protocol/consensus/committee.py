"""The validator committee of one epoch: keys, integer stakes, thresholds and the leader schedule.

Everything here is integer arithmetic over fixed inputs, so every node derives the same thresholds and the
same leader for every round (spec/consensus.md §1-2).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

PUBLIC_KEY_LEN = 32
_COMMITTEE_DOMAIN = b"tensornet/committee/v1"


def blake2b256(data: bytes) -> bytes:
    """BLAKE2b with a 32-byte digest, the one hash of the protocol."""
    return hashlib.blake2b(data, digest_size=32).digest()


@dataclass(frozen=True)
class Committee:
    """Ordered validators of one epoch; an authority is named by its index in this order.

    `quorum` Q = floor(2T/3)+1 is the smallest stake that any two quorums share an honest member through;
    `validity` = T-Q+1 (= ceil(T/3), Sui's `validity_threshold`) is the smallest stake that holds an honest
    member when at most f = T-Q is Byzantine.
    """

    public_keys: tuple[bytes, ...]
    stakes: tuple[int, ...]
    total: int = field(init=False)
    quorum: int = field(init=False)
    validity: int = field(init=False)
    _cumulative: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _index: dict[bytes, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = tuple(bytes(k) for k in self.public_keys)
        stakes = tuple(self.stakes)
        if not keys:
            raise ValueError("committee is empty")
        if len(keys) != len(stakes):
            raise ValueError(f"{len(keys)} keys but {len(stakes)} stakes")
        for k in keys:
            if len(k) != PUBLIC_KEY_LEN:
                raise ValueError(f"public key must be {PUBLIC_KEY_LEN} bytes, got {len(k)}")
        for s in stakes:
            # bool is an int subclass; a stake of True is a bug, not 1.
            if type(s) is not int or s < 1:
                raise ValueError(f"stake must be a positive int, got {s!r}")
        index = {k: i for i, k in enumerate(keys)}
        if len(index) != len(keys):
            raise ValueError("duplicate public key in committee")
        total = sum(stakes)
        cumulative = []
        acc = 0
        for s in stakes:
            acc += s
            cumulative.append(acc)
        object.__setattr__(self, "public_keys", keys)
        object.__setattr__(self, "stakes", stakes)
        object.__setattr__(self, "total", total)
        object.__setattr__(self, "quorum", 2 * total // 3 + 1)
        object.__setattr__(self, "validity", total - (2 * total // 3 + 1) + 1)
        object.__setattr__(self, "_cumulative", tuple(cumulative))
        object.__setattr__(self, "_index", index)

    @classmethod
    def for_test(cls, stakes: list[int] | tuple[int, ...]) -> Committee:
        """A committee with deterministic dummy keys (not valid curve points; never for signing)."""
        keys = tuple(blake2b256(b"tensornet/test-key" + i.to_bytes(4, "big")) for i in range(len(stakes)))
        return cls(keys, tuple(stakes))

    def __len__(self) -> int:
        return len(self.public_keys)

    @property
    def size(self) -> int:
        return len(self.public_keys)

    @property
    def max_faulty(self) -> int:
        """f: the largest Byzantine stake the protocol tolerates (T - Q)."""
        return self.total - self.quorum

    def stake(self, author: int) -> int:
        return self.stakes[author]

    def is_valid_index(self, author: int) -> bool:
        return type(author) is int and 0 <= author < len(self.public_keys)

    def index_of(self, public_key: bytes) -> int | None:
        """The authority index of a public key, or None for a non-member."""
        return self._index.get(bytes(public_key))

    def reached_quorum(self, stake: int) -> bool:
        return stake >= self.quorum

    def reached_validity(self, stake: int) -> bool:
        return stake >= self.validity

    def digest(self) -> bytes:
        """BLAKE2b-256 of domain || u32 n || (key || u64 stake)*: names the committee, e.g. in epoch seeds."""
        parts = [_COMMITTEE_DOMAIN, len(self.public_keys).to_bytes(4, "big")]
        for k, s in zip(self.public_keys, self.stakes, strict=True):
            parts.append(k)
            parts.append(s.to_bytes(8, "big"))
        return blake2b256(b"".join(parts))

    # -- leader schedule -------------------------------------------------------------------------------

    def draw(self, h: bytes, excluded: frozenset[int]) -> int:
        """Stake-weighted draw among authorities not in `excluded`, from a 256-bit hash (§2; reputation swaps, §2.1).

        x = int(h) mod W over the remaining stake W, then the first authority whose cumulative remaining
        stake exceeds x. The modulo bias is below W/2^256, i.e. nil.
        """
        if not excluded:
            x = int.from_bytes(h, "big") % self.total
            # Linear scan is fine for committees of tens to hundreds; bisect would do for more.
            for i, c in enumerate(self._cumulative):
                if x < c:
                    return i
            raise AssertionError("unreachable")
        remaining = self.total - sum(self.stakes[i] for i in excluded)
        x = int.from_bytes(h, "big") % remaining
        acc = 0
        for i, s in enumerate(self.stakes):
            if i in excluded:
                continue
            acc += s
            if x < acc:
                return i
        raise AssertionError("unreachable")

    def leader(self, round: int, epoch_seed: bytes) -> int:
        """The authority index of the (first) leader of `round`.

        Seed = BLAKE2b-256(epoch_seed || round as u64 big-endian); the draw is stake-weighted (`draw`).
        """
        if round < 0:
            raise ValueError("round must be >= 0")
        return self.draw(blake2b256(bytes(epoch_seed) + round.to_bytes(8, "big")), frozenset())

    def leaders(self, round: int, epoch_seed: bytes, count: int) -> tuple[int, ...]:
        """`count` distinct leaders of `round`: a stake-weighted draw without replacement.

        Draw k uses h_k where h_0 = BLAKE2b-256(epoch_seed || u64 round) and h_k = BLAKE2b-256(h_{k-1}),
        among authorities not drawn yet; so leaders(r, s, 1)[0] == leader(r, s).
        """
        if not 1 <= count <= len(self.public_keys):
            raise ValueError(f"count must be in 1..{len(self.public_keys)}")
        if round < 0:
            raise ValueError("round must be >= 0")
        h = blake2b256(bytes(epoch_seed) + round.to_bytes(8, "big"))
        chosen: list[int] = []
        for _ in range(count):
            chosen.append(self.draw(h, frozenset(chosen)))
            h = blake2b256(h)
        return tuple(chosen)
