"""Answers a light client checks itself: GET /proof/{key} (a value and its Merkle path, in the latest state or, with
?height, at an epoch boundary), GET /boundaries (the boundaries with a proof kept) and GET /certificate/{height} (the
signed block headers voting for that commit's state root). Verification: protocol/lightclient.py."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.api.params import ApiError, error, param_int
from node.api.routes_chain import record_at
from node.api.view import ApiContext
from node.chain import Chain
from node.storage import CommitRecord, Store
from protocol.errors import ProtocolError
from protocol.lightclient import vote_digest
from protocol.state import keys

MAX_KEY_HEX = 2 * 65  # the longest typed key, a stake key (spec/state-tree.md §3)
MAX_BOUNDARIES = 1000  # rows per GET /boundaries
LISTED = 8  # boundary heights named in a 404's one line; past that, the count and the range


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


def _answer(rec: CommitRecord, key: bytes, value: bytes | None, path: bytes) -> Response:
    return JSONResponse({
        "height": rec.index,
        "commit_digest": rec.digest.hex(),
        "root": rec.state_root.hex(),
        "key": key.hex(),
        "value": None if value is None else value.hex(),
        "proof": path.hex(),
    })


async def proof(api: ApiContext, request: Request) -> Response:
    """`key`'s value (null: absent) in the latest committed state, with its proof under that state's root; with
    ?height=H, the proof kept at the epoch boundary H (node/storage.py, table boundary_proofs)."""
    key = _param_key(request)
    chain = api.node.chain
    if request.query_params.get("height") is not None:
        return _at_boundary(chain, key, param_int(request, "height"))
    rec = chain.store.last_commit()
    if rec is None:
        return error(404, "no commit yet: a proof is made against a committed state root")
    value, path = chain.state.prove(key)
    return _answer(rec, key, value, path.to_bytes())


def _at_boundary(chain: Chain, key: bytes, height: int) -> Response:
    """The proof of `key` kept under the root of the closing commit at `height`, or 404 naming what is kept."""
    kept = chain.store.boundary_proof(height, key) if height <= chain.height else None  # SQLite stops at 2**63 - 1
    recs = chain.store.commits(height, height) if kept is not None else []
    if kept is None or not recs:
        return error(404, f"no proof of key {key.hex()} at height {height}: {_served(chain.store)}")
    return _answer(recs[0], key, *kept)


def _served(store: Store) -> str:
    """Which past heights GET /proof?height serves, in words, for one line of error."""
    count, first, last = store.boundary_span()
    what = "past heights are served only at the epoch boundaries (closing commits) this node keeps, for the key " \
           f"{keys.global_('epoch').hex()} (global 'epoch')"
    if count == 0:
        return f"{what}: none yet"
    if count <= LISTED:
        return f"{what}: heights " + ", ".join(str(h) for _, h in store.boundaries(limit=LISTED))
    return f"{what}: {count} heights from {first} to {last} (GET /boundaries lists them)"


async def boundaries(api: ApiContext, request: Request) -> Response:
    """`[{"epoch", "height"}]`: each epoch from `from` on whose closing commit (at `height`) this node keeps the proof
    of the next committee, oldest first, at most MAX_BOUNDARIES. The node's word: a client checks each."""
    first = param_int(request, "from", default=0, hi=(1 << 63) - 1)
    rows = api.node.chain.store.boundaries(first, MAX_BOUNDARIES)
    return JSONResponse([{"epoch": e, "height": h} for e, h in rows])


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
