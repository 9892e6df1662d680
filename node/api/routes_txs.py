"""Transactions in: POST /tx (one, raw or hex in JSON) and POST /txs (a CBOR array, bounded per request)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.api.params import error
from node.api.view import ApiContext
from protocol import codec
from protocol.errors import ProtocolError, TxRejected


async def submit(api: ApiContext, request: Request) -> Response:
    body = await request.body()  # capped by the Guard (limits.tx_body_cap)
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = bytes.fromhex((await request.json())["tx"])
        except (ValueError, KeyError, TypeError):
            return error(400, 'expected JSON {"tx": "<hex of the signed transaction>"}')
    try:
        digest = await api.node.submit_tx(body)
    except TxRejected as exc:
        return error(400, str(exc), exc.rule)
    except ProtocolError as exc:
        return error(400, str(exc), type(exc).__name__)
    return JSONResponse({"digest": digest.hex(), "accepted": True})


async def submit_many(api: ApiContext, request: Request) -> Response:
    """A CBOR array of signed transactions (bulk load: one request, many transactions).

    Bounded per request: `txs_max_count` transactions in at most `txs_body_cap` bytes (the Guard), and
    after `txs_max_refused` refusals of any kind (bad signatures, unpayable fees, stale nonces) the rest
    are refused unchecked (`unchecked`): a request of junk costs at most that many admission checks."""
    limits, node = api.limits, api.node
    body = await request.body()
    try:
        txs = codec.decode(body, max_size=limits.txs_body_cap, max_items=limits.txs_max_count + 1)
    except ProtocolError as exc:
        return error(400, str(exc), type(exc).__name__)
    if not isinstance(txs, list) or not all(isinstance(t, bytes) for t in txs):
        return error(400, "expected a CBOR array of byte strings (signed transactions)")
    if len(txs) > limits.txs_max_count:
        return error(413, f"at most {limits.txs_max_count} transactions per request")
    validator = node.chain.is_validator
    accepted: list[bytes] = []
    failed, refused = 0, {}
    for i, t in enumerate(txs):
        if failed >= limits.txs_max_refused:
            refused["unchecked"] = len(txs) - i
            break
        try:
            accepted.append(await node.submit_tx(t, gossip=not validator))
        except ProtocolError as exc:
            key = getattr(exc, "rule", type(exc).__name__)
            refused[key] = refused.get(key, 0) + 1
            failed += 1
    if validator:  # one push per proposer instead of a gossip message per transaction (spec/state.md §3.3)
        await node.push_to_owners(accepted)
    return JSONResponse({"accepted": len(accepted), "refused": refused})
