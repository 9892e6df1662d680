"""`tensornet fuzz live`: mutants sent to a running node over real libp2p, while its API is watched.

The fuzzer is an ordinary peer: a p2pnet stack with a throwaway node key that passes the status
handshake (chain id and genesis hash from the node's /status), then publishes mutated blocks and
transactions on the gossip topics and sends mutated requests, and raw mutated frames, on the
request/response protocols. Seeds are the node's own recent blocks (fetched over /tensornet/blocks/1,
so they carry real signatures) and transactions signed by the fuzz test key for the node's chain.
Meanwhile /health and /status are polled: the node must keep answering and its height must keep
growing. The report says what was sent, what failed to send, and what the node counted as rejected
(/status stats.rejected and /metrics tensornet_rejects_total, before and after).

A node that scores us down and bans us is doing its job: the fuzzer then reconnects with a fresh key.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from node.errors import NodeError
from node.fuzz.mutate import Mutator, mutate_bytes
from node.fuzz.targets import TEST_KEY, get, state_fixture
from node.service import BLOCKS_SPEC, COMMITS_SPEC
from p2pnet.discovery import DiscoveryConfig
from p2pnet.nodekey import keypair_from_seed
from p2pnet.reqresp import Kind, RequestError, encode_frame
from p2pnet.stack import open_stack
from protocol.messages import (
    BlockRef,
    BlocksResponse,
    CommitsResponse,
    FetchBlocks,
    FetchCommits,
    SignedBlock,
    SignedTransaction,
    Status,
    Transaction,
)

# target -> the channel its mutants travel on
GOSSIP_BLOCKS = ("block", "dag")
REQUEST_TARGETS = {"status": "/tensornet/status/1", "fetch_blocks": "/tensornet/blocks/1",
                   "fetch_commits": "/tensornet/commits/1"}
LIVE_TARGETS = ("all", *GOSSIP_BLOCKS, "tx", "weights", "state", *REQUEST_TARGETS, "frame")


class LiveError(NodeError):
    """The node cannot be fuzzed live: its API or its p2p address is unreachable, or the handshake fails."""


@dataclass
class NodeInfo:
    api: str | None
    chain_id: str
    genesis_hash: bytes
    peer: str  # multiaddr with /p2p/


@dataclass
class Watch:
    polls: int = 0
    failed: int = 0  # no answer, or an answer other than 200/503
    heights: list[tuple[float, int]] = field(default_factory=list)
    rejected_before: dict[str, int] = field(default_factory=dict)
    rejected_after: dict[str, int] = field(default_factory=dict)
    metrics_before: dict[str, float] = field(default_factory=dict)
    metrics_after: dict[str, float] = field(default_factory=dict)

    def max_stall_s(self) -> float:
        stall, last_t, last_h = 0.0, None, None
        for t, h in self.heights:
            if last_h is None or h > last_h:
                last_t, last_h = t, h
            elif last_t is not None:
                stall = max(stall, t - last_t)
        return round(stall, 2)


def _get(api: str, path: str, timeout: float = 3.0) -> tuple[int, Any]:
    r = httpx.get(api.rstrip("/") + path, timeout=timeout)
    if path.startswith("/metrics"):
        return r.status_code, r.text
    return r.status_code, r.json()


_METRIC = re.compile(r'^tensornet_rejects_total\{reason="([^"]*)"\}\s+([0-9.e+]+)$', re.M)


def parse_rejects(text: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in _METRIC.finditer(text)}


def node_info(api: str | None, peer: str | None) -> NodeInfo:
    """Chain id, genesis hash and p2p address from the node's /status (the peer address may be given)."""
    if api is None:
        raise LiveError("--api URL is needed: the handshake needs the node's chain id and genesis hash")
    try:
        code, st = _get(api, "/status")
    except Exception as exc:
        raise LiveError(f"cannot reach the node's API at {api}: {exc}") from exc
    if code != 200:
        raise LiveError(f"{api}/status answered {code}")
    if peer is None:
        listen = [a for a in st.get("listen") or [] if "/tcp/" in a]
        if not listen or not st.get("peer_id"):
            raise LiveError(f"{api}/status names no listen address: pass --peer MULTIADDR")
        peer = listen[0] if "/p2p/" in listen[0] else f"{listen[0]}/p2p/{st['peer_id']}"
    if "/p2p/" not in peer:
        raise LiveError(f"--peer {peer} must end in /p2p/<peer id>")
    return NodeInfo(api, st["chain_id"], bytes.fromhex(st["genesis_hash"]), peer)


@asynccontextmanager
async def open_peer(info: NodeInfo, seed: bytes | None = None) -> AsyncIterator[tuple[Any, Any]]:
    """A p2pnet stack connected to the node and past the handshake; yields (stack, peer id)."""
    status = Status(info.chain_id, info.genesis_hash, 0, bytes(32), 0, 0, False)
    key = keypair_from_seed(seed or hashlib.blake2b(str(time.time_ns()).encode(), digest_size=32).digest())
    async with open_stack(key, chain_id=info.chain_id, status_fn=lambda: status,
                          discovery=DiscoveryConfig(target_peers=1, dht=False)) as stack:
        stack.reqresp.register(BLOCKS_SPEC)
        stack.reqresp.register(COMMITS_SPEC)
        try:
            peer_id = await stack.host.connect(info.peer)
            with trio.fail_after(10):
                await stack.handshake.wait_for_peers(1)
        except Exception as exc:
            raise LiveError(f"cannot connect and handshake with {info.peer}: {exc}") from exc
        yield stack, peer_id


async def fetch_chain(stack: Any, peer: Any, max_commits: int = 64) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Recent commits (CommitsResponse payloads), the raw commits, and their blocks, from the node itself."""
    height = stack.handshake.statuses[peer].height
    responses, commits, blocks = [], [], []
    start = max(1, height - max_commits + 1)
    refs: list[Any] = []
    while start <= height:
        raw = await stack.reqresp.request(peer, COMMITS_SPEC.protocol_id, FetchCommits(start, height).to_bytes())
        resp = CommitsResponse.from_bytes(raw)
        if not resp.commits:
            break
        responses.append(raw)
        for c in resp.commits:
            commits.append(c.to_bytes())
            refs += [BlockRef(r.round, r.author, r.digest) for r in c.blocks]
        start = resp.commits[-1].index + 1
    for i in range(0, min(len(refs), 256), 32):
        raw = await stack.reqresp.request(peer, BLOCKS_SPEC.protocol_id, FetchBlocks(0, tuple(refs[i:i + 32]), 0, 0)
                                          .to_bytes())
        blocks += BlocksResponse.from_bytes(raw).blocks
        responses.append(raw)
    return responses, commits, blocks


def live_tx_seeds(chain_id: str) -> list[bytes]:
    """The fixture's transactions, re-signed by the test key for the node's chain."""
    out = []
    for raw in state_fixture().txs.values():
        call = SignedTransaction.from_bytes(raw).body.call
        out.append(SignedTransaction.create(Transaction(chain_id, TEST_KEY.public, 0, call, 0), TEST_KEY).to_bytes())
    return out


async def _watch(api: str, w: Watch, stop: trio.Event, interval: float = 1.0) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        w.polls += 1
        try:
            hc, _ = await trio.to_thread.run_sync(_get, api, "/health")
            sc, st = await trio.to_thread.run_sync(_get, api, "/status")
            if hc not in (200, 503) or sc != 200:
                w.failed += 1
            else:
                w.heights.append((time.monotonic() - t0, int(st["height"])))
        except Exception:
            w.failed += 1
        with trio.move_on_after(interval):
            await stop.wait()


async def _counters(api: str) -> tuple[dict[str, int], dict[str, float]]:
    try:
        _, st = await trio.to_thread.run_sync(_get, api, "/status")
        _, text = await trio.to_thread.run_sync(_get, api, "/metrics")
        return dict(st.get("stats", {}).get("rejected", {})), parse_rejects(text)
    except Exception:
        return {}, {}


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0) for k in sorted(after) if after[k] - before.get(k, 0)}


async def run_live(target: str, info: NodeInfo, *, seconds: float = 20.0, rate: float = 50.0, seed: int = 0,
                   max_reconnects: int = 20) -> dict[str, Any]:
    """Fuzz the node for `seconds` at about `rate` messages/s; returns the report (see the module doc)."""
    if target not in LIVE_TARGETS:
        raise LiveError(f"live target {target!r}: one of {', '.join(LIVE_TARGETS)}")
    rng = random.Random(seed)
    sent: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    w = Watch()
    stop = trio.Event()
    reconnects = 0
    seeds: dict[str, list[bytes]] = {}
    started = time.monotonic()

    # fixtures are built before anything runs: they are synchronous and would stall the health polls
    fixture_blocks = get("block").seeds()
    txs = live_tx_seeds(info.chain_id)
    fetch_seed = get("fetch_blocks").seeds()[:1]
    Mutator(SignedBlock, rng).mutate(fixture_blocks[0], fixture_blocks)  # warm its lazy imports
    if info.api:
        w.rejected_before, w.metrics_before = await _counters(info.api)
    async with trio.open_nursery() as nursery:
        if info.api:
            nursery.start_soon(_watch, info.api, w, stop)
        deadline = started + seconds
        while time.monotonic() < deadline and reconnects <= max_reconnects:
            try:
                async with open_peer(info) as (stack, peer):
                    if not seeds:
                        _, commits, blocks = await fetch_chain(stack, peer)
                        status = stack.handshake.statuses[peer]
                        seeds = {
                            "blocks": blocks or fixture_blocks,
                            "txs": txs,
                            "status": [status.to_bytes(), Status(info.chain_id, info.genesis_hash, 0, bytes(32), 0, 0,
                                                                 False).to_bytes()],
                            "fetch_blocks": [FetchBlocks(0, (), 1, 8).to_bytes()] + fetch_seed,
                            "fetch_commits": [FetchCommits(1, 3).to_bytes()],
                            "commits": commits,
                        }
                    await _send_loop(stack, peer, target, seeds, rng, deadline, rate, sent, errors)
            except LiveError as exc:
                errors[f"session:{type(exc).__name__}"] += 1
                if reconnects == 0 and not sent:
                    stop.set()
                    raise
                await trio.sleep(0.5)
            except Exception as exc:  # the connection died under us (banned, reset): come back as a new peer
                errors[f"session:{type(exc).__name__}"] += 1
            reconnects += 1 if time.monotonic() < deadline else 0
        stop.set()
    elapsed = time.monotonic() - started
    if info.api:
        w.rejected_after, w.metrics_after = await _counters(info.api)
    heights = [h for _, h in w.heights]
    responsive = w.polls > 0 and w.failed == 0
    progressing = len(heights) >= 2 and heights[-1] > heights[0]
    return {
        "target": target,
        "peer": info.peer,
        "seconds": round(elapsed, 1),
        "sent": dict(sent),
        "sent_total": sum(sent.values()),
        "send_errors": dict(errors),
        "sessions": reconnects,
        "node": {
            "api": info.api,
            "polls": w.polls,
            "failed_polls": w.failed,
            "height_start": heights[0] if heights else None,
            "height_end": heights[-1] if heights else None,
            "max_stall_s": w.max_stall_s(),
            "responsive": responsive,
            "height_increased": progressing,
        },
        "rejected": _delta(w.rejected_before, w.rejected_after),
        "metrics_rejects": _delta(w.metrics_before, w.metrics_after),
        "ok": responsive and progressing,
    }


def _channels(target: str) -> list[str]:
    if target == "all":
        return ["blocks", "txs", "weights", "status", "fetch_blocks", "fetch_commits", "frame"]
    if target in GOSSIP_BLOCKS:
        return ["blocks"]
    if target in ("tx", "state"):
        return ["txs"]
    return [target]


async def _send_loop(stack: Any, peer: Any, target: str, seeds: dict[str, list[bytes]], rng: random.Random,
                     deadline: float, rate: float, sent: Counter[str], errors: Counter[str]) -> None:
    gossip = stack.gossip
    muts = {
        "blocks": Mutator(SignedBlock, rng),
        "txs": Mutator(SignedTransaction, rng, resign=True),
        "status": Mutator(Status, rng),
        "fetch_blocks": Mutator(FetchBlocks, rng),
        "fetch_commits": Mutator(FetchCommits, rng),
    }
    channels = _channels(target)
    state: dict[str, Any] = {"raw": None}

    async def send_one(ch: str) -> None:
        if ch in ("blocks", "txs", "weights"):
            pool = seeds["blocks" if ch == "blocks" else "txs"]
            data = muts["blocks" if ch == "blocks" else "txs"].mutate(rng.choice(pool), pool)
            await gossip.publish(gossip.topic("blocks" if ch == "blocks" else "transactions"), data)
            if ch == "weights":  # weight transactions also go on their own topic
                await gossip.publish(gossip.topic("weights"), data)
        elif ch in REQUEST_TARGETS:
            pool = seeds[ch]
            data = muts[ch].mutate(rng.choice(pool), pool)
            await stack.reqresp.request(peer, REQUEST_TARGETS[ch], data[:1024])
        else:  # frame: raw, mostly well-framed mutated requests on a stream of our own
            if state["raw"] is None:
                state["raw"] = await stack.host.new_stream(peer, [REQUEST_TARGETS["fetch_blocks"]])
            payload = muts["fetch_blocks"].mutate(rng.choice(seeds["fetch_blocks"]), seeds["fetch_blocks"])
            frame = encode_frame(Kind.REQUEST, rng.randrange(1 << 32), payload)
            if rng.random() < 0.3:
                frame = mutate_bytes(frame, frame, rng)
            try:
                await state["raw"].write(frame)
            except Exception:
                state["raw"] = None  # a violation resets the stream: open a new one next time
                raise

    while time.monotonic() < deadline:
        ch = rng.choice(channels)
        with trio.move_on_after(3) as scope:
            try:
                await send_one(ch)
                sent[ch] += 1
            except (RequestError, Exception) as exc:
                errors[f"{ch}:{type(exc).__name__}"] += 1
        if scope.cancelled_caught:
            errors[f"{ch}:timeout"] += 1
        if not stack.host.is_connected(peer):
            raise LiveError("the node disconnected us (scored down and banned, most likely)")
        await trio.sleep(1.0 / rate)


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, default=lambda v: v.hex() if isinstance(v, bytes) else str(v))

