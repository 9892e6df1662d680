"""Accounts and escrows in the state: GET /accounts/{address}, its /nonce and /escrows, and /escrows/{id}."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.api.params import error, jsonable, param_address, param_int
from node.api.view import ApiContext
from protocol import crypto
from protocol.economics.emission import decimal_tokens
from protocol.errors import ProtocolError


async def account(api: ApiContext, request: Request) -> Response:
    key = param_address(request)
    view = api.node.chain.state.account(key)
    owner = view["hotkey_owner"]
    view["stakes"] = {crypto.address(h): amount for h, amount in view["stakes"].items()}  # keys: addresses
    view["hotkey_owner"] = None if owner is None else crypto.address(owner)
    view["tokens"] = {  # the amounts again as exact decimal token strings
        "balance": decimal_tokens(view["balance"]),
        "hotkey_stake": decimal_tokens(view["hotkey_stake"]),
        "stakes": {h: decimal_tokens(a) for h, a in view["stakes"].items()},
    }
    return JSONResponse(jsonable({"address": crypto.address(key), **view}))


async def nonce(api: ApiContext, request: Request) -> Response:
    try:
        key = crypto.parse_address(request.path_params["address"])
    except ProtocolError as exc:
        return error(400, str(exc))
    return JSONResponse({"next_nonce": api.node.chain.next_nonce(key)})


async def escrow(api: ApiContext, request: Request) -> Response:
    chain = api.node.chain
    eid = param_int(request, "escrow_id")
    e = chain.state.escrows.get(eid)
    if e is None:
        return error(404, f"escrow {eid} is not open (closed or never opened)")
    return JSONResponse(jsonable({**e.info(), "height": chain.height}))


async def account_escrows(api: ApiContext, request: Request) -> Response:
    key = param_address(request)
    return JSONResponse(jsonable([e.info() for e in api.node.chain.state.escrows.of_client(key)]))
