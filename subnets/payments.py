"""The miner's side of paid inference (spec/economics.md §3): check a voucher before working, sign the
proof of service after answering, and claim the payment on chain.

Before any model work, `PaymentDesk.accept` checks that the voucher is signed by the query's caller,
pays this miner for exactly this query at no less than its price, and that the escrow on chain belongs
to that client, is for this subnet, stays open long enough to claim (`claim_margin` heights), and still
covers the price after everything this miner has already accepted from it and not yet seen settled.
The price is then reserved. After a served answer, `settle` signs a `ServiceProof` over (voucher digest,
SignedResponse digest) and queues `claim_payment`; any other outcome (deadline missed, bad query,
shed under load) `release`s the reservation and nothing is claimed: an unanswered query is never charged.

The chain is reached through three callables, so the desk runs the same against a node's API (the miner
worker) and against a `State` in tests: `fetch_escrow(id) -> info | None`, `submit(call) -> nonce used`,
and `committed_nonce() -> the hotkey's next nonce in committed state`. A reservation is dropped once the
nonce of its claim is committed (whether the claim was paid or refused), and the escrow is then re-read.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from node.log import get_logger
from protocol import crypto
from protocol.crypto import Keypair
from protocol.errors import ProtocolError
from protocol.messages import ClaimPayment, PaidQuery, ServiceProof, SignedServiceProof, Voucher
from protocol.state.escrow import MAX_CLAIMS_PER_ESCROW

log = get_logger(__name__)

EscrowFetch = Callable[[int], Awaitable[dict[str, Any] | None]]
ClaimSubmit = Callable[[ClaimPayment], Awaitable[int]]
NonceFetch = Callable[[], Awaitable[int]]


class PaymentRefused(ProtocolError):
    """A voucher the miner will not work for; the message says why (sent back as BAD_PAYMENT)."""


@dataclass
class PaymentConfig:
    price: int  # units per query; 0: this miner takes no paid queries
    claim_margin: int = 20  # refuse escrows that expire within this many heights (time to claim)
    escrow_cache_s: float = 2.0  # how long an escrow read is reused
    settle_poll_s: float = 0.5


@dataclass(frozen=True)
class Reservation:
    voucher: Any  # SignedVoucher
    escrow_id: int
    nonce: int
    price: int


@dataclass
class PaymentStats:
    accepted: int = 0
    refused: int = 0
    released: int = 0
    claims_submitted: int = 0
    claims_settled: int = 0
    claim_errors: int = 0
    earned: int = 0  # gross prices of the claims submitted

    def summary(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Book:
    info: dict[str, Any]
    fetched: float
    reserved: int = 0  # prices accepted here and not yet settled on chain
    nonces: set[int] = field(default_factory=set)


class PaymentDesk:
    def __init__(
        self,
        hotkey: Keypair,
        chain_id: str,
        netuid: int,
        config: PaymentConfig,
        fetch_escrow: EscrowFetch,
        submit: ClaimSubmit,
        committed_nonce: NonceFetch,
    ) -> None:
        self.hotkey = hotkey
        self.chain_id = chain_id
        self.netuid = netuid
        self.config = config
        self.fetch_escrow = fetch_escrow
        self.submit = submit
        self.committed_nonce = committed_nonce
        self.stats = PaymentStats()
        self._books: dict[int, _Book] = {}
        self._lock = trio.Lock()  # one check-and-reserve at a time, so two vouchers cannot both fit
        self._send, self._receive = trio.open_memory_channel[tuple[ClaimPayment, Reservation]](1024)
        self._queued = 0
        self.last_proof: SignedServiceProof | None = None
        self._pending: list[tuple[int, Reservation]] = []  # (claim tx nonce, reservation), submission order

    @property
    def price(self) -> int:
        return self.config.price

    def _refuse(self, reason: str) -> PaymentRefused:
        self.stats.refused += 1
        return PaymentRefused(reason)

    async def _book(self, escrow_id: int) -> _Book | None:
        book = self._books.get(escrow_id)
        if book is not None and time.monotonic() - book.fetched < self.config.escrow_cache_s:
            return book
        info = await self.fetch_escrow(escrow_id)
        if info is None:
            return None
        if book is None:
            book = self._books[escrow_id] = _Book(info, time.monotonic())
        else:
            book.info, book.fetched = info, time.monotonic()
        return book

    async def accept(self, pq: PaidQuery) -> Reservation:
        """Check the voucher of a paid query and reserve its price; `PaymentRefused` says why not."""
        sv, sq = pq.voucher, pq.query
        v: Voucher = sv.body
        try:
            sv.verify(self.chain_id)
        except ProtocolError as exc:
            raise self._refuse(f"voucher: {exc}") from None
        if v.client != sq.body.caller:
            raise self._refuse("the voucher's client is not the query's caller")
        if v.miner != self.hotkey.public:
            raise self._refuse(f"the voucher pays {crypto.address(v.miner)}, not this miner")
        if v.query_digest != sq.digest:
            raise self._refuse("the voucher is for another query (query_digest differs)")
        if v.price < self.price:
            raise self._refuse(f"price {v.price} is below this miner's price {self.price}")
        async with self._lock:
            book = await self._book(v.escrow_id)
            if book is None:
                raise self._refuse(f"escrow {v.escrow_id} is not open on chain")
            info = book.info
            if bytes.fromhex(info["client"]) != v.client or int(info["netuid"]) != self.netuid:
                raise self._refuse(f"escrow {v.escrow_id} belongs to another client or subnet")
            left = int(info["expires_at"]) - int(info["height"])
            if left < self.config.claim_margin:
                raise self._refuse(
                    f"escrow {v.escrow_id} expires at height {info['expires_at']}, within {left} heights "
                    f"(this miner needs {self.config.claim_margin} to claim)"
                )
            if v.nonce in book.nonces:
                raise self._refuse(f"voucher nonce {v.nonce} of escrow {v.escrow_id} is already used")
            available = int(info["remaining"]) - book.reserved
            if v.price > available:
                raise self._refuse(
                    f"escrow {v.escrow_id} covers {available} more (after {book.reserved} reserved), "
                    f"the voucher asks {v.price}"
                )
            if len(book.nonces) >= MAX_CLAIMS_PER_ESCROW:
                raise self._refuse(f"escrow {v.escrow_id} has reached {MAX_CLAIMS_PER_ESCROW} claims")
            book.reserved += v.price
            book.nonces.add(v.nonce)
        self.stats.accepted += 1
        return Reservation(sv, v.escrow_id, v.nonce, v.price)

    def release(self, r: Reservation) -> None:
        """The query was not served: nothing will be claimed; the voucher's nonce stays used."""
        book = self._books.get(r.escrow_id)
        if book is not None:
            book.reserved -= r.price
        self.stats.released += 1

    def settle(self, r: Reservation, response_bytes: bytes) -> SignedServiceProof:
        """The query was answered with `response_bytes` (a SignedResponse): sign the proof, queue the claim."""
        body = ServiceProof(self.chain_id, self.hotkey.public, r.voucher.digest, crypto.digest(response_bytes))
        proof = SignedServiceProof.create(body, self.hotkey)
        self.last_proof = proof
        claim = ClaimPayment(r.voucher, proof)
        try:
            self._send.send_nowait((claim, r))
        except trio.WouldBlock:  # a claim backlog of 1024: keep serving, this one is lost to the miner
            log.warning("claim queue full; dropping a claim", escrow=r.escrow_id, nonce=r.nonce)
            self.release(r)
            return proof
        self._queued += 1
        return proof

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Submit queued claims in order and drop reservations once their claims are committed."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._settle_loop)
            task_status.started()
            async for claim, r in self._receive:
                try:
                    nonce = await self.submit(claim)
                except Exception as exc:  # noqa: BLE001 - the node refused or is down: the reservation goes
                    self.stats.claim_errors += 1
                    log.warning("claim not submitted", escrow=r.escrow_id, nonce=r.nonce, error=str(exc)[:200])
                    self._drop(r)
                else:
                    self.stats.claims_submitted += 1
                    self.stats.earned += r.price
                    self._pending.append((nonce, r))
                finally:
                    self._queued -= 1

    def _drop(self, r: Reservation) -> None:
        book = self._books.get(r.escrow_id)
        if book is not None:
            book.reserved -= r.price
            book.fetched = -1e9  # re-read the escrow: the chain has moved

    async def _settle_loop(self) -> None:
        while True:
            await trio.sleep(self.config.settle_poll_s)
            if not self._pending:
                continue
            try:
                committed = await self.committed_nonce()
            except Exception as exc:  # noqa: BLE001 - try again next poll
                log.debug("nonce read failed", error=str(exc)[:200])
                continue
            while self._pending and self._pending[0][0] < committed:
                _, r = self._pending.pop(0)
                self._drop(r)
                self.stats.claims_settled += 1

    async def drain(self) -> None:
        """Wait until every queued claim is submitted and committed (tests and clean shutdown)."""
        while self._queued or self._pending:
            await trio.sleep(self.config.settle_poll_s / 2)
