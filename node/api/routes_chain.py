"""The chain itself: GET /commits, /commits/{height}, /blocks/{digest}, and /timing for benchmarks."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.api.params import ApiError, error, param_hex, param_int
from node.api.view import ApiContext
from node.chain import Chain
from node.storage import CommitRecord
from protocol import crypto
from protocol.consensus.core import vertex_from_bytes
from protocol.messages import Commit


async def commits(api: ApiContext, request: Request) -> Response:
    chain = api.node.chain
    head = chain.height
    start = param_int(request, "from", default=max(1, head - 19))
    end = min(head, param_int(request, "to", default=head))  # past the head there is nothing to read
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


def record_at(chain: Chain, request: Request) -> CommitRecord:
    """The stored commit at the path's `height` (400 if not an integer, 404 past the head)."""
    h = param_int(request, "height")
    recs = chain.store.commits(h, h) if h <= chain.height else []  # SQLite integers stop at 2**63 - 1
    if not recs:
        raise ApiError(404, f"no commit at height {h} (head is {chain.height})")
    return recs[0]


async def commit_at(api: ApiContext, request: Request) -> Response:
    rec = record_at(api.node.chain, request)
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


async def block(api: ApiContext, request: Request) -> Response:
    data = api.node.chain.store.get_block(param_hex(request, "digest", 32))
    if data is None:
        return error(404, "unknown block")
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


async def timing(api: ApiContext, request: Request) -> Response:
    """Per recent commit: leader block creation and local commit times (ms), for benchmarks."""
    since = param_int(request, "from", default=0)
    rows = [
        {"height": c.index, "leader_ms": c.timestamp_ms, "committed_ms": c.committed_ms, "txs": c.txs,
         "ok_txs": c.ok_txs, "latency_ms": c.latency_ms}
        for c in api.node.chain.recent
        if c.index >= since
    ]
    return JSONResponse(rows)
