"""Is this node well, and what is it doing: GET /health, /status, /metrics, and the explorer page at /."""

from __future__ import annotations

import statistics
from typing import Any

from prometheus_client import generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.api.view import ApiContext, NodeView
from node.explorer import PAGE
from protocol import crypto


def _peer_bans(node: NodeView) -> dict[str, int]:
    """Bans this node's peer limiter issued so far and holds now (absent before the stack is up)."""
    limiter = getattr(getattr(node.stack, "host", None), "limiter", None)
    if limiter is None:
        return {"bans": 0, "banned_now": 0}
    return {"bans": limiter.bans, "banned_now": len(limiter.banned_peers())}


def _status_obj(node: NodeView) -> dict[str, Any]:
    chain = node.chain
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
        # what a transaction costs now (spec/economics.md §6): clients compute their fee from these
        "fees": {"tx_base_fee": chain.state.params.tx_base_fee, "tx_byte_fee": chain.state.params.tx_byte_fee},
        "state_root": chain.state.root().hex(),
        "last_commit": None if last is None else {"height": last.index, "digest": last.digest.hex()},
        "commit_latency_ms_p50": statistics.median(lat) if lat else None,
        "committee": [crypto.address(k) for k in chain.committee.public_keys],
        "stats": {
            "commits": chain.stats.commits,
            "txs_ok": chain.stats.txs_ok,
            "txs_failed": chain.stats.txs_failed,
            "txs_duplicate": chain.stats.txs_duplicate,
            "tx_copies": chain.stats.tx_copies,  # in committed blocks; duplicate_rate = txs_duplicate / tx_copies
            "duplicate_rate": round(chain.stats.duplicate_rate, 4),
            "blocks_accepted": chain.stats.blocks_accepted,
            "rejected": dict(chain.core.rejected),
        },
    }


async def health(api: ApiContext, request: Request) -> Response:
    # judged on proof only (peers connected, blocks verified, commits made), never on peers' claims
    node = api.node
    reasons = node.health_reasons()
    body = {
        "ok": not reasons, "reasons": reasons, "height": node.chain.height, "chain_peers": node.chain_peers(),
        "last_commit_age_ms": node.last_commit_age_ms(), "proven_behind": node.proven_behind(),
    }
    return JSONResponse(body, status_code=503 if reasons else 200)


async def status(api: ApiContext, request: Request) -> Response:
    return JSONResponse(_status_obj(api.node))


async def metrics(api: ApiContext, request: Request) -> Response:
    api.node.refresh_metrics()
    return Response(generate_latest(api.node.metrics.registry), media_type="text/plain; version=0.0.4")


async def explorer(api: ApiContext, request: Request) -> Response:
    return Response(PAGE, media_type="text/html")
