"""Pushed blocks are one-way (/tensornet/push-block/2, spec/p2p.md): a stranger's bad push frames are refused and
charged to it, each resetting only its own stream, and the validators keep committing meanwhile.

Four validator processes on loopback; the stranger is an in-process libp2p stack with a fresh key, like the
adversary's (node/testing/adversary.py). What the target charged is read from its /metrics (tensornet_p2p_events).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.utils.varint import encode_uvarint

from node.service import PUSH_SPEC
from node.testing.procs import NodeProc, state_roots_at, stop_all, wait_for
from node.testnet.gen import generate
from node.testnet.local import free_port_base
from p2pnet.discovery import DiscoveryConfig
from p2pnet.reqresp import Kind, encode_frame
from p2pnet.stack import open_stack

pytestmark = pytest.mark.slow

PUSH = PUSH_SPEC.protocol_id
EVENT = re.compile(r'^tensornet_p2p_events\{family="([^"]+)",key="([^"]+)"\} (\S+)$', re.M)


def p2p_events(node: NodeProc) -> dict[tuple[str, str], float]:
    """The node's p2p counters from /metrics: (family, key) -> count."""
    try:
        text = httpx.get(node.api + "/metrics", timeout=3).text
    except httpx.HTTPError:
        return {}
    return {(f, k): float(v) for f, k, v in EVENT.findall(text)}


async def push_bad_frames(multiaddr: str) -> None:
    """From a fresh identity: a frame over the push cap (its length prefix alone), a REQUEST frame (a one-way
    stream carries MESSAGE frames only), and a well-formed push of bytes that are no block; each on its own stream."""
    async with open_stack(create_new_key_pair(), discovery=DiscoveryConfig(dht=False, target_peers=0)) as st:
        st.reqresp.register(PUSH_SPEC)
        peer = await st.host.connect(multiaddr, deadline=10.0)
        for frame in (encode_uvarint(PUSH_SPEC.max_request + 4096) + b"x" * 64,
                      encode_frame(Kind.REQUEST, 1, b"not a message")):
            stream = await st.host.new_stream(peer, [PUSH], deadline=10.0)
            await stream.write(frame)
            with trio.move_on_after(10):  # until the target resets the stream
                try:
                    while await stream.read(1024):
                        pass
                except Exception:  # noqa: BLE001 - the reset is the answer
                    pass
        await st.reqresp.send(peer, PUSH, b"\xa1\x61x\x00")  # decodes as CBOR, not as a block
        await trio.sleep(1)  # let it arrive before the connection closes


def test_bad_push_frames_are_charged_and_the_validators_keep_committing(tmp_path: Path) -> None:
    base = free_port_base(8)  # 4 p2p ports, then 4 API ports; the validators find each other through the genesis
    plans, _ = generate(tmp_path / "net", hosts=["127.0.0.1"] * 4, p2p_base=base, api_base=base + 4)
    nodes = [NodeProc(p.home, p.api).start() for p in plans]
    try:
        wait_for(lambda: min(n.height() for n in nodes) >= 3, 120, "3 commits on every validator", nodes=nodes)
        target = nodes[0]
        addr = next(a for a in target.status()["listen"] if "/ip4/" in a)
        start = [n.height() for n in nodes]
        trio.run(push_bad_frames, addr)

        charged = {
            ("limit_rejects", f"oversize:{PUSH}"),  # the host's guard, from the length prefix
            ("charges", f"{PUSH}:malformed"),  # reqresp: the wrong kind of frame on a one-way stream
            ("charges", f"{PUSH}:invalid_block"),  # the push handler: not a block
        }
        wait_for(lambda: all(p2p_events(target).get(k, 0) >= 1 for k in charged), 60,
                 f"the target's charges {sorted(charged)}", nodes=nodes)
        events = p2p_events(target)
        assert events.get(("penalties", "oversize"), 0) >= 1 and events.get(("penalties", "malformed"), 0) >= 1

        wait_for(lambda: all(n.height() >= s + 5 for n, s in zip(nodes, start, strict=True)), 120,
                 "5 more commits on every validator", nodes=nodes)
        assert not any(e.get(("charges", f"{PUSH}:malformed")) for e in map(p2p_events, nodes[1:])), \
            "an honest validator's push was charged as malformed"
        roots = state_roots_at(nodes, min(n.height() for n in nodes))
        assert len(roots) == 1, f"state roots differ: {roots}"
    finally:
        stop_all(nodes)
