"""What the DAG knows of a block: refs, slots, the `DagBlock` shape, genesis, and the typed rejections.

Spec: spec/consensus.md §3. Pure: no I/O, clock or randomness.

`DagRef` is the DAG's in-memory name of a block (a hashable, ordered tuple); the signed wire form of a
reference is `protocol.messages.BlockRef`, which the DAG accepts as a parent and normalises with `parent_ref`.
The DAG works over the structural `DagBlock` interface, so the signed wire `Block` (via `BlockView`) or a test
block can be inserted as long as it has round, author, digest, parents and timestamp_ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from protocol.consensus.committee import Committee
from protocol.crypto import DIGEST_SIZE, digest
from protocol.errors import ValidationError

DIGEST_LEN = DIGEST_SIZE
GENESIS_ROUND = 0
ZERO_DIGEST = bytes(DIGEST_LEN)

_GENESIS_DOMAIN = b"tensornet/genesis/v1"


# --- refs and blocks ---------------------------------------------------------------------------


class DagRef(NamedTuple):
    """Names one block in the DAG: its slot (round, author) plus its digest, so equivocating forks differ."""

    round: int
    author: int
    digest: bytes

    def __repr__(self) -> str:
        return f"{_name(self.author)}{self.round}:{self.digest[:3].hex()}"


class Slot(NamedTuple):
    """(round, author): where one honest block goes; a Byzantine author may fill it with several."""

    round: int
    author: int

    def __repr__(self) -> str:
        return f"{_name(self.author)}{self.round}"


def _name(author: int) -> str:
    return chr(ord("A") + author) if 0 <= author < 26 else f"#{author}"


class DagBlock(Protocol):
    """What the DAG needs of a block; the wire Block and the test blocks both fit."""

    @property
    def round(self) -> int: ...
    @property
    def author(self) -> int: ...
    @property
    def digest(self) -> bytes: ...
    @property
    def parents(self) -> Sequence[DagRef]: ...  # any items with .round, .author, .digest
    @property
    def timestamp_ms(self) -> int: ...
    @property
    def ref(self) -> DagRef: ...  # (round, author, digest); documentary: the DAG never reads it


@dataclass(frozen=True, slots=True)
class GenesisBlock:
    """The virtual round-0 block of one authority; never signed or sent, both sides derive it."""

    author: int
    digest: bytes
    round: int = GENESIS_ROUND
    parents: tuple[DagRef, ...] = ()
    timestamp_ms: int = 0

    @property
    def ref(self) -> DagRef:
        return DagRef(GENESIS_ROUND, self.author, self.digest)


@dataclass(frozen=True, slots=True)
class BlockView:
    """A `DagBlock` over a decoded wire block, with the digest computed once (the wire recomputes it).

    `source` keeps the original (e.g. the `SignedBlock`) for payload, storage and re-broadcast.
    """

    round: int
    author: int
    digest: bytes
    parents: tuple[DagRef, ...]
    timestamp_ms: int
    source: object = None

    @property
    def ref(self) -> DagRef:
        return DagRef(self.round, self.author, self.digest)

    @classmethod
    def of_signed(cls, signed: object) -> BlockView:
        """From anything shaped like messages.SignedBlock: `.body` with the block fields, and `.digest`."""
        body = signed.body  # type: ignore[attr-defined]
        return cls(
            body.round,
            body.author,
            signed.digest,  # type: ignore[attr-defined]
            tuple(parent_ref(p) for p in body.parents),
            body.timestamp_ms,
            signed,
        )


def parent_ref(p: object) -> DagRef:
    """Normalise a wire parent (any object with .round/.author/.digest, or a 3-item list) to a `DagRef`."""
    if type(p) is DagRef:
        return p
    try:
        r, a, d = p.round, p.author, p.digest  # type: ignore[attr-defined]
    except AttributeError:
        if isinstance(p, tuple | list) and len(p) == 3:  # the wire's [round, author, digest]
            r, a, d = p
        else:
            raise BadParentRef(f"{p!r} is not a block reference") from None
    return DagRef(r, a, d)


def genesis_digest(epoch_seed: bytes, author: int) -> bytes:
    """BLAKE2b-256("tensornet/genesis/v1" || epoch_seed || u32 author big-endian)."""
    return digest(_GENESIS_DOMAIN + bytes(epoch_seed) + author.to_bytes(4, "big"))


def genesis_blocks(committee: Committee, epoch_seed: bytes) -> tuple[GenesisBlock, ...]:
    return tuple(GenesisBlock(a, genesis_digest(epoch_seed, a)) for a in range(committee.size))


# --- typed rejections (spec/consensus.md §3.1, §3.2) ---------------------------------------------


class BlockInvalid(ValidationError):
    """A block that breaks a structural rule; every honest node rejects it, so it is never stored."""

    reason = "invalid block"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"{self.reason}: {detail}")


class BadRound(BlockInvalid):
    reason = "round must be an int >= 1"


class BadAuthor(BlockInvalid):
    reason = "author is not a committee index"


class BadDigest(BlockInvalid):
    reason = "digest must be 32 bytes"


class BadParentRef(BlockInvalid):
    reason = "malformed parent reference"


class TooManyParents(BlockInvalid):
    reason = "more parents than committee members"


class FirstParentNotOwn(BlockInvalid):
    reason = "parents[0] must be the author's own previous block, and only parents[0]"


class DuplicateParentAuthor(BlockInvalid):
    reason = "two parents by one author"


class ParentRoundTooHigh(BlockInvalid):
    reason = "parent round must be below the block round"


class BadGenesisParent(BlockInvalid):
    reason = "round-0 parent is not this epoch's genesis block"


class InsufficientParentStake(BlockInvalid):
    reason = "round-1 parents hold less than a quorum of stake"


class BadTimestamp(BlockInvalid):
    reason = "timestamp must be an int >= 0"


class TimestampBeforeParents(BadTimestamp):
    reason = "timestamp below a parent's timestamp"
