"""`tensornet node run`: the chain driver on a libp2p stack, with the HTTP API, until a signal.

Tasks (one Trio nursery, each with an owner and every network wait under a deadline):
- gossip receive: blocks and transactions are verified inside the gossip validator, so only
  valid messages are forwarded (ACCEPT), stale duplicates are dropped (IGNORE), and invalid ones
  penalise the forwarder (REJECT);
- proposer: signs, stores (fsync) and only then publishes our block when the threshold clock says so;
- synchronizer: fetches missing ancestors (sender first, then other peers) and, when the round
  stalls, probes peers for the blocks of the next rounds (how a late or restarted node catches up);
- the API server.
SIGINT/SIGTERM cancel the nursery; the store is closed last.
"""

from __future__ import annotations

import logging
import random
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config as HyperConfig

from node.api import NodeMetrics, serve_api
from node.chain import Chain, CommitInfo
from node.concentration import subnet_concentration
from node.config import GENESIS_FILE, VALIDATOR_KEY_FILE, NodeConfig, parse_hostport
from node.economics import lifecycle_view
from node.mempool import MempoolError
from p2pnet.discovery import DiscoveryConfig
from p2pnet.gossip import GossipMessage, Verdict
from p2pnet.limits import INVALID_SIGNATURE
from p2pnet.nodekey import load_or_create_node_key
from p2pnet.reqresp import ProtocolSpec, Refused, RequestError
from p2pnet.stack import open_stack
from protocol import crypto
from protocol.consensus.core import CoreParams, WrongEpoch
from protocol.consensus.dag import BlockRef, SafetyViolation
from protocol.errors import DecodeError, ProtocolError
from protocol.messages import (
    MAX_FETCH,
    BlocksResponse,
    CommitsResponse,
    FetchBlocks,
    FetchCommits,
    FetchOwnLast,
    Status,
)
from protocol.messages import BlockRef as WireRef
from protocol.messages import Commit as CommitMsg
from protocol.state.genesis import load_genesis

log = logging.getLogger("node")

BLOCKS_SPEC = ProtocolSpec("/tensornet/blocks/1", max_request=8 * 1024, max_response=40 * 1024 * 1024, timeout=5.0)
PUSH_SPEC = ProtocolSpec("/tensornet/push-block/1", max_request=4 * 1024 * 1024 + 4096, max_response=16, timeout=3.0)
OWN_LAST_SPEC = ProtocolSpec("/tensornet/own-last/1", max_request=256, max_response=8 * 1024 * 1024, timeout=3.0)
AMNESIA_WAIT = 5.0
COMMITS_SPEC = ProtocolSpec("/tensornet/commits/1", max_request=1024, max_response=4 * 1024 * 1024, timeout=5.0)
SYNC_INTERVAL = 0.2
FAR_BEHIND = 64  # heights: past this a node catches up by commit ranges rather than round probes
PROBE_ROUNDS = 8
HEALTH_GRACE_S = 10.0  # a node just started is not judged yet (peers and first commits take seconds)
STALL_TIMEOUTS = 40  # leader timeouts without a commit, while the committee provably advanced, fail /health
SYNC_TOLERANCE_ROUNDS = 10  # proven rounds behind before /health fails
WAVE = 3  # rounds per commit wave: the committee is "ahead" once it signs a wave past our last commit


class Node:
    def __init__(self, home: Path, config: NodeConfig, metrics_port: int | None = None) -> None:
        self.home = home
        self.config = config
        self.metrics_port = metrics_port
        genesis = load_genesis(str(home / GENESIS_FILE))
        keypair = None
        if config.validator:
            from node.client.wallet import read_hotkey

            keypair = read_hotkey(home / VALIDATOR_KEY_FILE)
        params = CoreParams(leader_timeout_ms=config.leader_timeout_ms, min_round_delay_ms=config.min_round_delay_ms)
        self.chain = Chain(home, genesis, keypair=keypair, params=params, snapshot_every=config.snapshot_every,
                           max_block_txs=config.max_block_txs)  # was read from config.toml but never applied
        if config.validator and not self.chain.is_validator:
            log.warning(
                "validator key %s is not in epoch %d's committee: following as a full node until a committee "
                "includes it", keypair.address, self.chain.epoch,
            )
        self.metrics = NodeMetrics()
        self.chain.on_commit = self._observe
        self.stack: Any = None
        self.peer_id: Any = None
        self.listen_addrs: list[str] = []
        self._block_arrived = trio.Event()
        self._fetch_send, self._fetch_recv = trio.open_memory_channel[tuple[Any, tuple[BlockRef, ...]]](1024)
        self._last_sync_round: tuple[int, int] = (-1, -1)
        self.commit_sync_blocks = 0  # blocks fetched through commit ranges (far-behind catch-up)
        self.api_addr: str | None = None
        self.fatal: Exception | None = None
        self._tasks: Any = None  # the node nursery, for fire-and-forget pushes
        self._stop = trio.Event()
        self.started = time.monotonic()
        self._last_commit_at = self.started  # monotonic time of our last commit (start-up counts as one)
        self._fruitless: dict[str, int] = {}  # peer -> probes in a row it claimed to be ahead for and sent nothing
        self._catching_up = False  # the last commit-range sync brought blocks: provably far behind

    # --- status and metrics -------------------------------------------------------------------

    def status(self) -> Status:
        last = self.chain.recent[-1] if self.chain.recent else None
        return Status(
            chain_id=self.chain.chain_id,
            genesis_hash=self.chain.genesis_hash,
            height=self.chain.height,
            head_digest=last.digest if last else bytes(32),
            epoch=self.chain.epoch,
            highest_round=self.chain.core.quorum_round,
            validator=self.chain.is_validator,
        )

    def chain_peers(self) -> int:
        hs = getattr(self.stack, "handshake", None)
        return len(hs.statuses) if hs is not None else 0

    def sync_distance(self) -> int:
        """Rounds between peers' (epoch, round) and our own threshold clock (a later epoch counts the
        rest of ours, then `epoch_rounds` per epoch), as far as f+1 peers agree: a claim alone proves
        nothing, so one peer (or f) claiming round 2^64-1 cannot move it. It only steers sync."""
        hs = getattr(self.stack, "handshake", None)
        if hs is None or not hs.statuses:
            return 0
        return max(0, self._agreed([self._rounds_ahead(s) for s in hs.statuses.values()]))

    def _agreed(self, claims: list[int]) -> int:
        """The highest value that at least f+1 of the claims reach (all of them if fewer)."""
        f = (self.chain.committee.size - 1) // 3
        ranked = sorted(claims, reverse=True)
        return ranked[min(f, len(ranked) - 1)]

    def last_commit_age_ms(self) -> int:
        return int((time.monotonic() - self._last_commit_at) * 1000)

    def proven_behind(self) -> int:
        """Rounds between what committee members holding validity stake provably signed (blocks we
        verified, even those still waiting for parents) and our threshold clock."""
        core = self.chain.core
        return max(0, core.proven_round() - core.quorum_round)

    def _committee_advanced(self) -> bool:
        """Blocks, not claims, show the committee went on after our last commit: validity stake
        signed a wave past our last committed leader, or next-epoch blocks signed by known keys."""
        last = self.chain.recent[-1] if self.chain.recent else None
        committed = last.leader.round if last is not None and last.index >= self.chain.state.epoch_start else 0
        return self.chain.core.proven_round() > committed + WAVE or self.chain.early.vouched > 0

    def health_reasons(self) -> list[str]:
        """Why this node is unhealthy; empty when healthy (or in its first HEALTH_GRACE_S seconds)."""
        if time.monotonic() - self.started < HEALTH_GRACE_S:
            return []
        reasons = []
        if self.chain_peers() == 0:
            reasons.append("no chain peers")
        behind = self.proven_behind()
        if behind > SYNC_TOLERANCE_ROUNDS:
            reasons.append(f"behind: committee blocks {behind} rounds past ours")
        if self._catching_up:
            reasons.append("far behind: catching up by commit ranges")
        age = self.last_commit_age_ms()
        if age > STALL_TIMEOUTS * self.chain.params.leader_timeout_ms and self._committee_advanced():
            reasons.append(f"no commit for {age} ms while the committee went on")
        return reasons

    def _rounds_ahead(self, st: Status) -> int:
        ours, r = self.chain.epoch, self.chain.core.quorum_round
        if st.epoch < ours:
            return 0
        if st.epoch == ours:
            return st.highest_round - r
        per_epoch = self.chain.genesis.epoch_rounds
        return max(1, per_epoch - r) + (st.epoch - ours - 1) * per_epoch + st.highest_round

    def refresh_metrics(self) -> None:
        m = self.metrics
        m.height.set(self.chain.height)
        m.round.set(self.chain.core.quorum_round)
        m.peers.set(self.chain_peers())
        m.mempool.set(len(self.chain.mempool))
        pool = self.chain.mempool.stats()
        m.mempool_bytes.set(pool["bytes"])
        m.mempool_evicted.set(pool["evicted"])
        for rule, n in pool["refused"].items():
            m.mempool_refused.labels(rule).set(n)
        if self.stack is not None:  # every key is a protocol id or reason of ours, so the label set stays small
            p2p, limiter = self.stack.metrics, self.stack.host.limiter
            families = {
                "charges": p2p.charges, "request_errors": p2p.request_errors, "rejects": p2p.rejects,
                "drops": p2p.drops, "disconnects": p2p.disconnects, "penalties": limiter.violations,
                "limit_rejects": limiter.rejects,
                "bans": {"issued": limiter.bans, "now": len(limiter.banned_peers())},
            }
            for family, counts in families.items():
                for key, n in counts.items():
                    m.p2p.labels(family, key).set(n)

    def subnet_obj(self, netuid: int) -> dict[str, Any]:
        sn = self.chain.state.subnet(netuid)
        assert sn is not None
        hp = sn.hp
        return {
            "netuid": netuid,
            "name": sn.name,
            "owner": crypto.address(sn.owner),
            "neurons": len(sn.neurons),
            "tempo": hp.tempo,
            "burn": sn.burn,
            "hyperparameters": {k: getattr(hp, k) for k in hp.__dataclass_fields__},
            **lifecycle_view(self.chain.state, sn),
            "concentration": subnet_concentration(self.chain.state, sn),
        }

    def _observe(self, c: CommitInfo) -> None:
        self._last_commit_at = time.monotonic()
        # a copy of an executed transaction (each validator may carry it in its own block) is no failure
        self.metrics.txs.labels("ok").inc(c.ok_txs)
        self.metrics.txs.labels("duplicate").inc(c.dup_txs)
        self.metrics.txs.labels("failed").inc(c.txs - c.ok_txs - c.dup_txs)
        if c.latency_ms is not None:
            self.metrics.commit_latency.observe(c.latency_ms / 1000)

    # --- gossip validators --------------------------------------------------------------------

    def _on_block(self, forwarder: Any, data: bytes) -> Verdict:
        if forwarder == self.peer_id:
            return Verdict.ACCEPT  # our own block, already stored and inserted
        try:
            accepted, missing = self.chain.receive_block(data, str(forwarder))
        except WrongEpoch:
            # not an offence: around an epoch change honest peers send these (the next epoch's are
            # checked as far as possible and held under a byte cap, charged to `forwarder` if invalid)
            return Verdict.IGNORE
        except ProtocolError as exc:
            self.metrics.rejects.labels(type(exc).__name__).inc()
            log.debug("rejected block from %s: %s", forwarder, exc)
            if isinstance(exc, crypto.BadSignatureError):
                # honest peers verify before they relay, so a bad signature proves the sender's fault
                # (spec/p2p.md: the one reason besides equivocation that bans a committee member for long)
                self.stack.host.limiter.penalize(str(forwarder), INVALID_SIGNATURE)
            return Verdict.REJECT
        except SafetyViolation as exc:
            self._halt(exc)
            return Verdict.IGNORE
        if missing:
            try:
                self._fetch_send.send_nowait((forwarder, missing))
            except trio.WouldBlock:
                pass  # the synchronizer's periodic pass will ask again
        if accepted:
            self._block_arrived.set()
            return Verdict.ACCEPT
        # duplicate or suspended: forward only if it was new to us (suspended blocks are valid)
        return Verdict.ACCEPT if missing else Verdict.IGNORE

    def _on_tx(self, forwarder: Any, data: bytes) -> Verdict:
        if forwarder == self.peer_id:
            return Verdict.ACCEPT
        try:
            self.chain.submit_tx(data)
        except MempoolError:
            return Verdict.IGNORE
        except DecodeError:
            self.metrics.rejects.labels("tx_decode").inc()
            return Verdict.REJECT
        except ProtocolError as exc:
            self.metrics.rejects.labels(getattr(exc, "rule", type(exc).__name__)).inc()
            # a bad signature is an attack (the state names it rule "signature"); a stale nonce or short
            # balance may be an honest race
            bad_sig = getattr(exc, "rule", None) == "signature" or isinstance(exc, crypto.BadSignatureError)
            return Verdict.REJECT if bad_sig else Verdict.IGNORE
        return Verdict.ACCEPT

    async def submit_tx(self, data: bytes, gossip: bool = True) -> bytes:
        """API path: admit locally, then gossip to the validators."""
        digest = self.chain.submit_tx(data)
        if gossip:
            await self._gossip_tx(data)
        return digest

    async def _gossip_tx(self, data: bytes) -> None:
        gossip = self.stack.gossip if self.stack is not None else None
        if gossip is None:
            return
        try:
            await gossip.publish(gossip.topic("transactions"), data)
        except Exception as exc:  # still pending locally; a validator here will include it
            log.warning("could not gossip transaction %s: %s", crypto.digest(data).hex()[:16], exc)

    def _halt(self, exc: Exception) -> None:
        log.critical("SAFETY VIOLATION, halting: %s", exc)
        self.fatal = exc
        self._stop.set()

    # --- request handlers ---------------------------------------------------------------------

    async def _serve_blocks(self, peer: Any, data: bytes) -> bytes:
        req = _request(FetchBlocks, data)
        if req.refs:
            blocks = self.chain.blocks_by_digest([r.digest for r in req.refs])
        else:
            _check_range("rounds", req.round_from, req.round_to)
            _check_epoch(self.chain, req.epoch)
            last = min(req.round_to, req.round_from + PROBE_ROUNDS)
            blocks = self.chain.blocks_by_round(req.epoch, req.round_from, last, 32)
        return BlocksResponse(tuple(blocks)).to_bytes()

    async def _serve_own_last(self, peer: Any, data: bytes) -> bytes:
        req = _request(FetchOwnLast, data)
        _check_epoch(self.chain, req.epoch)
        block = self.chain.store.last_block_by(req.epoch, req.author)
        return BlocksResponse((block,) if block is not None else ()).to_bytes()

    async def _recover_own_last(self) -> None:
        """Amnesia guard: a committee member with no record of its own blocks in this epoch (new to
        the committee, a new epoch, or its database was wiped) asks its peers for the last block it
        signed before proposing anything, so it can never sign a second block for one round."""
        chain = self.chain
        epoch = chain.epoch
        if chain.core.own_index is None or chain.store.last_own_round(epoch) > 0:
            return
        n = chain.committee.size
        want = max(1, n - (n - 1) // 3 - 1)  # enough peers that with us they make 2f+1 members
        with trio.move_on_after(AMNESIA_WAIT):
            await self.stack.handshake.wait_for_peers(want)
        best = None
        req = FetchOwnLast(epoch, chain.core.own_index).to_bytes()
        for peer in self._peers():
            try:
                resp = BlocksResponse.from_bytes(await self.stack.reqresp.request(peer, OWN_LAST_SPEC.protocol_id, req))
            except (RequestError, ProtocolError) as exc:
                log.debug("own-last query to %s failed: %s", peer, exc)
                continue
            for data in resp.blocks:
                try:
                    v = chain.core.verify(data, chain.now_ms())
                except ProtocolError:
                    continue
                if v.author == chain.core.own_index and (best is None or v.round > best.round):
                    best = v
        if best is None or chain.epoch != epoch:
            log.info("no peer holds a block of ours in epoch %d: starting from round 1", epoch)
            return
        log.warning("recovered our last signed block from peers: round %d; proposing only above it", best.round)
        chain.store.record_own_block(epoch, best.round, best.digest, best.data, best.author)
        chain.core.restore_own(best.round, best.ref)
        try:
            chain.receive_block(best.data)
        except ProtocolError:
            pass

    async def _serve_commits(self, peer: Any, data: bytes) -> bytes:
        req = _request(FetchCommits, data)
        _check_range("heights", req.start, req.end)
        end = min(req.end, req.start + 31)
        recs = self.chain.store.commits(req.start, end)
        return CommitsResponse(tuple(CommitMsg.from_bytes(r.data) for r in recs)).to_bytes()

    # --- tasks --------------------------------------------------------------------------------

    async def _proposer(self) -> None:
        """Propose whenever due while in the committee; the committee can change at each epoch."""
        guarded = None
        while True:
            if not self.chain.is_validator:
                self._block_arrived = trio.Event()
                with trio.move_on_after(0.5):
                    await self._block_arrived.wait()
                continue
            if guarded != self.chain.epoch:
                guarded = self.chain.epoch
                await self._recover_own_last()
                continue
            v = self.chain.propose()
            if v is not None:
                await self._broadcast_block(v.round, v.data)
                continue
            wait = self.chain.next_proposal_in()
            self._block_arrived = trio.Event()
            with trio.move_on_after(0.5 if wait is None else max(0.001, wait)):
                await self._block_arrived.wait()

    async def _broadcast_block(self, round_: int, data: bytes) -> None:
        """Our block goes straight to every connected validator over a persistent stream (one hop,
        no gossipsub overhead), and through gossip only when someone else needs it: a full node, or a
        committee member we are not directly connected to."""
        statuses = self.stack.handshake.statuses
        validators = [p for p, st in statuses.items() if st.validator]
        for peer in validators:
            self._tasks.start_soon(self._push, peer, data)
        if len(validators) < len(statuses) or len(validators) < self.chain.committee.size - 1:
            gossip = self.stack.gossip
            try:
                await gossip.publish(gossip.topic("blocks"), data)
            except Exception as exc:
                log.warning("publishing block of round %d failed: %s", round_, exc)

    async def _push(self, peer: Any, data: bytes) -> None:
        try:
            await self.stack.reqresp.request(peer, PUSH_SPEC.protocol_id, data)
        except RequestError as exc:
            log.debug("push to %s failed: %s", peer, exc)

    async def _serve_push(self, peer: Any, data: bytes) -> bytes:
        if self._on_block(peer, data) is Verdict.REJECT:  # a bad signature was charged in _on_block
            raise Refused("invalid block", penalty="invalid_block")
        return b""

    async def _fetch(self, peer: Any, refs: Sequence[BlockRef]) -> int:
        req = FetchBlocks(self.chain.epoch, tuple(WireRef(*r) for r in refs[:32]), 0, 0)
        return await self._request_blocks(peer, req)

    async def _request_blocks(self, peer: Any, req: FetchBlocks) -> int:
        try:
            raw = await self.stack.reqresp.request(peer, BLOCKS_SPEC.protocol_id, req.to_bytes())
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
                try:
                    self._fetch_send.send_nowait((peer, missing))
                except trio.WouldBlock:
                    pass
        if got:
            self._block_arrived.set()
        return got

    async def _fetcher(self) -> None:
        """Missing ancestors: ask the peer that sent the child first (it must have them), then each
        missing block's author; the synchronizer asks random peers for whatever is still missing."""
        async for peer, refs in self._fetch_recv:
            still = [r for r in refs if r not in self.chain.core.dag]
            if still:
                await self._fetch(peer, still)
            missing = set(self.chain.core.missing_refs())
            for author, author_refs in self._by_author_peer([r for r in still if r in missing]).items():
                if author != peer:
                    await self._fetch(author, author_refs)

    def _by_author_peer(self, refs: list[BlockRef]) -> dict[Any, list[BlockRef]]:
        """Group refs by the connected peer that is their author (committee endpoints name peer ids)."""
        if not refs:
            return {}
        members = self.chain.state.epoch_committee
        connected = {str(p): p for p in self._peers()}
        out: dict[Any, list[BlockRef]] = {}
        for r in refs:
            pid = members[r.author].peer_id if r.author < len(members) else ""
            if pid in connected:
                out.setdefault(connected[pid], []).append(r)
        return out

    def _peers(self) -> list[Any]:
        hs = self.stack.handshake
        return sorted(hs.statuses, key=str) if hs is not None else []

    async def _synchronizer(self) -> None:
        rng = random.Random()
        catching_up = False
        while True:
            # far behind and the last probe brought blocks: go again at once
            await trio.sleep(0 if catching_up else SYNC_INTERVAL)
            catching_up = False
            peers = self._peers()
            if not peers:
                continue
            missing = self.chain.core.missing_refs()
            if missing:
                await self._fetch(rng.choice(peers), missing)
            far = self._far_ahead_peer()
            if far is not None:
                got = await self._sync_commit_range(far)
                self._note_probe(far, got)
                catching_up = self._catching_up = got > 0
                if got:
                    continue
            else:
                self._catching_up = False
            r = self.chain.core.quorum_round
            mark = (self.chain.epoch, r)
            if mark == self._last_sync_round or self.sync_distance() > 2:
                # stalled or behind: ask the most advanced peer for our epoch's next rounds' blocks
                statuses = self.stack.handshake.statuses
                ahead = [p for p in peers if p in statuses and self._rounds_ahead(statuses[p]) > 0]
                # a peer whose claims brought nothing lately goes last, however far ahead it claims to be
                peer = (
                    min(ahead, key=lambda p: (self._fruitless.get(str(p), 0), -self._rounds_ahead(statuses[p])))
                    if ahead else rng.choice(peers)
                )
                got = await self._request_blocks(peer, FetchBlocks(self.chain.epoch, (), r, r + PROBE_ROUNDS))
                if peer in ahead:
                    self._note_probe(peer, got)
                catching_up = got > 0 and self.sync_distance() > 2
            self._last_sync_round = mark

    def _far_ahead_peer(self) -> Any | None:
        """A peer to catch up from when f+1 peers agree we are more than FAR_BEHIND heights behind:
        among those claiming at least that, the one whose claims brought blocks most recently."""
        statuses = self.stack.handshake.statuses
        if not statuses:
            return None
        target = self._agreed([st.height for st in statuses.values()])
        if target <= self.chain.height + FAR_BEHIND:
            return None
        return min(
            (p for p, st in statuses.items() if st.height >= target),
            key=lambda p: (self._fruitless.get(str(p), 0), str(p)),
        )

    def _note_probe(self, peer: Any, got: int) -> None:
        """Remember which peers' claims of being ahead are borne out by blocks (sync prefers those)."""
        key = str(peer)
        if got:
            self._fruitless.pop(key, None)
            return
        if len(self._fruitless) >= 1024:  # only connected peers matter; forget the rest
            live = {str(p) for p in self._peers()}
            self._fruitless = {k: v for k, v in self._fruitless.items() if k in live}
        self._fruitless[key] = self._fruitless.get(key, 0) + 1

    async def _sync_commit_range(self, peer: Any) -> int:
        """Far behind: ask `peer` for the next commits, then for exactly the blocks they order, oldest
        round first. Nothing is trusted: the blocks go through verification and the DAG, and the commit
        rule derives the same commits here (later epochs' blocks wait for their epoch in the chain)."""
        start = self.chain.height + 1
        try:
            raw = await self.stack.reqresp.request(
                peer, COMMITS_SPEC.protocol_id, FetchCommits(start, start + MAX_FETCH - 1).to_bytes()
            )
            commits = CommitsResponse.from_bytes(raw).commits
        except (RequestError, ProtocolError) as exc:
            log.debug("commit range from %s failed: %s", peer, exc)
            return 0
        dag = self.chain.core.dag
        refs = sorted(
            {(b.round, b.author, b.digest) for c in commits for b in c.blocks
             if BlockRef(b.round, b.author, b.digest) not in dag}
        )
        got = 0
        for i in range(0, len(refs), MAX_FETCH):
            chunk = tuple(WireRef(*r) for r in refs[i : i + MAX_FETCH])
            got += await self._request_blocks(peer, FetchBlocks(self.chain.epoch, chunk, 0, 0))
        self.commit_sync_blocks += got
        return got

    async def _committee_links(self) -> None:
        """Keep connected to the current and the predicted next committee (p2pnet redials them, drops
        zombie links, and bans them only briefly without proof of fault); re-checked every 2 s."""
        protected: dict[str, list[str]] = {}
        while True:
            state = self.chain.state
            members = (*state.epoch_committee, *state.committee())
            now = {m.peer_id: list(m.multiaddrs) for m in members if m.peer_id}
            if now != protected:
                protected = now
                self.stack.set_protected(now)
            await trio.sleep(2.0)

    async def _status_refresher(self) -> None:
        """Re-run the handshake now and then so peers' heights (sync distance) stay current."""
        while True:
            await trio.sleep(2.0)
            hs = self.stack.handshake
            for peer in list(hs.statuses):
                with trio.move_on_after(2.0):
                    try:
                        await hs.exchange(peer)
                    except Exception as exc:
                        log.debug("status refresh with %s failed: %s", peer, exc)

    async def _serve_api(self, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        host, port = parse_hostport(self.config.api)
        cfg = HyperConfig()
        cfg.bind = [f"{host}:{port}"] + ([f"{host}:{self.metrics_port}"] if self.metrics_port else [])
        cfg.accesslog = None
        cfg.errorlog = logging.getLogger("hypercorn.error")
        cfg.graceful_timeout = 1.0
        async with trio.open_nursery() as nursery:  # hypercorn runs in a thread of its own (node/api.py)
            urls = await nursery.start(serve_api, self, cfg)
            self.api_addr = urls[0] if urls else f"http://{host}:{port}"
            task_status.started(self.api_addr)

    async def run(self, *, ready: Any = None) -> None:
        node_key = load_or_create_node_key(self.home)
        c = self.config
        disc = DiscoveryConfig(target_peers=c.target_peers, dht=False)
        async with open_stack(
            node_key,
            listen=c.listen,
            external_addrs=c.external_addrs,  # config.toml documents it; it was read but never announced
            chain_id=self.chain.chain_id,
            status_fn=self.status,
            bootstrap=c.bootnodes,
            home=self.home,
            discovery=disc,
            # Blocks and transactions carry their own ed25519 signatures, so a second libp2p
            # signature per gossip message only costs a sign and a verify per hop.
            gossip_options={"strict_signing": False},
        ) as stack:
            self.stack = stack
            self.peer_id = stack.host.peer_id
            # a next-epoch block held early that fails at the epoch switch costs its sender
            self.chain.on_offence = lambda peer: stack.host.limiter.penalize(peer, "invalid_block")
            self.listen_addrs = [str(a) for a in stack.host.addrs]
            stack.reqresp.register(BLOCKS_SPEC, self._serve_blocks)
            stack.reqresp.register(COMMITS_SPEC, self._serve_commits)
            stack.reqresp.register(OWN_LAST_SPEC, self._serve_own_last)
            stack.reqresp.register(PUSH_SPEC, self._serve_push)
            blocks = await stack.gossip.subscribe(stack.gossip.topic("blocks"), self._on_block)
            txs = await stack.gossip.subscribe(stack.gossip.topic("transactions"), self._on_tx)
            async with trio.open_nursery() as nursery:
                self._tasks = nursery
                nursery.start_soon(_drain, blocks)
                nursery.start_soon(_drain, txs)
                nursery.start_soon(self._fetcher)
                nursery.start_soon(self._synchronizer)
                nursery.start_soon(self._status_refresher)
                nursery.start_soon(self._committee_links)
                if self.chain.keypair is not None:
                    nursery.start_soon(self._proposer)
                self.chain.on_evidence = lambda data: nursery.start_soon(self._gossip_tx, data)
                api = await nursery.start(self._serve_api)
                log.info(
                    "node up: chain %s height %d, peer %s, api %s, validator %s",
                    self.chain.chain_id, self.chain.height, self.peer_id, api, self.chain.is_validator,
                )
                if ready is not None:
                    ready(self)
                nursery.start_soon(self._signals)
                await self._stop.wait()
                nursery.cancel_scope.cancel()

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for sig in signals:
                log.info("received %s: shutting down", signal.Signals(sig).name)
                self._stop.set()
                return

    def close(self) -> None:
        self.chain.close()


def _request(cls: Any, data: bytes) -> Any:
    """Decode a peer's request; a malformed one is refused (REFUSED to the peer, no warning logged here:
    a handler's warning is for our own bugs, and a peer must not be able to fill our logs)."""
    try:
        return cls.from_bytes(data)
    except ProtocolError as exc:
        raise Refused(f"malformed {cls.__name__}: {exc}") from exc


MAX_INDEX = (1 << 62) - 1  # rounds, heights and epochs stay far below this; SQLite integers are signed 64-bit


def _check_range(what: str, first: int, last: int) -> None:
    """A requested [first, last] range must be ordered and within what a chain can hold: refused
    (charged as a bad request) before any store lookup otherwise."""
    if first > last:
        raise Refused(f"{what} range {first}..{last} is reversed")
    if last > MAX_INDEX:
        raise Refused(f"{what} range ends at {last}, past {MAX_INDEX}")


def _check_epoch(chain: Any, epoch: int) -> None:
    """A later epoch than ours: we hold none of its blocks; refused uncharged (an honest peer ahead may ask)."""
    if epoch > chain.epoch:
        raise Refused(f"epoch {epoch} is ahead of ours ({chain.epoch})", penalty=None)


async def _drain(channel: trio.MemoryReceiveChannel[GossipMessage]) -> None:
    # Processing happened in the validator; delivered messages need nothing more.
    async for _ in channel:
        pass




def run_node(home: Path, config: NodeConfig, metrics_port: int | None = None) -> None:
    if config.log_format == "json":
        from node.log import configure

        configure("json")
    node = Node(home, config, metrics_port)
    try:
        trio.run(node.run)
    finally:
        node.close()
    if node.fatal is not None:
        raise SystemExit(3)

