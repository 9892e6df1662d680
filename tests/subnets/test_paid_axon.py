"""Paid queries on a real loopback libp2p pair against a real chain `State`: a voucher is checked before
any work, an answered query is claimed and settled on chain, an unanswered one is never charged, and
under a bounded load the axon serves paid queries before free ones and sheds free ones first.
(The whole flow with real node and miner processes is in test_paid_e2e.py.)"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import torch
import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from p2pnet.host import open_host
from p2pnet.reqresp import ReqResp
from protocol import codec
from protocol.crypto import Keypair
from protocol.messages import ClaimPayment, OpenEscrow
from protocol.state.escrow import fee_split
from subnets.admission import PriorityGate
from subnets.axon import PAID_SPEC, SPEC, Axon, AxonConfig, PermitCache, QueryStatus, build_query, query_miner
from subnets.client import sign_voucher
from subnets.compute import ComputeTask
from subnets.payments import PaymentConfig, PaymentDesk
from tests.protocol.state.test_state import CHAIN, KEYS, Chain, make_chain, registered

torch.set_num_threads(1)
NETUID = 1
DEADLINE = 60
SMALL = {"m": 8, "k": 32, "n": 8}
PRICE = 1000
MINER, CLIENT, VALIDATOR = KEYS[6], KEYS[5], KEYS[4]


class GatedMiner:
    """A real compute miner whose answers wait until `open` is set; records the order it answered in."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.device = inner, inner.device
        self.open = threading.Event()
        self.order: list[bytes] = []

    def prepare(self) -> None:
        self.inner.prepare()

    def answer(self, query: Any) -> Any:
        self.open.wait(timeout=DEADLINE)
        self.order.append(query.seed)
        return self.inner.answer(query)


def _api_view(chain: Chain, escrow_id: int) -> dict[str, Any] | None:
    """What the node API's /escrows/{id} returns, read from the real state."""
    e = chain.state.escrows.get(escrow_id)
    if e is None:
        return None
    return {k: v.hex() if isinstance(v, bytes) else v for k, v in e.info().items()} | {"height": chain.state.height}


@dataclasses.dataclass
class Net:
    task: ComputeTask
    chain: Chain
    axon: Axon
    desk: PaymentDesk
    client: ReqResp
    peer: Any
    receipts: list


@asynccontextmanager
async def paid_net(miner: Any = None, max_waiting: int = 8, deadline_s: float = 30) -> AsyncIterator[Net]:
    chain = make_chain({"tempo": 1000})
    registered(chain, [MINER])
    task = ComputeTask(SMALL, secret=b"s" * 32)
    miner = miner or task.load_miner(torch.device("cpu"))
    miner.prepare()
    receipts: list = []

    async def fetch_escrow(eid: int) -> dict[str, Any] | None:
        return _api_view(chain, eid)

    async def submit(call: ClaimPayment) -> int:
        nonce = chain.nonces.get(MINER.public, chain.state.next_nonce(MINER.public))
        receipts.extend(chain.commit(chain.tx(MINER, call)))  # checks conservation after the commit
        return nonce

    async def committed() -> int:
        return chain.state.next_nonce(MINER.public)

    async def permits() -> set[bytes]:
        return {VALIDATOR.public}

    desk = PaymentDesk(MINER, CHAIN, NETUID, PaymentConfig(PRICE, claim_margin=5, settle_poll_s=0.05),
                       fetch_escrow, submit, committed)
    config = AxonConfig(deadline_s=deadline_s, rate_per_s=1000, burst=1000, max_waiting=max_waiting)
    async with (
        open_host(create_new_key_pair()) as server,
        open_host(create_new_key_pair()) as client,
        trio.open_nursery() as nursery,
    ):
        rs, rc = ReqResp(server), ReqResp(client)
        await nursery.start(rs.run)
        await nursery.start(rc.run)
        cache = PermitCache(permits, refresh_s=3600, min_gap_s=0.2)
        await nursery.start(cache.run)
        await nursery.start(desk.run)
        axon = Axon(task, miner, MINER, CHAIN, NETUID, cache, config, payments=desk)
        axon.attach(rs)
        rc.register(SPEC)
        rc.register(PAID_SPEC)
        peer = await client.connect(server.addrs[0])
        yield Net(task, chain, axon, desk, rc, peer, receipts)
        nursery.cancel_scope.cancel()


def open_escrow(net: Net, amount: int, expires_in: int = 200) -> int:
    net.chain.ok(CLIENT, OpenEscrow(NETUID, amount, net.chain.state.height + expires_in))
    return net.chain.state.escrows.next_id - 1


async def paid(net: Net, escrow_id: int, seed: bytes, *, price: int = PRICE, nonce: int = 1,
               client: Keypair = CLIENT, voucher_query: Any = None):
    challenge = net.task.challenge(seed)
    signed = build_query(client, CHAIN, NETUID, net.task.encode_query(challenge), miner=MINER.public)
    voucher = sign_voucher(client, CHAIN, escrow_id, nonce, MINER.public, voucher_query or signed, price)
    result = await query_miner(net.client, net.peer, signed, MINER.public, DEADLINE, voucher)
    return challenge, result, voucher


async def free(net: Net, seed: bytes, caller: Keypair = VALIDATOR):
    challenge = net.task.challenge(seed)
    signed = build_query(caller, CHAIN, NETUID, net.task.encode_query(challenge), miner=MINER.public)
    return await query_miner(net.client, net.peer, signed, MINER.public, DEADLINE)


async def test_paid_query_is_served_claimed_and_settled():
    with trio.fail_after(DEADLINE):
        async with paid_net() as net:
            eid = open_escrow(net, 10 * PRICE)
            cold = net.chain.state.hotkey_owner[MINER.public]
            before = net.chain.state.balances.get(cold, 0)
            challenge, result, voucher = await paid(net, eid, b"\x01" * 32, price=PRICE + 5)
            assert result.status == QueryStatus.OK
            assert net.task.score_payload(challenge, result.payload) > 0
            await net.desk.drain()
            (receipt,) = net.receipts
            assert receipt.ok, receipt.message
            e = net.chain.state.escrows.get(eid)
            assert (e.remaining, e.claimed, e.spent) == (10 * PRICE - PRICE - 5, PRICE + 5, {1})
            assert net.chain.state.balances.get(cold, 0) - before == fee_split(PRICE + 5)[0]
            # the proof on chain names the response the client received
            assert net.axon.stats.served_paid == 1 and net.desk.stats.claims_settled == 1
            # the same voucher again (a replayed query is refused by request id; a new query, same nonce):
            _, again, _ = await paid(net, eid, b"\x02" * 32, nonce=1)
            assert again.status == QueryStatus.BAD_PAYMENT and b"already used" in again.payload


async def test_proof_binds_the_response_the_client_got():
    with trio.fail_after(DEADLINE):
        async with paid_net() as net:
            eid = open_escrow(net, 10 * PRICE)
            _, result, voucher = await paid(net, eid, b"\x03" * 32)
            await net.desk.drain()
            submitted = [c for c in net.chain.state.escrows.get(eid).spent]
            assert submitted == [1]
            # the claim the miner put on chain carries the digest of exactly the SignedResponse we hold
            assert net.desk.stats.claims_submitted == 1
            proof = net.desk.last_proof
            assert proof.body.response_digest == result.response_digest
            assert proof.body.voucher_digest == voucher.digest


async def test_vouchers_that_do_not_pay_are_refused_before_work():
    with trio.fail_after(DEADLINE):
        async with paid_net() as net:
            eid = open_escrow(net, 2 * PRICE)
            cases = []
            _, r, _ = await paid(net, eid, b"\x01" * 32, price=PRICE - 1)
            cases.append((r, b"below this miner's price"))
            other_query = build_query(CLIENT, CHAIN, NETUID, b"x", miner=MINER.public)
            _, r, _ = await paid(net, eid, b"\x02" * 32, voucher_query=other_query)
            cases.append((r, b"another query"))
            _, r, _ = await paid(net, eid + 7, b"\x03" * 32)
            cases.append((r, b"not open on chain"))
            _, r, _ = await paid(net, eid, b"\x04" * 32, client=KEYS[8])  # not the escrow's client
            cases.append((r, b"another client"))
            _, r, _ = await paid(net, eid, b"\x05" * 32, price=3 * PRICE, nonce=9)
            cases.append((r, b"covers 2000 more"))
            for result, reason in cases:
                assert result.status == QueryStatus.BAD_PAYMENT and reason in result.payload, result
            assert net.axon.stats.served == 0 and net.desk.stats.refused == len(cases)
            short = open_escrow(net, PRICE, expires_in=4)  # expires before the miner could claim
            _, r, _ = await paid(net, short, b"\x06" * 32)
            assert r.status == QueryStatus.BAD_PAYMENT and b"expires at height" in r.payload
            # a caller without a permit learns the price on the free protocol
            quote = await free(net, b"\x07" * 32, caller=CLIENT)
            assert quote.status == QueryStatus.PAYMENT_REQUIRED and codec.decode(quote.payload) == PRICE
            await net.desk.drain()
            assert net.receipts == [] and net.chain.state.escrows.get(eid).claimed == 0


async def test_unanswered_paid_query_is_not_charged():
    task = ComputeTask(SMALL, secret=b"s" * 32)
    gated = GatedMiner(task.load_miner(torch.device("cpu")))
    with trio.fail_after(DEADLINE):
        async with paid_net(gated, deadline_s=0.5) as net:
            eid = open_escrow(net, 2 * PRICE)
            _, r, _ = await paid(net, eid, b"\x01" * 32)  # the model never answers in time
            assert r.status == QueryStatus.TIMEOUT
            assert net.desk.stats.released == 1 and net.desk.stats.claims_submitted == 0
            gated.open.set()
            _, ok, _ = await paid(net, eid, b"\x02" * 32, nonce=2)  # the reservation was released
            assert ok.status == QueryStatus.OK
            await net.desk.drain()
            assert net.chain.state.escrows.get(eid).spent == {2}  # only the answered query was charged


async def _wait(pred) -> None:
    while not pred():
        await trio.sleep(0.01)


async def test_paid_queries_go_first_under_load():
    task = ComputeTask(SMALL, secret=b"s" * 32)
    gated = GatedMiner(task.load_miner(torch.device("cpu")))
    with trio.fail_after(DEADLINE):
        async with paid_net(gated, max_waiting=6) as net:
            eid = open_escrow(net, 10 * PRICE)
            results: dict[str, Any] = {}
            seeds = {name: bytes([i + 1]) * 32 for i, name in enumerate(["f0", "f1", "f2", "p1", "p2"])}

            async def run_free(name: str) -> None:
                results[name] = await free(net, seeds[name])

            async def run_paid(name: str, nonce: int) -> None:
                results[name] = (await paid(net, eid, seeds[name], nonce=nonce))[1]

            gate: PriorityGate = net.axon.gate
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_free, "f0")
                await _wait(lambda: gate.busy)  # f0 holds the model
                nursery.start_soon(run_free, "f1")  # one at a time, so that arrival order is known
                await _wait(lambda: gate.waiting_free == 1)
                nursery.start_soon(run_free, "f2")
                await _wait(lambda: gate.waiting_free == 2)
                nursery.start_soon(run_paid, "p1", 1)
                await _wait(lambda: gate.waiting_paid == 1)
                nursery.start_soon(run_paid, "p2", 2)
                await _wait(lambda: gate.waiting_paid == 2)
                gated.open.set()
            assert all(r.status == QueryStatus.OK for r in results.values()), results
            wire = {net.task.challenge(s).query.seed: n for n, s in seeds.items()}
            order = [wire[seed] for seed in gated.order]
            assert order == ["f0", "p1", "p2", "f1", "f2"]  # paid overtook the free queries that waited


async def test_free_queries_are_shed_first_when_the_queue_is_full():
    task = ComputeTask(SMALL, secret=b"s" * 32)
    gated = GatedMiner(task.load_miner(torch.device("cpu")))
    with trio.fail_after(DEADLINE):
        async with paid_net(gated, max_waiting=3) as net:
            eid = open_escrow(net, 100 * PRICE)
            frees: list[Any] = []
            paids: list[Any] = []
            gate: PriorityGate = net.axon.gate

            async def run_free(i: int) -> None:
                frees.append(await free(net, bytes([i]) * 32))

            async def run_paid(i: int) -> None:
                paids.append((await paid(net, eid, bytes([100 + i]) * 32, nonce=i))[1])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_free, 1)
                await _wait(lambda: gate.busy)
                for i in range(2, 5):  # three free queries fill the queue
                    nursery.start_soon(run_free, i)
                await _wait(lambda: gate.waiting_free == 3)
                for i in range(1, 4):  # three paid ones take their places, one by one
                    nursery.start_soon(run_paid, i)
                    await _wait(lambda i=i: gate.waiting_paid == i)
                nursery.start_soon(run_free, 5)  # the queue holds only paid queries now: shed at once
                await _wait(lambda: gate.stats.shed_free == 4)
                nursery.start_soon(run_paid, 4)  # ... and a fourth paid query finds no free one to replace
                await _wait(lambda: gate.stats.shed_paid == 1)
                gated.open.set()
            count = lambda rs, st: sum(1 for r in rs if r.status == st)  # noqa: E731
            assert count(paids, QueryStatus.OK) == 3 and count(paids, QueryStatus.BUSY) == 1
            assert count(frees, QueryStatus.OK) == 1 and count(frees, QueryStatus.BUSY) == 4
            assert gate.stats.evicted_free == 3
            await net.desk.drain()
            assert net.chain.state.escrows.get(eid).claimed == 3 * PRICE  # the shed paid query was not charged


@pytest.mark.parametrize("max_waiting", [0, 2])
async def test_gate_cancelled_waiter_leaves_the_queue(max_waiting):
    gate = PriorityGate(max_waiting)
    assert await gate.acquire(paid=False)
    with trio.move_on_after(0.05):
        await gate.acquire(paid=True)
    assert gate.waiting_paid == 0
    gate.release()
    assert not gate.busy
