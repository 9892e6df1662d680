"""Wiring: `build_app` binds the handlers of node/api/routes_*.py to a node and puts them behind the `Guard`;
`serve_api` runs that app with hypercorn in a thread of its own (see the package docstring)."""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from node.api.guard import ApiLimits, ASGIApp, Guard, RunOnNode, run_here
from node.api.params import ApiError, api_error, http_error
from node.api.routes_chain import block, commit_at, commits, timing
from node.api.routes_health import explorer, health, metrics, status
from node.api.routes_proof import boundaries, certificate, proof
from node.api.routes_state import account, account_escrows, escrow, nonce
from node.api.routes_subnets import (
    concentration,
    deregistered,
    emission,
    governance,
    metagraph,
    proposal,
    proposals,
    record_epochs,
    subnet,
    subnets,
    supply,
    weights,
)
from node.api.routes_txs import submit, submit_many
from node.api.view import ApiContext, NodeView

Handler = Callable[[ApiContext, Request], Awaitable[Response]]


def _bind(api: ApiContext, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await handler(api, request)

    # the handler's own name: the Guard labels a route's 500s with it (tensornet_api_errors_total{route})
    return functools.update_wrapper(endpoint, handler)


def build_app(node: NodeView, limits: ApiLimits | None = None, *, run_on_node: RunOnNode = run_here) -> Guard:
    """The API of `node`: the routes below behind a `Guard`; `run_on_node` is how handlers reach its loop."""
    limits = limits or ApiLimits()
    api = ApiContext(node, limits, record_epochs(node.chain))

    def get(path: str, handler: Handler) -> Route:
        return Route(path, _bind(api, handler))

    def post(path: str, handler: Handler) -> Route:
        return Route(path, _bind(api, handler), methods=["POST"])

    routes = [
        get("/", explorer),
        get("/health", health),
        get("/status", status),
        get("/commits", commits),
        get("/commits/{height}", commit_at),
        get("/blocks/{digest}", block),
        get("/accounts/{address}", account),
        get("/accounts/{address}/nonce", nonce),
        get("/accounts/{address}/escrows", account_escrows),
        get("/escrows/{escrow_id}", escrow),
        get("/proof/{key_hex}", proof),
        get("/certificate/{height}", certificate),
        get("/boundaries", boundaries),
        get("/subnets", subnets),
        get("/subnets/deregistered", deregistered),
        get("/subnets/{netuid}", subnet),
        get("/subnets/{netuid}/metagraph", metagraph),
        get("/subnets/{netuid}/weights", weights),
        get("/emission", emission),
        get("/supply", supply),
        get("/concentration", concentration),
        get("/governance", governance),
        get("/proposals", proposals),
        get("/proposals/{pid}", proposal),
        post("/tx", submit),
        post("/txs", submit_many),
        get("/timing", timing),
        get("/metrics", metrics),
    ]
    # Path parameters are plain strings in the routes, so that a bad one reaches its handler's parser (400)
    # instead of missing every route (404).
    handlers = {ApiError: api_error, HTTPException: http_error}
    return Guard(Starlette(routes=routes, exception_handlers=handlers), limits, node.metrics, run_on_node)


async def serve_api(node: NodeView, config: Any, limits: ApiLimits | None = None, *,
                    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve `node`'s API with hypercorn from a thread of its own until cancelled; started with its URLs.

    Only the handlers' work comes to this (the node's) loop, `limits.node_concurrency` at a time, so
    a flood of requests costs the consensus loop at most that many handlers in flight, never the HTTP work."""
    limits = limits or ApiLimits()
    node_token = trio.lowlevel.current_trio_token()
    gate: list[trio.CapacityLimiter] = []  # made on the API loop, at its first request

    async def run_on_node(afn: Callable[[], Awaitable[None]]) -> None:
        if not gate:
            gate.append(trio.CapacityLimiter(limits.node_concurrency))
        await trio.to_thread.run_sync(functools.partial(trio.from_thread.run, afn, trio_token=node_token),
                                      limiter=gate[0])

    app = build_app(node, limits, run_on_node=run_on_node)
    started: queue.Queue[Any] = queue.Queue()
    control: list[tuple[trio.lowlevel.TrioToken, trio.Event]] = []

    async def main() -> None:
        stop = trio.Event()
        control.append((trio.lowlevel.current_trio_token(), stop))
        async with trio.open_nursery() as nursery:
            started.put(await nursery.start(functools.partial(_hypercorn, app, config, stop.wait)))

    def thread_main() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # e.g. the port is taken: reported to the node, which fails to start
            started.put(exc)

    thread = threading.Thread(target=thread_main, name="api", daemon=True)
    thread.start()
    urls = await trio.to_thread.run_sync(started.get)
    if isinstance(urls, BaseException):
        raise urls
    try:
        task_status.started(urls)
        await trio.sleep_forever()
    finally:
        token, stop = control[0]
        try:
            token.run_sync_soon(stop.set)
        except trio.RunFinishedError:
            pass
        with trio.CancelScope(shield=True):  # in-flight handlers still run here until the server has stopped
            await trio.to_thread.run_sync(thread.join)




async def _hypercorn(app: ASGIApp, config: Any, shutdown: Callable[[], Awaitable[None]], *,
                     task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    await serve(app, config, shutdown_trigger=shutdown, task_status=task_status)
