"""The API's outermost ASGI layer: what every request passes before a handler runs, and after it fails.

A concern of its own, apart from the routes: POST budgets per client IP, body caps while the body
streams, the hop to the node's loop, and 500s as one rate-limited log line. It knows no route's
meaning, only paths, sizes and addresses (spec/api.md §2 and §3).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from node.metrics import NodeMetrics

log = logging.getLogger("node.api")  # the package's name: one logger for the whole API

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


async def run_here(afn: Callable[[], Awaitable[None]]) -> None:
    """Handlers on the caller's own loop: in-process tests, where app and node share one loop."""
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

    def __init__(self, app: ASGIApp, limits: ApiLimits, metrics: NodeMetrics, run_on_node: RunOnNode = run_here):
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
