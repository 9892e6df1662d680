"""Relays for tests/node/test_slow_link.py: every validator's advertised p2p port, so that every connection that
touches one chosen node (the slow one) crosses a rate-capped relay (node.testnet.netns_relay) and no other does.

On one loopback a relay sees every dialer as 127.0.0.1, so it asks the kernel who dialed: the dialer's socket
(local port = the accepted connection's peer port) is found in /proc/net/tcp, and it is the slow node's when
that process holds its inode. Connections into the slow node's own port are all slow. Linux only, like the test.

`python -m tests.node.slow_link_relay --route 31000:31004 ... --slow-port 31000 --slow-pid PID --rate-kib 384`
serves until killed and logs one line per connection ("slow"/"fast", the port it came to) on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
from functools import partial
from pathlib import Path

import trio

from node.testnet.netns_relay import Impairment, like_a_wan, relay_connection

ESTABLISHED = "01"


def _established() -> list[tuple[int, int, str]]:
    """(local port, remote port, inode) of every established IPv4 connection, from /proc/net/tcp."""
    out = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == ESTABLISHED:
            out.append((int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16), f[9]))
    return out


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process `pid` holds open (empty once it is gone)."""
    out = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    out.add(target[8:-1])
    return out


def tcp_links(pid: int) -> list[tuple[int, int]]:
    """(local port, remote port) of every established IPv4 connection of process `pid`."""
    mine = socket_inodes(pid)
    return [(local, remote) for local, remote, inode in _established() if inode in mine]


def dialed_by(pid: int, peer_port: int, to_port: int) -> bool:
    """Whether process `pid` holds the dialing end (local `peer_port`, remote `to_port`) of a connection."""
    mine = socket_inodes(pid)
    return any(local == peer_port and remote == to_port and inode in mine for local, remote, inode in _established())


class Counted(trio.abc.HalfCloseableStream):
    """The dialer's side of a relayed connection, counting bytes each way for the relay's log."""

    def __init__(self, inner: trio.SocketStream, name: str) -> None:
        self.inner, self.name = inner, name
        self.up = self.down = 0  # dialer -> listener, listener -> dialer

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.inner.receive_some(max_bytes)
        self.up += len(data)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)
        self.down += len(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


LIVE: set[Counted] = set()


def _log(text: str) -> None:
    print(f"{trio.current_time():9.1f} {text}", file=sys.stderr, flush=True)


async def _report_every(seconds: float) -> None:
    """Bytes so far per live connection: shows which direction of which link moves, and when."""
    while True:
        await trio.sleep(seconds)
        for c in sorted(LIVE, key=lambda c: c.name):
            _log(f"  {c.name}: up {c.up >> 10} KiB, down {c.down >> 10} KiB")


async def _serve_route(listen: int, to: int, slow_port: int, slow_pid: int, slow: Impairment, fast: Impairment,
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    async def one(stream: trio.SocketStream, imp_for: dict[bool, Impairment]) -> None:
        peer_port = stream.socket.getpeername()[1]
        is_slow = listen == slow_port or dialed_by(slow_pid, peer_port, listen)
        counted = Counted(stream, f"{'slow' if is_slow else 'fast'} :{peer_port}->:{listen}")
        _log(f"{'slow' if is_slow else 'fast'} connection to :{listen} from :{peer_port}")
        LIVE.add(counted)
        try:
            await relay_connection(counted, ("127.0.0.1", to), imp_for[is_slow])
        finally:
            LIVE.discard(counted)
            _log(f"closed {counted.name}: up {counted.up >> 10} KiB, down {counted.down >> 10} KiB")

    # which connection will be slow is known only after accept: every listener gets the slow link's socket
    # options (they must be set before the handshake); a fast connection is merely relayed in small segments
    listeners = await trio.open_tcp_listeners(listen, host="127.0.0.1")
    for lst in listeners:
        like_a_wan(lst.socket)
    task_status.started()
    await trio.serve_listeners(partial(one, imp_for={True: slow, False: fast}), listeners)


async def serve(routes: list[tuple[int, int]], slow_port: int, slow_pid: int, rate: float) -> None:
    slow = Impairment(0.0, 0.0, random.Random(0), rate)
    fast = Impairment(0.0, 0.0, random.Random(0))
    async with trio.open_nursery() as nursery:
        for listen, to in routes:
            await nursery.start(_serve_route, listen, to, slow_port, slow_pid, slow, fast)
        nursery.start_soon(_report_every, 5.0)
        _log("relaying")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.node.slow_link_relay", description=__doc__.splitlines()[0])
    p.add_argument("--route", action="append", required=True, help="LISTEN_PORT:TO_PORT on 127.0.0.1")
    p.add_argument("--slow-port", type=int, required=True, help="the slow node's advertised port")
    p.add_argument("--slow-pid", type=int, required=True, help="the slow node's process")
    p.add_argument("--rate-kib", type=float, required=True)
    a = p.parse_args(argv)
    routes = [(int(r.split(":")[0]), int(r.split(":")[1])) for r in a.route]
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve, routes, a.slow_port, a.slow_pid, a.rate_kib * 1024)


if __name__ == "__main__":
    main()
