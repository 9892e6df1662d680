"""The subnet query protocol: a validator's `SignedQuery` in, the miner's `SignedResponse` out.

It runs on p2pnet's request/response streams under `/tensornet/subnet-query/1`. The miner side
(`Axon`) checks, in this order and before any model work:

1. the bytes decode as a `SignedQuery` and its signature verifies (a forged query gets no signed reply,
   so a miner is never an oracle for someone else's key);
2. the query is for this chain, subnet and miner (`Query.miner` is this miner's hotkey, so a query
   captured on its way to one miner cannot be replayed to another), and fresh (`sent_ms` within
   `max_skew_s` of the miner's clock);
3. the caller's hotkey holds a validator permit on the subnet (`PermitCache`, refreshed from the chain);
4. the request id is new (`ReplayGuard`: ids are kept until their query is stale, never dropped early), so
   a captured query cannot be replayed to spend a validator's budget;
5. the caller is within its rate (token bucket per hotkey);
6. the answer comes within the per-query deadline; the model runs in a thread, one query at a time.

Refusals after step 1 are signed responses with a non-zero `Response.status` (`QueryStatus`), so a
validator can tell "refused" from "lost". The validator side is `query_miner`.

Paid queries (spec/economics.md §3) come on `/tensornet/subnet-paid-query/1` as a `PaidQuery` (the
`SignedQuery` plus the client's voucher): steps 3 and 5 are replaced by the voucher check of the
`PaymentDesk`, and an answered query is claimed on chain. A caller without a permit that asks on the
free protocol learns the miner's price from a `PAYMENT_REQUIRED` reply. Paid and free queries share the
model through a `PriorityGate`: paid first, free ones shed when the queue is full.
"""

from __future__ import annotations

import enum
import heapq
import os
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.peer.id import ID

from node.log import get_logger
from p2pnet.reqresp import ProtocolSpec, Refused, ReqResp, RequestError
from protocol import codec
from protocol.crypto import Keypair
from protocol.errors import ProtocolError
from protocol.messages import PaidQuery, Query, Response, SignedQuery, SignedResponse, SignedVoucher
from subnets.admission import PriorityGate
from subnets.payments import PaymentDesk, PaymentRefused
from subnets.task import Miner, SubnetError, Task

log = get_logger(__name__)

PROTOCOL_ID = "/tensornet/subnet-query/1"
SPEC = ProtocolSpec(
    PROTOCOL_ID,
    max_request=SignedQuery.MAX_SIZE,
    max_response=SignedResponse.MAX_SIZE,
    timeout=30.0,
    server_timeout=60.0,  # the axon's own per-query deadline is shorter and answers with a signed TIMEOUT
    max_in_flight=16,
)
PAID_PROTOCOL_ID = "/tensornet/subnet-paid-query/1"
PAID_SPEC = ProtocolSpec(
    PAID_PROTOCOL_ID,
    max_request=PaidQuery.MAX_SIZE,
    max_response=SignedResponse.MAX_SIZE,
    timeout=30.0,
    server_timeout=60.0,
    max_in_flight=16,
)


class QueryStatus(enum.IntEnum):
    """`Response.status` values of the subnet query protocol."""

    OK = 0
    BAD_QUERY = 1  # the payload does not decode or breaks the task's rules
    NOT_VALIDATOR = 2  # the caller holds no validator permit on this subnet
    RATE_LIMITED = 3  # the caller is over its rate
    TIMEOUT = 4  # the model missed the miner's per-query deadline
    WRONG_SUBNET = 5  # another chain or netuid
    INTERNAL = 6  # the model failed; the worker restarts
    STALE = 7  # sent_ms too far from the miner's clock
    PAYMENT_REQUIRED = 8  # no permit, but this miner sells queries: payload = its price (CBOR uint, units)
    BAD_PAYMENT = 9  # the voucher or its escrow does not cover the query (payload: reason)
    BUSY = 10  # shed under load (the model queue or the replay guard is full; paid queries go first)
    WRONG_MINER = 11  # the query names another miner's hotkey (payload: this miner's hotkey)


class QueryError(SubnetError):
    """A query that got no usable answer: transport failure, bad envelope, or a refusal status."""

    def __init__(self, message: str, status: QueryStatus | None = None) -> None:
        self.status = status
        super().__init__(message)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- miner side: permits, rate limit, replay guard -----------------------------------------------------

PermitFetch = Callable[[], Awaitable[set[bytes]]]


class PermitCache:
    """The hotkeys holding a validator permit on the subnet, refreshed every `refresh_s`.

    An unknown caller triggers an early refresh (at most once per `min_gap_s`), so a validator that
    just earned its permit is served within seconds without letting strangers hammer the node API.
    A failed refresh keeps the previous set: a node hiccup must not lock every validator out.
    """

    def __init__(self, fetch: PermitFetch, refresh_s: float = 10.0, min_gap_s: float = 2.0) -> None:
        self.fetch = fetch
        self.refresh_s = refresh_s
        self.min_gap_s = min_gap_s
        self.hotkeys: set[bytes] = set()
        self.last_refresh = -1e9
        self.refreshes = 0
        self._lock = trio.Lock()

    async def refresh(self) -> None:
        async with self._lock:
            self.last_refresh = trio.current_time()
            try:
                with trio.fail_after(10):
                    self.hotkeys = set(await self.fetch())
                self.refreshes += 1
            except (trio.TooSlowError, Exception) as exc:  # noqa: BLE001 - keep serving on the last known set
                log.warning("permit refresh failed; keeping the last set", error=repr(exc), known=len(self.hotkeys))

    async def allowed(self, hotkey: bytes) -> bool:
        if hotkey in self.hotkeys:
            return True
        if trio.current_time() - self.last_refresh >= self.min_gap_s:
            await self.refresh()
        return hotkey in self.hotkeys

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.refresh()
        task_status.started()
        while True:
            await trio.sleep(self.refresh_s)
            await self.refresh()


class RateLimiter:
    """Token bucket per key: `burst` queries at once, then `rate_per_s` on average."""

    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 4096) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()

    def take(self, key: bytes, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        ok = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if ok else tokens, now)
        while len(self._buckets) > self.max_keys:  # only permitted callers get here, so this is a safety net
            self._buckets.popitem(last=False)
        return ok


class ReplayGuard:
    """Request ids of accepted queries, each kept until its query is stale (`sent_ms + window_ms`).

    A query is only accepted while `abs(now - sent_ms) <= window_ms`, so an id whose window has passed is
    refused by time and can be forgotten safely; before that it is never forgotten, however many other ids
    arrive. When `max_ids` are held, new ids are refused (`accept` returns BUSY) rather than evicting one.
    Only permitted or paying callers reach the guard, so the cap bounds honest load, not strangers.
    """

    def __init__(self, window_ms: int, max_ids: int = 200_000) -> None:
        self.window_ms = window_ms
        self.max_ids = max_ids
        self._seen: set[bytes] = set()
        self._expiry: list[tuple[int, bytes]] = []  # min-heap of (ms after which the id is stale, id)

    def __len__(self) -> int:
        return len(self._seen)

    def accept(self, request_id: bytes, sent_ms: int, now: int) -> QueryStatus | None:
        """None if the id is new and now remembered; STALE, or BUSY when full. A replay raises `Refused`."""
        while self._expiry and self._expiry[0][0] < now:
            self._seen.discard(heapq.heappop(self._expiry)[1])
        if abs(now - sent_ms) > self.window_ms:
            return QueryStatus.STALE
        if request_id in self._seen:
            raise Refused("request id already used")
        if len(self._seen) >= self.max_ids:
            return QueryStatus.BUSY
        self._seen.add(request_id)
        heapq.heappush(self._expiry, (sent_ms + self.window_ms, request_id))
        return None


# --- miner side: the axon --------------------------------------------------------------------------------


@dataclass
class AxonConfig:
    deadline_s: float = 10.0  # model time for one query, queueing included
    rate_per_s: float = 2.0
    burst: int = 10
    max_skew_s: float = 60.0
    max_waiting: int = 8  # queries queued for the model beyond the one running
    max_replay_ids: int = 200_000  # request ids held for replay checks (~11 MB full); beyond it, new queries are BUSY


@dataclass
class AxonStats:
    served: int = 0
    served_paid: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=512))
    last_query_at: float | None = None

    def refuse(self, status: QueryStatus) -> None:
        self.refused[status.name.lower()] = self.refused.get(status.name.lower(), 0) + 1

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        pick = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 2)) if lat else (lambda q: None)
        return {
            "served": self.served,
            "served_paid": self.served_paid,
            "refused": dict(self.refused),
            "latency_ms_p50": pick(0.5),
            "latency_ms_p95": pick(0.95),
            "last_query_unix": self.last_query_at,
        }


class Axon:
    """Serves one task's miner under `PROTOCOL_ID`. `on_fatal(exc)` is called when the model fails
    (not a bad query: the model itself raised), so the worker can exit and be restarted fresh."""

    def __init__(
        self,
        task: Task[Any, Any],
        miner: Miner[Any, Any],
        hotkey: Keypair,
        chain_id: str,
        netuid: int,
        permits: PermitCache,
        config: AxonConfig | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        payments: PaymentDesk | None = None,
    ) -> None:
        self.task = task
        self.miner = miner
        self.hotkey = hotkey
        self.chain_id = chain_id
        self.netuid = netuid
        self.permits = permits
        self.config = config or AxonConfig()
        self.on_fatal = on_fatal
        self.limiter = RateLimiter(self.config.rate_per_s, self.config.burst)
        self.replays = ReplayGuard(int(self.config.max_skew_s * 1000), self.config.max_replay_ids)
        self.clock: Callable[[], int] = now_ms  # wall-clock ms, as `Query.sent_ms`; tests move it
        self.stats = AxonStats()
        self.payments = payments
        self.gate = PriorityGate(self.config.max_waiting)
        self._model = trio.CapacityLimiter(1)  # one query on the model at a time; an abandoned one still holds it

    def attach(self, reqresp: ReqResp) -> None:
        reqresp.register(SPEC, self.handle)
        reqresp.register(PAID_SPEC, self.handle_paid)

    def _reply(self, q: Query, status: QueryStatus, payload: bytes = b"") -> bytes:
        if status != QueryStatus.OK:
            self.stats.refuse(status)
        body = Response(self.chain_id, self.netuid, self.hotkey.public, q.request_id, int(status), payload)
        return SignedResponse.create(body, self.hotkey).to_bytes()

    def _answer(self, payload: bytes) -> tuple[QueryStatus, bytes]:
        """Runs in a worker thread: decode, check, answer, encode."""
        try:
            return QueryStatus.OK, self.task.handle(self.miner, payload)
        except ProtocolError as exc:
            return QueryStatus.BAD_QUERY, str(exc)[:200].encode()

    def _check_envelope(self, sq: SignedQuery) -> bytes | None:
        """Chain, subnet, miner, signature, freshness: a refusal reply, None to go on (Refused raised)."""
        q = sq.body
        if q.chain_id != self.chain_id or q.netuid != self.netuid:
            return self._reply(q, QueryStatus.WRONG_SUBNET, f"this is {self.chain_id}/{self.netuid}".encode())
        if q.miner != self.hotkey.public:
            return self._reply(q, QueryStatus.WRONG_MINER, self.hotkey.public)
        try:
            sq.verify(self.chain_id)
        except ProtocolError:
            raise Refused("bad query signature") from None
        if abs(self.clock() - q.sent_ms) > self.replays.window_ms:
            return self._reply(q, QueryStatus.STALE)
        return None

    def _check_replay(self, q: Query) -> bytes | None:
        """After the permit or voucher check, so strangers cannot fill the guard: a refusal reply or None.
        Synchronous, so two copies of one query racing through the awaits before it cannot both pass."""
        status = self.replays.accept(q.request_id, q.sent_ms, self.clock())
        return None if status is None else self._reply(q, status)

    async def handle(self, peer: ID, data: bytes) -> bytes:
        started = time.monotonic()
        try:
            sq = SignedQuery.from_bytes(data)
        except ProtocolError as exc:
            raise Refused(f"not a SignedQuery: {exc}") from None
        q = sq.body
        refusal = self._check_envelope(sq)
        if refusal is not None:
            return refusal
        if not await self.permits.allowed(q.caller):
            if self.payments is not None and self.payments.price > 0:
                return self._reply(q, QueryStatus.PAYMENT_REQUIRED, codec.encode(self.payments.price))
            return self._reply(q, QueryStatus.NOT_VALIDATOR)
        refusal = self._check_replay(q)  # before the rate limit: a replay must not spend the caller's tokens
        if refusal is not None:
            return refusal
        if not self.limiter.take(q.caller):
            return self._reply(q, QueryStatus.RATE_LIMITED)
        status, payload = await self._run(q, started, paid=False)
        return self._answer_reply(q, status, payload, started)

    async def handle_paid(self, peer: ID, data: bytes) -> bytes:
        started = time.monotonic()
        try:
            pq = PaidQuery.from_bytes(data)
        except ProtocolError as exc:
            raise Refused(f"not a PaidQuery: {exc}") from None
        q = pq.query.body
        refusal = self._check_envelope(pq.query)
        if refusal is not None:
            return refusal
        if self.payments is None or self.payments.price == 0:
            return self._reply(q, QueryStatus.BAD_PAYMENT, b"this miner takes no paid queries")
        try:
            reservation = await self.payments.accept(pq)
        except PaymentRefused as exc:
            return self._reply(q, QueryStatus.BAD_PAYMENT, str(exc)[:300].encode())
        try:
            refusal = self._check_replay(q)
            if refusal is not None:
                self.payments.release(reservation)
                return refusal
            status, payload = await self._run(q, started, paid=True)
            reply = self._answer_reply(q, status, payload, started)
        except BaseException:
            self.payments.release(reservation)
            raise
        if status == QueryStatus.OK:
            self.stats.served_paid += 1
            self.payments.settle(reservation, reply)
        else:
            self.payments.release(reservation)
        return reply

    async def _run(self, q: Query, started: float, *, paid: bool) -> tuple[QueryStatus, bytes]:
        """Wait for the model (paid first), answer within the deadline; (status, payload)."""
        status, payload = QueryStatus.TIMEOUT, b""
        with trio.move_on_after(max(0.0, self.config.deadline_s - (time.monotonic() - started))):
            if not await self.gate.acquire(paid):
                return QueryStatus.BUSY, b""
            try:
                status, payload = await trio.to_thread.run_sync(
                    self._answer, q.payload, limiter=self._model, abandon_on_cancel=True
                )
            except Exception as exc:  # the model failed: refuse this one, and let the worker restart
                log.error("model failed on a query", error=repr(exc))
                if self.on_fatal is not None:
                    self.on_fatal(exc)
                return QueryStatus.INTERNAL, b""
            finally:
                self.gate.release()
        return status, payload

    def _answer_reply(self, q: Query, status: QueryStatus, payload: bytes, started: float) -> bytes:
        if status == QueryStatus.OK:
            self.stats.served += 1
            self.stats.latencies_ms.append((time.monotonic() - started) * 1000)
            self.stats.last_query_at = time.time()
            return self._reply(q, status, payload)
        return self._reply(q, status, payload if status == QueryStatus.BAD_QUERY else b"")


# --- validator side -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryResult:
    status: QueryStatus
    payload: bytes
    latency_ms: int
    response_digest: bytes = b""  # digest of the SignedResponse received (what a ServiceProof names)


def build_query(hotkey: Keypair, chain_id: str, netuid: int, payload: bytes, *, miner: bytes) -> SignedQuery:
    """A fresh query for the miner whose registered hotkey is `miner` (no other miner will serve it)."""
    q = Query(chain_id, netuid, hotkey.public, miner, os.urandom(16), now_ms(), payload)
    return SignedQuery.create(q, hotkey)


async def query_miner(
    reqresp: ReqResp,
    peer: ID,
    signed: SignedQuery,
    miner_hotkey: bytes,
    timeout: float,
    voucher: SignedVoucher | None = None,
) -> QueryResult:
    """Send one signed query (with a voucher: as a paid query); return the verified answer and its latency
    (send to verified response).

    Raises `QueryError` when no trustworthy response arrives: a transport failure, a reply not signed by
    the miner's registered hotkey, or one for another request. A refusal is a result, not an error.
    """
    if signed.body.miner != miner_hotkey:
        raise QueryError("the query names another miner than the one asked (build it with miner=its hotkey)")
    started = time.monotonic()
    try:
        if voucher is None:
            data = await reqresp.request(peer, PROTOCOL_ID, signed.to_bytes(), timeout=timeout)
        else:
            request = PaidQuery(signed, voucher).to_bytes()
            data = await reqresp.request(peer, PAID_PROTOCOL_ID, request, timeout=timeout)
    except RequestError as exc:
        raise QueryError(f"no answer from {peer}: {exc}") from None
    try:
        sr = SignedResponse.from_bytes(data)
        r = sr.body
        if r.miner != miner_hotkey:
            raise QueryError(f"response signed by {r.miner.hex()[:16]}, not the registered hotkey")
        sr.verify(signed.body.chain_id)
    except ProtocolError as exc:
        raise QueryError(f"bad response from {peer}: {exc}") from None
    latency_ms = int((time.monotonic() - started) * 1000)
    # A refusal names the miner's own subnet (that is the point of WRONG_SUBNET); an answer must
    # be for the subnet asked.
    if r.request_id != signed.body.request_id or (r.status == 0 and r.netuid != signed.body.netuid):
        raise QueryError("response to another request")
    try:
        status = QueryStatus(r.status)
    except ValueError:
        raise QueryError(f"unknown response status {r.status}") from None
    return QueryResult(status, r.payload, latency_ms, sr.digest)
