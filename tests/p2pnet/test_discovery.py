"""Peer store persistence and backoff, peer-exchange codec, and discovery through one bootstrap (in process)."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from p2pnet.bootstrap import public_addrs
from p2pnet.discovery import DiscoveryConfig, decode_px_request, decode_px_response, encode_px_response
from p2pnet.peerstore import PeerStore, PeerStoreError, split_p2p_addr
from p2pnet.reqresp import Refused
from p2pnet.stack import open_stack
from protocol import codec
from protocol.messages import Status

PID = str(ID.from_pubkey(create_new_key_pair().public_key))
PID2 = str(ID.from_pubkey(create_new_key_pair().public_key))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_peer_store_roundtrip_backoff_and_atomic_file(tmp_path):
    clock = Clock()
    path = tmp_path / "peers.json"
    store = PeerStore(path, clock=clock)
    store.add(PID, ["/ip4/127.0.0.1/tcp/4001"], bootstrap=True)
    store.add(PID2, ["/ip4/10.0.0.2/tcp/4002"])
    store.save()
    assert not path.with_name("peers.json.tmp").exists()
    again = PeerStore(path, clock=clock)
    assert again.peers[PID].addrs == ["/ip4/127.0.0.1/tcp/4001"] and again.peers[PID].bootstrap
    assert again.peers[PID].dial_addrs() == [f"/ip4/127.0.0.1/tcp/4001/p2p/{PID}"]

    delays = [again.failed(PID2) for _ in range(10)]
    assert delays[1] > delays[0] * 1.3 and max(delays) <= 60 * 1.2  # exponential, capped
    assert [r.peer_id for r in again.candidates(set(), 10)] == [PID]  # PID2 backs off
    clock.now += 100
    assert {r.peer_id for r in again.candidates(set(), 10)} == {PID, PID2}
    again.connected(PID2)
    assert again.peers[PID2].failures == 0


def test_peer_store_refuses_bad_input_and_sets_aside_a_corrupt_file(tmp_path):
    store = PeerStore(None)
    for bad in ["/ip4/1.2.3.4/udp/5", "not an addr", "/ip4/1.2.3.4/tcp/5/p2p/" + PID, ""]:
        with pytest.raises(PeerStoreError):
            store.add(PID, [bad])
    with pytest.raises(PeerStoreError):
        store.add("Qmnotapeer", ["/ip4/1.2.3.4/tcp/5"])
    with pytest.raises(PeerStoreError):
        split_p2p_addr("/ip4/1.2.3.4/tcp/5")  # no /p2p/
    assert split_p2p_addr(f"/ip4/1.2.3.4/tcp/5/p2p/{PID}") == ("/ip4/1.2.3.4/tcp/5", PID)

    path = tmp_path / "peers.json"
    path.write_text("{not json")
    assert len(PeerStore(path)) == 0
    assert path.with_name("peers.json.corrupt").read_text() == "{not json"
    path.write_text(json.dumps({"version": 1, "peers": [{"peer_id": "bad"}, {"peer_id": PID, "addrs": []}]}))
    assert list(PeerStore(path).peers) == [PID]  # the bad record is skipped, the good one kept


def test_px_codec_rejects_malformed_messages():
    good = encode_px_response([(PID, ["/ip4/127.0.0.1/tcp/1"])])
    assert decode_px_response(good) == [(PID, ["/ip4/127.0.0.1/tcp/1"])]
    for bad in [
        codec.encode({"peers": []}),
        codec.encode([[PID]]),
        codec.encode([[PID, ["/ip4/127.0.0.1/udp/1"]]]),
        codec.encode([["nope", []]]),
        codec.encode([[PID, ["/ip4/127.0.0.1/tcp/1"] * 9]]),
        b"\xff",
    ]:
        with pytest.raises(PeerStoreError):
            decode_px_response(bad)
    with pytest.raises(Refused):
        decode_px_request(codec.encode(["/dns4/x/udp/1"]))
    assert decode_px_request(codec.encode(["/ip4/127.0.0.1/tcp/9"])) == ["/ip4/127.0.0.1/tcp/9"]


def test_public_addrs_expand_the_wildcard():
    addrs = public_addrs([f"/ip4/0.0.0.0/tcp/4001/p2p/{PID}", f"/ip4/10.1.2.3/tcp/4001/p2p/{PID}"])
    assert f"/ip4/127.0.0.1/tcp/4001/p2p/{PID}" in addrs and f"/ip4/10.1.2.3/tcp/4001/p2p/{PID}" in addrs
    assert not any("0.0.0.0" in a for a in addrs)


def _status() -> Status:
    return Status("testnet", b"\x01" * 32, 0, b"\x00" * 32, 0, 0, False)


async def test_nodes_given_one_bootstrap_find_each_other_and_persist_peers(tmp_path):
    fast = DiscoveryConfig(target_peers=8, interval=0.2, px_interval=0.5, dht_interval=2.0)
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            boot = await stack.enter_async_context(
                open_stack(create_new_key_pair(), home=tmp_path / "boot", discovery=fast)
            )
            boot_addr = str(boot.host.addrs[0])
            nodes = []
            for i in range(3):
                nodes.append(
                    await stack.enter_async_context(
                        open_stack(
                            create_new_key_pair(),
                            chain_id="testnet",
                            status_fn=_status,
                            bootstrap=[boot_addr],
                            home=tmp_path / f"n{i}",
                            discovery=fast,
                        )
                    )
                )
            ids = {n.host.peer_id for n in nodes}
            with trio.fail_after(45):
                while not all(set(n.handshake.statuses) == ids - {n.host.peer_id} for n in nodes):
                    await trio.sleep(0.1)
            for n in nodes:
                # The bootstrap does not speak the chain's status protocol: discovery-only, never a chain peer.
                assert boot.host.peer_id not in n.handshake.statuses
                assert n.host.is_connected(boot.host.peer_id)
                assert n.metrics.requests_out["/tensornet/px/1"] >= 1
            assert boot.metrics.requests_in["/tensornet/px/1"] >= 3
        # On exit every node saved its address book: the other nodes are in it, with dialable addresses.
        for i in range(3):
            saved = PeerStore(tmp_path / f"n{i}" / "peers.json")
            others = {str(n.host.peer_id) for n in nodes} - {str(nodes[i].host.peer_id)}
            assert others <= set(saved.peers) and all(saved.peers[p].addrs for p in others)
            assert saved.peers[str(boot.host.peer_id)].bootstrap
