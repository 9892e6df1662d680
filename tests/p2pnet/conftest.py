"""Shared helpers for p2p tests: real hardened hosts on loopback, an echo protocol, liveness checks."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from p2pnet.host import Host, open_host
from p2pnet.limits import Limits

ECHO = "/tn/test/echo/1"


async def echo_handler(stream) -> None:
    data = await stream.read(65536)
    await stream.write(data)
    await stream.close()


@asynccontextmanager
async def running_host(limits: Limits | None = None, **kwargs) -> AsyncIterator[Host]:
    """A hardened host on 127.0.0.1 serving the echo protocol."""
    async with open_host(create_new_key_pair(), limits=limits, **kwargs) as host:
        host.set_stream_handler(ECHO, echo_handler, framed=False)
        yield host


@asynccontextmanager
async def running_hosts(n: int, limits: Limits | None = None) -> AsyncIterator[list[Host]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(running_host(limits)) for _ in range(n)]


async def assert_serves(target: Host, deadline: float = 20.0) -> None:
    """A brand-new peer can connect to `target` and get an echo back: the host is alive for others."""
    with trio.fail_after(deadline):
        async with running_host() as fresh:
            peer = await fresh.connect(target.addrs[0])
            stream = await fresh.new_stream(peer, [ECHO])
            await stream.write(b"still-alive")
            assert await stream.read(64) == b"still-alive"
            await stream.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def trio_task_count() -> int:
    """Every live task under the root task (a leak of tasks shows up here)."""
    count = 0
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


@pytest.fixture
def keypair():
    return create_new_key_pair()
