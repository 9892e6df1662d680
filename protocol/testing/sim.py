"""Deterministic discrete-event simulation of many consensus nodes in one process.

Why not Trio tasks under MockClock: Trio deliberately randomises its run-queue order, so two runs
with one seed could interleave differently. Here one heap of (time, sequence) events drives every
node's sans-IO `protocol.consensus.core.Core`, and the only randomness is one `random.Random(seed)`: the same seed
gives the same run, bit for bit, and a failing seed replays exactly.

Faults: per-message loss, latency with heavy tails, partitions (groups that cannot talk), clock
drift per node, late start, silent nodes, and equivocators that sign two blocks per round and send
each to half of the peers. A node that receives a block with missing ancestors fetches them from
the sender (as the real synchronizer does), over the same lossy links.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from protocol.consensus.committee import Committee
from protocol.consensus.core import Committed, Core, CoreParams, Vertex, vertex_from_bytes
from protocol.crypto import Keypair
from protocol.errors import ProtocolError
from protocol.messages import Block, SignedBlock


@dataclass
class Faults:
    loss: float = 0.0  # probability that one message is lost
    latency_ms: tuple[int, int] = (5, 20)
    tail_p: float = 0.0  # probability of a slow message
    tail_ms: tuple[int, int] = (300, 800)
    drift_ms: dict[int, int] = field(default_factory=dict)  # node -> clock offset
    start_ms: dict[int, int] = field(default_factory=dict)  # node -> start time (late start)
    silent: frozenset[int] = frozenset()  # never propose, never answer
    equivocators: frozenset[int] = frozenset()


@dataclass
class SimNode:
    index: int
    core: Core
    commits: list[Committed] = field(default_factory=list)
    store: dict[bytes, bytes] = field(default_factory=dict)  # digest -> block bytes ever seen
    tick_at: int | None = None
    rejected: int = 0
    last_sync_round: int = -1


class Simulation:
    def __init__(
        self,
        stakes: list[int],
        seed: int,
        faults: Faults | None = None,
        params: CoreParams | None = None,
        on_commit: Callable[[int, Committed], None] | None = None,
        chain_id: str = "sim",
        auto_payload: bool = True,
    ) -> None:
        """`auto_payload`: every block carries a transaction; False: only what `submit` hands a node."""
        self.rng = random.Random(seed)
        self.faults = faults or Faults()
        self.keys = [Keypair(bytes([i + 1]) * 32) for i in range(len(stakes))]
        self.committee = Committee(tuple(k.public for k in self.keys), tuple(stakes))
        self.params = params or CoreParams()
        self.chain_id = chain_id
        self.nodes = [
            SimNode(i, Core(chain_id, 0, self.committee, b"sim-seed", keypair=self.keys[i], params=self.params))
            for i in range(len(stakes))
        ]
        self.now = 0
        self._events: list[tuple[int, int, str, tuple]] = []
        self._seq = 0
        self.partition: list[set[int]] | None = None
        self.on_commit = on_commit
        self.messages = 0
        self.auto_payload = auto_payload
        self.pending: list[list[bytes]] = [[] for _ in stakes]  # transactions submitted to each node
        for n in self.nodes:
            self._schedule_tick(n, self.faults.start_ms.get(n.index, 0))

    # --- event plumbing --------------------------------------------------------------------------

    def _push(self, at: int, kind: str, args: tuple) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, self._seq, kind, args))

    def _local(self, i: int) -> int:
        return self.now + self.faults.drift_ms.get(i, 0)

    def _started(self, i: int) -> bool:
        return self.now >= self.faults.start_ms.get(i, 0)

    def _connected(self, a: int, b: int) -> bool:
        if self.partition is None:
            return True
        return any(a in g and b in g for g in self.partition)

    def _latency(self) -> int:
        f = self.faults
        if f.tail_p and self.rng.random() < f.tail_p:
            return self.rng.randint(*f.tail_ms)
        return self.rng.randint(*f.latency_ms)

    def _send(self, src: int, dst: int, kind: str, args: tuple) -> None:
        self.messages += 1
        if self.faults.loss and self.rng.random() < self.faults.loss:
            return
        self._push(self.now + self._latency(), kind, (src, dst, *args))

    def _schedule_tick(self, n: SimNode, at: int) -> None:
        if n.tick_at is not None and n.tick_at <= at:
            return
        n.tick_at = at
        self._push(at, "tick", (n.index,))

    # --- behaviour -------------------------------------------------------------------------------

    def _broadcast(self, n: SimNode, v: Vertex, split: bool = False) -> None:
        others = [j for j in range(len(self.nodes)) if j != n.index]
        for k, j in enumerate(others):
            if split and k % 2:
                continue
            self._send(n.index, j, "block", (v.data,))

    def _tick(self, i: int) -> None:
        n = self.nodes[i]
        n.tick_at = None
        if i in self.faults.silent or not self._started(i):
            return
        local = self._local(i)
        if self.auto_payload:
            payload: tuple[bytes, ...] = (f"tx-{i}-{n.core.last_proposed_round + 1}".encode(),)
        else:
            payload = tuple(self.pending[i])
        v = n.core.build_block(local, payload=payload)
        if v is not None:
            self.pending[i].clear()
            n.store[v.digest] = v.data
            self._accept(n, n.core.add(v, local).accepted)
            if i in self.faults.equivocators:
                twin = self._twin(n, v)
                n.store[twin.digest] = twin.data
                self._broadcast(n, v, split=True)
                others = [j for j in range(len(self.nodes)) if j != i]
                for k, j in enumerate(others):
                    if k % 2:
                        self._send(i, j, "block", (twin.data,))
            else:
                self._broadcast(n, v)
        self._reschedule(n)

    def _twin(self, n: SimNode, v: Vertex) -> Vertex:
        """A second, different block for the same round, signed by the same key (equivocation)."""
        body = v.signed.body
        twin_body = Block(
            body.chain_id, body.epoch, body.round, body.author, body.timestamp_ms, body.parents,
            (b"equivocation",), body.commit_votes,
        )
        signed = SignedBlock.create(twin_body, self.keys[n.index])
        return vertex_from_bytes(signed.to_bytes())

    def _reschedule(self, n: SimNode) -> None:
        if n.index in self.faults.silent:
            return
        due = n.core.next_proposal_at(self._local(n.index), self._has_txs(n))
        if due is not None:
            self._schedule_tick(n, max(self.now + 1, due - self.faults.drift_ms.get(n.index, 0)))

    def _has_txs(self, n: SimNode) -> bool:
        """Whether the node has a transaction to propose (else it may rest, spec/consensus.md §D.2a)."""
        return self.auto_payload or bool(self.pending[n.index])

    def submit(self, i: int, tx: bytes, at_ms: int) -> None:
        """Hand node `i` a transaction at simulated time `at_ms` (as a client's submit to its API would)."""
        self._push(at_ms, "tx", (i, tx))

    def _on_tx(self, i: int, tx: bytes) -> None:
        self.pending[i].append(tx)
        self._reschedule(self.nodes[i])

    def _accept(self, n: SimNode, accepted: list[Vertex]) -> None:
        for v in accepted:
            n.store.setdefault(v.digest, v.data)
        if accepted:
            for c in n.core.try_commit():
                n.commits.append(c)
                if self.on_commit is not None:
                    self.on_commit(n.index, c)

    def _on_block(self, src: int, dst: int, data: bytes) -> None:
        n = self.nodes[dst]
        if not self._connected(src, dst) or not self._started(dst) or dst in self.faults.silent:
            return
        try:
            out = n.core.receive(data, self._local(dst))
        except ProtocolError:
            n.rejected += 1
            return
        self._accept(n, out.accepted)
        if out.missing:
            self._send(dst, src, "fetch", (tuple(r.digest for r in out.missing),))
        self._reschedule(n)

    def _on_fetch(self, src: int, dst: int, digests: tuple[bytes, ...]) -> None:
        # dst serves src's request (src asked dst)
        if not self._connected(src, dst) or dst in self.faults.silent or not self._started(dst):
            return
        n = self.nodes[dst]
        for d in digests:
            data = n.store.get(d)
            if data is not None:
                self._send(dst, src, "block", (data,))

    def _on_probe(self, src: int, dst: int, from_round: int) -> None:
        """dst answers src's round probe with the blocks it holds from `from_round` up (at most 32)."""
        if not self._connected(src, dst) or dst in self.faults.silent or not self._started(dst):
            return
        dag = self.nodes[dst].core.dag
        sent = 0
        for r in range(from_round, dag.highest_round + 1):
            for ref in dag.refs_at_round(r):
                if sent >= 32:
                    return
                b = dag.get(ref)
                if isinstance(b, Vertex):
                    self._send(dst, src, "block", (b.data,))
                    sent += 1

    def _sync(self) -> None:
        """Periodic synchronizer: fetch refs still missing, and probe a peer when the round stalls
        (blocks lost in a partition are never re-sent otherwise)."""
        peers_of = [[j for j in range(len(self.nodes)) if j != i] for i in range(len(self.nodes))]
        for n in self.nodes:
            if n.index in self.faults.silent or not self._started(n.index):
                continue
            missing = n.core.missing_refs()
            if missing:
                peer = self.rng.choice(peers_of[n.index])
                self._send(n.index, peer, "fetch", (tuple(r.digest for r in missing[:32]),))
            if n.core.quorum_round == n.last_sync_round:
                self._send(n.index, self.rng.choice(peers_of[n.index]), "probe", (n.core.quorum_round,))
            n.last_sync_round = n.core.quorum_round

    # --- running ---------------------------------------------------------------------------------

    def run(self, until_ms: int, sync_every_ms: int = 100) -> None:
        next_sync = self.now + sync_every_ms
        while self._events and self._events[0][0] <= until_ms:
            if next_sync <= self._events[0][0]:
                # a sync pass is an event too: what it sends is due after it, never before the clock
                self.now = next_sync
                self._sync()
                next_sync += sync_every_ms
                continue
            at, _, kind, args = heapq.heappop(self._events)
            self.now = at
            if kind == "tick":
                self._tick(*args)
            elif kind == "block":
                self._on_block(*args)
            elif kind == "fetch":
                self._on_fetch(*args)
            elif kind == "probe":
                self._on_probe(*args)
            elif kind == "tx":
                self._on_tx(*args)
            if not self._events:
                # idle network: keep the synchronizer and the proposers' timers alive
                for n in self.nodes:
                    self._reschedule(n)
                self._push(next_sync, "noop", ())
        self.now = until_ms

    def honest(self) -> list[SimNode]:
        bad = self.faults.silent | self.faults.equivocators
        return [n for n in self.nodes if n.index not in bad]

    def commit_digests(self, n: SimNode) -> list[bytes]:
        return [c.sub.digest for c in n.commits]

    def assert_consistent(self) -> None:
        """Every honest node's commit sequence is a prefix of the longest one."""
        seqs = [self.commit_digests(n) for n in self.honest()]
        longest = max(seqs, key=len)
        for n, s in zip(self.honest(), seqs, strict=True):
            assert s == longest[: len(s)], f"node {n.index} diverged at commit {_first_diff(s, longest)}"


def _first_diff(a: list[bytes], b: list[bytes]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))
