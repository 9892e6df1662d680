"""The host wrapper and node key, on real libp2p hosts over loopback."""

from __future__ import annotations

import os
import stat

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.network.stream.exceptions import StreamClosed, StreamReset

from p2pnet.errors import ConfigError, DialError, NodeKeyError, PeerBanned, StreamOpenError
from p2pnet.host import open_host
from p2pnet.nodekey import FILE_NAME, load_node_key, load_or_create_node_key, peer_id_of, write_node_key
from tests.p2pnet.conftest import ECHO, running_host, running_hosts

# --- node key ------------------------------------------------------------------------------------


def test_node_key_created_0600_and_stable(tmp_path):
    home = tmp_path / "home"
    first = load_or_create_node_key(home)
    path = home / FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_node_key(home)
    assert peer_id_of(first) == peer_id_of(again)
    assert first.private_key.to_bytes() == again.private_key.to_bytes()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o666])
def test_node_key_with_loose_permissions_refused(tmp_path, mode):
    load_or_create_node_key(tmp_path)
    path = tmp_path / FILE_NAME
    os.chmod(path, mode)
    with pytest.raises(NodeKeyError, match="chmod 600"):
        load_or_create_node_key(tmp_path)


@pytest.mark.parametrize("content", ["zz" * 32, "ab" * 31, "", "ab" * 33])
def test_node_key_malformed_refused(tmp_path, content):
    path = tmp_path / FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content.encode())
    os.close(fd)
    with pytest.raises(NodeKeyError):
        load_node_key(path)


def test_node_key_written_seed_round_trips(tmp_path):
    seed = bytes(range(32))
    write_node_key(tmp_path / FILE_NAME, seed)
    assert load_node_key(tmp_path / FILE_NAME).private_key.to_bytes() == seed
    with pytest.raises(NodeKeyError):
        write_node_key(tmp_path / "short", b"x" * 5)


# --- host ------------------------------------------------------------------------------------------


async def test_connect_stream_echo_and_peers():
    async with running_hosts(2) as (a, b):
        assert str(a.addrs[0]).endswith(f"/p2p/{a.peer_id}")
        peer = await b.connect(str(a.addrs[0]))
        assert peer == a.peer_id
        assert a.peer_id in b.peers()
        with trio.fail_after(10):
            while b.peer_id not in a.peers():
                await trio.sleep(0.01)
        stream = await b.new_stream(str(a.peer_id), [ECHO])
        await stream.write(b"hello")
        assert await stream.read(64) == b"hello"
        await b.disconnect(a.peer_id)
        with trio.fail_after(10):
            while a.peer_id in b.peers() or b.peer_id in a.peers():
                await trio.sleep(0.01)


async def test_bad_addresses_and_ids_are_typed_errors(keypair):
    async with running_host() as a:
        with pytest.raises(ConfigError):
            await a.connect("not a multiaddr")
        with pytest.raises(DialError, match="/p2p/"):
            await a.connect("/ip4/127.0.0.1/tcp/1")
        with pytest.raises(DialError, match="itself"):
            await a.connect(a.addrs[0])
        with pytest.raises(DialError):
            await a.new_stream("definitely-not-a-peer-id", [ECHO])
        with pytest.raises(ConfigError):
            await a.new_stream(a.peer_id, [])
        # a port with nothing listening: a DialError, promptly
        sock = trio.socket.socket()
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        other = peer_id_from(keypair)
        with pytest.raises(DialError):
            await a.connect(f"/ip4/127.0.0.1/tcp/{port}/p2p/{other}", deadline=5)


def peer_id_from(kp):
    from p2pnet.nodekey import peer_id_of

    return peer_id_of(kp)


async def test_new_stream_unsupported_protocol_is_stream_open_error():
    async with running_hosts(2) as (a, b):
        await b.connect(a.addrs[0])
        with pytest.raises(StreamOpenError):
            await b.new_stream(a.peer_id, ["/tn/nobody-serves-this/1"], deadline=5)


async def test_external_addrs_are_announced(keypair):
    async with open_host(keypair, external_addrs=["/ip4/203.0.113.7/tcp/4001"]) as h:
        assert [str(a) for a in h.addrs] == [f"/ip4/203.0.113.7/tcp/4001/p2p/{h.peer_id}"]


async def test_unusable_listen_address_is_config_error(keypair):
    with pytest.raises(ConfigError):
        async with open_host(keypair, listen=["/ip4/203.0.113.7/tcp/0"]):
            pass
    with pytest.raises(ConfigError):
        async with open_host(keypair, listen=[]):
            pass


async def test_banned_peer_is_disconnected_and_refused():
    async with running_hosts(2) as (a, b):
        await b.connect(a.addrs[0])
        with trio.fail_after(10):
            while b.peer_id not in a.peers():
                await trio.sleep(0.01)
        a.limiter.ban(str(b.peer_id), seconds=600)
        with trio.fail_after(10):
            while b.peer_id in a.peers():
                await trio.sleep(0.01)
        with pytest.raises(PeerBanned):
            await a.connect(b.addrs[0])
        # the banned peer dialling in gets a connection refused after the handshake, and no service
        with pytest.raises((DialError, StreamOpenError)):
            await b.connect(a.addrs[0], deadline=5)
            await b.new_stream(a.peer_id, [ECHO], deadline=5)
        assert a.limiter.rejects["banned"] >= 1


async def test_too_many_streams_from_one_peer_refused():
    from p2pnet.limits import Limits

    gate = trio.Event()
    async with running_host(Limits(max_streams_per_peer=2)) as a, running_host() as b:

        async def hold(stream):
            await gate.wait()
            await stream.close()

        a.set_stream_handler("/tn/test/hold/1", hold)
        await b.connect(a.addrs[0])
        held = [await b.new_stream(a.peer_id, ["/tn/test/hold/1"]) for _ in range(2)]
        for s in held:
            await s.write(b"x")
        with trio.fail_after(10):
            while a.limiter.streams(str(b.peer_id)) < 2:
                await trio.sleep(0.01)
        try:  # the third stream is refused: during negotiation or right after
            extra = await b.new_stream(a.peer_id, ["/tn/test/hold/1"])
            await extra.write(b"x")
        except (StreamOpenError, StreamReset, StreamClosed):
            pass
        with trio.fail_after(10):
            while a.limiter.rejects["too_many_streams"] < 1:
                await trio.sleep(0.01)
        gate.set()
        with trio.fail_after(10):
            while a.limiter.streams(str(b.peer_id)) > 0:
                await trio.sleep(0.01)


def test_keys_differ():
    assert peer_id_of(create_new_key_pair()) != peer_id_of(create_new_key_pair())
