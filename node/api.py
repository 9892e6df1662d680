"""The node's HTTP API (starlette, served by hypercorn's Trio worker) and Prometheus metrics.

Handlers run on the node's Trio thread, so they read the chain state between commits, never
in the middle of one. Errors are JSON `{"error": ..., "rule": ...}` with a 4xx status.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from protocol import crypto
from protocol.errors import ProtocolError, TxRejected
from protocol.messages import Commit

if TYPE_CHECKING:
    from node.daemon import Node



class NodeMetrics:
    """Prometheus series of one node, in its own registry (several nodes may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.height = Gauge("tensornet_height", "Last committed height", registry=r)
        self.round = Gauge("tensornet_round", "Threshold-clock round of the DAG", registry=r)
        self.peers = Gauge("tensornet_peers", "Chain peers that passed the handshake", registry=r)
        self.mempool = Gauge("tensornet_mempool_txs", "Pending transactions", registry=r)
        self.commit_latency = Histogram(
            "tensornet_commit_latency_seconds",
            "Leader block creation to local commit",
            buckets=(0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 5, 10),
            registry=r,
        )
        self.rejects = Counter("tensornet_rejects_total", "Rejected inputs by reason", ["reason"], registry=r)
        self.txs = Counter("tensornet_txs_total", "Executed transactions by outcome", ["outcome"], registry=r)


def _hex(b: bytes | None) -> str | None:
    return None if b is None else b.hex()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "to_obj"):  # e.g. a neuron's axon Endpoint -> [peer_id, [multiaddr, ...]]
        return _jsonable(value.to_obj())
    return value


def error(status: int, message: str, rule: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if rule:
        body["rule"] = rule
    return JSONResponse(body, status_code=status)


EMISSION_HISTORY = 2000  # epochs kept in memory for the explorer's emission chart


def _record_epochs(node: Node, history: deque[dict[str, Any]]) -> None:
    """Wrap the chain's commit hook: after each commit, note every subnet whose epoch ran at that height
    (its paid emission per uid), so the explorer can chart emission over time. In memory only."""
    chain = node.chain
    previous = chain.on_commit

    def hook(info: Any) -> None:
        if previous is not None:
            previous(info)
        for netuid, sn in chain.state.subnets.items():
            if sn.last_epoch_height == info.index and sn.neurons:
                history.append(
                    {
                        "height": info.index,
                        "timestamp_ms": info.timestamp_ms,
                        "netuid": netuid,
                        "epoch": sn.epoch_index,
                        "emission": sum(n.emission for n in sn.neurons),
                        "issued": chain.state.issued,
                    }
                )

    chain.on_commit = hook


def _peer_bans(node: Node) -> dict[str, int]:
    """Bans this node's peer limiter issued so far and holds now (absent before the stack is up)."""
    limiter = getattr(getattr(node.stack, "host", None), "limiter", None)
    if limiter is None:
        return {"bans": 0, "banned_now": 0}
    return {"bans": limiter.bans, "banned_now": len(limiter.banned_peers())}


def build_app(node: Node) -> Starlette:
    chain = node.chain
    emission_history: deque[dict[str, Any]] = deque(maxlen=EMISSION_HISTORY)
    _record_epochs(node, emission_history)

    def status_obj() -> dict[str, Any]:
        last = chain.recent[-1] if chain.recent else None
        lat = chain.stats.latencies_ms[-200:]
        return {
            "chain_id": chain.chain_id,
            "genesis_hash": chain.genesis_hash.hex(),
            "peer_id": str(node.peer_id) if node.peer_id else None,
            "listen": node.listen_addrs,
            "height": chain.height,
            "round": chain.core.quorum_round,
            "epoch": chain.epoch,
            "validator": chain.is_validator,
            "validator_index": chain.core.own_index,
            "peers": node.chain_peers(),
            "chain_peers": node.chain_peers(),
            "sync_distance": node.sync_distance(),
            "proven_behind": node.proven_behind(),
            "last_commit_age_ms": node.last_commit_age_ms(),
            **_peer_bans(node),
            "early_blocks": {"count": len(chain.early), "bytes": chain.early.bytes, "dropped": chain.early.dropped},
            "synced_blocks_by_commits": node.commit_sync_blocks,
            "mempool": len(chain.mempool),
            **({"mempool_stats": chain.mempool.stats()} if hasattr(chain.mempool, "stats") else {}),
            "state_root": chain.state.root().hex(),
            "last_commit": None if last is None else {"height": last.index, "digest": last.digest.hex()},
            "commit_latency_ms_p50": statistics.median(lat) if lat else None,
            "committee": [crypto.address(k) for k in chain.committee.public_keys],
            "stats": {
                "commits": chain.stats.commits,
                "txs_ok": chain.stats.txs_ok,
                "txs_failed": chain.stats.txs_failed,
                "blocks_accepted": chain.stats.blocks_accepted,
                "rejected": dict(chain.core.rejected),
            },
        }

    async def health(request: Request) -> Response:
        # judged on proof only (peers connected, blocks verified, commits made), never on peers' claims
        reasons = node.health_reasons()
        body = {
            "ok": not reasons, "reasons": reasons, "height": chain.height, "chain_peers": node.chain_peers(),
            "last_commit_age_ms": node.last_commit_age_ms(), "proven_behind": node.proven_behind(),
        }
        return JSONResponse(body, status_code=503 if reasons else 200)

    async def status(request: Request) -> Response:
        return JSONResponse(status_obj())

    async def commits(request: Request) -> Response:
        try:
            start = int(request.query_params.get("from", max(1, chain.height - 19)))
            end = int(request.query_params.get("to", chain.height))
        except ValueError:
            return error(400, "from and to must be integers")
        if end - start > 1000:
            return error(400, "at most 1000 commits per request")
        out = []
        for rec in chain.store.commits(start, end):
            c = Commit.from_bytes(rec.data)
            out.append(
                {
                    "height": rec.index,
                    "digest": rec.digest.hex(),
                    "state_root": rec.state_root.hex(),
                    "leader": {"round": c.leader.round, "author": c.leader.author, "digest": c.leader.digest.hex()},
                    "blocks": len(c.blocks),
                    "timestamp_ms": c.timestamp_ms,
                }
            )
        return JSONResponse(out)

    async def commit_at(request: Request) -> Response:
        h = int(request.path_params["height"])
        recs = chain.store.commits(h, h)
        if not recs:
            return error(404, f"no commit at height {h} (head is {chain.height})")
        rec = recs[0]
        c = Commit.from_bytes(rec.data)
        return JSONResponse(
            {
                "height": rec.index,
                "digest": rec.digest.hex(),
                "state_root": rec.state_root.hex(),
                "prev_digest": c.prev_digest.hex(),
                "timestamp_ms": c.timestamp_ms,
                "leader": {"round": c.leader.round, "author": c.leader.author, "digest": c.leader.digest.hex()},
                "blocks": [{"round": b.round, "author": b.author, "digest": b.digest.hex()} for b in c.blocks],
            }
        )

    async def block(request: Request) -> Response:
        try:
            digest = bytes.fromhex(request.path_params["digest"])
        except ValueError:
            return error(400, "block digest must be hex")
        data = chain.store.get_block(digest)
        if data is None:
            return error(404, "unknown block")
        from node.core import vertex_from_bytes

        v = vertex_from_bytes(data)
        b = v.signed.body
        return JSONResponse(
            {
                "digest": v.digest.hex(),
                "round": b.round,
                "author": b.author,
                "epoch": b.epoch,
                "timestamp_ms": b.timestamp_ms,
                "parents": [{"round": p.round, "author": p.author, "digest": p.digest.hex()} for p in b.parents],
                "txs": [crypto.digest(t).hex() for t in b.payload],
                "bytes": len(data),
            }
        )

    async def account(request: Request) -> Response:
        try:
            key = crypto.parse_address(request.path_params["address"])
        except ProtocolError as exc:
            return error(400, str(exc))
        return JSONResponse(_jsonable({"address": crypto.address(key), **chain.state.account(key)}))

    async def escrow(request: Request) -> Response:
        eid = int(request.path_params["escrow_id"])
        e = chain.state.escrows.get(eid)
        if e is None:
            return error(404, f"escrow {eid} is not open (closed or never opened)")
        return JSONResponse(_jsonable({**e.info(), "height": chain.height}))

    async def account_escrows(request: Request) -> Response:
        try:
            key = crypto.parse_address(request.path_params["address"])
        except ProtocolError as exc:
            return error(400, str(exc))
        return JSONResponse(_jsonable([e.info() for e in chain.state.escrows.of_client(key)]))

    async def subnets(request: Request) -> Response:
        return JSONResponse([node.subnet_obj(n) for n in sorted(chain.state.subnets)])

    async def subnet(request: Request) -> Response:
        netuid = int(request.path_params["netuid"])
        if chain.state.subnet(netuid) is None:
            return error(404, f"no subnet {netuid}")
        return JSONResponse(node.subnet_obj(netuid))

    async def deregistered(request: Request) -> Response:
        from node.economics import deregistrations

        return JSONResponse(deregistrations(chain.state))

    async def concentration(request: Request) -> Response:
        from node.concentration import network_concentration

        committee = chain.committee
        return JSONResponse(network_concentration(chain.state, committee.public_keys, committee.stakes))

    async def governance(request: Request) -> Response:
        from node.economics import governance_view

        return JSONResponse(governance_view(chain.state))

    async def proposals(request: Request) -> Response:
        from node.economics import proposals as listing

        return JSONResponse(listing(chain.state))

    async def proposal(request: Request) -> Response:
        from node.economics import proposal_view

        pid = int(request.path_params["pid"])
        p = chain.state.governance.proposals.get(pid)
        if p is None:
            return error(404, f"no proposal {pid} (next id is {chain.state.governance.next_id})")
        return JSONResponse(proposal_view(chain.state, p, votes=True))

    async def metagraph(request: Request) -> Response:
        netuid = int(request.path_params["netuid"])
        if chain.state.subnet(netuid) is None:
            return error(404, f"no subnet {netuid}")
        return JSONResponse(_jsonable(chain.state.metagraph(netuid)))

    async def weights(request: Request) -> Response:
        netuid = int(request.path_params["netuid"])
        sn = chain.state.subnet(netuid)
        if sn is None:
            return error(404, f"no subnet {netuid}")
        return JSONResponse(
            [
                {
                    "uid": uid,
                    "hotkey": n.hotkey.hex(),
                    "last_update": n.last_update,
                    "weights": [list(w) for w in n.weights],
                }
                for uid, n in enumerate(sn.neurons)
            ]
        )

    async def emission(request: Request) -> Response:
        return JSONResponse({"height": chain.height, "issued": chain.state.issued, "epochs": list(emission_history)})

    async def submit(request: Request) -> Response:
        body = await request.body()
        if len(body) > 2 * 64 * 1024 + 64:
            return error(413, "transaction too large")
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = bytes.fromhex((await request.json())["tx"])
            except Exception:
                return error(400, 'expected JSON {"tx": "<hex of the signed transaction>"}')
        try:
            digest = await node.submit_tx(body)
        except TxRejected as exc:
            return error(400, str(exc), exc.rule)
        except ProtocolError as exc:
            return error(400, str(exc), type(exc).__name__)
        return JSONResponse({"digest": digest.hex(), "accepted": True})

    async def nonce(request: Request) -> Response:
        try:
            key = crypto.parse_address(request.path_params["address"])
        except ProtocolError as exc:
            return error(400, str(exc))
        return JSONResponse({"next_nonce": chain.next_nonce(key)})

    async def timing(request: Request) -> Response:
        """Per recent commit: leader block creation and local commit times (ms), for benchmarks."""
        since = int(request.query_params.get("from", 0))
        rows = [
            {"height": c.index, "leader_ms": c.timestamp_ms, "committed_ms": c.committed_ms, "txs": c.txs,
             "ok_txs": c.ok_txs, "latency_ms": c.latency_ms}
            for c in chain.recent
            if c.index >= since
        ]
        return JSONResponse(rows)

    async def submit_many(request: Request) -> Response:
        """A CBOR array of signed transactions (bulk load: one request, many transactions)."""
        from protocol import codec

        body = await request.body()
        try:
            txs = codec.decode(body, max_size=16 << 20, max_items=10_000)
        except ProtocolError as exc:
            return error(400, str(exc), type(exc).__name__)
        if not isinstance(txs, list) or not all(isinstance(t, bytes) for t in txs):
            return error(400, "expected a CBOR array of byte strings (signed transactions)")
        accepted, refused = 0, {}
        for t in txs:
            try:
                await node.submit_tx(t, gossip=not chain.is_validator)  # a validator includes them itself
                accepted += 1
            except ProtocolError as exc:
                key = getattr(exc, "rule", type(exc).__name__)
                refused[key] = refused.get(key, 0) + 1
        return JSONResponse({"accepted": accepted, "refused": refused})

    async def metrics(request: Request) -> Response:
        node.refresh_metrics()
        return Response(generate_latest(node.metrics.registry), media_type="text/plain; version=0.0.4")

    async def explorer(request: Request) -> Response:
        from node.explorer import PAGE

        return Response(PAGE, media_type="text/html")

    routes = [
        Route("/", explorer),
        Route("/health", health),
        Route("/status", status),
        Route("/commits", commits),
        Route("/commits/{height:int}", commit_at),
        Route("/blocks/{digest}", block),
        Route("/accounts/{address}", account),
        Route("/accounts/{address}/nonce", nonce),
        Route("/accounts/{address}/escrows", account_escrows),
        Route("/escrows/{escrow_id:int}", escrow),
        Route("/subnets", subnets),
        Route("/subnets/deregistered", deregistered),
        Route("/subnets/{netuid:int}", subnet),
        Route("/subnets/{netuid:int}/metagraph", metagraph),
        Route("/subnets/{netuid:int}/weights", weights),
        Route("/emission", emission),
        Route("/concentration", concentration),
        Route("/governance", governance),
        Route("/proposals", proposals),
        Route("/proposals/{pid:int}", proposal),
        Route("/tx", submit, methods=["POST"]),
        Route("/txs", submit_many, methods=["POST"]),
        Route("/timing", timing),
        Route("/metrics", metrics),
    ]
    return Starlette(routes=routes)
