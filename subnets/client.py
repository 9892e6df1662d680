"""Paying for queries to a subnet's miners (spec/economics.md §3), for anyone with a funded key.

    from subnets.client import SubnetClient

    client = SubnetClient(coldkey, netuid=1, node="http://127.0.0.1:26657")
    client.setup()                                        # chain id, the subnet's task
    escrow = client.ensure_escrow(max_price, deposit, expires_in)   # reuse an open escrow or open one
    answer = trio.run(client.query_once, payload, max_price)        # or `async with client.session():`

A query goes to the subnet's miners with an axon, highest incentive first. For each, the client learns
the price (a free query without a permit is answered `PAYMENT_REQUIRED` with the price), skips miners
above `max_price`, and sends the `SignedQuery` with a voucher for exactly that query, that miner and that
price, drawn on its escrow. The first verified answer wins; a miner that refuses, sheds (`BUSY`) or misses
the deadline is never charged by an honest miner, and the next one is tried. The client never signs
vouchers beyond what its escrow holds.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from node.client.api_client import ApiError, FeePolicy, NodeClient
from node.errors import NodeError
from node.log import get_logger
from protocol import codec, crypto
from protocol.crypto import Keypair
from protocol.economics.emission import decimal_tokens, format_tokens
from protocol.errors import ProtocolError
from protocol.messages import CloseEscrow, OpenEscrow, SignedQuery, SignedVoucher, Voucher
from subnets.miner import CarriedError

log = get_logger(__name__)

DEFAULT_EXPIRES_IN = 2000  # heights an escrow opened by the client stays claimable
CLAIM_MARGIN = 20  # do not draw on an escrow this close to expiry (miners refuse it: no time to claim)


class ClientError(NodeError):
    """No miner answered within the price and budget, or the escrow could not be opened or closed."""


def tried_text(tried: list[dict[str, Any]]) -> str:
    """The miners a query tried, for a one-line error: 'uid 3: sells no queries; uid 1: error: ...'."""
    return "; ".join(f"uid {t['uid']}: {t.get('outcome', 'not reached')}"
                     + (f" ({t['reason']})" if "reason" in t else "") for t in tried)


def sign_voucher(
    key: Keypair, chain_id: str, escrow_id: int, nonce: int, miner: bytes, query: SignedQuery, price: int
) -> SignedVoucher:
    """The client's voucher for one query: this escrow, this miner, this query's digest, this price."""
    body = Voucher(chain_id, escrow_id, nonce, key.public, miner, query.digest, price)
    return SignedVoucher.create(body, key)


@dataclass(frozen=True)
class PaidAnswer:
    uid: int
    miner: bytes
    price: int
    escrow_id: int
    voucher_nonce: int
    voucher_digest: bytes
    response_digest: bytes
    payload: bytes
    latency_ms: int
    tried: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "miner": crypto.address(self.miner),
            "price": self.price,
            "price_tokens": decimal_tokens(self.price),
            "escrow_id": self.escrow_id,
            "voucher_nonce": self.voucher_nonce,
            "voucher_digest": self.voucher_digest.hex(),
            "response_digest": self.response_digest.hex(),
            "latency_ms": self.latency_ms,
            "tried": self.tried,
        }


class SubnetClient:
    def __init__(
        self,
        key: Keypair,
        netuid: int,
        node: str | None = None,
        *,
        timeout_s: float | None = None,
        listen_host: str = "127.0.0.1",
        attempts: int = 3,
        deposit: int | None = None,
        expires_in: int = DEFAULT_EXPIRES_IN,
        fees: FeePolicy | None = None,
    ) -> None:
        self.key = key
        self.netuid = netuid
        self.api = NodeClient(node, fees=fees)  # fees: tip, cap and fee display for open/close_escrow
        self.timeout_s = timeout_s
        self.listen_host = listen_host
        self.attempts = attempts
        self.deposit = deposit  # units locked when query() has to open an escrow (default: 10 queries)
        self.expires_in = expires_in
        self.chain_id = ""
        self.task: Any = None
        self.prices: dict[bytes, int] = {}  # miner hotkey -> last quoted price
        self._signed: dict[int, int] = {}  # escrow id -> units signed in vouchers by this client object
        self._claimed_at_start: dict[int, int] = {}
        self._stack: Any = None

    # --- chain (blocking) ------------------------------------------------------------------------

    def setup(self) -> None:
        from subnets import registry  # start-up time: torch (the tasks); close-escrow needs no task

        self.chain_id = self.api.status()["chain_id"]
        try:
            info = self.api.get(f"/subnets/{self.netuid}")
        except ApiError as exc:
            raise ClientError(f"subnet {self.netuid}: {exc}") from None
        self.task = registry.create(info["name"])

    def height(self) -> int:
        return int(self.api.status()["height"])

    def escrows(self) -> list[dict[str, Any]]:
        return [e for e in self.api.escrows_of(self.key.public) if int(e["netuid"]) == self.netuid]

    def open_escrow(self, amount: int, expires_in: int = DEFAULT_EXPIRES_IN, wait_s: float = 60.0) -> dict[str, Any]:
        """Lock `amount` units until `height + expires_in`; wait until the escrow is on chain and return it."""
        before = {int(e["escrow_id"]) for e in self.api.escrows_of(self.key.public)}
        expires_at = self.height() + expires_in
        digest = self.api.send(self.key, OpenEscrow(self.netuid, amount, expires_at))
        log.info("open_escrow sent", amount=amount, expires_at=expires_at, tx=digest.hex()[:16])
        deadline = time.monotonic() + wait_s
        while True:
            new = [e for e in self.api.escrows_of(self.key.public) if int(e["escrow_id"]) not in before]
            if new:
                return new[0]
            if time.monotonic() > deadline:
                raise ClientError(f"open_escrow ({decimal_tokens(amount)} tokens) did not land within {wait_s:.0f}s")
            time.sleep(0.3)

    def close_escrow(self, escrow_id: int, wait_s: float = 60.0) -> int:
        """Take back an expired escrow's rest; returns the units refunded."""
        info = self.api.escrow(escrow_id)
        if info is None:
            raise ClientError(f"escrow {escrow_id} is not open")
        if int(info["height"]) < int(info["expires_at"]):
            raise ClientError(
                f"escrow {escrow_id} takes claims up to height {info['expires_at']}; close it from height "
                f"{int(info['expires_at']) + 1} (now {info['height']})"
            )
        self.api.wait_height(int(info["expires_at"]), timeout=wait_s)
        self.api.send(self.key, CloseEscrow(escrow_id))
        deadline = time.monotonic() + wait_s
        while self.api.escrow(escrow_id) is not None:
            if time.monotonic() > deadline:
                raise ClientError(f"close_escrow {escrow_id} did not land within {wait_s:.0f}s")
            time.sleep(0.3)
        return int(info["remaining"])

    def available(self, info: dict[str, Any]) -> int:
        """What the escrow still covers after the vouchers this client signed and miners have not claimed yet."""
        eid = int(info["escrow_id"])
        claimed_since = int(info["claimed"]) - self._claimed_at_start.setdefault(eid, int(info["claimed"]))
        outstanding = max(0, self._signed.get(eid, 0) - claimed_since)
        return int(info["remaining"]) - outstanding

    def ensure_escrow(
        self, price: int, deposit: int | None = None, expires_in: int = DEFAULT_EXPIRES_IN, escrow_id: int | None = None
    ) -> dict[str, Any]:
        """`escrow_id`'s escrow, else an open one that covers `price` and is not about to expire, else a new
        one of `deposit` units (default: 10 queries at `price`)."""
        height = self.height()
        if escrow_id is not None:
            info = self.api.escrow(escrow_id)
            if info is None:
                raise ClientError(f"escrow {escrow_id} is not open")
            if bytes.fromhex(info["client"]) != self.key.public:
                raise ClientError(f"escrow {escrow_id} belongs to another key")
            return info
        for info in self.escrows():
            if int(info["expires_at"]) - height > CLAIM_MARGIN * 2 and self.available(info) >= price:
                return self.api.escrow(int(info["escrow_id"])) or info
        amount = deposit if deposit is not None else 10 * price
        if amount < price or amount == 0:
            raise ClientError(
                f"a deposit of {format_tokens(amount)} cannot pay a query at up to {format_tokens(price)}"
            )
        return self.open_escrow(amount, expires_in)

    # --- queries (async) -----------------------------------------------------------------------------

    @asynccontextmanager
    async def session(self) -> AsyncIterator[SubnetClient]:
        """A libp2p stack to reach the miners (an ephemeral node key)."""
        # start-up time: libp2p and torch (through the axon's tasks) load only when the client queries
        from libp2p.crypto.ed25519 import create_new_key_pair

        from p2pnet.stack import open_stack
        from subnets.axon import PAID_SPEC, SPEC

        carried = CarriedError()
        async with open_stack(create_new_key_pair(), listen=[f"/ip4/{self.listen_host}/tcp/0"]) as stack, carried:
            stack.reqresp.register(SPEC)
            stack.reqresp.register(PAID_SPEC)
            self._stack = stack
            try:
                yield self
            finally:
                self._stack = None
        carried.reraise()

    async def query_once(self, payload: bytes, max_price: int, escrow_id: int | None = None) -> PaidAnswer:
        async with self.session():
            return await self.query(payload, max_price, escrow_id)

    async def query(self, payload: bytes, max_price: int, escrow_id: int | None = None) -> PaidAnswer:
        """Pay one miner to answer `payload` (the task's query bytes) at no more than `max_price` units."""
        from subnets.axon import QueryError, QueryStatus, build_query, query_miner  # start-up time: libp2p, torch

        if self._stack is None:
            raise ClientError("query() needs an open session(): `async with client.session():`")
        rows = await trio.to_thread.run_sync(self.api.metagraph, self.netuid)
        miners = sorted((r for r in rows if r.get("axon")), key=lambda r: (-int(r["incentive"]), int(r["uid"])))
        if not miners:
            raise ClientError(f"no miner of subnet {self.netuid} has announced an axon")
        timeout = self.timeout_s if self.timeout_s is not None else self.task.TIMEOUT_MS / 1000
        tried: list[dict[str, Any]] = []
        for row in miners:
            if sum(1 for t in tried if t.get("sent")) >= self.attempts:
                break
            uid, hotkey = int(row["uid"]), bytes.fromhex(row["hotkey"])
            note: dict[str, Any] = {"uid": uid}
            tried.append(note)
            try:
                peer = await self._connect(row["axon"][0], row["axon"][1])
                price = await self._price(peer, hotkey, timeout)
                note["price"] = price
                if price is None:
                    note["outcome"] = "sells no queries"
                    continue
                if price > max_price:
                    note["outcome"] = f"price {format_tokens(price)} above --max-price {format_tokens(max_price)}"
                    continue
                info = await trio.to_thread.run_sync(
                    self.ensure_escrow, price, self.deposit, self.expires_in, escrow_id
                )
                eid = int(info["escrow_id"])
                if self.available(info) < price:
                    note["outcome"] = (f"escrow {eid} covers {format_tokens(self.available(info))}, the price is "
                                       f"{format_tokens(price)}")
                    continue
                signed = build_query(self.key, self.chain_id, self.netuid, payload, miner=hotkey)
                nonce = secrets.randbits(64)
                voucher = sign_voucher(self.key, self.chain_id, eid, nonce, hotkey, signed, price)
                self._signed[eid] = self._signed.get(eid, 0) + price
                note["sent"] = True
                result = await query_miner(self._stack.reqresp, peer, signed, hotkey, timeout, voucher)
            except (QueryError, NodeError, ProtocolError, OSError) as exc:
                note["outcome"] = f"error: {str(exc)[:300]}"
                continue
            note["outcome"] = result.status.name.lower()
            if result.status == QueryStatus.OK:
                return PaidAnswer(
                    uid, hotkey, price, eid, nonce, voucher.digest, result.response_digest, result.payload,
                    result.latency_ms, tried,
                )
            if result.status == QueryStatus.BAD_PAYMENT:
                note["reason"] = result.payload.decode(errors="replace")
        raise ClientError(f"no miner of subnet {self.netuid} answered a paid query: {tried_text(tried)}")

    async def _price(self, peer: Any, hotkey: bytes, timeout: float) -> int | None:
        """The miner's price, from a free query without a permit (`PAYMENT_REQUIRED`); None if it sells none."""
        from subnets.axon import QueryStatus, build_query, query_miner  # start-up time: libp2p, torch

        probe = build_query(self.key, self.chain_id, self.netuid, b"", miner=hotkey)
        result = await query_miner(self._stack.reqresp, peer, probe, hotkey, timeout)
        if result.status != QueryStatus.PAYMENT_REQUIRED:
            return None
        price = codec.decode(result.payload, max_size=16)
        if type(price) is not int or price <= 0:
            return None
        self.prices[hotkey] = price
        return price

    async def _connect(self, peer_id: str, addrs: list[str]) -> Any:
        from p2pnet.host import as_peer_id  # start-up time: libp2p

        peer = as_peer_id(peer_id)
        host = self._stack.host
        if host.is_connected(peer):
            return peer
        last: Exception | None = None
        for addr in addrs[:4]:
            try:
                return await host.connect(f"{addr}/p2p/{peer_id}", deadline=3.0)
            except Exception as exc:  # noqa: BLE001 - try the next address
                last = exc
        raise ClientError(f"cannot reach miner {peer_id}: {last}")

    def close(self) -> None:
        self.api.close()
