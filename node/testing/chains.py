"""The deterministic simulator driving whole chains (node.chain.Chain: core + state + SQLite store)
instead of bare cores, so epochs, committee changes and equivocation penalties run as in the daemon.

Same event loop, faults and seeds as protocol/testing/sim.py; each node's clock is the simulated time
(plus its drift), and a probe asks for a given epoch's rounds, as the daemon's synchronizer does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from node.chain import Chain, CommitInfo
from protocol.consensus.core import CoreParams, Vertex, vertex_from_bytes
from protocol.crypto import Keypair
from protocol.errors import ProtocolError
from protocol.messages import Block, SignedBlock
from protocol.state.genesis import Endpoint, Genesis, build_genesis
from protocol.testing.sim import Faults, Simulation

UNIT = 10**9


@dataclass
class ChainNode:
    index: int
    chain: Chain
    commits: list[CommitInfo] = field(default_factory=list)
    tick_at: int | None = None
    rejected: int = 0
    last_sync_round: tuple[int, int] = (-1, -1)
    # epoch -> its committee's hotkeys, as this node switched to it: a check of "the committee after epoch E"
    # must not depend on how many epochs the node has gone through by the time the test looks
    committees: dict[int, frozenset[bytes]] = field(default_factory=dict)

    @property
    def core(self):  # the current epoch's core: it changes at each epoch boundary
        return self.chain.core


def sim_genesis(keys: list[Keypair], stakes: list[int], **params) -> Genesis:
    """Every key a self-staked committee member with a consensus endpoint (so it stays eligible)."""
    validators = [
        (k.public, s * 1000 * UNIT, Endpoint(f"12D3KooWsim{i}", (f"/ip4/127.0.0.1/tcp/{4000 + i}",)))
        for i, (k, s) in enumerate(zip(keys, stakes, strict=True))
    ]
    return build_genesis("sim", validators=validators, **params)


class ChainSimulation(Simulation):
    def __init__(
        self,
        home: Path,
        stakes: list[int],
        seed: int,
        faults: Faults | None = None,
        params: CoreParams | None = None,
        **genesis_params,
    ) -> None:
        super().__init__(stakes, seed, faults, params, chain_id="sim")
        self.genesis = sim_genesis(self.keys, stakes, **genesis_params)
        self.nodes = [  # type: ignore[assignment]
            ChainNode(i, Chain(home / f"n{i}", self.genesis, keypair=self.keys[i], params=self.params,
                               clock=self._clock_of(i)))
            for i in range(len(stakes))
        ]
        for n in self.nodes:
            n.chain.on_commit = lambda info, n=n: self._on_commit(n, info)
            self._note_committee(n)

    def _on_commit(self, n: ChainNode, info: CommitInfo) -> None:
        n.commits.append(info)
        self._note_committee(n)

    def _note_committee(self, n: ChainNode) -> None:
        st = n.chain.state
        n.committees.setdefault(st.epoch, frozenset(m.hotkey for m in st.epoch_committee))

    def _clock_of(self, i: int):
        return lambda: self._local(i) / 1000

    def close(self) -> None:
        for n in self.nodes:
            n.chain.close()

    # --- behaviour over chains -------------------------------------------------------------------

    def _tick(self, i: int) -> None:
        n = self.nodes[i]
        n.tick_at = None
        if i in self.faults.silent or not self._started(i):
            return
        v = n.chain.propose()
        if v is not None:
            if i in self.faults.equivocators:
                twin = self._twin(n, v)
                others = [j for j in range(len(self.nodes)) if j != i]
                for k, j in enumerate(others):
                    self._send(i, j, "block", ((twin if k % 2 else v).data,))
            else:
                self._broadcast(n, v)
        self._reschedule(n)

    def _twin(self, n, v: Vertex) -> Vertex:
        body = v.signed.body
        twin = Block(body.chain_id, body.epoch, body.round, body.author, body.timestamp_ms, body.parents,
                     (b"equivocation",), body.commit_votes)
        data = SignedBlock.create(twin, self.keys[n.index]).to_bytes()
        n.chain.store.put_blocks([(vertex_from_bytes(data).digest, body.epoch, body.round, body.author, data)])
        return vertex_from_bytes(data)

    def _on_block(self, src: int, dst: int, data: bytes) -> None:
        n = self.nodes[dst]
        if not self._connected(src, dst) or not self._started(dst) or dst in self.faults.silent:
            return
        try:
            _, missing = n.chain.receive_block(data)
        except ProtocolError:
            n.rejected += 1
            return
        if missing:
            self._send(dst, src, "fetch", (tuple(r.digest for r in missing),))
        self._reschedule(n)

    def _has_txs(self, n) -> bool:  # type: ignore[override]
        return n.chain.has_txs  # the chain's own view: its last payload, or a transaction admitted since

    def _on_fetch(self, src: int, dst: int, digests: tuple[bytes, ...]) -> None:
        if not self._connected(src, dst) or dst in self.faults.silent or not self._started(dst):
            return
        for data in self.nodes[dst].chain.blocks_by_digest(list(digests)):
            self._send(dst, src, "block", (data,))

    def _on_probe(self, src: int, dst: int, epoch: int, from_round: int) -> None:  # type: ignore[override]
        if not self._connected(src, dst) or dst in self.faults.silent or not self._started(dst):
            return
        for data in self.nodes[dst].chain.blocks_by_round(epoch, from_round, from_round + 8, 32):
            self._send(dst, src, "block", (data,))

    def _sync(self) -> None:
        for n in self.nodes:
            if n.index in self.faults.silent or not self._started(n.index):
                continue
            peers = [j for j in range(len(self.nodes)) if j != n.index]
            missing = n.core.missing_refs()
            if missing:
                self._send(n.index, self.rng.choice(peers), "fetch", (tuple(r.digest for r in missing[:32]),))
            mark = (n.chain.epoch, n.core.quorum_round)
            if mark == n.last_sync_round or any(m.chain.epoch > n.chain.epoch for m in self.nodes):
                self._send(n.index, self.rng.choice(peers), "probe", mark)
            n.last_sync_round = mark

    # --- checks ----------------------------------------------------------------------------------

    def commit_digests(self, n) -> list[bytes]:
        return [c.digest for c in n.commits]

    def assert_consistent(self) -> None:
        """Prefix agreement on commits, and the same state root at every shared height."""
        super().assert_consistent()
        honest = self.honest()
        longest = max(honest, key=lambda n: len(n.commits))
        for n in honest:
            for mine, ref in zip(n.commits, longest.commits, strict=False):
                assert mine.state_root == ref.state_root, f"node {n.index}: state root differs at height {mine.index}"
