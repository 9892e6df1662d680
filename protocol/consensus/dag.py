"""The consensus DAG and the Mysticeti-C commit rule (spec/consensus.md is normative).

Pure and deterministic: no I/O, clock or randomness, and no result depends on the order in which blocks
were inserted or on dict iteration order (every choice between blocks is made on sorted refs). The
driver (node/) feeds verified blocks to `DagState.insert` and calls `Committer.try_commit` after each.

Works over a structural `DagBlock` interface, so the signed wire `Block` (protocol/messages.py) or a test
block can be inserted as long as it has round, author, digest, parents and timestamp_ms.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple, Protocol

from protocol.consensus.committee import Committee
from protocol.errors import ValidationError

DIGEST_LEN = 32
GENESIS_ROUND = 0
ZERO_DIGEST = bytes(DIGEST_LEN)
DEFAULT_WAVE_LENGTH = 3
DEFAULT_GC_DEPTH = 60  # rounds below the last committed leader that are still linearised (as in Sui)

_GENESIS_DOMAIN = b"tensornet/genesis/v1"
_COMMIT_DOMAIN = b"tensornet/commit/v1"


def _h(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST_LEN).digest()


# --- refs and blocks ---------------------------------------------------------------------------


class BlockRef(NamedTuple):
    """Names one block: its slot (round, author) plus its digest, so equivocating forks differ."""

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
    def parents(self) -> Sequence[BlockRef]: ...  # any items with .round, .author, .digest
    @property
    def timestamp_ms(self) -> int: ...
    @property
    def ref(self) -> BlockRef: ...  # (round, author, digest); documentary: the DAG never reads it


@dataclass(frozen=True, slots=True)
class GenesisBlock:
    """The virtual round-0 block of one authority; never signed or sent, both sides derive it."""

    author: int
    digest: bytes
    round: int = GENESIS_ROUND
    parents: tuple[BlockRef, ...] = ()
    timestamp_ms: int = 0

    @property
    def ref(self) -> BlockRef:
        return BlockRef(GENESIS_ROUND, self.author, self.digest)


@dataclass(frozen=True, slots=True)
class BlockView:
    """A `DagBlock` over a decoded wire block, with the digest computed once (the wire recomputes it).

    `source` keeps the original (e.g. the `SignedBlock`) for payload, storage and re-broadcast.
    """

    round: int
    author: int
    digest: bytes
    parents: tuple[BlockRef, ...]
    timestamp_ms: int
    source: object = None

    @property
    def ref(self) -> BlockRef:
        return BlockRef(self.round, self.author, self.digest)

    @classmethod
    def of_signed(cls, signed: object) -> BlockView:
        """From anything shaped like messages.SignedBlock: `.body` with the block fields, and `.digest`."""
        body = signed.body  # type: ignore[attr-defined]
        return cls(
            body.round,
            body.author,
            signed.digest,  # type: ignore[attr-defined]
            tuple(_parent_ref(p) for p in body.parents),
            body.timestamp_ms,
            signed,
        )


def genesis_digest(epoch_seed: bytes, author: int) -> bytes:
    """BLAKE2b-256("tensornet/genesis/v1" || epoch_seed || u32 author big-endian)."""
    return _h(_GENESIS_DOMAIN + bytes(epoch_seed) + author.to_bytes(4, "big"))


def genesis_blocks(committee: Committee, epoch_seed: bytes) -> tuple[GenesisBlock, ...]:
    return tuple(GenesisBlock(a, genesis_digest(epoch_seed, a)) for a in range(committee.size))


# --- typed rejections --------------------------------------------------------------------------


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


class SafetyViolation(RuntimeError):
    """Two certified blocks in one slot: more than f stake is Byzantine. The driver must halt."""


# --- the DAG store -----------------------------------------------------------------------------


class InsertStatus(Enum):
    ACCEPTED = "accepted"  # new, now in the DAG
    DUPLICATE = "duplicate"  # already in the DAG
    STALE = "stale"  # at or below the GC round: dropped, never needed again
    MISSING = "missing"  # some ancestors above the GC round are absent: not stored


class InsertResult(NamedTuple):
    status: InsertStatus
    missing: tuple[BlockRef, ...] = ()


def _parent_ref(p: object) -> BlockRef:
    """Normalise a wire parent (any object with .round/.author/.digest) to our BlockRef."""
    if type(p) is BlockRef:
        return p
    try:
        r, a, d = p.round, p.author, p.digest  # type: ignore[attr-defined]
    except AttributeError:
        if isinstance(p, tuple | list) and len(p) == 3:  # the wire's [round, author, digest]
            r, a, d = p
        else:
            raise BadParentRef(f"{p!r} is not a block reference") from None
    return BlockRef(r, a, d)


class DagState:
    """Accepted blocks of one epoch, indexed by ref, slot and round; forks (equivocations) allowed.

    A block enters only when it is structurally valid and all its ancestors above the GC round are
    present, so every stored block has its causal history (the commit rule relies on that).
    """

    def __init__(self, committee: Committee, epoch_seed: bytes) -> None:
        self.committee = committee
        self.epoch_seed = bytes(epoch_seed)
        self.genesis = genesis_blocks(committee, self.epoch_seed)
        self._genesis_digests = tuple(g.digest for g in self.genesis)
        self._blocks: dict[BlockRef, DagBlock] = {}
        self._parents: dict[BlockRef, tuple[BlockRef, ...]] = {}
        self._slots: dict[Slot, list[BlockRef]] = {}
        self._rounds: dict[int, list[BlockRef]] = {}
        self.highest_round = GENESIS_ROUND
        self.gc_round = -1  # blocks at or below this round are pruned (genesis lives at round 0)
        for g in self.genesis:
            self._store(g.ref, g, ())

    # -- queries --

    def __len__(self) -> int:
        return len(self._blocks)

    def __contains__(self, ref: object) -> bool:
        return ref in self._blocks

    def get(self, ref: BlockRef) -> DagBlock | None:
        return self._blocks.get(ref)

    def parents(self, ref: BlockRef) -> tuple[BlockRef, ...]:
        """The normalised parents of a stored block, in the block's own order."""
        return self._parents[ref]

    def refs_at_round(self, round: int) -> list[BlockRef]:
        """Refs of a round sorted by (author, digest), so callers never see insertion order."""
        return sorted(self._rounds.get(round, ()))

    def blocks_at_round(self, round: int) -> list[DagBlock]:
        return [self._blocks[r] for r in self.refs_at_round(round)]

    def refs_at_slot(self, round: int, author: int) -> tuple[BlockRef, ...]:
        """All blocks of one slot (more than one only if the author equivocated), sorted by digest."""
        refs = self._slots.get(Slot(round, author))
        if not refs:
            return ()
        return tuple(sorted(refs))

    def unordered_refs_at_round(self, round: int) -> Sequence[BlockRef]:
        """Refs of a round in insertion order (append-only until pruned).

        Only for order-independent aggregates (stake sums) and for resuming a scan where it stopped.
        """
        return self._rounds.get(round, ())

    def unordered_refs_at_slot(self, round: int, author: int) -> Sequence[BlockRef]:
        """Refs of a slot in insertion order (append-only until pruned); see `unordered_refs_at_round`."""
        return self._slots.get(Slot(round, author), ())

    def is_ancestor(self, ancestor: BlockRef, descendant: BlockRef) -> bool:
        """Whether `ancestor` is in the causal history of `descendant` (a block is its own ancestor)."""
        if ancestor == descendant:
            return True
        if ancestor.round >= descendant.round or descendant not in self._blocks:
            return False
        seen = {descendant}
        stack = [descendant]
        while stack:
            for p in self._parents.get(stack.pop(), ()):
                if p == ancestor:
                    return True
                if p.round > ancestor.round and p not in seen:
                    seen.add(p)
                    stack.append(p)
        return False

    def ancestors_at_round(self, ref: BlockRef, round: int) -> list[BlockRef]:
        """Blocks of `round` in the causal history of `ref`, sorted; walks only rounds above `round`."""
        if ref.round == round:
            return [ref]
        found: set[BlockRef] = set()
        seen = {ref}
        stack = [ref]
        while stack:
            for p in self._parents.get(stack.pop(), ()):
                if p.round == round:
                    found.add(p)
                elif p.round > round and p not in seen:
                    seen.add(p)
                    stack.append(p)
        return sorted(found)

    # -- validation --

    def check_structure(self, block: DagBlock) -> tuple[BlockRef, tuple[BlockRef, ...]]:
        """Rules that need only the committee (spec §3.1); returns (ref, normalised parents).

        Raises a `BlockInvalid` subclass naming the broken rule. Hot path: kept to one pass.
        """
        c = self.committee
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
        genesis = self._genesis_digests
        seen = 0  # bitmask of parent authors
        stake = 0
        prev_round = r - 1
        parents = []
        for i, p in enumerate(raw):
            if type(p) is not BlockRef:
                p = _parent_ref(p)
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
        return BlockRef(r, a, d), tuple(parents)

    def missing_ancestors(self, block: DagBlock) -> tuple[BlockRef, ...]:
        """Parents above the GC round that are not in the DAG (the synchronizer fetches these)."""
        gc = self.gc_round
        out = []
        for p in block.parents:
            ref = _parent_ref(p)
            if ref.round > gc and ref not in self._blocks:
                out.append(ref)
        return tuple(out)

    # -- mutation --

    def insert(self, block: DagBlock) -> InsertResult:
        """Validate and store one block whose signature, epoch and chain id the caller has verified.

        Raises `BlockInvalid` for a block no honest node accepts. Returns MISSING (and stores nothing)
        when ancestors are absent: the caller buffers the block and fetches them. Insertion is
        idempotent and its outcome does not depend on what else was inserted, except for STALE/MISSING.
        """
        ref, parents = self.check_structure(block)
        if ref in self._blocks:
            return InsertResult(InsertStatus.DUPLICATE)
        if ref.round <= self.gc_round:
            return InsertResult(InsertStatus.STALE)
        gc = self.gc_round
        blocks = self._blocks
        max_ts = 0
        missing = None
        for p in parents:
            pb = blocks.get(p)
            if pb is not None:
                if pb.timestamp_ms > max_ts:
                    max_ts = pb.timestamp_ms
            elif p.round > gc:
                missing = [p] if missing is None else [*missing, p]
        if missing is not None:
            return InsertResult(InsertStatus.MISSING, tuple(missing))
        ts = block.timestamp_ms
        if type(ts) is not int or ts < 0:
            raise BadTimestamp(f"timestamp {ts!r}")
        if ts < max_ts:
            raise TimestampBeforeParents(f"{ts} below a parent's {max_ts}")
        self._store(ref, block, parents)
        return InsertResult(InsertStatus.ACCEPTED)

    def _store(self, ref: BlockRef, block: DagBlock, parents: tuple[BlockRef, ...]) -> None:
        self._blocks[ref] = block
        self._parents[ref] = parents
        self._slots.setdefault(Slot(ref.round, ref.author), []).append(ref)
        self._rounds.setdefault(ref.round, []).append(ref)
        if ref.round > self.highest_round:
            self.highest_round = ref.round

    def prune(self, gc_round: int) -> int:
        """Drop every block at or below `gc_round` (monotone); returns how many were dropped.

        Blocks later arriving at or below it are STALE, and parents at or below it are no longer
        required. Memory only: which blocks a commit holds is fixed by the committer's own GC round.
        """
        if gc_round <= self.gc_round:
            return 0
        dropped = 0
        for r in range(max(self.gc_round + 1, GENESIS_ROUND), gc_round + 1):
            for ref in self._rounds.pop(r, ()):
                del self._blocks[ref]
                del self._parents[ref]
                self._slots.pop(Slot(ref.round, ref.author), None)
                dropped += 1
        self.gc_round = gc_round
        return dropped


# --- commit rule -------------------------------------------------------------------------------


class Decision(Enum):
    COMMIT = "commit"
    SKIP = "skip"
    UNDECIDED = "undecided"


class LeaderStatus(NamedTuple):
    """The fate of one leader slot. `direct` is informational only: nodes may differ on it."""

    slot: Slot
    offset: int  # which of the round's leaders (0 when one leader per round)
    decision: Decision
    block: BlockRef | None = None  # the committed block
    direct: bool = False

    @property
    def decided(self) -> bool:
        return self.decision is not Decision.UNDECIDED


class CommittedSubDag(NamedTuple):
    """One commit: the chain's unit of height. `blocks` is sorted by (round, author, digest)."""

    index: int  # 1, 2, 3, ...
    leader: BlockRef
    blocks: tuple[BlockRef, ...]
    timestamp_ms: int  # max(leader timestamp, previous commit's): monotone
    prev_digest: bytes
    digest: bytes


def _ref_bytes(ref: BlockRef) -> bytes:
    return ref.round.to_bytes(8, "big") + ref.author.to_bytes(4, "big") + ref.digest


def commit_digest(index: int, leader: BlockRef, refs: Sequence[BlockRef], prev_digest: bytes) -> bytes:
    """BLAKE2b-256 of the fixed-width encoding in spec/consensus.md §6.

    "tensornet/commit/v1" || u64 index || ref(leader) || u32 len(refs) || ref(refs[0]) || ...
    || prev_digest (32 bytes), where ref(x) = u64 round || u32 author || 32-byte digest, all big-endian.
    Fixed widths make the encoding injective without a codec.
    """
    if len(prev_digest) != DIGEST_LEN:
        raise ValueError("prev_digest must be 32 bytes")
    parts = [_COMMIT_DOMAIN, index.to_bytes(8, "big"), _ref_bytes(leader), len(refs).to_bytes(4, "big")]
    parts.extend(_ref_bytes(r) for r in refs)
    parts.append(prev_digest)
    return _h(b"".join(parts))


@dataclass
class _SlotMemo:
    """Facts about one undecided leader slot; all are fixed once computed, so they are cached."""

    support: dict[BlockRef, BlockRef | None] = field(default_factory=dict)  # block -> block it supports
    certificate: dict[tuple[BlockRef, BlockRef], bool] = field(default_factory=dict)
    direct: LeaderStatus | None = None  # a decided direct status, final
    from_anchor: dict[BlockRef, LeaderStatus] = field(default_factory=dict)
    # Incremental tallies: round lists only grow, so each scan resumes where the last one stopped.
    blame_seen: int = 0  # voting-round refs examined
    blamers: set[int] = field(default_factory=set)
    blame_stake: int = 0
    support_tally: dict[BlockRef, _Tally] = field(default_factory=dict)  # leader block -> certificates


@dataclass
class _Tally:
    seen: int = 0  # decision-round refs examined
    authors: set[int] = field(default_factory=set)
    stake: int = 0


LeaderSchedule = Callable[[int, int], int]  # (round, offset) -> author


class Committer:
    """Mysticeti-C: decides leader slots in order and linearises each committed leader's sub-DAG.

    `try_commit` is idempotent: a slot is decided once, and only the longest decided prefix is output.
    """

    def __init__(
        self,
        dag: DagState,
        *,
        wave_length: int = DEFAULT_WAVE_LENGTH,
        leaders_per_round: int = 1,
        gc_depth: int = DEFAULT_GC_DEPTH,
        leader_schedule: LeaderSchedule | None = None,
        auto_prune: bool = True,
        genesis_commit_digest: bytes = ZERO_DIGEST,
        start_index: int = 0,
    ) -> None:
        if wave_length < 3:
            raise ValueError("wave_length must be >= 3")
        if not 1 <= leaders_per_round <= dag.committee.size:
            raise ValueError("leaders_per_round must be in 1..committee size")
        if gc_depth < wave_length:
            raise ValueError("gc_depth must be >= wave_length")
        self.dag = dag
        self.committee = dag.committee
        self.wave_length = wave_length
        self.leaders_per_round = leaders_per_round
        self.gc_depth = gc_depth
        self.auto_prune = auto_prune
        self._schedule = leader_schedule
        self._leaders_cache: dict[int, tuple[int, ...]] = {}
        self._memo: dict[Slot, _SlotMemo] = {}
        # Commit state: a deterministic function of the commit sequence alone.
        self.last_decided: tuple[int, int] = (GENESIS_ROUND, leaders_per_round - 1)  # (round, offset)
        self.last_index = start_index  # the chain height before this epoch's first commit
        self.last_digest = bytes(genesis_commit_digest)
        self.last_timestamp_ms = 0
        self.last_committed_leader_round = GENESIS_ROUND
        self.last_committed_rounds = [GENESIS_ROUND] * self.committee.size
        self.last_decisions: tuple[LeaderStatus, ...] = ()

    # -- leader schedule --

    def leaders(self, round: int) -> tuple[int, ...]:
        """The leader authorities of `round`, by offset."""
        got = self._leaders_cache.get(round)
        if got is None:
            if self._schedule is not None:
                got = tuple(self._schedule(round, k) for k in range(self.leaders_per_round))
            else:
                got = self.committee.leaders(round, self.dag.epoch_seed, self.leaders_per_round)
            self._leaders_cache[round] = got
        return got

    def leader(self, round: int, offset: int = 0) -> Slot:
        return Slot(round, self.leaders(round)[offset])

    @property
    def gc_round(self) -> int:
        """Blocks at or below this round are never linearised; fixed by the last committed leader."""
        return max(GENESIS_ROUND, self.last_committed_leader_round - self.gc_depth)

    # -- votes and certificates --

    def _supported(self, ref: BlockRef, slot: Slot, memo: _SlotMemo) -> BlockRef | None:
        """The one block of `slot` that `ref` supports: the first met in a depth-first walk of its parents.

        Parents are walked in block order and parents[0] is the author's own previous block, so a later
        block by the same author supports what its earlier block did: a voter backs one block per slot.
        """
        if ref.round <= slot.round:
            return None
        cached = memo.support.get(ref, memo)
        if cached is not memo:
            return cached  # type: ignore[return-value]
        result = None
        for p in self.dag.parents(ref):
            if p.round == slot.round and p.author == slot.author:
                result = p
                break
            if p.round > slot.round:
                result = self._supported(p, slot, memo)
                if result is not None:
                    break
        memo.support[ref] = result
        return result

    def _is_certificate(self, cert: BlockRef, leader: BlockRef, slot: Slot, memo: _SlotMemo) -> bool:
        """Whether `cert`'s parents that vote for `leader` hold a quorum of stake."""
        key = (cert, leader)
        got = memo.certificate.get(key)
        if got is not None:
            return got
        stakes = self.committee.stakes
        quorum = self.committee.quorum
        stake = 0
        result = False
        for p in self.dag.parents(cert):  # one parent per author, so no double counting
            if self._supported(p, slot, memo) == leader:
                stake += stakes[p.author]
                if stake >= quorum:
                    result = True
                    break
        memo.certificate[key] = result
        return result

    def _memo_for(self, slot: Slot) -> _SlotMemo:
        m = self._memo.get(slot)
        if m is None:
            m = self._memo[slot] = _SlotMemo()
        return m

    # -- decisions --

    def _direct(self, slot: Slot, offset: int) -> LeaderStatus:
        """The direct rule, tallied incrementally: each new voting/decision-round block is examined once."""
        memo = self._memo_for(slot)
        if memo.direct is not None:
            return memo.direct
        dag = self.dag
        r = slot.round
        stakes = self.committee.stakes
        quorum = self.committee.quorum
        # Direct skip: a quorum of voting-round authors each has a block supporting no block of the slot.
        # Such an honest author can never vote for the slot, so no block of it can ever be certified.
        voters = dag.unordered_refs_at_round(r + 1)
        if memo.blame_seen < len(voters):
            blamers = memo.blamers
            for v in voters[memo.blame_seen:]:
                if v.author not in blamers and self._supported(v, slot, memo) is None:
                    blamers.add(v.author)
                    memo.blame_stake += stakes[v.author]
            memo.blame_seen = len(voters)
            if memo.blame_stake >= quorum:
                memo.direct = LeaderStatus(slot, offset, Decision.SKIP, None, True)
                return memo.direct
        # Direct commit: a quorum of decision-round authors each has a certificate for the block.
        deciders = dag.unordered_refs_at_round(r + self.wave_length - 1)
        committed = []
        for leader in dag.unordered_refs_at_slot(r, slot.author):
            tally = memo.support_tally.get(leader)
            if tally is None:
                tally = memo.support_tally[leader] = _Tally()
            if tally.seen < len(deciders):
                for d in deciders[tally.seen:]:
                    if d.author not in tally.authors and self._is_certificate(d, leader, slot, memo):
                        tally.authors.add(d.author)
                        tally.stake += stakes[d.author]
                tally.seen = len(deciders)
            if tally.stake >= quorum:
                committed.append(leader)
        if len(committed) > 1:
            raise SafetyViolation(f"two blocks of slot {slot!r} directly committed: {sorted(committed)}")
        if committed:
            memo.direct = LeaderStatus(slot, offset, Decision.COMMIT, committed[0], True)
            return memo.direct
        return LeaderStatus(slot, offset, Decision.UNDECIDED)

    def _indirect(self, slot: Slot, offset: int, later: Iterable[LeaderStatus]) -> LeaderStatus:
        """Decide through the first committed anchor at round >= slot.round + wave_length."""
        for anchor in later:
            if anchor.slot.round < slot.round + self.wave_length:
                continue
            if anchor.decision is Decision.COMMIT:
                assert anchor.block is not None
                return self._from_anchor(slot, offset, anchor.block)
            if anchor.decision is Decision.UNDECIDED:
                break
        return LeaderStatus(slot, offset, Decision.UNDECIDED)

    def _from_anchor(self, slot: Slot, offset: int, anchor: BlockRef) -> LeaderStatus:
        """Commit the slot's block with a certificate in the anchor's history; else skip the slot."""
        memo = self._memo_for(slot)
        got = memo.from_anchor.get(anchor)
        if got is not None:
            return got
        certs = self.dag.ancestors_at_round(anchor, slot.round + self.wave_length - 1)
        committed = [
            leader
            for leader in self.dag.refs_at_slot(slot.round, slot.author)
            if any(self._is_certificate(c, leader, slot, memo) for c in certs)
        ]
        if len(committed) > 1:
            raise SafetyViolation(f"two blocks of slot {slot!r} certified under anchor {anchor!r}")
        if committed:
            status = LeaderStatus(slot, offset, Decision.COMMIT, committed[0], False)
        else:
            status = LeaderStatus(slot, offset, Decision.SKIP, None, False)
        memo.from_anchor[anchor] = status
        return status

    def peek_statuses(self) -> list[LeaderStatus]:
        """Status of every leader slot after the last decided one, up to the highest decidable round.

        Does not advance the commit state; slots after the first undecided one may show a decision
        that `try_commit` will only output once that one is decided.
        """
        top = self.dag.highest_round - (self.wave_length - 1)
        last_round, last_offset = self.last_decided
        statuses: deque[LeaderStatus] = deque()
        for r in range(top, last_round - 1, -1):
            if r <= GENESIS_ROUND:
                break
            for off in range(self.leaders_per_round - 1, -1, -1):
                if (r, off) <= (last_round, last_offset):
                    break
                slot = self.leader(r, off)
                status = self._direct(slot, off)
                if not status.decided:
                    status = self._indirect(slot, off, statuses)
                statuses.appendleft(status)
        return list(statuses)

    def try_commit(self) -> list[CommittedSubDag]:
        """Decide the longest prefix of leader slots possible now, and linearise its committed leaders.

        Skipped slots are consumed silently; `last_decisions` lists every slot decided by this call.
        """
        decided: list[LeaderStatus] = []
        for status in self.peek_statuses():
            if not status.decided:
                break
            decided.append(status)
        out = []
        for status in decided:
            if status.decision is Decision.COMMIT:
                assert status.block is not None
                out.append(self._linearize(status.block))
            self.last_decided = (status.slot.round, status.offset)
            self._memo.pop(status.slot, None)
        self.last_decisions = tuple(decided)
        if decided:
            last_round = self.last_decided[0]
            for r in [x for x in self._leaders_cache if x <= last_round]:
                del self._leaders_cache[r]
            if self.auto_prune and out:
                self.dag.prune(self.gc_round)
        return out

    # -- linearizer --

    def _linearize(self, leader: BlockRef) -> CommittedSubDag:
        """The leader's ancestors not yet committed, above the GC round, sorted by (round, author, digest).

        A block at or below its author's last committed round is never committed, and of several
        blocks of one slot in a sub-DAG only the smallest digest is, so a slot commits at most one block.
        """
        dag = self.dag
        gc = self.gc_round
        lcr = self.last_committed_rounds
        seen = {leader}
        stack = [leader]
        while stack:
            for p in dag.parents(stack.pop()):
                if p.round > gc and p.round > lcr[p.author] and p not in seen:
                    seen.add(p)
                    stack.append(p)
        refs = sorted(seen)
        blocks: list[BlockRef] = []
        for ref in refs:
            if blocks and blocks[-1].round == ref.round and blocks[-1].author == ref.author:
                continue  # an equivocating sibling with a larger digest
            blocks.append(ref)
        for ref in blocks:
            if ref.round > lcr[ref.author]:
                lcr[ref.author] = ref.round
        leader_block = dag.get(leader)
        assert leader_block is not None
        index = self.last_index + 1
        ts = max(self.last_timestamp_ms, leader_block.timestamp_ms)
        refs_t = tuple(blocks)
        digest = commit_digest(index, leader, refs_t, self.last_digest)
        sub = CommittedSubDag(index, leader, refs_t, ts, self.last_digest, digest)
        self.last_index = index
        self.last_digest = digest
        self.last_timestamp_ms = ts
        self.last_committed_leader_round = leader.round
        return sub

    # -- recovery --

    def restore(self, commits: Sequence[CommittedSubDag]) -> None:
        """Resume after a restart from the tail of the commit log (oldest first).

        Pass at least every commit whose leader round is >= last leader round - gc_depth, so that the
        per-author last committed rounds above the GC round are exact. Slots skipped after the last
        commit are decided again, with the same outcome.
        """
        if not commits:
            return
        for sub in commits:
            for ref in sub.blocks:
                if ref.round > self.last_committed_rounds[ref.author]:
                    self.last_committed_rounds[ref.author] = ref.round
        last = commits[-1]
        self.last_index = last.index
        self.last_digest = last.digest
        self.last_timestamp_ms = last.timestamp_ms
        self.last_committed_leader_round = last.leader.round
        offset = self.leaders(last.leader.round).index(last.leader.author)
        self.last_decided = (last.leader.round, offset)
        self._memo.clear()
        self._leaders_cache.clear()
