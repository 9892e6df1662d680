"""The miner's query axon on a real loopback libp2p pair: permit check, rate limit, deadline, forgery,
replay; plus the miner host's option parsing and fault hooks. (The supervisor restarting a crashing
worker against a real chain is in test_e2e.py.)"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import torch
import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from p2pnet.host import open_host
from p2pnet.reqresp import Refused, ReqResp
from protocol.crypto import Keypair
from protocol.messages import SignedQuery
from subnets.axon import (
    SPEC,
    Axon,
    AxonConfig,
    PermitCache,
    QueryError,
    QueryStatus,
    RateLimiter,
    ReplayGuard,
    build_query,
    query_miner,
)
from subnets.compute import ComputeAnswer, ComputeTask
from subnets.miner import (
    MinerError,
    _FaultyMiner,
    _flip_first_bit,
    parse_faults,
    parse_kv,
    plan_devices,
    worker_env,
)

torch.set_num_threads(1)
CHAIN = "tensornet-test"
NETUID = 2
DEADLINE = 30
SMALL = {"m": 8, "k": 32, "n": 8}


class SlowMiner:
    """A miner that takes `delay` seconds per answer (the deadline test)."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner, self.delay, self.device = inner, delay, inner.device

    def prepare(self) -> None:
        self.inner.prepare()

    def answer(self, query: Any) -> Any:
        time.sleep(self.delay)
        return self.inner.answer(query)


@dataclasses.dataclass
class Pair:
    task: ComputeTask
    axon: Axon
    miner_hotkey: Keypair
    client: ReqResp
    peer: Any
    permitted: set[bytes]
    fetches: list[int]


@asynccontextmanager
async def axon_pair(config: AxonConfig, miner: Any = None, permitted: set[bytes] = frozenset()) -> AsyncIterator[Pair]:
    task = ComputeTask(SMALL, secret=b"s" * 32)
    miner = miner or task.load_miner(torch.device("cpu"))
    miner.prepare()
    miner_hotkey = Keypair.generate()
    allowed = set(permitted)
    fetches: list[int] = []

    async def fetch() -> set[bytes]:
        fetches.append(1)
        return set(allowed)

    permits = PermitCache(fetch, refresh_s=3600, min_gap_s=0.2)
    async with (
        open_host(create_new_key_pair()) as server,
        open_host(create_new_key_pair()) as client,
        trio.open_nursery() as nursery,
    ):
        rs, rc = ReqResp(server), ReqResp(client)
        await nursery.start(rs.run)
        await nursery.start(rc.run)
        await nursery.start(permits.run)
        axon = Axon(task, miner, miner_hotkey, CHAIN, NETUID, permits, config)
        axon.attach(rs)
        rc.register(SPEC)
        peer = await client.connect(server.addrs[0])
        yield Pair(task, axon, miner_hotkey, rc, peer, allowed, fetches)
        nursery.cancel_scope.cancel()


async def ask(pair: Pair, caller: Keypair, seed: bytes = b"\x01" * 32, timeout: float = 10.0):
    challenge = pair.task.challenge(seed)
    signed = build_query(caller, CHAIN, NETUID, pair.task.encode_query(challenge), miner=pair.miner_hotkey.public)
    result = await query_miner(pair.client, pair.peer, signed, pair.miner_hotkey.public, timeout)
    return challenge, result


async def test_permit_check_refuses_non_validators_and_serves_validators():
    validator, stranger = Keypair.generate(), Keypair.generate()
    with trio.fail_after(DEADLINE):
        async with axon_pair(AxonConfig(deadline_s=5), permitted={validator.public}) as pair:
            _, refused = await ask(pair, stranger)
            assert refused.status == QueryStatus.NOT_VALIDATOR and refused.payload == b""
            challenge, ok = await ask(pair, validator)
            assert ok.status == QueryStatus.OK
            assert pair.task.score_payload(challenge, ok.payload, ok.latency_ms) > 0
            assert pair.axon.stats.served == 1 and pair.axon.stats.refused == {"not_validator": 1}


async def test_new_validator_is_served_after_an_early_permit_refresh():
    validator = Keypair.generate()
    with trio.fail_after(DEADLINE):
        async with axon_pair(AxonConfig(deadline_s=5)) as pair:
            _, first = await ask(pair, validator)
            assert first.status == QueryStatus.NOT_VALIDATOR
            pair.permitted.add(validator.public)  # the chain gives it a permit at the next epoch
            await trio.sleep(0.25)  # past min_gap_s: an unknown caller triggers a refresh
            _, second = await ask(pair, validator)
            assert second.status == QueryStatus.OK
            before = len(pair.fetches)
            for _ in range(5):  # strangers cannot make the miner hammer the node: at most one refresh per gap
                await ask(pair, Keypair.generate())
            assert len(pair.fetches) - before <= 1


async def test_rate_limit_per_caller():
    v1, v2 = Keypair.generate(), Keypair.generate()
    with trio.fail_after(DEADLINE):
        async with axon_pair(AxonConfig(deadline_s=5, rate_per_s=0.01, burst=2), permitted={v1.public, v2.public}) as p:
            statuses = [(await ask(p, v1, seed=bytes([i]) * 32))[1].status for i in range(4)]
            assert statuses == [QueryStatus.OK, QueryStatus.OK, QueryStatus.RATE_LIMITED, QueryStatus.RATE_LIMITED]
            assert (await ask(p, v2))[1].status == QueryStatus.OK  # another validator has its own bucket


async def test_per_query_deadline_answers_timeout_and_frees_the_caller():
    validator = Keypair.generate()
    task = ComputeTask(SMALL, secret=b"s" * 32)
    slow = SlowMiner(task.load_miner(torch.device("cpu")), delay=1.5)
    with trio.fail_after(DEADLINE):
        async with axon_pair(AxonConfig(deadline_s=0.3), miner=slow, permitted={validator.public}) as pair:
            started = time.monotonic()
            _, result = await ask(pair, validator)
            elapsed = time.monotonic() - started
            assert result.status == QueryStatus.TIMEOUT
            assert elapsed < 1.2, elapsed  # answered at the miner's deadline, not after the model finished
            # the abandoned answer still holds the model: the next query waits for it, within its own deadline
            _, again = await ask(pair, validator, seed=b"\x02" * 32)
            assert again.status == QueryStatus.TIMEOUT
            assert pair.axon.stats.refused == {"timeout": 2}


async def test_forged_replayed_stale_and_foreign_queries():
    validator, forger = Keypair.generate(), Keypair.generate()
    with trio.fail_after(DEADLINE):
        async with axon_pair(AxonConfig(deadline_s=5, max_skew_s=30), permitted={validator.public}) as pair:
            payload = pair.task.encode_query(pair.task.challenge(b"\x03" * 32))
            good = build_query(validator, CHAIN, NETUID, payload, miner=pair.miner_hotkey.public)
            # signed by someone else but claiming the validator's key: refused without a signed reply
            forged = SignedQuery(good.body, forger.sign(SignedQuery.DOMAIN, CHAIN, good.body.to_bytes()))
            with pytest.raises(QueryError, match="bad query signature"):
                await query_miner(pair.client, pair.peer, forged, pair.miner_hotkey.public, 5)
            assert (await query_miner(pair.client, pair.peer, good, pair.miner_hotkey.public, 5)).status == 0
            with pytest.raises(QueryError, match="already used"):
                await query_miner(pair.client, pair.peer, good, pair.miner_hotkey.public, 5)
            old = SignedQuery.create(dataclasses.replace(good.body, request_id=b"o" * 16, sent_ms=1000), validator)
            assert (await query_miner(pair.client, pair.peer, old, pair.miner_hotkey.public, 5)).status == 7
            other = SignedQuery.create(dataclasses.replace(good.body, netuid=NETUID + 1, request_id=b"x" * 16),
                                       validator)
            res = await query_miner(pair.client, pair.peer, other, pair.miner_hotkey.public, 5)
            assert res.status == QueryStatus.WRONG_SUBNET
            bad = build_query(validator, CHAIN, NETUID, b"\xa0", miner=pair.miner_hotkey.public)  # not a ComputeQuery
            res = await query_miner(pair.client, pair.peer, bad, pair.miner_hotkey.public, 5)
            assert res.status == QueryStatus.BAD_QUERY
            # a response must be signed by the hotkey registered for that uid
            with pytest.raises(QueryError, match="not the registered hotkey"):
                registered = Keypair.generate().public  # the metagraph lists another key than the peer's
                fresh = build_query(validator, CHAIN, NETUID, payload, miner=registered)
                await query_miner(pair.client, pair.peer, fresh, registered, 5)


async def test_model_failure_reports_internal_and_calls_on_fatal(tmp_path):
    validator = Keypair.generate()
    task = ComputeTask(SMALL, secret=b"s" * 32)
    crashing = _FaultyMiner(task.load_miner(torch.device("cpu")), "crash-once", tmp_path)
    failures: list[BaseException] = []
    with trio.fail_after(DEADLINE):
        async with axon_pair(AxonConfig(deadline_s=5), miner=crashing, permitted={validator.public}) as pair:
            pair.axon.on_fatal = failures.append
            assert (await ask(pair, validator))[1].status == QueryStatus.INTERNAL
            assert len(failures) == 1 and "crash-once" in repr(failures[0])
            assert (await ask(pair, validator, seed=b"\x05" * 32))[1].status == QueryStatus.OK  # once per home


def test_corrupt_answer_is_wellformed_but_scores_zero():
    task = ComputeTask(SMALL, secret=b"k" * 32)
    miner = task.load_miner(torch.device("cpu"))
    challenge = task.challenge(b"\x07" * 32)
    honest = miner.answer(challenge.query)
    bad = _flip_first_bit(honest)
    assert isinstance(bad, ComputeAnswer) and bad != honest
    assert task.score_payload(challenge, honest.to_bytes(), 5) > 0
    assert task.score_payload(challenge, bad.to_bytes(), 5) == 0


def test_rate_limiter_and_replay_guard_units():
    rl = RateLimiter(rate_per_s=1.0, burst=2)
    assert [rl.take(b"a", now=0.0) for _ in range(3)] == [True, True, False]
    assert rl.take(b"a", now=1.0) and not rl.take(b"a", now=1.0)
    g = ReplayGuard(window_ms=10_000, max_ids=3)
    assert g.accept(b"r1", sent_ms=0, now=0) is None
    with pytest.raises(Refused, match="already used"):
        g.accept(b"r1", sent_ms=0, now=9_000)
    assert g.accept(b"r2", 5_000, now=9_000) is None and g.accept(b"r3", 5_000, now=9_000) is None
    assert g.accept(b"r4", 5_000, now=9_000) == QueryStatus.BUSY  # full: refuse, never forget r1..r3
    assert g.accept(b"r1", sent_ms=0, now=10_001) == QueryStatus.STALE  # r1's window passed: refused by time
    assert len(g) == 2 and g.accept(b"r4", 5_000, now=10_001) is None  # and its slot is free again


def test_option_parsing():
    assert parse_kv(["steps=5", "1:steps=0", "2:name=x", "flag=true"], 3) == [
        {"steps": 5, "flag": True},
        {"steps": 0, "flag": True},
        {"steps": 5, "name": "x", "flag": True},
    ]
    with pytest.raises(MinerError):
        parse_kv(["3:steps=1"], 3)
    with pytest.raises(MinerError):
        parse_kv(["novalue"], 1)
    assert parse_faults(["1:crash-once"], 2) == {1: "crash-once"}
    with pytest.raises(MinerError):
        parse_faults(["1:explode"], 2)
    assert plan_devices("none", 3) == ["cpu"] * 3
    assert plan_devices("all", 2, env={"CUDA_VISIBLE_DEVICES": ""}) == ["cpu", "cpu"]  # no GPU: CPU fallback
    with pytest.raises(MinerError):
        plan_devices("0", 1, env={"CUDA_VISIBLE_DEVICES": ""})
    assert worker_env("gpu:3", {})["CUDA_VISIBLE_DEVICES"] == "3"
    assert worker_env("cpu", {})["CUDA_VISIBLE_DEVICES"] == ""
