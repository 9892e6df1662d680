"""Replay protection of the miner's axon, on real loopback libp2p hosts: a query names its miner under the
caller's signature (no cross-miner replay), and request ids are held until their query is stale by time,
never forgotten because other ids arrived (issue 13, defect 6)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import torch
import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from p2pnet.host import open_host
from p2pnet.reqresp import ReqResp
from protocol.crypto import Keypair
from protocol.messages import SignedQuery, SignedResponse
from subnets.axon import (
    PROTOCOL_ID,
    SPEC,
    Axon,
    AxonConfig,
    PermitCache,
    QueryError,
    QueryStatus,
    build_query,
    now_ms,
    query_miner,
)
from subnets.compute import ComputeTask

torch.set_num_threads(1)
CHAIN = "tensornet-test"
NETUID = 2
DEADLINE = 60
VALIDATOR = Keypair.generate()


@dataclasses.dataclass
class Miner:
    axon: Axon
    hotkey: Keypair
    peer: Any
    clock: list[int]  # the axon's wall clock in ms; a test moves it instead of sleeping


@dataclasses.dataclass
class Net:
    task: ComputeTask
    client: ReqResp
    miners: list[Miner]

    def query(self, miner: Miner, seed: int) -> SignedQuery:
        payload = self.task.encode_query(self.task.challenge(bytes([seed]) * 32))
        return build_query(VALIDATOR, CHAIN, NETUID, payload, miner=miner.hotkey.public)

    async def send(self, miner: Miner, signed: SignedQuery) -> QueryStatus:
        return (await query_miner(self.client, miner.peer, signed, miner.hotkey.public, 20)).status


@asynccontextmanager
async def network(n_miners: int, config: AxonConfig) -> AsyncIterator[Net]:
    """`n_miners` axons of one subnet, each on its own host, and a validator's client connected to all."""
    task = ComputeTask({"m": 8, "k": 32, "n": 8}, secret=b"s" * 32)

    async def fetch() -> set[bytes]:
        return {VALIDATOR.public}

    async with trio.open_nursery() as nursery, open_host(create_new_key_pair()) as client_host:
        client = ReqResp(client_host)
        await nursery.start(client.run)
        client.register(SPEC)
        miners = []
        for _ in range(n_miners):
            host = await nursery.start(_serve_host)
            rs = ReqResp(host)
            await nursery.start(rs.run)
            permits = PermitCache(fetch, refresh_s=3600)
            await nursery.start(permits.run)
            model = task.load_miner(torch.device("cpu"))
            model.prepare()
            hotkey = Keypair.generate()
            axon = Axon(task, model, hotkey, CHAIN, NETUID, permits, config)
            clock = [now_ms()]
            axon.clock = lambda c=clock: c[0]
            axon.attach(rs)
            miners.append(Miner(axon, hotkey, await client_host.connect(host.addrs[0]), clock))
        yield Net(task, client, miners)
        nursery.cancel_scope.cancel()


async def _serve_host(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
    async with open_host(create_new_key_pair()) as host:
        task_status.started(host)
        await trio.sleep_forever()


async def test_query_for_one_miner_is_refused_by_another():
    with trio.fail_after(DEADLINE):
        async with network(2, AxonConfig(deadline_s=10)) as net:
            a, b = net.miners
            signed = net.query(a, 1)
            assert await net.send(a, signed) == QueryStatus.OK
            # the captured bytes, replayed to miner b: a signed, typed refusal that names b, and no model work
            raw = await net.client.request(b.peer, PROTOCOL_ID, signed.to_bytes(), timeout=20)
            reply = SignedResponse.from_bytes(raw)
            reply.verify(CHAIN)
            assert reply.body.miner == b.hotkey.public and reply.body.request_id == signed.body.request_id
            assert reply.body.status == QueryStatus.WRONG_MINER and reply.body.payload == b.hotkey.public
            assert b.axon.stats.served == 0 and b.axon.stats.refused == {"wrong_miner": 1}
            # the validator's own helper will not even send a query to a miner it does not name
            with pytest.raises(QueryError, match="names another miner"):
                await query_miner(net.client, b.peer, signed, b.hotkey.public, 20)
            assert await net.send(b, net.query(b, 2)) == QueryStatus.OK  # b serves its own queries


async def test_old_id_is_refused_by_time_not_forgotten_after_many_other_ids():
    with trio.fail_after(DEADLINE):
        async with network(1, AxonConfig(deadline_s=10, max_skew_s=30)) as net:
            (m,) = net.miners
            signed = net.query(m, 1)
            assert await net.send(m, signed) == QueryStatus.OK
            # 150,000 other accepted ids (more than the old guard's 100,000-id memory) within the window
            sent = max(m.clock[0], signed.body.sent_ms) + 1  # all newer than the replayed one
            for i in range(150_000):
                assert m.axon.replays.accept(i.to_bytes(16, "big"), sent, m.clock[0]) is None
            with pytest.raises(QueryError, match="already used"):
                await net.send(m, signed)
            # once its window has passed, the query is refused by time
            m.clock[0] = sent + 30_001
            assert await net.send(m, signed) == QueryStatus.STALE
            # a fresh query is served, and the guard has let every stale id go
            fresh = dataclasses.replace(net.query(m, 2).body, sent_ms=m.clock[0])
            assert await net.send(m, SignedQuery.create(fresh, VALIDATOR)) == QueryStatus.OK
            assert len(m.axon.replays) == 1


async def test_full_replay_guard_refuses_new_queries_busy_and_forgets_nothing():
    with trio.fail_after(DEADLINE):
        async with network(1, AxonConfig(deadline_s=10, max_replay_ids=2)) as net:
            (m,) = net.miners
            first, second = net.query(m, 1), net.query(m, 2)
            assert [await net.send(m, first), await net.send(m, second)] == [QueryStatus.OK, QueryStatus.OK]
            assert await net.send(m, net.query(m, 3)) == QueryStatus.BUSY
            with pytest.raises(QueryError, match="already used"):  # full, yet the first id is still held
                await net.send(m, first)
            m.clock[0] = first.body.sent_ms + int(m.axon.config.max_skew_s * 1000) + 1
            third = dataclasses.replace(net.query(m, 3).body, sent_ms=m.clock[0])
            assert await net.send(m, SignedQuery.create(third, VALIDATOR)) == QueryStatus.OK
