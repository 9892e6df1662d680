"""Block validity rules that need no DAG: the structure (spec/consensus.md §3.1) and the payload bound
(spec/state.md §3.2). Pure: no I/O, clock or randomness.

`DagState.insert` applies `check_structure`; the driver (`Core.verify`) applies `check_payload` with the
signature, because the DAG never sees a payload.
"""

from __future__ import annotations

from protocol.consensus.block import (
    DIGEST_LEN,
    GENESIS_ROUND,
    BadAuthor,
    BadDigest,
    BadGenesisParent,
    BadParentRef,
    BadRound,
    BlockInvalid,
    DagBlock,
    DagRef,
    DuplicateParentAuthor,
    FirstParentNotOwn,
    InsufficientParentStake,
    ParentRoundTooHigh,
    TooManyParents,
    parent_ref,
)
from protocol.consensus.committee import Committee

MAX_BLOCK_TX_BYTES = 1 << 20  # a block whose payload (sum of transaction sizes) is larger is invalid


class PayloadTooLarge(BlockInvalid):
    reason = "block transactions exceed MAX_BLOCK_TX_BYTES"


def check_payload(payload: tuple[bytes, ...]) -> None:
    """A block is invalid when its transactions (signed bytes, summed) exceed MAX_BLOCK_TX_BYTES."""
    total = sum(len(t) for t in payload)
    if total > MAX_BLOCK_TX_BYTES:
        raise PayloadTooLarge(f"{total} bytes of transactions, the limit is {MAX_BLOCK_TX_BYTES}")


def check_structure(
    committee: Committee, genesis_digests: tuple[bytes, ...], block: DagBlock
) -> tuple[DagRef, tuple[DagRef, ...]]:
    """Rules that need only the committee (spec §3.1); returns (ref, normalised parents).

    Raises a `BlockInvalid` subclass naming the broken rule. Hot path: kept to one pass.
    """
    c = committee
    n = c.size
    r, a, d = block.round, block.author, block.digest
    if type(r) is not int or r < 1:
        raise BadRound(f"round {r!r}")
    if type(a) is not int or not 0 <= a < n:
        raise BadAuthor(f"author {a!r} with {n} authorities")
    if type(d) is not bytes or len(d) != DIGEST_LEN:
        raise BadDigest(f"{d!r}")
    raw = block.parents
    if len(raw) > n:
        raise TooManyParents(f"{len(raw)} parents, {n} authorities")
    stakes = c.stakes
    genesis = genesis_digests
    seen = 0  # bitmask of parent authors
    stake = 0
    prev_round = r - 1
    parents = []
    for i, p in enumerate(raw):
        if type(p) is not DagRef:
            p = parent_ref(p)
        pr, pa, pd = p
        if type(pr) is not int or pr < 0 or type(pd) is not bytes or len(pd) != DIGEST_LEN:
            raise BadParentRef(f"parent {i}: round {pr!r}, digest {pd!r}")
        if type(pa) is not int or not 0 <= pa < n:
            raise BadParentRef(f"parent {i}: author {pa!r} with {n} authorities")
        if (i == 0) != (pa == a):
            raise FirstParentNotOwn(f"parent {i} is by {pa}, block author {a}")
        bit = 1 << pa
        if seen & bit:
            raise DuplicateParentAuthor(f"author {pa} twice")
        seen |= bit
        if pr >= r:
            raise ParentRoundTooHigh(f"parent {i} at round {pr}, block round {r}")
        if pr == prev_round:
            stake += stakes[pa]
            if pr == GENESIS_ROUND and pd != genesis[pa]:
                raise BadGenesisParent(f"parent {i}: {pd.hex()}")
        elif pr == GENESIS_ROUND and pd != genesis[pa]:
            raise BadGenesisParent(f"parent {i}: {pd.hex()}")
        parents.append(p)
    if stake < c.quorum:
        raise InsufficientParentStake(f"stake {stake} at round {prev_round}, quorum {c.quorum}")
    return DagRef(r, a, d), tuple(parents)
