"""An outside attacker for a live tensornet network: only what any stranger on the internet can send.

    python -m node.testing.adversary --target http://127.0.0.1:26700 [--target ...] [--attacks push,gossip,...]
                              [--blocks 12] [--block-mib 4] [--requests 1000] [--streams 20] [--json]

A `--target` is a node's HTTP API (its /status gives the chain id, genesis, epoch and listen address) or a
libp2p multiaddr ending in /p2p/<id> (then `--chain-id` and `--genesis` are needed). Each attack runs from a
fresh libp2p identity (a new key, as a stranger would make), against each target in turn:

  push     forged next-epoch blocks, `--block-mib` MiB each, garbage signatures, on /tensornet/push-block/2
  gossip   the same blocks published on the chain's blocks topic (the adversary joins gossip)
  status   while `gossip` runs, the handshake Status claims height and round 2^64-1
  reqresp  FetchBlocks/FetchCommits for 0..2^64-1, malformed CBOR, on the blocks/commits/own-last protocols
  cancel   a request/response stream on which a 4 MiB frame is cut off halfway, then the stream reset
  corrupt  a good request frame, then a frame of an unknown kind on the same stream

The adversary only counts what it saw (answers, refusals, resets, being banned); what the targets kept
(memory, bans of honest peers, commits) is for the caller to measure, e.g. tests/node/test_adversary.py.
Every attack is bounded (counts and deadlines), so a run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from node.service import BLOCKS_SPEC, COMMITS_SPEC, OWN_LAST_SPEC, PUSH_SPEC
from p2pnet.discovery import DiscoveryConfig
from p2pnet.errors import P2PError
from p2pnet.gossip import Verdict
from p2pnet.reqresp import Kind, PeerGone, RemoteError, RequestError, RequestTimeout, encode_frame
from p2pnet.stack import Stack, open_stack
from protocol.messages import MAX_BLOCK_SIZE, MAX_TX_SIZE, Block, FetchBlocks, FetchCommits, SignedBlock, Status

U64_MAX = (1 << 64) - 1
NODE_SPECS = (PUSH_SPEC, BLOCKS_SPEC, COMMITS_SPEC, OWN_LAST_SPEC)
PUSH, BLOCKS, COMMITS, OWN_LAST = (spec.protocol_id for spec in NODE_SPECS)
ATTACKS = ("push", "gossip", "status", "reqresp", "cancel", "corrupt")
DIAL_DEADLINE = 10.0
ATTACK_DEADLINE = 120.0  # no single attack on one target runs longer than this


@dataclass
class Target:
    multiaddr: str
    peer_id: str
    chain_id: str
    genesis: bytes
    epoch: int
    api: str | None = None


@dataclass
class Tally:
    """What one attack on one target saw: outcome -> count."""

    attack: str
    target: str
    outcomes: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"attack": self.attack, "target": self.target, "outcomes": dict(self.outcomes),
                "bytes_sent": self.bytes_sent}


def resolve(target: str, chain_id: str | None = None, genesis: str | None = None) -> Target:
    """A target from an API URL (read /status) or a full multiaddr (chain id and genesis given)."""
    if target.startswith("http"):
        s = httpx.get(target.rstrip("/") + "/status", timeout=10).json()
        addr = next(a for a in s["listen"] if "/ip4/" in a)
        return Target(addr, s["peer_id"], s["chain_id"], bytes.fromhex(s["genesis_hash"]), int(s["epoch"]), target)
    if chain_id is None or genesis is None:
        raise SystemExit("a multiaddr target needs --chain-id and --genesis (hex)")
    return Target(target, target.rsplit("/p2p/", 1)[1], chain_id, bytes.fromhex(genesis), 0)


def forged_block(t: Target, size: int, seq: int) -> bytes:
    """A next-epoch block of about `size` bytes whose signature is garbage: nobody could have signed it."""
    chunk = MAX_TX_SIZE - 64
    n = max(1, min(size, MAX_BLOCK_SIZE - 16 * 1024) // chunk)
    payload = tuple(os.urandom(16) + seq.to_bytes(8, "big") + bytes(chunk - 24) for _ in range(n))
    body = Block(t.chain_id, t.epoch + 1, 1 + seq % 50, seq % 4, int(time.time() * 1000), (), payload, ())
    return SignedBlock(body, os.urandom(64)).to_bytes()


def outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "answered"
    if isinstance(exc, RemoteError):
        return f"refused:{exc.code}"
    if isinstance(exc, RequestTimeout):
        return "timeout"
    if isinstance(exc, PeerGone):
        return "peer_gone"
    return f"{type(exc).__name__}:{str(exc)[:60]}"


# --- one fresh identity per attack ----------------------------------------------------------------------


async def _stranger(t: Target, *, lie: bool, body: Callable[[Stack, Any], Awaitable[None]]) -> None:
    """Run `body(stack, peer)` from a new identity connected to `t`; with `lie`, join gossip and claim
    height and round 2^64-1 in the handshake Status."""
    kw: dict[str, Any] = {}
    if lie:
        def status() -> Status:
            return Status(t.chain_id, t.genesis, U64_MAX, os.urandom(32), t.epoch, U64_MAX, False)

        kw = {"chain_id": t.chain_id, "status_fn": status, "gossip_options": {"strict_signing": False}}
    cfg = DiscoveryConfig(dht=False, target_peers=0)  # dial nobody else: only the target is attacked
    async with open_stack(create_new_key_pair(), discovery=cfg, **kw) as st:
        for spec in NODE_SPECS:
            st.reqresp.register(spec)  # the node's limits, as a client (we serve none of them)
        peer = await st.host.connect(t.multiaddr, deadline=DIAL_DEADLINE)
        await body(st, peer)


async def push_blocks(t: Target, tally: Tally, count: int, size: int) -> None:
    async def body(st: Stack, peer: Any) -> None:
        for i in range(count):
            data = forged_block(t, size, i)
            try:
                await st.reqresp.send(peer, PUSH, data, timeout=30.0)  # one-way: nothing answers
                tally.outcomes[outcome(None)] += 1
            except (RequestError, P2PError) as exc:
                tally.outcomes[outcome(exc)] += 1
            tally.bytes_sent += len(data)

    await _stranger(t, lie=False, body=body)


async def gossip_blocks(t: Target, tally: Tally, count: int, size: int, hold: float) -> None:
    """Join gossip with a lying Status, publish forged blocks, then stay `hold` seconds (the lie stands)."""

    async def body(st: Stack, peer: Any) -> None:
        assert st.gossip is not None
        topic = st.gossip.topic("blocks")
        await st.gossip.subscribe(topic, lambda _peer, _data: Verdict.ACCEPT)  # our own publish passes it too
        with trio.move_on_after(15):
            while peer not in st.gossip.topic_peers(topic):
                await trio.sleep(0.2)
        tally.outcomes["in_topic" if peer in st.gossip.topic_peers(topic) else "not_in_topic"] += 1
        for i in range(count):
            data = forged_block(t, min(size, st.gossip.max_message_size - 8192), 1000 + i)
            try:
                await st.gossip.publish(topic, data)
                tally.outcomes["published"] += 1
                tally.bytes_sent += len(data)
            except P2PError as exc:
                tally.outcomes[outcome(exc)] += 1
        await trio.sleep(hold)
        tally.outcomes["still_connected" if st.host.is_connected(peer) else "dropped"] += 1

    await _stranger(t, lie=True, body=body)


def abusive_requests(t: Target) -> list[tuple[str, bytes]]:
    return [
        (BLOCKS, FetchBlocks(t.epoch, (), 0, U64_MAX).to_bytes()),
        (BLOCKS, FetchBlocks(U64_MAX, (), U64_MAX, 0).to_bytes()),
        (COMMITS, FetchCommits(0, U64_MAX).to_bytes()),
        (COMMITS, FetchCommits(U64_MAX, U64_MAX).to_bytes()),
        (COMMITS, b"\xff\x00\x13not cbor"),
        (BLOCKS, b"\x9f" * 64),  # deep indefinite arrays, never closed
        (OWN_LAST, b"\xa1\x61x\x1b\xff\xff\xff\xff\xff\xff\xff\xff"),
    ]


async def abuse_reqresp(t: Target, tally: Tally, count: int, parallel: int = 16) -> None:
    async def body(st: Stack, peer: Any) -> None:
        reqs = abusive_requests(t)
        limiter = trio.CapacityLimiter(parallel)

        async def one(i: int) -> None:
            proto, data = reqs[i % len(reqs)]
            async with limiter:
                try:
                    await st.reqresp.request(peer, proto, data, timeout=10.0)
                    tally.outcomes[outcome(None)] += 1
                except (RequestError, P2PError) as exc:
                    tally.outcomes[outcome(exc)] += 1
                tally.bytes_sent += len(data)

        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, i)

    await _stranger(t, lie=False, body=body)


async def _raw_stream(st: Stack, peer: Any, proto: str, tally: Tally) -> Any | None:
    try:
        return await st.host.new_stream(peer, [proto], deadline=DIAL_DEADLINE)
    except P2PError as exc:
        tally.outcomes[f"no_stream:{type(exc).__name__}"] += 1
        return None


async def cancel_mid_write(t: Target, tally: Tally, count: int) -> None:
    """Open a push stream, write half of a 4 MiB frame, then cancel (reset) the stream."""

    async def body(st: Stack, peer: Any) -> None:
        for i in range(count):
            stream = await _raw_stream(st, peer, PUSH, tally)
            if stream is None:
                continue
            frame = encode_frame(Kind.MESSAGE, 0, forged_block(t, 4 << 20, 5000 + i))
            try:
                with trio.move_on_after(10):
                    await stream.write(frame[: len(frame) // 2])
                    tally.bytes_sent += len(frame) // 2
                await stream.reset()
                tally.outcomes["cut_off"] += 1
            except Exception as exc:  # noqa: BLE001 - the target may reset first; that is an outcome too
                tally.outcomes[f"write_failed:{type(exc).__name__}"] += 1

    await _stranger(t, lie=False, body=body)


async def corrupt_after_good(t: Target, tally: Tally, count: int) -> None:
    """A well-formed FetchCommits frame, its answer, then a frame of an unknown kind on the same stream."""

    async def body(st: Stack, peer: Any) -> None:
        for _ in range(count):
            stream = await _raw_stream(st, peer, COMMITS, tally)
            if stream is None:
                continue
            try:
                with trio.move_on_after(10):
                    await stream.write(encode_frame(Kind.REQUEST, 1, FetchCommits(1, 1).to_bytes()))
                    got = await stream.read(1 << 16)
                    tally.outcomes["good_answered" if got else "good_unanswered"] += 1
                    await stream.write(b"\x09\x07" + os.urandom(8))  # kind 7 does not exist
                    rest = await stream.read(1 << 16)
                    tally.outcomes["corrupt_answered" if rest else "corrupt_closed"] += 1
            except Exception as exc:  # noqa: BLE001 - a reset is the expected answer to the corrupt frame
                tally.outcomes[f"corrupt_reset:{type(exc).__name__}"] += 1
            finally:
                with trio.move_on_after(2):
                    try:
                        await stream.reset()
                    except Exception:  # noqa: BLE001 - already gone
                        pass

    await _stranger(t, lie=False, body=body)


# --- the run --------------------------------------------------------------------------------------------


@dataclass
class Plan:
    attacks: tuple[str, ...] = ATTACKS
    blocks: int = 12  # forged blocks per target, pushed (and as many gossiped)
    block_bytes: int = 4 << 20
    requests: int = 1000  # abusive requests per target
    streams: int = 20  # cut-off and corrupt streams per target
    hold: float = 10.0  # seconds the lying gossip peer stays connected


async def run(targets: list[Target], plan: Plan) -> list[Tally]:
    """Run every attack of `plan` on every target, one after the other; an attack the target cuts short
    (refused dial, reset connection) is counted as an outcome ("aborted:<error>"), never raised."""
    tallies: list[Tally] = []
    for attack in plan.attacks:
        if attack == "status" and "gossip" in plan.attacks:
            continue  # the lie is told by the gossip identity
        for t in targets:
            tally = Tally(attack, t.api or t.multiaddr)
            tallies.append(tally)
            with trio.move_on_after(ATTACK_DEADLINE) as scope:
                try:
                    await _one(attack, t, tally, plan)
                except Exception as exc:  # noqa: BLE001 - being refused or cut off is a result, not a crash
                    tally.outcomes[f"aborted:{type(exc).__name__}"] += 1
            if scope.cancelled_caught:
                tally.outcomes["deadline"] += 1
    return tallies


async def _one(attack: str, t: Target, tally: Tally, plan: Plan) -> None:
    if attack == "push":
        await push_blocks(t, tally, plan.blocks, plan.block_bytes)
    elif attack in ("gossip", "status"):
        await gossip_blocks(t, tally, plan.blocks if attack == "gossip" else 0, plan.block_bytes, plan.hold)
    elif attack == "reqresp":
        await abuse_reqresp(t, tally, plan.requests)
    elif attack == "cancel":
        await cancel_mid_write(t, tally, plan.streams)
    elif attack == "corrupt":
        await corrupt_after_good(t, tally, plan.streams)
    else:
        raise ValueError(f"unknown attack {attack!r}; expected one of {ATTACKS}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m node.testing.adversary", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", action="append", required=True, help="API URL or full multiaddr (repeatable)")
    p.add_argument("--chain-id")
    p.add_argument("--genesis", help="genesis hash, hex (multiaddr targets)")
    p.add_argument("--attacks", default=",".join(ATTACKS))
    p.add_argument("--blocks", type=int, default=Plan.blocks)
    p.add_argument("--block-mib", type=float, default=4.0)
    p.add_argument("--requests", type=int, default=Plan.requests)
    p.add_argument("--streams", type=int, default=Plan.streams)
    p.add_argument("--hold", type=float, default=Plan.hold)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    attacks = tuple(x for x in a.attacks.split(",") if x)
    for x in attacks:
        if x not in ATTACKS:
            p.error(f"unknown attack {x!r}; expected some of {','.join(ATTACKS)}")
    targets = [resolve(t, a.chain_id, a.genesis) for t in a.target]
    plan = Plan(attacks, a.blocks, int(a.block_mib * (1 << 20)), a.requests, a.streams, a.hold)
    tallies = trio.run(run, targets, plan)
    if a.json:
        print(json.dumps([t.as_dict() for t in tallies]))
    else:
        for t in tallies:
            print(f"{t.attack:8} {t.target}: {dict(t.outcomes)} ({t.bytes_sent >> 20} MiB sent)")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
