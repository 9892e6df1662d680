"""The consensus core of one node for one epoch: verify, buffer, insert, propose, commit.

No I/O and no clock of its own: the caller passes `now_ms`, persists what `build_block` returns
before broadcasting it, and fetches the refs that `add` reports missing. That keeps the same code
under the deterministic simulator (tests/sim) and the real daemon (node/daemon.py).

Proposing (spec/consensus.md §Driver): the threshold clock round R is the highest round holding
blocks worth >= Q stake. A validator proposes round R+1 once, when the leader(s) of round R are
in the DAG or `leader_timeout_ms` has passed since R reached quorum, and at least
`min_round_delay_ms` after its previous proposal; with no transactions to propose and none uncommitted in
the DAG it rests, at least `idle_interval_ms` after its previous proposal (local timing only,
spec/consensus.md §D.2a). Parents: its own previous block first, then for
every other author the highest block at or below R (lowest digest among equivocations).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.consensus.block import ZERO_DIGEST, BadAuthor, BlockInvalid, DagRef
from protocol.consensus.block_verifier import check_payload
from protocol.consensus.committee import Committee
from protocol.consensus.committer import Committer
from protocol.consensus.dag_state import DagState, InsertStatus
from protocol.consensus.leader_schedule import DEFAULT_REPUTATION_WINDOW
from protocol.consensus.linearizer import CommittedSubDag
from protocol.crypto import Keypair, digest
from protocol.errors import ProtocolError
from protocol.messages import Block, BlockRef, CommitVote, SignedBlock


class TimestampTooFarAhead(BlockInvalid):
    reason = "timestamp too far ahead of the local clock"


class WrongEpoch(ProtocolError):
    """A block of another consensus epoch. Not an offence in itself (honest peers send these around an
    epoch change); a later epoch's block carries its decoded `vertex` so the chain can check what is
    checkable before holding it (node/chain.py, EarlyBlocks)."""

    def __init__(self, epoch: int, ours: int, vertex: Vertex | None = None) -> None:
        super().__init__(f"block of epoch {epoch}, this node is in epoch {ours}")
        self.epoch = epoch
        self.future = epoch > ours
        self.vertex = vertex


@dataclass(frozen=True, slots=True)
class Vertex:
    """A decoded, signature-checked block as the DAG sees it (protocol.consensus.block.DagBlock)."""

    round: int
    author: int
    digest: bytes
    parents: tuple[DagRef, ...]
    timestamp_ms: int
    signed: SignedBlock
    data: bytes  # canonical bytes: what is stored and relayed

    @property
    def ref(self) -> DagRef:
        return DagRef(self.round, self.author, self.digest)

    @property
    def payload(self) -> tuple[bytes, ...]:
        return self.signed.body.payload


@dataclass(frozen=True)
class CoreParams:
    leader_timeout_ms: int = 250
    min_round_delay_ms: int = 25
    idle_interval_ms: int = 0  # rest when idle (§D.2a): at least this long between own blocks; 0 = never rest
    max_forward_drift_ms: int = 500
    gc_depth: int = 60
    max_suspended: int = 10_000
    reputation_window: int = DEFAULT_REPUTATION_WINDOW  # a protocol constant like gc_depth; 0 = plain schedule


@dataclass
class AddOutcome:
    accepted: list[Vertex] = field(default_factory=list)  # in insertion order (parents first)
    missing: tuple[DagRef, ...] = ()  # refs to fetch (not already buffered)


@dataclass
class Committed:
    """A committed sub-DAG with the blocks it orders, kept before the DAG prunes them."""

    sub: CommittedSubDag
    vertices: tuple[Vertex, ...]


def vertex_from_bytes(data: bytes) -> Vertex:
    """Decode a block (typed DecodeError on bad bytes); signature not checked yet."""
    signed = SignedBlock.from_bytes(data)
    b = signed.body
    return Vertex(
        round=b.round,
        author=b.author,
        digest=dag_digest(data),
        parents=tuple(DagRef(p.round, p.author, p.digest) for p in b.parents),
        timestamp_ms=b.timestamp_ms,
        signed=signed,
        data=data,
    )


def dag_digest(data: bytes) -> bytes:
    # Decoding enforces canonical form, so the digest of the received bytes equals the digest of
    # the re-encoded message: no second encode is needed.
    return digest(data)


class Core:
    def __init__(
        self,
        chain_id: str,
        epoch: int,
        committee: Committee,
        epoch_seed: bytes,
        *,
        keypair: Keypair | None = None,
        params: CoreParams | None = None,
        genesis_commit_digest: bytes = ZERO_DIGEST,
        start_index: int = 0,
    ) -> None:
        self.chain_id = chain_id
        self.epoch = epoch
        self.committee = committee
        self.params = params or CoreParams()
        self.dag = DagState(committee, epoch_seed)
        self.committer = Committer(
            self.dag,
            gc_depth=self.params.gc_depth,
            auto_prune=False,
            genesis_commit_digest=genesis_commit_digest,
            start_index=start_index,
            reputation_window=self.params.reputation_window,
        )
        self.keypair = keypair
        self.own_index = committee.index_of(keypair.public) if keypair is not None else None
        self.last_proposed_round = 0
        self.last_proposal_ms = -(1 << 62)
        self._own_last: DagRef | None = (
            self.dag.genesis[self.own_index].ref if self.own_index is not None else None
        )
        self._suspended: dict[DagRef, Vertex] = {}
        self._waiting: dict[DagRef, set[DagRef]] = {}  # missing ref -> suspended children
        self._quorum_round = 0
        self._quorum_since_ms: int | None = None
        self._round_stake: dict[int, int] = {}
        self._seen_authors: dict[int, set[int]] = {}
        self._latest: list[DagRef | None] = [None] * committee.size
        self._signed_round = [0] * committee.size  # per author: highest round of a verified block, even suspended
        self._payload_rounds = [0] * committee.size  # per author: highest round of a block with transactions
        self.rejected: dict[str, int] = {}
        self.duplicates = 0
        self._known: dict[bytes, int] = {}  # digest -> round of accepted and buffered blocks above GC
        # two accepted blocks of one slot, for the driver to report as evidence (spec/economics.md §4)
        self.equivocations: list[tuple[Vertex, Vertex]] = []

    # --- receiving ----------------------------------------------------------------------------

    def verify(self, data: bytes, now_ms: int) -> Vertex:
        """Decode and authenticate a block; raise a typed ProtocolError saying why not."""
        v = vertex_from_bytes(data)
        body = v.signed.body
        if body.epoch != self.epoch:
            raise WrongEpoch(body.epoch, self.epoch, v)
        if not self.committee.is_valid_index(body.author):
            raise BadAuthor(f"author {body.author} with {self.committee.size} authorities")
        v.signed.verify(self.chain_id, self.committee.public_keys[body.author])
        check_payload(body.payload)
        if body.timestamp_ms > now_ms + self.params.max_forward_drift_ms:
            raise TimestampTooFarAhead(f"{body.timestamp_ms} vs local {now_ms}")
        return v

    def receive(self, data: bytes, now_ms: int) -> AddOutcome:
        """verify + add; a rejection is counted by reason and re-raised for the caller to penalise.

        A block we already hold (the same bytes by another path: direct push and gossip) costs one
        hash, not a signature check."""
        if digest(data) in self._known:
            self.duplicates += 1
            return AddOutcome()
        try:
            v = self.verify(data, now_ms)
            return self.add(v, now_ms)
        except ProtocolError as exc:
            key = type(exc).__name__
            self.rejected[key] = self.rejected.get(key, 0) + 1
            raise

    def add(self, v: Vertex, now_ms: int) -> AddOutcome:
        out = AddOutcome()
        if v.round > self._signed_round[v.author]:
            self._signed_round[v.author] = v.round
        if v.ref in self._suspended:
            return out
        result = self.dag.insert(v)
        if result.status is InsertStatus.MISSING:
            self._suspend(v, result.missing)
            out.missing = tuple(m for m in result.missing if m not in self._suspended)
            return out
        if result.status is not InsertStatus.ACCEPTED:
            return out
        ready = [v]
        while ready:
            cur = ready.pop()
            self._on_accepted(cur, now_ms)
            out.accepted.append(cur)
            for child_ref in sorted(self._waiting.pop(cur.ref, ())):
                child = self._suspended.get(child_ref)
                if child is None:
                    continue
                r = self.dag.insert(child)
                if r.status is InsertStatus.ACCEPTED:
                    del self._suspended[child_ref]
                    ready.append(child)
                elif r.status is InsertStatus.MISSING:
                    for m in r.missing:
                        self._waiting.setdefault(m, set()).add(child_ref)
                else:
                    del self._suspended[child_ref]
        return out

    def _suspend(self, v: Vertex, missing: tuple[DagRef, ...]) -> None:
        if len(self._suspended) >= self.params.max_suspended:
            # Evict the block farthest ahead: a flood of fake future blocks must not push out
            # the real block we are waiting to complete.
            far = max(self._suspended, key=lambda r: (r.round, r.author, r.digest))
            if far.round <= v.round:
                return
            del self._suspended[far]
            self._known.pop(far.digest, None)
        self._suspended[v.ref] = v
        self._known[v.digest] = v.round
        for m in missing:
            self._waiting.setdefault(m, set()).add(v.ref)

    def _on_accepted(self, v: Vertex, now_ms: int) -> None:
        self._known[v.digest] = v.round
        if v.payload and v.round > self._payload_rounds[v.author]:
            self._payload_rounds[v.author] = v.round
        latest = self._latest[v.author]
        if latest is None or (v.round, latest.digest) > (latest.round, v.digest):
            self._latest[v.author] = v.ref  # highest round; lowest digest among equivocations
        seen = self._seen_authors.setdefault(v.round, set())
        if v.author in seen:
            self._note_equivocation(v)
        else:
            seen.add(v.author)
            stake = self._round_stake.get(v.round, 0) + self.committee.stakes[v.author]
            self._round_stake[v.round] = stake
            if stake >= self.committee.quorum and v.round > self._quorum_round:
                self._quorum_round = v.round
                self._quorum_since_ms = now_ms

    def _note_equivocation(self, v: Vertex) -> None:
        if len(self.equivocations) >= 64:
            return  # the driver drains this; a flood from one author needs one report per epoch
        for ref in self.dag.refs_at_slot(v.round, v.author):
            other = self.dag.get(ref)
            if ref.digest != v.digest and isinstance(other, Vertex):
                self.equivocations.append((other, v))
                return

    def missing_refs(self) -> list[DagRef]:
        """Refs that buffered blocks wait for and that we do not hold at all."""
        return sorted(m for m in self._waiting if m not in self._suspended and m not in self.dag)

    def proven_round(self) -> int:
        """The highest round R such that authors holding validity stake (so one honest at least) signed
        blocks at round >= R: how far the committee has provably got, whatever peers claim."""
        stake = 0
        for author in sorted(range(self.committee.size), key=lambda a: -self._signed_round[a]):
            stake += self.committee.stakes[author]
            if self.committee.reached_validity(stake):
                return self._signed_round[author]
        return 0

    @property
    def suspended_count(self) -> int:
        return len(self._suspended)

    # --- proposing ----------------------------------------------------------------------------

    @property
    def quorum_round(self) -> int:
        return self._quorum_round

    def next_proposal_at(self, now_ms: int, has_txs: bool = True) -> int | None:
        """The earliest time (ms) at which `build_block` would succeed, or None if not a validator
        or the threshold clock has not moved past our last proposal. `has_txs=False` (the driver has no
        transaction to propose) adds the rest of an idle validator."""
        if self.own_index is None:
            return None
        r = self._quorum_round
        if r + 1 <= self.last_proposed_round:
            return None
        delay = self.params.min_round_delay_ms
        if not has_txs and not self.payload_pending():
            delay = max(delay, self.params.idle_interval_ms)
        earliest = self.last_proposal_ms + delay
        if r >= 1 and not self._leaders_present(r):
            since = self._quorum_since_ms if self._quorum_since_ms is not None else now_ms
            earliest = max(earliest, since + self.params.leader_timeout_ms)
        return earliest

    def payload_pending(self) -> bool:
        """A block with transactions not committed yet (above its author's last committed round: an author's
        blocks commit in round order): it commits only once later rounds are proposed, so nobody rests while
        it waits, and a received block's payload wakes every validator."""
        committed = self.committer.linearizer.last_committed_rounds
        return any(p > c for p, c in zip(self._payload_rounds, committed, strict=True))

    def _leaders_present(self, round_: int) -> bool:
        return all(
            self.dag.refs_at_slot(s.round, s.author)
            for s in (self.committer.leader(round_, k) for k in range(self.committer.leaders_per_round))
        )

    def build_block(
        self, now_ms: int, payload: tuple[bytes, ...] = (), commit_votes: tuple[CommitVote, ...] = (),
        busy: bool | None = None,
    ) -> Vertex | None:
        """Sign the next block if due (an empty one waits out the idle interval, unless `busy`). The caller must
        persist it, then `add` it, then broadcast.

        `commit_votes`: the state-root votes the caller executed (advisory, spec/state-tree.md §7). `busy` (default:
        a payload) says the driver holds transactions: e.g. ones another validator proposes first (§D.2b), which
        only the rounds going on at full pace bring to their fallback turn."""
        due = self.next_proposal_at(now_ms, has_txs=bool(payload) if busy is None else busy)
        if due is None or now_ms < due or self.keypair is None or self.own_index is None:
            return None
        assert self._own_last is not None
        r = self._quorum_round + 1
        parents = [self._own_last]
        for author in range(self.committee.size):
            if author == self.own_index:
                continue
            ref = self._best_parent(author, r - 1)
            if ref is not None:
                parents.append(ref)
        parent_ts = max((self._timestamp(p) for p in parents), default=0)
        block = Block(
            chain_id=self.chain_id,
            epoch=self.epoch,
            round=r,
            author=self.own_index,
            timestamp_ms=max(now_ms, parent_ts),
            parents=tuple(BlockRef(p.round, p.author, p.digest) for p in parents),
            payload=tuple(payload),
            commit_votes=commit_votes,
        )
        signed = SignedBlock.create(block, self.keypair)
        data = signed.to_bytes()
        v = Vertex(r, self.own_index, dag_digest(data), tuple(parents), block.timestamp_ms, signed, data)
        self.last_proposed_round = r
        self.last_proposal_ms = now_ms
        self._own_last = v.ref
        return v

    def _best_parent(self, author: int, max_round: int) -> DagRef | None:
        latest = self._latest[author]
        if latest is None:
            return self.dag.genesis[author].ref if max_round >= 0 else None
        if latest.round <= max_round:
            return latest
        for r in range(max_round, max(self.dag.gc_round, 0), -1):
            refs = self.dag.refs_at_slot(r, author)
            if refs:
                return min(refs, key=lambda x: x.digest)
        return self.dag.genesis[author].ref if self.dag.gc_round < 0 else None

    def _timestamp(self, ref: DagRef) -> int:
        b = self.dag.get(ref)
        return b.timestamp_ms if b is not None else 0

    def restore_own(self, last_round: int, last_ref: DagRef | None) -> None:
        """After a restart: never propose at or below a round we already signed."""
        self.last_proposed_round = max(self.last_proposed_round, last_round)
        if last_ref is not None:
            self._own_last = last_ref

    # --- committing ---------------------------------------------------------------------------

    def try_commit(self) -> list[Committed]:
        """Newly committed sub-DAGs with their blocks, then prune the DAG below the GC round."""
        subs = self.committer.try_commit()
        out = []
        for sub in subs:
            vertices = []
            for ref in sub.blocks:
                b = self.dag.get(ref)
                assert isinstance(b, Vertex), f"committed block {ref} is not in the DAG"
                vertices.append(b)
            out.append(Committed(sub, tuple(vertices)))
        if subs:
            self.dag.prune(self.committer.gc_round)
            gc = self.committer.gc_round
            for r in [x for x in self._round_stake if x <= gc]:
                del self._round_stake[r]
                self._seen_authors.pop(r, None)
            if len(self._known) > 4 * self.committee.size * (self.params.gc_depth + 8):
                self._known = {d: r for d, r in self._known.items() if r > gc}
        return out
