"""One node's chain: consensus core + state machine + store + mempool, without networking.

The daemon (node/daemon.py) feeds it bytes from the network and broadcasts what it returns; the
tests drive it directly. Every method runs on the Trio thread; disk writes are small SQLite
transactions (WAL).

Commit path: accepted blocks are stored; each new commit's transactions (its blocks' payloads in
linearised order) run through `apply_commit` (protocol/state/transition.py); then the commit, its state root, and every
`snapshot_every` commits a state snapshot are written in one transaction. A crash between the
two leaves the commit underived, and the restart derives it again from the stored blocks.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from node.certificates import VoteBook
from node.mempool import Mempool
from node.storage import BoundaryProof, CommitRecord, Store, StoreError
from node.treestore import load_state, snapshot_changes
from protocol import crypto
from protocol.consensus.block import BadAuthor, DagRef
from protocol.consensus.committee import Committee
from protocol.consensus.core import Committed, Core, CoreParams, Vertex, WrongEpoch, vertex_from_bytes
from protocol.consensus.linearizer import CommittedSubDag
from protocol.crypto import Keypair
from protocol.errors import ProtocolError, WrongChainError
from protocol.messages import MAX_BLOCK_TXS, BlockRef, Commit, ReportEquivocation, SignedTransaction, Transaction
from protocol.state import keys
from protocol.state.genesis import Genesis
from protocol.state.governance import NETWORK_PARAMS
from protocol.state.state import State
from protocol.state.transition import Receipt, apply_commit, check_tx

log = logging.getLogger(__name__)

MiB = 1024 * 1024
EARLY_BYTES = 16 * MiB  # blocks of the next epoch held until we get there, all senders together
EARLY_SENDER_BYTES = 4 * MiB + 64 * 1024  # one sender's unvouched share: one block of the largest size
EARLY_COUNT = 4096  # and at most this many (small blocks cost per-entry overhead too)
EXECUTED_MEMORY = 1 << 15  # executed tx digests kept to tell duplicates from failures (~4 MB)


@dataclass
class Early:
    data: bytes
    sender: str | None  # who sent it: charged if it fails once its epoch is reached
    vouched: bool  # signed by its author's key in the committee predicted for the next epoch


class EarlyBlocks:
    """Blocks of the next epoch, held until the chain gets there (spec/p2p.md, Threat model).

    Capped in bytes, in total and per sender. Blocks whose signature verifies against the predicted
    next committee ("vouched": signed by a real staked key) may push out unvouched ones, so forged
    blocks can never crowd out honest ones; an unvouched block is held under its sender's share
    and the sender is charged if it fails verification at the epoch switch. Dropping a block here
    is always safe: after the switch the synchronizer fetches whatever is missing."""

    def __init__(self, cap: int = EARLY_BYTES, sender_cap: int = EARLY_SENDER_BYTES, count: int = EARLY_COUNT) -> None:
        self.cap, self.sender_cap, self.count = cap, sender_cap, count
        self._items: dict[bytes, Early] = {}
        self.bytes = 0
        self._by_sender: dict[str, int] = {}  # unvouched bytes per sender
        self.dropped = 0
        self.vouched = 0  # blocks held that known keys signed: proof the committee is ahead of us

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, digest: bytes, e: Early) -> bool:
        """Hold `e` if the caps allow (making room by evicting unvouched blocks for a vouched one)."""
        if digest in self._items:
            return True
        size = len(e.data)
        if not e.vouched and e.sender is not None and self._by_sender.get(e.sender, 0) + size > self.sender_cap:
            self.dropped += 1
            return False
        if e.vouched:
            for d in [d for d, x in self._items.items() if not x.vouched]:
                if self.bytes + size <= self.cap and len(self._items) < self.count:
                    break
                self._remove(d)
        if self.bytes + size > self.cap or len(self._items) >= self.count:
            self.dropped += 1
            return False
        self._items[digest] = e
        self.bytes += size
        self.vouched += e.vouched
        if not e.vouched and e.sender is not None:
            self._by_sender[e.sender] = self._by_sender.get(e.sender, 0) + size
        return True

    def _remove(self, digest: bytes) -> None:
        e = self._items.pop(digest)
        self.bytes -= len(e.data)
        self.vouched -= e.vouched
        if not e.vouched and e.sender is not None:
            left = self._by_sender[e.sender] - len(e.data)
            if left:
                self._by_sender[e.sender] = left
            else:
                del self._by_sender[e.sender]

    def take(self) -> list[Early]:
        """Everything held, oldest first, leaving the buffer empty."""
        items = list(self._items.values())
        self._items.clear()
        self._by_sender.clear()
        self.bytes = self.vouched = 0
        return items


@dataclass
class CommitInfo:
    index: int
    digest: bytes
    leader: DagRef
    blocks: int
    txs: int
    ok_txs: int
    timestamp_ms: int
    committed_ms: int
    state_root: bytes
    latency_ms: int | None  # our view: leader block creation to this commit
    dup_txs: int = 0  # copies of an executed transaction (receipt rule `duplicate`): neither ok nor failed


@dataclass
class ChainStats:
    commits: int = 0
    txs_ok: int = 0
    txs_failed: int = 0
    txs_duplicate: int = 0
    blocks_accepted: int = 0
    latencies_ms: list[int] = field(default_factory=list)  # leader creation -> local commit, recent

    @property
    def tx_copies(self) -> int:
        """Transaction copies in committed blocks: each executed one once, plus every duplicate."""
        return self.txs_ok + self.txs_failed + self.txs_duplicate

    @property
    def duplicate_rate(self) -> float:
        """Duplicates over copies in committed blocks (one proposer per transaction keeps it near 0)."""
        return self.txs_duplicate / self.tx_copies if self.tx_copies else 0.0


def epoch_committee(state: State) -> Committee:
    """The consensus committee of the state's current epoch (spec/consensus.md §7)."""
    members = state.epoch_committee
    return Committee(tuple(m.hotkey for m in members), tuple(m.stake for m in members))


class Chain:
    def __init__(
        self,
        home: str | Path,
        genesis: Genesis,
        *,
        keypair: Keypair | None = None,
        params: CoreParams | None = None,
        snapshot_every: int = 50,
        clock=time.time,
        max_block_txs: int = 1000,
    ) -> None:
        self.home = Path(home)
        # config.toml's max_block_txs, within the wire's cap: a block over MAX_BLOCK_TXS is one every peer rejects
        self.max_block_txs = max(1, min(max_block_txs, MAX_BLOCK_TXS))
        self.genesis = genesis
        self.genesis_hash = genesis.hash()
        self.chain_id = genesis.chain_id
        self.snapshot_every = snapshot_every
        self.clock = clock
        if not genesis.committee:
            raise StoreError("the genesis has no committee: at least one validator is needed")
        self.store = Store(self.home / "chain.db")
        self.store.bind_genesis(self.genesis_hash)
        self.keypair = keypair
        self.params = params or CoreParams()
        self.mempool = Mempool()
        self.stats = ChainStats()
        self.recent: deque[CommitInfo] = deque(maxlen=10_000)  # for status, timing and latency figures
        # digests of recently executed transactions: a later copy (another validator's block carried it too)
        # is a duplicate, not a failure. Labels only, so in memory and bounded; a restart forgets it.
        self._executed: OrderedDict[bytes, None] = OrderedDict()
        self.on_commit: Callable[[CommitInfo], None] | None = None
        self.on_evidence: Callable[[bytes], None] | None = None  # a signed evidence transaction to gossip
        self.on_tx: Callable[[], None] | None = None  # a transaction was admitted (wakes a resting proposer)
        self.has_txs = True  # the last payload taken was not empty, or a transaction came since (rest when idle)
        self.early = EarlyBlocks()  # blocks of the next epoch, replayed when we get there
        # called with the sender of an early block that failed once its epoch came (the daemon charges it)
        self.on_offence: Callable[[str], None] | None = None
        self._next_keys: tuple[int, tuple[bytes, ...]] = (-1, ())  # (height, predicted next committee keys)
        self._reported: set[tuple[int, int]] = set()  # (epoch, author) we already reported
        self.votes = VoteBook(self.store)  # state-root votes, ours and the DAG's (spec/state-tree.md §7)
        self.core: Core
        self.state = self._restore()

    # --- epochs -------------------------------------------------------------------------------

    def _new_core(self, state: State) -> Core:
        return Core(
            self.chain_id,
            state.epoch,
            epoch_committee(state),
            state.epoch_seed,
            keypair=self.keypair,
            params=self.params,
            genesis_commit_digest=state.epoch_start_digest,
            start_index=state.epoch_start - 1,
        )

    @property
    def epoch(self) -> int:
        return self.core.epoch

    @property
    def committee(self) -> Committee:
        return self.core.committee

    @property
    def is_validator(self) -> bool:
        """A member of the current epoch's committee (it changes at epoch boundaries)."""
        return self.core.own_index is not None

    def _switch_epoch(self, state: State) -> list[Vertex]:
        """Leave the finished epoch's DAG for a fresh one; replay blocks that arrived early."""
        self.core = self._new_core(state)
        self.mempool.requeue_all()  # blocks of the old epoch that never committed carry nothing now
        log.info("epoch %d from height %d: committee of %d", state.epoch, state.epoch_start, self.core.committee.size)
        accepted: list[Vertex] = []
        now = self.now_ms()
        for e in self.early.take():
            try:
                accepted.extend(self.core.receive(e.data, now).accepted)
            except ProtocolError as exc:
                if e.sender is not None and self.on_offence is not None and not isinstance(exc, WrongEpoch):
                    self.on_offence(e.sender)
        if accepted:
            self._record(accepted)
        return accepted

    # --- start-up -----------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _restore(self) -> State:
        """State from the latest snapshot (its stored tree and stake positions, node/treestore.py) plus replayed
        commits; the DAG of the current epoch from stored blocks."""
        state = load_state(self.store, self.genesis)  # from the stored tree's records; the tree itself is not rebuilt
        last = self.store.last_commit()
        if last is not None:
            for rec in self.store.commits(state.height + 1, last.index):
                commit = Commit.from_bytes(rec.data)
                txs = self._payload_of(commit)
                apply_commit(
                    state, rec.index, txs, verified=dict.fromkeys(tx_digests(txs)), leader_round=commit.leader.round,
                    commit_digest=rec.digest,
                )
                if state.root() != rec.state_root:
                    raise StoreError(
                        f"replaying commit {rec.index} gives state root {state.root().hex()[:16]}…, "
                        f"the store says {rec.state_root.hex()[:16]}…: run `tensornet node db check`"
                    )
        self.core = self._new_core(state)
        gc = -1
        if last is not None and last.index >= state.epoch_start:
            records = self.store.commits(max(state.epoch_start, last.index - 200), last.index)
            self.core.committer.restore([_sub_from_record(r) for r in records], self._stored_parents)
            gc = self.core.committer.gc_round
            self.core.dag.prune(gc)
        now = self.now_ms()
        for data in self.store.blocks_in_rounds(state.epoch, gc + 1, 1 << 62):
            try:
                self.core.add(vertex_from_bytes(data), now)
            except ProtocolError:
                continue  # a block we stored is always valid; skip rather than refuse to start
        own_round = self.store.last_own_round(state.epoch)
        if self.core.own_index is not None and own_round:
            digest = self.store.own_block(state.epoch, own_round)
            self.core.restore_own(own_round, DagRef(own_round, self.core.own_index, digest) if digest else None)
        # blocks stored but not yet committed when we stopped: derive those commits now
        self._commit_ready(state)
        return state

    def _stored_parents(self, ref: DagRef) -> tuple[DagRef, ...]:
        """A committed block's parents, from the store (leader reputation replays its window, spec/consensus.md)."""
        data = self.store.get_block(ref.digest)
        if data is None:
            raise StoreError(f"committed block {ref.digest.hex()[:16]}… is not stored: run `tensornet node db check`")
        return vertex_from_bytes(data).parents

    def _payload_of(self, commit: Commit) -> list[bytes]:
        txs: list[bytes] = []
        for ref in commit.blocks:
            data = self.store.get_block(ref.digest)
            if data is None:
                raise StoreError(f"commit {commit.index} names block {ref.digest.hex()[:16]}… that is not stored")
            txs.extend(vertex_from_bytes(data).payload)
        return txs

    # --- blocks -------------------------------------------------------------------------------

    def receive_block(self, data: bytes, sender: str | None = None) -> tuple[list[Vertex], tuple[DagRef, ...]]:
        """Verify and insert a block from the network (typed ProtocolError if invalid); commits that
        follow are applied and reported through `on_commit`.

        Another epoch's block raises WrongEpoch, not an offence. A next-epoch block is first checked as
        far as it can be now (`_check_early`: an invalid one raises its ProtocolError), then held in
        the byte-capped `early` buffer under `sender`; blocks further ahead are dropped (a node that
        far behind catches up by commit ranges)."""
        try:
            out = self.core.receive(data, self.now_ms())
        except WrongEpoch as exc:
            if exc.epoch == self.core.epoch + 1 and exc.vertex is not None:
                vouched = self._check_early(exc.vertex)
                self.early.offer(exc.vertex.digest, Early(data, sender, vouched))
            raise
        self._after_accept(out.accepted)
        return out.accepted, out.missing

    def _check_early(self, v: Vertex) -> bool:
        """What can be checked of a next-epoch block before its committee is final: its chain and an
        author index any committee could have (typed rejection otherwise). True if its signature
        verifies under the committee the state predicts for the next epoch (a later transaction can
        still change that committee, so a mismatch is not yet proof of fault)."""
        body = v.signed.body
        if body.chain_id != self.chain_id:
            raise WrongChainError(f"block is for chain {body.chain_id!r}, this node is on {self.chain_id!r}")
        # governance may still change committee_size before the switch: bound by what it could set
        bound = max(NETWORK_PARAMS["committee_size"][1], len(self.state.params.genesis_committee))
        if body.author >= bound:
            raise BadAuthor(f"author {body.author} where no committee has more than {bound} members")
        if self._next_keys[0] != self.state.height:
            self._next_keys = (self.state.height, tuple(m.hotkey for m in self.state.committee()))
        keys = self._next_keys[1]
        if body.author >= len(keys):
            return False
        try:
            v.signed.verify(self.chain_id, keys[body.author])
        except ProtocolError:
            return False
        return True

    def _after_accept(self, accepted: list[Vertex]) -> list[CommitInfo]:
        if not accepted:
            return []
        self._record(accepted)
        return self._commit_ready(self.state)

    def _record(self, accepted: list[Vertex]) -> None:
        """Store newly accepted blocks of the current epoch, count them, report any equivocation."""
        self.store.put_blocks((v.digest, self.core.epoch, v.round, v.author, v.data) for v in accepted)
        self.votes.record(accepted, self.core.committee.public_keys)
        self.stats.blocks_accepted += len(accepted)
        self._report_equivocations()

    def _commit_ready(self, state: State) -> list[CommitInfo]:
        """Apply every commit the DAG has decided; at an epoch's closing commit, the rest of that
        epoch's DAG is dropped and the next epoch's core takes over."""
        infos: list[CommitInfo] = []
        more = True
        while more:
            more = False
            for c in self.core.try_commit():
                infos.append(self._apply(c, state))
                if state.epoch != self.core.epoch:
                    more = bool(self._switch_epoch(state))
                    break
        return infos

    def _report_equivocations(self) -> None:
        """Turn two blocks of one slot into signed evidence in our mempool (spec/economics.md §4)."""
        pairs, self.core.equivocations = self.core.equivocations, []
        if self.keypair is None:
            return
        for a, b in pairs:
            key = (self.core.epoch, a.author)
            if key in self._reported:
                continue
            self._reported.add(key)
            call = ReportEquivocation(a.signed.signed_header(), b.signed.signed_header())
            pub = self.keypair.public
            tx = Transaction(self.chain_id, pub, self.next_nonce(pub), call, 0)
            data = SignedTransaction.create(tx, self.keypair).to_bytes()
            try:
                self.submit_tx(data)
            except ProtocolError as exc:
                log.info("equivocation by author %d in epoch %d not reported: %s", a.author, key[0], exc)
                continue
            log.warning("author %d signed two blocks for round %d of epoch %d: evidence submitted", a.author, a.round,
                        key[0])
            if self.on_evidence is not None:
                self.on_evidence(data)

    def propose(self) -> Vertex | None:
        """Build, durably store, and insert our next block if one is due; the caller broadcasts it."""
        now = self.now_ms()
        due = self.core.next_proposal_at(now)
        if due is None or now < due:
            return None
        own = self.core.own_index  # one proposer per transaction: its owner, or a fallback once it waited
        proposer = (0, 1) if own is None else (own, self.committee.size)
        payload = self.mempool.take(self.core.quorum_round + 1, self.max_block_txs, proposer=proposer)
        # None: an empty block waits out the idle interval (spec/consensus.md §D.2a), unless we hold a transaction
        # that may apply now: its owner may be down, and its fallback turn comes only with rounds (§D.2b)
        self.has_txs = bool(payload) or self.mempool.has_runnable()
        v = self.core.build_block(now, tuple(payload), self.votes.own(), busy=self.has_txs)
        if v is None:
            return None
        self.votes.sent()
        self.store.record_own_block(self.core.epoch, v.round, v.digest, v.data, v.author)
        self.core.add(v, now)
        self._after_accept([v])
        return v

    def next_proposal_in(self) -> float | None:
        """Seconds until a proposal may be due (None: not until a block arrives)."""
        now = self.now_ms()
        due = self.core.next_proposal_at(now, self.has_txs)
        return None if due is None else max(0.0, (due - now) / 1000)

    # --- commits ------------------------------------------------------------------------------

    def _apply(self, c: Committed, state: State) -> CommitInfo:
        txs = [tx for v in c.vertices for tx in v.payload]
        epoch = state.epoch
        receipts = apply_commit(  # what our mempool admitted is decoded and verified already
            state, c.sub.index, txs, verified=self.mempool.checked(tx_digests(txs)), leader_round=c.sub.leader.round,
            commit_digest=c.sub.digest,
        )
        root = state.root()
        commit = Commit(
            index=c.sub.index,
            leader=BlockRef(*c.sub.leader),
            blocks=tuple(BlockRef(*r) for r in c.sub.blocks),
            timestamp_ms=c.sub.timestamp_ms,
            prev_digest=c.sub.prev_digest,
        )
        boundary = None
        if state.epoch != epoch:  # the closing commit: keep the next committee proven under its root (state-tree §7)
            key = keys.global_("epoch")
            value, path = state.prove(key)
            boundary = BoundaryProof(epoch, key, value, path.to_bytes())
        # a snapshot writes what changed since the last one (the tree's nodes, new stake positions), not the state
        snapshot = snapshot_changes(state, self.store) if c.sub.index % self.snapshot_every == 0 else None
        # the proof goes in the commit's transaction: a restart replays stored commits without switching epochs
        self.store.put_commit(
            CommitRecord(c.sub.index, c.sub.digest, commit.to_bytes(), root), snapshot, boundary=boundary
        )
        self.votes.executed(c.sub.index, c.sub.digest, root)
        done = [r.digest for r in receipts]
        self.mempool.remove(done)
        now = self.now_ms()
        ok = sum(1 for r in receipts if r.ok)
        dup = self._count_duplicates(receipts)
        leader = next((v for v in c.vertices if v.ref == c.sub.leader), None)
        latency = None if leader is None else max(0, now - leader.timestamp_ms)
        info = CommitInfo(
            c.sub.index, c.sub.digest, c.sub.leader, len(c.vertices), len(txs), ok, c.sub.timestamp_ms, now, root,
            latency, dup,
        )
        self.stats.commits += 1
        self.stats.txs_ok += ok
        self.stats.txs_failed += len(txs) - ok - dup
        self.stats.txs_duplicate += dup
        if latency is not None:
            self.stats.latencies_ms.append(latency)
            del self.stats.latencies_ms[:-1000]
        self.recent.append(info)
        if self.on_commit is not None:
            self.on_commit(info)
        return info

    def _count_duplicates(self, receipts: list[Receipt]) -> int:
        """Copies of executed transactions: in this commit (rule `duplicate`) or in an earlier one (a stale
        `nonce` whose digest we executed). Remembers this commit's executed digests."""
        dup = 0
        for r in receipts:
            if r.executed:
                self._executed[r.digest] = None
            elif r.rule == "duplicate" or (r.rule == "nonce" and r.digest in self._executed):
                dup += 1
        while len(self._executed) > EXECUTED_MEMORY:
            self._executed.popitem(last=False)
        return dup

    @property
    def height(self) -> int:
        return self.state.height

    # --- transactions -------------------------------------------------------------------------

    def submit_tx(self, data: bytes) -> bytes:
        """Admit a signed transaction to the mempool (typed rejection otherwise); returns its digest."""
        try:
            stx = SignedTransaction.from_bytes(data)
            # envelope, fee payable, call (at the next nonce)
            fee = check_tx(self.state, stx, allow_future_nonce=True, size=len(data))
        except ProtocolError as exc:  # counted with the mempool's own refusals, so a flood shows in /metrics
            self.mempool.count_refusal(getattr(exc, "rule", "decode"))
            raise
        digest = crypto.digest(data)
        body, st = stx.body, self.state
        self.mempool.add(
            digest, data, body.signer, body.nonce, fee=fee, tip=body.tip, next_nonce=st.next_nonce(body.signer),
            balance=st.balances.get(body.signer, 0), round_=self.core.quorum_round, tx=stx,
        )
        if not self.has_txs:  # the first since our last (empty) payload: wake a resting proposer, once
            self.has_txs = True
            if self.on_tx is not None:
                self.on_tx()
        return digest

    def next_nonce(self, signer: bytes) -> int:
        """The nonce a new transaction should carry: after the chain's and the pending ones."""
        return max(self.state.next_nonce(signer), self.mempool.next_nonce(signer))

    # --- serving peers ------------------------------------------------------------------------

    def blocks_by_digest(self, digests: list[bytes]) -> list[bytes]:
        out = []
        for d in digests[:32]:
            data = self.store.get_block(d)
            if data is not None:
                out.append(data)
        return out

    def blocks_by_round(self, epoch: int, first: int, last: int, limit: int = 32) -> list[bytes]:
        return self.store.blocks_in_rounds(epoch, first, last, limit)

    def close(self) -> None:
        self.store.close()


def tx_digests(txs: list[bytes]) -> list[bytes]:
    return [crypto.digest(t) for t in txs]


def _sub_from_record(rec: CommitRecord) -> CommittedSubDag:
    c = Commit.from_bytes(rec.data)
    return CommittedSubDag(
        c.index,
        DagRef(c.leader.round, c.leader.author, c.leader.digest),
        tuple(DagRef(r.round, r.author, r.digest) for r in c.blocks),
        c.timestamp_ms,
        c.prev_digest,
        rec.digest,
    )
