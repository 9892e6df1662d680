"""How a node gets the blocks it lacks (spec/p2p.md, spec/consensus.md):
- the fetcher asks for missing ancestors: the peer that sent the child first (it must have them), then
  each missing block's author;
- the synchronizer asks random peers for whatever is still missing, catches up by commit ranges when f+1
  peers agree it is far behind, and, when the round stalls, probes peers for the next rounds' blocks
  (how a late or restarted node catches up).
Nothing fetched is trusted: every block goes through the chain's verification and the DAG.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import trio

from node.chain import Chain
from node.health import agreed, rounds_ahead, statuses_of, sync_distance
from node.metrics import NodeMetrics
from node.service import BLOCKS_SPEC, COMMITS_SPEC, PROBE_ROUNDS
from p2pnet.reqresp import RequestError
from protocol.consensus.block import DagRef
from protocol.consensus.committer import SafetyViolation
from protocol.consensus.core import WrongEpoch
from protocol.errors import ProtocolError
from protocol.messages import MAX_FETCH, BlockRef, BlocksResponse, CommitsResponse, FetchBlocks, FetchCommits

log = logging.getLogger("node")

SYNC_INTERVAL = 0.2
FAR_BEHIND = 64  # heights: past this a node catches up by commit ranges rather than round probes


def connected_peers(stack: Any) -> list[Any]:
    """Chain peers past the handshake, in a fixed order."""
    hs = stack.handshake
    return sorted(hs.statuses, key=str) if hs is not None else []


class Fetcher:
    """Fetches blocks from one peer at a time and feeds them to the chain.

    `stack` returns the p2p stack once it is open; `wake` tells the proposer blocks arrived; `halt`
    stops the node on a safety violation."""

    def __init__(
        self,
        chain: Chain,
        metrics: NodeMetrics,
        *,
        stack: Callable[[], Any],
        wake: Callable[[], None],
        halt: Callable[[Exception], None],
    ) -> None:
        self.chain = chain
        self.metrics = metrics
        self._stack = stack
        self._wake = wake
        self._halt = halt
        self._send, self._recv = trio.open_memory_channel[tuple[Any, tuple[DagRef, ...]]](1024)

    def want(self, peer: Any, missing: Sequence[DagRef]) -> None:
        """Queue `peer`'s missing ancestors; when the queue is full the synchronizer's pass asks again."""
        try:
            self._send.send_nowait((peer, missing))
        except trio.WouldBlock:
            pass

    async def fetch(self, peer: Any, refs: Sequence[DagRef]) -> int:
        req = FetchBlocks(self.chain.epoch, tuple(BlockRef(*r) for r in refs[:32]), 0, 0)
        return await self.request_blocks(peer, req)

    async def request_blocks(self, peer: Any, req: FetchBlocks) -> int:
        """Ask `peer`, feed each block to the chain; returns how many blocks the DAG accepted."""
        try:
            raw = await self._stack().reqresp.request(peer, BLOCKS_SPEC.protocol_id, req.to_bytes())
            resp = BlocksResponse.from_bytes(raw)
        except (RequestError, ProtocolError) as exc:
            log.debug("block fetch from %s failed: %s", peer, exc)
            return 0
        got = 0
        for data in resp.blocks:
            try:
                accepted, missing = self.chain.receive_block(data, str(peer))
            except WrongEpoch:
                continue
            except ProtocolError as exc:
                self.metrics.rejects.labels(type(exc).__name__).inc()
                continue
            except SafetyViolation as exc:
                self._halt(exc)
                return got
            got += len(accepted)
            if missing:
                self.want(peer, missing)
        if got:
            self._wake()
        return got

    async def run(self) -> None:
        """Missing ancestors: ask the peer that sent the child first (it must have them), then each
        missing block's author; the synchronizer asks random peers for whatever is still missing."""
        async for peer, refs in self._recv:
            still = [r for r in refs if r not in self.chain.core.dag]
            if still:
                await self.fetch(peer, still)
            missing = set(self.chain.core.missing_refs())
            for author, author_refs in self._by_author_peer([r for r in still if r in missing]).items():
                if author != peer:
                    await self.fetch(author, author_refs)

    def _by_author_peer(self, refs: list[DagRef]) -> dict[Any, list[DagRef]]:
        """Group refs by the connected peer that is their author (committee endpoints name peer ids)."""
        if not refs:
            return {}
        members = self.chain.state.epoch_committee
        connected = {str(p): p for p in connected_peers(self._stack())}
        out: dict[Any, list[DagRef]] = {}
        for r in refs:
            pid = members[r.author].peer_id if r.author < len(members) else ""
            if pid in connected:
                out.setdefault(connected[pid], []).append(r)
        return out


class Synchronizer:
    """The periodic pass: missing blocks from a random peer, commit ranges when far behind, round probes
    when stalled. Peers' claims only pick whom to ask; `fruitless` counts, per peer, the probes in a row
    it claimed to be ahead for and sent nothing, so a liar goes last."""

    def __init__(self, chain: Chain, fetcher: Fetcher, stack: Callable[[], Any]) -> None:
        self.chain = chain
        self.fetcher = fetcher
        self._stack = stack
        self.fruitless: dict[str, int] = {}
        self.catching_up = False  # the last commit-range sync brought blocks: provably far behind
        self.commit_sync_blocks = 0  # blocks fetched through commit ranges (far-behind catch-up)
        self._last_sync_round: tuple[int, int] = (-1, -1)
        self._round_since = 0.0  # when (epoch, round) last moved (trio clock)

    async def run(self) -> None:
        rng = random.Random()
        again = False
        while True:
            # far behind and the last probe brought blocks: go again at once
            await trio.sleep(0 if again else SYNC_INTERVAL)
            again = False
            peers = connected_peers(self._stack())
            if not peers:
                continue
            missing = self.chain.core.missing_refs()
            if missing:
                await self.fetcher.fetch(rng.choice(peers), missing)
            far = self.far_ahead_peer()
            if far is not None:
                got = await self.sync_commit_range(far)
                self.note_probe(far, got)
                again = self.catching_up = got > 0
                if got:
                    continue
            else:
                self.catching_up = False
            mark = (self.chain.epoch, self.chain.core.quorum_round)
            now = trio.current_time()
            if mark != self._last_sync_round:
                self._round_since = now
            stalled = mark == self._last_sync_round and now - self._round_since >= self._patience()
            if stalled or self._distance() > 2:
                again = await self._probe_rounds(peers, rng)
            self._last_sync_round = mark

    def _patience(self) -> float:
        """Seconds an unmoved round is normal: none when busy, a rest and a leader timeout when the network rests
        (spec/consensus.md §D.2a), so a resting node does not probe a peer five times per round."""
        if self.chain.has_txs or self.chain.core.payload_pending():
            return 0.0
        params = self.chain.params
        return (params.idle_interval_ms + params.leader_timeout_ms) / 1000

    def _distance(self) -> int:
        return sync_distance(self.chain, statuses_of(self._stack()))

    async def _probe_rounds(self, peers: list[Any], rng: random.Random) -> bool:
        """Stalled or behind: ask the most advanced peer for our epoch's next rounds' blocks; True when
        they came and we are still behind (go again at once)."""
        r = self.chain.core.quorum_round
        statuses = self._stack().handshake.statuses
        ahead = [p for p in peers if p in statuses and rounds_ahead(self.chain, statuses[p]) > 0]
        # a peer whose claims brought nothing lately goes last, however far ahead it claims to be
        peer = (
            min(ahead, key=lambda p: (self.fruitless.get(str(p), 0), -rounds_ahead(self.chain, statuses[p])))
            if ahead else rng.choice(peers)
        )
        got = await self.fetcher.request_blocks(peer, FetchBlocks(self.chain.epoch, (), r, r + PROBE_ROUNDS))
        if peer in ahead:
            self.note_probe(peer, got)
        return got > 0 and self._distance() > 2

    def far_ahead_peer(self) -> Any | None:
        """A peer to catch up from when f+1 peers agree we are more than FAR_BEHIND heights behind:
        among those claiming at least that, the one whose claims brought blocks most recently."""
        statuses = self._stack().handshake.statuses
        if not statuses:
            return None
        target = agreed(self.chain, [st.height for st in statuses.values()])
        if target <= self.chain.height + FAR_BEHIND:
            return None
        return min(
            (p for p, st in statuses.items() if st.height >= target),
            key=lambda p: (self.fruitless.get(str(p), 0), str(p)),
        )

    def note_probe(self, peer: Any, got: int) -> None:
        """Remember which peers' claims of being ahead are borne out by blocks (sync prefers those)."""
        key = str(peer)
        if got:
            self.fruitless.pop(key, None)
            return
        if len(self.fruitless) >= 1024:  # only connected peers matter; forget the rest
            live = {str(p) for p in connected_peers(self._stack())}
            self.fruitless = {k: v for k, v in self.fruitless.items() if k in live}
        self.fruitless[key] = self.fruitless.get(key, 0) + 1

    async def sync_commit_range(self, peer: Any) -> int:
        """Far behind: ask `peer` for the next commits, then for exactly the blocks they order, oldest
        round first. Nothing is trusted: the blocks go through verification and the DAG, and the commit
        rule derives the same commits here (later epochs' blocks wait for their epoch in the chain)."""
        start = self.chain.height + 1
        try:
            raw = await self._stack().reqresp.request(
                peer, COMMITS_SPEC.protocol_id, FetchCommits(start, start + MAX_FETCH - 1).to_bytes()
            )
            commits = CommitsResponse.from_bytes(raw).commits
        except (RequestError, ProtocolError) as exc:
            log.debug("commit range from %s failed: %s", peer, exc)
            return 0
        dag = self.chain.core.dag
        refs = sorted(
            {(b.round, b.author, b.digest) for c in commits for b in c.blocks
             if DagRef(b.round, b.author, b.digest) not in dag}
        )
        got = 0
        for i in range(0, len(refs), MAX_FETCH):
            chunk = tuple(BlockRef(*r) for r in refs[i : i + MAX_FETCH])
            got += await self.fetcher.request_blocks(peer, FetchBlocks(self.chain.epoch, chunk, 0, 0))
        self.commit_sync_blocks += got
        return got


async def refresh_statuses(stack: Any) -> None:
    """Re-run the handshake now and then so peers' heights (sync distance) stay current."""
    while True:
        await trio.sleep(2.0)
        hs = stack.handshake
        for peer in list(hs.statuses):
            with trio.move_on_after(2.0):
                try:
                    await hs.exchange(peer)
                except Exception as exc:
                    log.debug("status refresh with %s failed: %s", peer, exc)
