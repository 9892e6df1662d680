"""A userspace TCP relay that adds delay and loss where the kernel has no netem (spec/testnet.md §6).

In a namespace testnet each node listens on its namespace's loopback only, and this relay listens on
the namespace's address in its place, so every p2p connection between hosts crosses exactly one relay
(the listener's) and each direction waits `delay` there: one hop costs `delay`, a round trip twice that.
TCP never loses bytes, so a loss is what TCP makes of it: the chunk arrives one retransmission timeout
late (RTO_S, Linux's minimum RTO, plus a round trip), and everything behind it waits too.
A rate cap (`--rate-kib`) makes each direction of each connection a link of that many KiB/s: a chunk
takes size/rate to cross, and the relay reads no faster than that, so the sender's writes block as on
a slow link instead of piling up in the relay.

Run inside a namespace: `python -m node.testnet.netns_relay --listen IP:PORT --to 127.0.0.1:PORT --delay-ms 20
--loss 0.01`. It serves until killed. Relaying works on plain loopback too (tests/node/test_slow_link.py).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import socket

import trio

RTO_S = 0.2
CHUNK = 64 * 1024
RCVBUF = 64 * 1024  # under a rate cap, what the kernel may hold for the relay per socket
MSS = 1460  # under a rate cap, TCP segments as on Ethernet
RATE_CHUNK = 16 * 1024  # reads under a rate cap: small, so a write is paced smoothly rather than in bursts


def hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class Impairment:
    """When a chunk read now may be written: after `delay_s`, plus a retransmission with probability `loss`,
    plus its transmission time `size / rate` behind the chunk ahead of it (`rate` bytes/s; 0: no cap)."""

    def __init__(self, delay_s: float, loss: float, rng: random.Random, rate: float = 0.0) -> None:
        if delay_s < 0 or not 0 <= loss < 1 or rate < 0:
            raise ValueError("delay and rate must be >= 0 and loss in [0, 1)")
        self.delay_s = delay_s
        self.loss = loss
        self.rng = rng
        self.rate = rate

    def due(self, now: float, previous: float, size: int = 0) -> float:
        at = now + self.delay_s
        if self.loss and self.rng.random() < self.loss:
            at += RTO_S + 2 * self.delay_s
        at = max(at, previous)  # in order, like one TCP stream
        return at + size / self.rate if self.rate else at

    def sent(self, due: float) -> float:
        """When the sender may put the next chunk on the link: once this one (due at `due`) left it."""
        return due - self.delay_s if self.rate else 0.0


async def _pipe(src: trio.abc.HalfCloseableStream, dst: trio.abc.HalfCloseableStream, imp: Impairment) -> None:
    """Copy src to dst, each chunk released at its due time; EOF is passed on after the last chunk."""
    send, recv = trio.open_memory_channel[tuple[float, bytes]](math.inf)

    async def reader() -> None:
        last = 0.0
        async with send:
            while data := await src.receive_some(RATE_CHUNK if imp.rate else CHUNK):
                last = imp.due(trio.current_time(), last, len(data))
                await send.send((last, data))
                await trio.sleep_until(imp.sent(last))  # under a cap, TCP backpressure reaches the sender

    async def writer() -> None:
        async with recv:
            async for due, data in recv:
                await trio.sleep_until(due)
                await dst.send_all(data)
        await dst.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        nursery.start_soon(writer)


def like_a_wan(sock: trio.socket.SocketType) -> None:
    """Under a rate cap, set before the handshake: a small receive buffer and an Ethernet-sized segment.
    Loopback's 64 KiB segments let the sender's kernel grow a multi-MiB send buffer that would swallow
    whole blocks and hide the slow link from the writer."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS)


async def _open(to: tuple[str, int], imp: Impairment) -> trio.SocketStream:
    if not imp.rate:
        return await trio.open_tcp_stream(*to)
    sock = trio.socket.socket(trio.socket.AF_INET6 if ":" in to[0] else trio.socket.AF_INET)
    try:
        like_a_wan(sock)
        await sock.connect(to)
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def relay_connection(inbound: trio.abc.HalfCloseableStream, to: tuple[str, int], imp: Impairment) -> None:
    """Relay one connection; a reset or refusal on either side ends it, never the relay."""
    try:
        async with inbound:
            outbound = await _open(to, imp)
            async with outbound, trio.open_nursery() as nursery:
                nursery.start_soon(_pipe, inbound, outbound, imp)
                nursery.start_soon(_pipe, outbound, inbound, imp)
    except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # the peer went away (killed node, partition): as a TCP middlebox, drop the connection


async def serve(listen: tuple[str, int], to: tuple[str, int], imp: Impairment,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Accept on `listen` and relay each connection to `to` until cancelled."""
    listeners = await trio.open_tcp_listeners(listen[1], host=listen[0])
    if imp.rate:  # accepted sockets inherit these, before their handshake
        for listener in listeners:
            like_a_wan(listener.socket)
    task_status.started()
    await trio.serve_listeners(lambda s: relay_connection(s, to, imp), listeners)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m node.testnet.netns_relay", description=__doc__.splitlines()[0])
    p.add_argument("--listen", required=True, type=hostport, help="HOST:PORT to accept on")
    p.add_argument("--to", required=True, type=hostport, help="HOST:PORT to relay to")
    p.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay per direction")
    p.add_argument("--loss", type=float, default=0.0, help="fraction of chunks that take a retransmission")
    p.add_argument("--seed", type=int, default=None, help="loss draws are repeatable with a seed")
    p.add_argument("--rate-kib", type=float, default=0.0, help="bandwidth cap per direction per connection (KiB/s)")
    a = p.parse_args(argv)
    imp = Impairment(a.delay_ms / 1000, a.loss, random.Random(a.seed), a.rate_kib * 1024)
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve, a.listen, a.to, imp)


if __name__ == "__main__":
    main()
