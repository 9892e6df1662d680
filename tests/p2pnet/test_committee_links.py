"""Committee connectivity with real hosts on loopback: protected peers are redialled after a ban's
cool-off or a lost connection, idle peers that answer pings are kept, and a frozen peer's connection
is closed as a zombie and re-established once the peer runs again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from p2pnet.discovery import DiscoveryConfig
from p2pnet.limits import Limits
from p2pnet.stack import Stack, open_stack

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0  # generous bound per step on a loaded machine; never a timing assertion

# No target peers and no bootstraps: only the keeper dials, so every reconnection below is its work.
QUIET = DiscoveryConfig(target_peers=0, dht=False, ping_interval=0.5, zombie_timeout=3.0)


@asynccontextmanager
async def stacks(n: int, limits: Limits | None = None) -> AsyncIterator[list[Stack]]:
    async with AsyncExitStack() as es:
        yield [
            await es.enter_async_context(open_stack(create_new_key_pair(), discovery=QUIET, limits=limits))
            for _ in range(n)
        ]


async def wait_until(cond, what: str, timeout: float = WAIT) -> None:
    with trio.move_on_after(timeout):
        while not cond():
            await trio.sleep(0.05)
    assert cond(), f"timed out waiting for: {what}"


def protect(a: Stack, b: Stack) -> None:
    a.set_protected({str(b.host.peer_id): [str(x) for x in b.host.addrs]})


async def test_keeper_dials_protected_peers_and_redials_after_a_ban_cool_off():
    async with stacks(2, Limits(ban_seconds=600.0, protected_ban_seconds=1.0)) as (a, b):
        protect(a, b)
        await wait_until(lambda: a.host.is_connected(b.host.peer_id), "first connection to the protected peer")
        for _ in range(5):  # corrupt frames: a ban, but only the cool-off for a committee member
            a.host.limiter.penalize(str(b.host.peer_id), "malformed")
        assert a.host.limiter.is_banned(str(b.host.peer_id))
        await wait_until(lambda: not a.host.is_connected(b.host.peer_id), "banned peer disconnected")
        await wait_until(lambda: a.host.is_connected(b.host.peer_id), "protected peer redialled after its cool-off")
        assert not a.host.limiter.is_banned(str(b.host.peer_id))
        assert a.host.limiter.bans == 1


async def test_keeper_redials_a_protected_peer_whose_connection_was_closed():
    async with stacks(3) as (a, b, c):
        a.set_protected({str(s.host.peer_id): [str(x) for x in s.host.addrs] for s in (a, b, c)})  # self skipped
        assert a.discovery.protected == {str(b.host.peer_id), str(c.host.peer_id)}
        for peer in (b, c):
            await wait_until(lambda p=peer: a.host.is_connected(p.host.peer_id), "protected peers connected")
        await b.host.disconnect(a.host.peer_id)  # the other side drops us
        await wait_until(lambda: a.host.is_connected(b.host.peer_id) and b.host.is_connected(a.host.peer_id),
                         "reconnected after the remote closed the connection")
        a.set_protected({})  # no longer protected: a closed connection stays closed
        await a.host.disconnect(c.host.peer_id)
        await trio.sleep(2.0)  # four keeper passes; a negative check, so no deadline is being asserted
        assert not a.host.is_connected(c.host.peer_id)


async def test_an_idle_peer_that_answers_pings_is_kept():
    async with stacks(2) as (a, b):
        peer = await a.host.connect(b.host.addrs[0])
        await trio.sleep(3 * QUIET.zombie_timeout)  # several zombie timeouts without any application traffic
        assert a.host.is_connected(peer) and b.host.is_connected(a.host.peer_id)
        assert a.metrics.disconnects["zombie"] == 0 and b.metrics.disconnects["zombie"] == 0


async def test_a_frozen_peer_is_dropped_as_a_zombie_and_redialled_when_it_runs_again(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TENSORNET_LOG_LEVEL="warning")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.p2pnet.node_proc", "--home", str(tmp_path / "b"), "--target", "0"],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        import json

        ready = json.loads(await trio.to_thread.run_sync(proc.stdout.readline))
        async with stacks(1) as (a,):
            a.set_protected({ready["peer_id"]: [ready["addr"]]})
            await wait_until(lambda: a.host.is_connected(ready["peer_id"]), "connected to the child")
            proc.send_signal(signal.SIGSTOP)  # the socket stays open in the kernel: libp2p still lists it
            try:
                await wait_until(lambda: not a.host.is_connected(ready["peer_id"]), "zombie connection closed")
                assert a.metrics.disconnects["zombie"] >= 1
            finally:
                proc.send_signal(signal.SIGCONT)
            await wait_until(lambda: a.host.is_connected(ready["peer_id"]), "redialled once the peer runs again")
            await trio.sleep(2 * QUIET.zombie_timeout)
            assert a.host.is_connected(ready["peer_id"])  # and the fresh connection is healthy, not dropped again
    finally:
        proc.kill()
        proc.wait(timeout=10)
