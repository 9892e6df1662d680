"""What peers send us: their requests (blocks, own-last, commits, pushed blocks) and gossiped blocks and
transactions. Each request is decoded and its ranges checked before any store lookup; a malformed one is
refused and charged (spec/p2p.md). Gossiped messages are verified inside the gossip validator, so only
valid ones are forwarded (ACCEPT), stale duplicates are dropped (IGNORE), and invalid ones penalise the
forwarder (REJECT).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import trio

from node.chain import Chain
from node.mempool import MempoolError
from node.metrics import NodeMetrics
from p2pnet.gossip import Verdict
from p2pnet.limits import INVALID_SIGNATURE
from p2pnet.reqresp import ProtocolSpec, Refused, RequestError
from protocol import codec, crypto
from protocol.consensus.block import DagRef
from protocol.consensus.committer import SafetyViolation
from protocol.consensus.core import WrongEpoch
from protocol.errors import DecodeError, ProtocolError
from protocol.messages import (
    BlocksResponse,
    CommitsResponse,
    FetchBlocks,
    FetchCommits,
    FetchOwnLast,
)
from protocol.messages import Commit as CommitMsg

log = logging.getLogger("node")

BLOCKS_SPEC = ProtocolSpec("/tensornet/blocks/1", max_request=8 * 1024, max_response=40 * 1024 * 1024, timeout=5.0)
# our block, one-way to every connected validator (spec/p2p.md): no answer, a bad one is charged to its sender
PUSH_SPEC = ProtocolSpec("/tensornet/push-block/2", max_request=4 * 1024 * 1024 + 4096, max_response=0, timeout=3.0,
                         one_way=True)
OWN_LAST_SPEC = ProtocolSpec("/tensornet/own-last/1", max_request=256, max_response=8 * 1024 * 1024, timeout=3.0)
COMMITS_SPEC = ProtocolSpec("/tensornet/commits/1", max_request=1024, max_response=4 * 1024 * 1024, timeout=5.0)
# transactions a validator's API took in, sent to the validator that proposes them (spec/p2p.md)
PUSH_TXS_SPEC = ProtocolSpec("/tensornet/push-txs/1", max_request=1024 * 1024 + 4096, max_response=16, timeout=5.0)
MAX_PUSH_TXS = 256  # transactions in one push: a POST /txs' worth
MAX_PUSH_REFUSED = 16  # refusals (stale nonces, short balances: honest races) before the rest is dropped unchecked
PROBE_ROUNDS = 8  # rounds one round-range request covers (served at most; asked for by the synchronizer)
MAX_INDEX = (1 << 62) - 1  # rounds, heights and epochs stay far below this; SQLite integers are signed 64-bit


def _request(cls: Any, data: bytes) -> Any:
    """Decode a peer's request; a malformed one is refused (REFUSED to the peer, no warning logged here:
    a handler's warning is for our own bugs, and a peer must not be able to fill our logs)."""
    try:
        return cls.from_bytes(data)
    except ProtocolError as exc:
        raise Refused(f"malformed {cls.__name__}: {exc}") from exc


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


class RequestService:
    """The four request protocols, served from the chain's store; a pushed block goes to `on_push`
    (the gossip validator's verdict, so a push and a gossiped copy are judged alike)."""

    def __init__(self, chain: Chain, on_push: Callable[[Any, bytes], Verdict]) -> None:
        self.chain = chain
        self._on_push = on_push

    def register(self, reqresp: Any) -> None:
        reqresp.register(BLOCKS_SPEC, self.serve_blocks)
        reqresp.register(COMMITS_SPEC, self.serve_commits)
        reqresp.register(OWN_LAST_SPEC, self.serve_own_last)
        reqresp.register(PUSH_SPEC, self.serve_push)
        reqresp.register(PUSH_TXS_SPEC, self.serve_push_txs)

    async def serve_blocks(self, peer: Any, data: bytes) -> bytes:
        req = _request(FetchBlocks, data)
        if req.refs:
            blocks = self.chain.blocks_by_digest([r.digest for r in req.refs])
        else:
            _check_range("rounds", req.round_from, req.round_to)
            _check_epoch(self.chain, req.epoch)
            last = min(req.round_to, req.round_from + PROBE_ROUNDS)
            blocks = self.chain.blocks_by_round(req.epoch, req.round_from, last, 32)
        return BlocksResponse(tuple(blocks)).to_bytes()

    async def serve_own_last(self, peer: Any, data: bytes) -> bytes:
        req = _request(FetchOwnLast, data)
        _check_epoch(self.chain, req.epoch)
        block = self.chain.store.last_block_by(req.epoch, req.author)
        return BlocksResponse((block,) if block is not None else ()).to_bytes()

    async def serve_commits(self, peer: Any, data: bytes) -> bytes:
        req = _request(FetchCommits, data)
        _check_range("heights", req.start, req.end)
        end = min(req.end, req.start + 31)
        recs = self.chain.store.commits(req.start, end)
        return CommitsResponse(tuple(CommitMsg.from_bytes(r.data) for r in recs)).to_bytes()

    async def serve_push(self, peer: Any, data: bytes) -> bytes:
        """A pushed block, judged like a gossiped copy; one-way, so nothing is answered, but a refusal is charged."""
        if self._on_push(peer, data) is Verdict.REJECT:  # a bad signature was charged in on_block
            raise Refused("invalid block", penalty="invalid_block")
        return b""

    async def serve_push_txs(self, peer: Any, data: bytes) -> bytes:
        """Transactions a validator's API admitted and we propose (`push_to_owners`); answers how many we took.
        The pusher checked them, so a bad signature is its fault; a stale nonce or short balance is a race."""
        try:
            txs = codec.decode(data, max_size=PUSH_TXS_SPEC.max_request, max_items=MAX_PUSH_TXS + 1)
        except ProtocolError as exc:
            raise Refused(f"malformed transaction push: {exc}") from exc
        if not isinstance(txs, list) or len(txs) > MAX_PUSH_TXS or not all(isinstance(t, bytes) for t in txs):
            raise Refused(f"a transaction push is an array of at most {MAX_PUSH_TXS} signed transactions")
        taken = refused = 0
        for t in txs:
            if refused >= MAX_PUSH_REFUSED:
                break
            try:
                self.chain.submit_tx(t)
                taken += 1
            except MempoolError:
                continue  # held already (a gossiped copy) or no room: nobody's fault
            except DecodeError as exc:
                raise Refused(f"pushed transaction does not decode: {exc}") from exc
            except ProtocolError as exc:
                if bad_tx_signature(exc):
                    raise Refused("pushed transaction with a bad signature", penalty=INVALID_SIGNATURE) from exc
                refused += 1
        return codec.encode(taken)


def bad_tx_signature(exc: ProtocolError) -> bool:
    """Did admission refuse a transaction for its signature? That is an attack (honest nodes verify before they
    relay); a stale nonce or short balance may be an honest race. check_tx names it rule "signature"."""
    return getattr(exc, "rule", None) == "signature"


async def push_to_owners(chain: Chain, stack: Any, digests: list[bytes]) -> int:
    """Send admitted transactions to the validators that propose them (node/mempool.py's `tx_owner`), one push
    per owner, in parallel; ours stay here. We keep every copy, so an owner we cannot reach gets its
    transactions proposed by us after the fallback wait. Returns how many the owners took."""
    own, committee = chain.core.own_index, chain.state.epoch_committee
    peers = {str(p): p for p in (stack.handshake.statuses if stack is not None and stack.handshake else {})}
    batches: dict[Any, list[bytes]] = {}
    for ring, t in chain.mempool.owned(digests):
        owner = ring % len(committee)
        peer = peers.get(committee[owner].peer_id)
        if owner != own and peer is not None:
            batches.setdefault(peer, []).append(t)
    taken = 0

    async def push(peer: Any, batch: list[bytes]) -> None:
        nonlocal taken
        try:
            answer = codec.decode(await stack.reqresp.request(peer, PUSH_TXS_SPEC.protocol_id, codec.encode(batch)))
            taken += answer if isinstance(answer, int) else 0
        except (RequestError, ProtocolError) as exc:
            log.debug("push of %d transactions to %s failed: %s", len(batch), peer, exc)

    async with trio.open_nursery() as nursery:
        for peer, batch in batches.items():
            for i in range(0, len(batch), MAX_PUSH_TXS):
                nursery.start_soon(push, peer, batch[i : i + MAX_PUSH_TXS])
    return taken


class GossipIn:
    """The gossip validators for blocks and transactions (pushed blocks come through `on_block` too).

    `own_peer` and `stack` return our peer id and the p2p stack once it is open; `want` queues a sender's
    missing ancestors for the fetcher, `wake` tells the proposer a block arrived, `halt` stops the node."""

    def __init__(
        self,
        chain: Chain,
        metrics: NodeMetrics,
        *,
        own_peer: Callable[[], Any],
        stack: Callable[[], Any],
        want: Callable[[Any, Sequence[DagRef]], None],
        wake: Callable[[], None],
        halt: Callable[[Exception], None],
    ) -> None:
        self.chain = chain
        self.metrics = metrics
        self._own_peer = own_peer
        self._stack = stack
        self._want = want
        self._wake = wake
        self._halt = halt

    def on_block(self, forwarder: Any, data: bytes) -> Verdict:
        if forwarder == self._own_peer():
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
                self._stack().host.limiter.penalize(str(forwarder), INVALID_SIGNATURE)
            return Verdict.REJECT
        except SafetyViolation as exc:
            self._halt(exc)
            return Verdict.IGNORE
        if missing:
            self._want(forwarder, missing)
        if accepted:
            self._wake()
            return Verdict.ACCEPT
        # duplicate or suspended: forward only if it was new to us (suspended blocks are valid)
        return Verdict.ACCEPT if missing else Verdict.IGNORE

    def on_tx(self, forwarder: Any, data: bytes) -> Verdict:
        if forwarder == self._own_peer():
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
            return Verdict.REJECT if bad_tx_signature(exc) else Verdict.IGNORE
        return Verdict.ACCEPT
