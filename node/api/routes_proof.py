"""Answers a light client checks itself: GET /proof/{key} (a value and its Merkle path) and GET /certificate/{height}
(the signed block headers voting for that commit's state root). Verification: protocol/lightclient.py."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.api.params import ApiError, error
from node.api.routes_chain import record_at
from node.api.view import ApiContext
from protocol.errors import ProtocolError
from protocol.lightclient import vote_digest
from protocol.state import keys

MAX_KEY_HEX = 2 * 65  # the longest typed key, a stake key (spec/state-tree.md §3)


def _param_key(request: Request) -> bytes:
    """The path's key: hex of a typed state key (400 for bad hex or bytes that parse as no key)."""
    raw = request.path_params["key_hex"]
    try:
        if len(raw) > MAX_KEY_HEX:
            raise ValueError(f"at most {MAX_KEY_HEX} hex characters")
        key = bytes.fromhex(raw)
        keys.parse(key)
    except ValueError as exc:
        raise ApiError(400, f"key must be the hex of a typed state key: {exc}") from None
    except ProtocolError as exc:
        raise ApiError(400, f"not a state key: {exc}") from None
    return key


async def proof(api: ApiContext, request: Request) -> Response:
    """`key`'s value (null: absent) in the latest committed state, with its proof under that state's root."""
    key = _param_key(request)
    chain = api.node.chain
    rec = chain.store.last_commit()
    if rec is None:
        return error(404, "no commit yet: a proof is made against a committed state root")
    value, path = chain.state.prove(key)
    return JSONResponse({
        "height": rec.index,
        "commit_digest": rec.digest.hex(),
        "root": rec.state_root.hex(),
        "key": key.hex(),
        "value": None if value is None else value.hex(),
        "proof": path.to_bytes().hex(),
    })


async def certificate(api: ApiContext, request: Request) -> Response:
    """The signed headers this node has seen voting for commit `height`'s (digest, state root): the client counts
    the stake itself, against the committee it trusts. Kept in the store for every height (node/certificates.py); 404
    for a height whose votes are final and none of them is kept (a store from before, or a node that never saw them),
    where polling would wait in vain."""
    chain = api.node.chain
    rec = record_at(chain, request)
    vote = vote_digest(rec.digest, rec.state_root)
    signed = chain.votes.headers(rec.index, vote, chain.store.get_block)
    if not signed and chain.votes.final(rec.index):
        return error(404, f"no certificate for height {rec.index}: this node kept no votes for its state root")
    headers = [{"signer": k.hex(), "header": h.hex()} for k, h in signed]
    return JSONResponse({
        "chain_id": chain.chain_id,
        "height": rec.index,
        "commit_digest": rec.digest.hex(),
        "state_root": rec.state_root.hex(),
        "vote": vote.hex(),
        "headers": headers,
    })
