"""Subnets and the economy: GET /subnets (and one subnet's metagraph and weights), /emission, /supply,
/concentration, /governance and /proposals."""

from __future__ import annotations

from collections import deque
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.api.params import error, jsonable, param_int
from node.api.view import ApiContext
from node.chain import Chain
from node.concentration import network_concentration
from node.economics import deregistrations, governance_view, proposal_view
from node.economics import proposals as listing
from protocol.state.state import supply_of

EMISSION_HISTORY = 2000  # epochs kept in memory for the explorer's emission chart


def record_epochs(chain: Chain) -> deque[dict[str, Any]]:
    """Wrap the chain's commit hook: after each commit, note every subnet whose epoch ran at that height
    (its paid emission per uid), so the explorer can chart emission over time. In memory only."""
    history: deque[dict[str, Any]] = deque(maxlen=EMISSION_HISTORY)
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
    return history


async def subnets(api: ApiContext, request: Request) -> Response:
    return JSONResponse([api.node.subnet_obj(n) for n in sorted(api.node.chain.state.subnets)])


async def subnet(api: ApiContext, request: Request) -> Response:
    netuid = param_int(request, "netuid")
    if api.node.chain.state.subnet(netuid) is None:
        return error(404, f"no subnet {netuid}")
    return JSONResponse(api.node.subnet_obj(netuid))


async def deregistered(api: ApiContext, request: Request) -> Response:
    return JSONResponse(deregistrations(api.node.chain.state))


async def metagraph(api: ApiContext, request: Request) -> Response:
    state = api.node.chain.state
    netuid = param_int(request, "netuid")
    if state.subnet(netuid) is None:
        return error(404, f"no subnet {netuid}")
    return JSONResponse(jsonable(state.metagraph(netuid)))


async def weights(api: ApiContext, request: Request) -> Response:
    netuid = param_int(request, "netuid")
    sn = api.node.chain.state.subnet(netuid)
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


async def emission(api: ApiContext, request: Request) -> Response:
    chain = api.node.chain
    return JSONResponse({"height": chain.height, "issued": chain.state.issued, "epochs": list(api.emission_history)})


async def supply(api: ApiContext, request: Request) -> Response:
    return JSONResponse(supply_of(api.node.chain.state).to_json())


async def concentration(api: ApiContext, request: Request) -> Response:
    chain = api.node.chain
    committee = chain.committee
    return JSONResponse(network_concentration(chain.state, committee.public_keys, committee.stakes))


async def governance(api: ApiContext, request: Request) -> Response:
    return JSONResponse(governance_view(api.node.chain.state))


async def proposals(api: ApiContext, request: Request) -> Response:
    return JSONResponse(listing(api.node.chain.state))


async def proposal(api: ApiContext, request: Request) -> Response:
    state = api.node.chain.state
    pid = param_int(request, "pid")
    p = state.governance.proposals.get(pid)
    if p is None:
        return error(404, f"no proposal {pid} (next id is {state.governance.next_id})")
    return JSONResponse(proposal_view(state, p, votes=True))
