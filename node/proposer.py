"""The proposer: signs, stores (fsync) and only then sends our block when the threshold clock says so,
straight to every connected validator and through gossip to the rest. Before its first block of an epoch
it runs the amnesia guard (it asks peers for the last block it signed), so it never signs twice a round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from node.chain import Chain
from node.service import OWN_LAST_SPEC, PUSH_SPEC
from node.sync import connected_peers
from p2pnet.reqresp import RequestError
from protocol.errors import ProtocolError
from protocol.messages import BlocksResponse, FetchOwnLast

log = logging.getLogger("node")

AMNESIA_WAIT = 5.0


class Arrivals:
    """Wakes the proposer when blocks or transactions arrive; only arrivals after it starts a wait count."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        self._event = trio.Event()
        with trio.move_on_after(timeout):
            await self._event.wait()


class Proposer:
    """Proposes whenever due while in the committee (it can change at each epoch). `spawn` starts a
    fire-and-forget task (a push to one peer) in the node's nursery."""

    def __init__(self, chain: Chain, stack: Any, arrivals: Arrivals, spawn: Callable[..., None]) -> None:
        self.chain = chain
        self.stack = stack
        self.arrivals = arrivals
        self._spawn = spawn
        # a resting validator (spec/consensus.md §D.2a) proposes as soon as a transaction comes, not after its rest
        chain.on_tx = arrivals.set

    async def run(self) -> None:
        guarded = None
        while True:
            if not self.chain.is_validator:
                await self.arrivals.wait(0.5)
                continue
            if guarded != self.chain.epoch:
                guarded = self.chain.epoch
                await recover_own_last(self.chain, self.stack)
                continue
            v = self.chain.propose()
            if v is not None:
                await self.broadcast(v.round, v.data)
                continue
            wait = self.chain.next_proposal_in()
            await self.arrivals.wait(0.5 if wait is None else max(0.001, wait))

    async def broadcast(self, round_: int, data: bytes) -> None:
        """Our block goes straight to every connected validator, one-way over a persistent stream (one hop,
        one frame, no gossipsub overhead), each push its own task so a slow peer holds up no other; and through
        gossip only when someone else needs it: a full node, or a committee member we are not directly connected to."""
        statuses = self.stack.handshake.statuses
        validators = [p for p, st in statuses.items() if st.validator]
        for peer in validators:
            self._spawn(self._push, peer, data)
        if len(validators) < len(statuses) or len(validators) < self.chain.committee.size - 1:
            gossip = self.stack.gossip
            try:
                await gossip.publish(gossip.topic("blocks"), data)
            except Exception as exc:
                log.warning("publishing block of round %d failed: %s", round_, exc)

    async def _push(self, peer: Any, data: bytes) -> None:
        """One-way (spec/p2p.md): nothing to wait for once written; a push lost on the way is fetched (sync)."""
        try:
            await self.stack.reqresp.send(peer, PUSH_SPEC.protocol_id, data)
        except RequestError as exc:
            log.debug("push to %s failed: %s", peer, exc)


async def recover_own_last(chain: Chain, stack: Any) -> None:
    """Amnesia guard: a committee member with no record of its own blocks in this epoch (new to
    the committee, a new epoch, or its database was wiped) asks its peers for the last block it
    signed before proposing anything, so it can never sign a second block for one round."""
    epoch = chain.epoch
    if chain.core.own_index is None or chain.store.last_own_round(epoch) > 0:
        return
    n = chain.committee.size
    want = max(1, n - (n - 1) // 3 - 1)  # enough peers that with us they make 2f+1 members
    with trio.move_on_after(AMNESIA_WAIT):
        await stack.handshake.wait_for_peers(want)
    best = None
    req = FetchOwnLast(epoch, chain.core.own_index).to_bytes()
    for peer in connected_peers(stack):
        try:
            resp = BlocksResponse.from_bytes(await stack.reqresp.request(peer, OWN_LAST_SPEC.protocol_id, req))
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
