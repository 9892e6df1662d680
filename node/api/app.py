"""The node's HTTP API (starlette, served by hypercorn's Trio worker) and Prometheus metrics.

Hypercorn runs in a thread of its own with its own Trio loop (`serve_api`): HTTP parsing, body
reading, size caps and rate limits never run on the consensus loop. Each handler hops to the node's
loop (`Guard`, a few at a time), so it reads the chain state between commits, never in the middle of one.
Errors are one-line JSON `{"error": ..., "rule": ...}`: 400 for bad parameters, 404 for unknown items,
413 for bodies over a route's cap, 429 when a client's POST budget is empty, and 500 (logged as one
line, rate-limited) only for our own bugs. spec/api.md lists the routes and the limits.
"""

from __future__ import annotations

import functools
import logging
import queue
import statistics
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from protocol import crypto
from protocol.economics.emission import decimal_tokens
from protocol.errors import ProtocolError, TxRejected
from protocol.messages import Commit
from protocol.state.supply import supply_of

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
        self.mempool_bytes = Gauge("tensornet_mempool_bytes", "Bytes of pending transactions", registry=r)
        self.mempool_evicted = Gauge(
            "tensornet_mempool_evicted", "Transactions evicted for a higher fee per byte since start", registry=r
        )
        self.mempool_refused = Gauge(
            "tensornet_mempool_refused", "Transactions the mempool refused since start, by rule", ["rule"], registry=r
        )
        self.commit_latency = Histogram(
            "tensornet_commit_latency_seconds",
            "Leader block creation to local commit",
            buckets=(0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 5, 10),
            registry=r,
        )
        self.rejects = Counter("tensornet_rejects_total", "Rejected inputs by reason", ["reason"], registry=r)
        self.p2p = Gauge(
            "tensornet_p2p_events", "p2p counters since start: family (charges, penalties, rejects, request_errors, "
            "drops, disconnects, bans) and key (protocol:reason or reason); what peers cost us and were charged",
            ["family", "key"], registry=r,
        )
        self.txs = Counter(
            "tensornet_txs_total", "Committed transactions by outcome: ok, failed, or duplicate (a copy of one "
            "already executed, as when several validators carry it)", ["outcome"], registry=r,
        )
        self.api_refused = Counter(
            "tensornet_api_refused_total", "API requests refused before a handler ran, by reason", ["reason"],
            registry=r,
        )
        self.api_errors = Counter(
            "tensornet_api_errors_total", "API handler failures (500s; logged at most once per route per "
            "interval)", ["route"], registry=r,
        )


def _hex(b: bytes | None) -> str | None:
    return None if b is None else b.hex()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {(k.hex() if isinstance(k, bytes) else str(k)): _jsonable(v) for k, v in value.items()}
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


log = logging.getLogger("node.api")

U64_MAX = (1 << 64) - 1
KiB, MiB = 1024, 1024 * 1024


@dataclass(frozen=True)
class ApiLimits:
    """What one request, and one client, may cost the node (spec/api.md §2 gives the reasons)."""

    body_cap: int = 64 * KiB  # any route without its own cap (GETs have no body)
    tx_body_cap: int = 2 * 64 * KiB + 64  # POST /tx: one signed transaction, hex-encoded in JSON at most
    txs_body_cap: int = 1 * MiB  # POST /txs
    txs_max_count: int = 256  # transactions in one POST /txs
    txs_max_refused: int = 16  # refusals of any kind; then the rest of that request is refused unchecked
    post_rate: float = 20.0  # POSTs per second per client IP, sustained
    post_burst: int = 40  # POSTs per client IP in a burst
    max_clients: int = 4096  # client IPs tracked by the token buckets (least recently seen dropped)
    node_concurrency: int = 4  # handlers on the node's loop at once (the rest wait in the API thread)
    error_log_interval_s: float = 10.0  # at most one log line per route per interval for 500s

    def body_cap_for(self, path: str) -> int:
        return {"/tx": self.tx_body_cap, "/txs": self.txs_body_cap}.get(path, self.body_cap)


class ApiError(Exception):
    """A client's mistake: answered as one-line JSON with `status`, never logged."""

    def __init__(self, status: int, message: str, rule: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.rule = rule


def _param(request: Request, name: str) -> str | None:
    raw = request.path_params.get(name)
    return request.query_params.get(name) if raw is None else str(raw)


def param_int(request: Request, name: str, *, default: int | None = None, lo: int = 0, hi: int = U64_MAX) -> int:
    """Path or query parameter `name` as a decimal integer in [lo, hi] (400 otherwise)."""
    raw = _param(request, name)
    if raw is None:
        if default is None:
            raise ApiError(400, f"{name} is required")
        return default
    # ASCII digits only: int() would also take signs, spaces, underscores and other scripts' digits
    if not (0 < len(raw) <= 20 and raw.isascii() and raw.isdigit()) or not lo <= int(raw) <= hi:
        raise ApiError(400, f"{name} must be an integer in [{lo}, {hi}], got {raw[:40]!r}")
    return int(raw)


def param_hex(request: Request, name: str, size: int) -> bytes:
    """Path or query parameter `name` as exactly `size` bytes of hex (400 otherwise)."""
    raw = _param(request, name) or ""
    try:
        if len(raw) != 2 * size:
            raise ValueError
        return bytes.fromhex(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be {2 * size} hex characters, got {raw[:80]!r}") from None


def param_address(request: Request, name: str = "address") -> bytes:
    """Path or query parameter `name` as a public key, from an address or 64 hex characters (400 otherwise)."""
    raw = _param(request, name) or ""
    try:
        return crypto.parse_address(raw[:200])
    except ProtocolError as exc:
        raise ApiError(400, str(exc)) from None


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error(exc.status, exc.message, exc.rule)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no such route) and 405 (wrong method), as JSON like every other error."""
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail, None)


class TokenBuckets:
    """One token bucket per client key: `rate` tokens a second up to `burst`; a request takes one.

    Bounded memory: past `max_clients` keys the least recently seen is forgotten (it comes back full)."""

    def __init__(self, rate: float, burst: int, max_clients: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.max_clients, self.clock = rate, burst, max_clients, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """0.0 if a token was taken, else the seconds until one is due."""
        now = self.clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens - 1.0 if wait == 0.0 else tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


class _Refused(Exception):
    """Answered before the handler runs (413, 429, 400); counted under `reason`."""

    def __init__(self, status: int, message: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.reason, self.headers = status, message, reason, headers or {}


class _Disconnected(Exception):
    pass


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
RunOnNode = Callable[[Callable[[], Awaitable[None]]], Awaitable[None]]


async def _run_here(afn: Callable[[], Awaitable[None]]) -> None:
    await afn()


class Guard:
    """The outermost ASGI layer: what every request passes before a handler runs, and after it fails.

    - POSTs take a token from their client IP's bucket (429 with Retry-After when empty);
    - the body is read here, capped per route while it streams: a Content-Length over the cap is
      refused before one byte of body is read, a chunked body as soon as it passes the cap (413);
    - the handler then runs through `run_on_node` (on the node's loop) with the body already in hand;
    - an exception from it (our bug, never a client's) becomes a 500 JSON line, counted per route and
      logged as one line at most once per route per interval: no traceback is ever rendered for a request.
    """

    def __init__(self, app: ASGIApp, limits: ApiLimits, metrics: NodeMetrics, run_on_node: RunOnNode = _run_here):
        self.app, self.limits, self.metrics, self.run_on_node = app, limits, metrics, run_on_node
        self.buckets = TokenBuckets(limits.post_rate, limits.post_burst, limits.max_clients)
        self._lock = threading.Lock()  # buckets and the log throttle: requests of one server share them
        self._last_logged: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        try:
            body = await self._admit(scope, receive)
        except _Refused as r:
            self.metrics.api_refused.labels(r.reason).inc()
            await _send_json(send, r.status, {"error": r.message}, r.headers)
            return
        except _Disconnected:
            return
        sent: list[dict[str, Any]] = []
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def capture(message: dict[str, Any]) -> None:
            sent.append(message)

        try:
            await self.run_on_node(functools.partial(self.app, scope, replay, capture))
        except Exception as exc:  # our bug: one line, rate-limited; the client gets a 500 line
            self._failed(scope, exc)
            await _send_json(send, 500, {"error": "internal error (logged on the node)"})
            return
        for message in sent:
            await send(message)

    async def _admit(self, scope: dict[str, Any], receive: Any) -> bytes:
        if scope["method"] == "POST":
            client = scope.get("client")
            with self._lock:
                wait = self.buckets.take(client[0] if client else "?")
            if wait > 0:
                retry = max(1, int(wait + 0.999))
                raise _Refused(429, f"too many POSTs from this address: retry in {retry} s", "rate_limited",
                               {"retry-after": str(retry)})
        cap = self.limits.body_cap_for(scope["path"])
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            if not (declared.isdigit() and len(declared) <= 20):
                raise _Refused(400, "content-length must be a decimal integer", "bad_content_length")
            if int(declared) > cap:
                raise _Refused(413, f"body of {int(declared)} bytes is over this route's cap of {cap}", "too_large")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:  # stop reading at once: the server closes the connection after the 413
                raise _Refused(413, f"body is over this route's cap of {cap} bytes", "too_large")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _failed(self, scope: dict[str, Any], exc: Exception) -> None:
        endpoint = scope.get("endpoint")  # set by the router; bounded, unlike the raw path
        route = getattr(endpoint, "__name__", "unrouted")
        self.metrics.api_errors.labels(route).inc()
        now = time.monotonic()
        with self._lock:
            if now - self._last_logged.get(route, -1e18) < self.limits.error_log_interval_s:
                self._unlogged[route] = self._unlogged.get(route, 0) + 1
                return
            self._last_logged[route] = now
            skipped = self._unlogged.pop(route, 0)
        message = str(exc).splitlines()[0][:200] if str(exc) else ""
        log.error("api %s failed (%s %s): %s: %s%s", route, scope.get("method"), scope.get("path", "")[:100],
                  type(exc).__name__, message, f" (+{skipped} more not logged)" if skipped else "")


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _send_json(send: Any, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    response = JSONResponse(body, status_code=status, headers=headers)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


async def serve_api(node: Node, config: Any, limits: ApiLimits | None = None, *,
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
    from hypercorn.trio import serve

    await serve(app, config, shutdown_trigger=shutdown, task_status=task_status)


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


def build_app(node: Node, limits: ApiLimits | None = None, *, run_on_node: RunOnNode = _run_here) -> Guard:
    """The API of `node`: the routes below behind a `Guard`; `run_on_node` is how handlers reach its loop."""
    limits = limits or ApiLimits()
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

    async def commit_at(request: Request) -> Response:
        h = param_int(request, "height")
        recs = chain.store.commits(h, h) if h <= chain.height else []  # SQLite integers stop at 2**63 - 1
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
        data = chain.store.get_block(param_hex(request, "digest", 32))
        if data is None:
            return error(404, "unknown block")
        from protocol.consensus.core import vertex_from_bytes

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
        key = param_address(request)
        view = chain.state.account(key)
        owner = view["hotkey_owner"]
        view["stakes"] = {crypto.address(h): amount for h, amount in view["stakes"].items()}  # keys: addresses
        view["hotkey_owner"] = None if owner is None else crypto.address(owner)
        view["tokens"] = {  # the amounts again as exact decimal token strings
            "balance": decimal_tokens(view["balance"]),
            "hotkey_stake": decimal_tokens(view["hotkey_stake"]),
            "stakes": {h: decimal_tokens(a) for h, a in view["stakes"].items()},
        }
        return JSONResponse(_jsonable({"address": crypto.address(key), **view}))

    async def escrow(request: Request) -> Response:
        eid = param_int(request, "escrow_id")
        e = chain.state.escrows.get(eid)
        if e is None:
            return error(404, f"escrow {eid} is not open (closed or never opened)")
        return JSONResponse(_jsonable({**e.info(), "height": chain.height}))

    async def account_escrows(request: Request) -> Response:
        key = param_address(request)
        return JSONResponse(_jsonable([e.info() for e in chain.state.escrows.of_client(key)]))

    async def subnets(request: Request) -> Response:
        return JSONResponse([node.subnet_obj(n) for n in sorted(chain.state.subnets)])

    async def subnet(request: Request) -> Response:
        netuid = param_int(request, "netuid")
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

        pid = param_int(request, "pid")
        p = chain.state.governance.proposals.get(pid)
        if p is None:
            return error(404, f"no proposal {pid} (next id is {chain.state.governance.next_id})")
        return JSONResponse(proposal_view(chain.state, p, votes=True))

    async def metagraph(request: Request) -> Response:
        netuid = param_int(request, "netuid")
        if chain.state.subnet(netuid) is None:
            return error(404, f"no subnet {netuid}")
        return JSONResponse(_jsonable(chain.state.metagraph(netuid)))

    async def weights(request: Request) -> Response:
        netuid = param_int(request, "netuid")
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

    async def supply(request: Request) -> Response:
        return JSONResponse(supply_of(chain.state).to_json())

    async def submit(request: Request) -> Response:
        body = await request.body()  # capped by the Guard (limits.tx_body_cap)
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = bytes.fromhex((await request.json())["tx"])
            except (ValueError, KeyError, TypeError):
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
        since = param_int(request, "from", default=0)
        rows = [
            {"height": c.index, "leader_ms": c.timestamp_ms, "committed_ms": c.committed_ms, "txs": c.txs,
             "ok_txs": c.ok_txs, "latency_ms": c.latency_ms}
            for c in chain.recent
            if c.index >= since
        ]
        return JSONResponse(rows)

    async def submit_many(request: Request) -> Response:
        """A CBOR array of signed transactions (bulk load: one request, many transactions).

        Bounded per request: `txs_max_count` transactions in at most `txs_body_cap` bytes (the Guard), and
        after `txs_max_refused` refusals of any kind (bad signatures, unpayable fees, stale nonces) the rest
        are refused unchecked (`unchecked`): a request of junk costs at most that many admission checks."""
        from protocol import codec

        body = await request.body()
        try:
            txs = codec.decode(body, max_size=limits.txs_body_cap, max_items=limits.txs_max_count + 1)
        except ProtocolError as exc:
            return error(400, str(exc), type(exc).__name__)
        if not isinstance(txs, list) or not all(isinstance(t, bytes) for t in txs):
            return error(400, "expected a CBOR array of byte strings (signed transactions)")
        if len(txs) > limits.txs_max_count:
            return error(413, f"at most {limits.txs_max_count} transactions per request")
        accepted, failed, refused = 0, 0, {}
        for i, t in enumerate(txs):
            if failed >= limits.txs_max_refused:
                refused["unchecked"] = len(txs) - i
                break
            try:
                await node.submit_tx(t, gossip=not chain.is_validator)  # a validator includes them itself
                accepted += 1
            except ProtocolError as exc:
                key = getattr(exc, "rule", type(exc).__name__)
                refused[key] = refused.get(key, 0) + 1
                failed += 1
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
        Route("/commits/{height}", commit_at),
        Route("/blocks/{digest}", block),
        Route("/accounts/{address}", account),
        Route("/accounts/{address}/nonce", nonce),
        Route("/accounts/{address}/escrows", account_escrows),
        Route("/escrows/{escrow_id}", escrow),
        Route("/subnets", subnets),
        Route("/subnets/deregistered", deregistered),
        Route("/subnets/{netuid}", subnet),
        Route("/subnets/{netuid}/metagraph", metagraph),
        Route("/subnets/{netuid}/weights", weights),
        Route("/emission", emission),
        Route("/supply", supply),
        Route("/concentration", concentration),
        Route("/governance", governance),
        Route("/proposals", proposals),
        Route("/proposals/{pid}", proposal),
        Route("/tx", submit, methods=["POST"]),
        Route("/txs", submit_many, methods=["POST"]),
        Route("/timing", timing),
        Route("/metrics", metrics),
    ]
    # Path parameters are plain strings in the routes, so that a bad one reaches its handler's parser (400)
    # instead of missing every route (404).
    handlers = {ApiError: _api_error, HTTPException: _http_error}
    return Guard(Starlette(routes=routes, exception_handlers=handlers), limits, node.metrics, run_on_node)
