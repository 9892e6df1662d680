"""A userspace TCP relay that adds delay and loss where the kernel has no netem (spec/testnet.md §6).

In a namespace testnet each node listens on its namespace's loopback only, and this relay listens on
the namespace's address in its place, so every p2p connection between hosts crosses exactly one relay
(the listener's) and each direction waits `delay` there: one hop costs `delay`, a round trip twice that.
TCP never loses bytes, so a loss is what TCP makes of it: the chunk arrives one retransmission timeout
late (RTO_S, Linux's minimum RTO, plus a round trip), and everything behind it waits too.

Run inside a namespace: `python -m node.netns_relay --listen IP:PORT --to 127.0.0.1:PORT --delay-ms 20
--loss 0.01`. It serves until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random

import trio

RTO_S = 0.2
CHUNK = 64 * 1024


def hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class Impairment:
    """When a chunk read now may be written: after `delay_s`, plus a retransmission with probability `loss`."""

    def __init__(self, delay_s: float, loss: float, rng: random.Random) -> None:
        if delay_s < 0 or not 0 <= loss < 1:
            raise ValueError("delay must be >= 0 and loss in [0, 1)")
        self.delay_s = delay_s
        self.loss = loss
        self.rng = rng

    def due(self, now: float, previous: float) -> float:
        at = now + self.delay_s
        if self.loss and self.rng.random() < self.loss:
            at += RTO_S + 2 * self.delay_s
        return max(at, previous)  # in order, like one TCP stream


async def _pipe(src: trio.SocketStream, dst: trio.SocketStream, imp: Impairment) -> None:
    """Copy src to dst, each chunk released at its due time; EOF is passed on after the last chunk."""
    send, recv = trio.open_memory_channel[tuple[float, bytes]](math.inf)

    async def reader() -> None:
        last = 0.0
        async with send:
            while data := await src.receive_some(CHUNK):
                last = imp.due(trio.current_time(), last)
                await send.send((last, data))

    async def writer() -> None:
        async with recv:
            async for due, data in recv:
                await trio.sleep_until(due)
                await dst.send_all(data)
        await dst.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        nursery.start_soon(writer)


async def _connection(inbound: trio.SocketStream, to: tuple[str, int], imp: Impairment) -> None:
    """Relay one connection; a reset or refusal on either side ends it, never the relay."""
    try:
        async with inbound:
            outbound = await trio.open_tcp_stream(*to)
            async with outbound, trio.open_nursery() as nursery:
                nursery.start_soon(_pipe, inbound, outbound, imp)
                nursery.start_soon(_pipe, outbound, inbound, imp)
    except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # the peer went away (killed node, partition): as a TCP middlebox, drop the connection


async def serve(listen: tuple[str, int], to: tuple[str, int], imp: Impairment,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Accept on `listen` and relay each connection to `to` until cancelled."""
    listeners = await trio.open_tcp_listeners(listen[1], host=listen[0])
    task_status.started()
    await trio.serve_listeners(lambda s: _connection(s, to, imp), listeners)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m node.netns_relay", description=__doc__.splitlines()[0])
    p.add_argument("--listen", required=True, type=hostport, help="HOST:PORT to accept on")
    p.add_argument("--to", required=True, type=hostport, help="HOST:PORT to relay to")
    p.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay per direction")
    p.add_argument("--loss", type=float, default=0.0, help="fraction of chunks that take a retransmission")
    p.add_argument("--seed", type=int, default=None, help="loss draws are repeatable with a seed")
    a = p.parse_args(argv)
    imp = Impairment(a.delay_ms / 1000, a.loss, random.Random(a.seed))
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve, a.listen, a.to, imp)


if __name__ == "__main__":
    main()
