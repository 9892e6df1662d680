"""Gossip throughput: N nodes, each its own process on loopback, swept over publish rates.

    python -m bench.gossip --json [--nodes 8] [--rates 10,20,...] [--seconds 2]

For each rate (messages/s published by the whole network, spread over every node) it reports the
delivery ratio, deliveries/s, latency p50/p99 (send to delivery, one machine clock), how far the
publishers ended behind their schedule (`publish_behind_s`: p2pnet's publish() waits while a peer's
queue is over half full, which is the network pushing back), the drops counted by every node
(`drops`: libp2p's outbound queues, our delivery queues, the limiter), and late deliveries (`late`:
arrived after the rate was scored). After each rate the bench waits until every message arrived or
none arrived for 3 s (at most 20 s), so each rate starts on a drained network and "lost" means lost.

The same sweep runs twice in one invocation: with p2pnet's tuned GossipSub (p2pnet.gossip.open_gossip)
and with py-libp2p's DEFAULT GossipSub settings as the baseline. The baseline keeps every libp2p
default (spam protection at 10 msg/s per forwarder and topic, 32-entry queues, sender+seqno ids,
validation cache) except the heartbeat, which is 1 s instead of 120 s so its mesh forms within the
run at all; both use the same hardened host, including p2pnet.tuning's process-wide host-level patches
(yamux credit in half-window batches, the cached signed peer record), so the baseline is not slowed by costs
we removed below GossipSub. A rate is lossless when every message was published on
schedule (at most MAX_BEHIND late) and delivered to every other node; `lossless_max_rate` is the
highest rate up to which every swept rate was lossless (a lower bound when `capped`). A sweep stops
after two clearly failed rates, so a run takes a few minutes. The load average is printed with the
figures: on a shared machine they measure contention as much as gossip.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub import rpc_queue
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from p2pnet import hardening
from p2pnet.gossip import Verdict, open_gossip, topic_name
from p2pnet.host import open_host

ROOT = Path(__file__).resolve().parents[1]
MSG_SIZE = 300
HEADER = struct.Struct(">IHIq")  # round, origin, seq, send time (ns)
DEFAULT_RATES = (10, 20, 40, 80, 160, 320, 640, 1280)
MAX_BEHIND = 0.5  # seconds a publisher may end behind its schedule for the rate to count as achieved
CHAIN = "bench"


# --- child process --------------------------------------------------------------------------------


def _out(obj: dict) -> None:
    """One JSON event line to the parent."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class _Commands:
    """The parent's JSON commands to a child, one a line on stdin."""

    def __init__(self) -> None:
        self.stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        self.buf = b""

    async def next(self) -> dict | None:
        """The next command; None once the parent closed stdin."""
        while b"\n" not in self.buf:
            chunk = await self.stdin.receive_some(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


async def _publish_round(cmd: dict, index: int, publish: Callable[[bytes], Awaitable[None]]) -> None:
    """Publish `count` messages at `rate`/s from `offset` on; report how many went out and how late."""
    rnd, rate, count = cmd["round"], cmd["rate"], cmd["count"]
    start = trio.current_time() + cmd.get("offset", 0.0)
    sent = 0
    for seq in range(count):
        await trio.sleep_until(start + seq / rate)
        body = HEADER.pack(rnd, index, seq, time.time_ns())
        try:
            await publish(body + b"\x00" * (MSG_SIZE - len(body)))
            sent += 1
        except Exception as exc:  # a refused publish counts as not sent, and is reported
            _out({"event": "publish_error", "error": repr(exc)})
    # how far behind its schedule the last publish finished (publish() waits when
    # the peers' queues are over half full: that is the network pushing back)
    behind = trio.current_time() - (start + (count - 1) / rate)
    _out({"event": "sent", "sent": sent, "behind_s": behind})


async def child(mode: str, index: int) -> None:
    """One bench node: a host with `mode`'s gossip, driven by the parent's commands on stdin."""
    topic = topic_name(CHAIN, "blocks")
    received: dict[int, list[int]] = {}  # round -> latencies (us)

    def record(data: bytes) -> None:
        rnd, _origin, _seq, sent = HEADER.unpack_from(data)
        received.setdefault(rnd, []).append((time.time_ns() - sent) // 1000)

    async with open_host(create_new_key_pair()) as host:
        if mode == "tuned":
            gossip_cm = open_gossip(host, CHAIN)
        else:
            gossip_cm = _default_pubsub(host)
        async with gossip_cm as g, trio.open_nursery() as nursery:
            if mode == "tuned":
                channel = await g.subscribe(topic, lambda peer, data: Verdict.ACCEPT)

                async def consume() -> None:
                    async for msg in channel:
                        record(msg.data)

                async def publish(data: bytes) -> None:
                    await g.publish(topic, data)

                def mesh() -> int:
                    return len(g.mesh_peers(topic))
            else:
                sub = await g.subscribe(topic)
                me = host.peer_id.to_bytes()

                async def consume() -> None:
                    while True:
                        msg = await sub.get()
                        if msg.from_id != me:
                            record(msg.data)

                async def publish(data: bytes) -> None:
                    await g.publish(topic, data)

                def mesh() -> int:
                    return len(g.router.mesh.get(topic, ()))

            pubsub = g.pubsub if mode == "tuned" else g

            def diag() -> dict:
                d = {
                    "pubsub_peers": len(pubsub.peers),
                    "mesh": mesh(),
                    "conns": len(host.peers()),
                    "dropped_rpcs": sum(hardening.DROPPED_RPCS.values()),
                    "limiter": host.limiter.snapshot(),
                }
                if mode == "tuned":
                    d["drops"] = dict(g.metrics.drops)
                return d

            nursery.start_soon(consume)
            _out({"event": "ready", "addr": str(host.addrs[0])})
            commands = _Commands()
            while (cmd := await commands.next()) is not None:
                if cmd["cmd"] == "connect":
                    for addr in cmd["addrs"]:
                        await host.connect(addr)
                    _out({"event": "connected"})
                elif cmd["cmd"] == "mesh":
                    _out({"event": "mesh", "mesh": mesh(), "peers": len(host.peers())})
                elif cmd["cmd"] == "round":
                    await _publish_round(cmd, index, publish)
                elif cmd["cmd"] == "report":
                    lat = received.get(cmd["round"], [])
                    _out({"event": "report", "count": len(lat), "lat": lat, "diag": diag()})
                elif cmd["cmd"] == "quit":
                    nursery.cancel_scope.cancel()
                    return
            nursery.cancel_scope.cancel()


def _default_pubsub(host):
    """py-libp2p's GossipSub with its default settings (heartbeat 1 s, see the module docstring)."""
    # p2pnet.hardening enlarges libp2p's queues process-wide; the baseline gets libp2p's own again.
    pubsub_module.RpcQueue = rpc_queue.RpcQueue
    pubsub_module.SUBSCRIPTION_CHANNEL_SIZE = 32

    @asynccontextmanager
    async def run():
        router = GossipSub(protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11], degree=6, degree_low=4, degree_high=12,
                           heartbeat_interval=1)
        pubsub = Pubsub(host.libp2p, router)
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            yield pubsub

    return run()


# --- parent -----------------------------------------------------------------------------------------


class Proc:
    def __init__(self, mode: str, index: int) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), TENSORNET_LOG_LEVEL="error")
        self.p = subprocess.Popen(
            [sys.executable, "-m", "bench.gossip", "--child", mode, "--index", str(index)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.q: queue.Queue[dict] = queue.Queue()
        self.errors: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.p.stdout:
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if obj.get("event") == "publish_error":
                self.errors.append(obj["error"])
            else:
                self.q.put(obj)

    def send(self, **cmd) -> None:
        self.p.stdin.write((json.dumps(cmd) + "\n").encode())
        self.p.stdin.flush()

    def wait(self, event: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            obj = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            if obj.get("event") == event:
                return obj

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=10)


def _pct(values: list[int], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] / 1000.0


def _poll(procs: list[Proc], rnd: int) -> tuple[list[int], list[dict]]:
    """Every node's latencies for round `rnd` so far, and its diagnostics (peers, mesh, drop counters)."""
    lat: list[int] = []
    diags: list[dict] = []
    for p in procs:
        p.send(cmd="report", round=rnd)
        rep = p.wait("report")
        lat += rep["lat"]
        diags.append(rep["diag"])
    return lat, diags


def _failed(result: dict) -> bool:
    """Clearly beyond capacity: a tenth of the deliveries missing, or publishers a whole period late."""
    return result["delivery_ratio"] < 0.9 or result["publish_behind_s"] > 2 * MAX_BEHIND + 2.0


def _drops(diags: list[dict]) -> dict[str, int]:
    """Every drop counter of every node, summed: libp2p's outbound queues, our delivery queues, the limiter."""
    total: dict[str, int] = {}
    for d in diags:
        items = [("peer_queue_rpcs", d["dropped_rpcs"])]
        items += [(f"metrics:{k}", v) for k, v in d.get("drops", {}).items()]
        items += [(f"limiter:{k}", v) for k, v in d["limiter"]["drops"].items()]
        items += [(f"violation:{k}", v) for k, v in d["limiter"]["violations"].items()]
        for k, v in items:
            total[k] = total.get(k, 0) + v
    return total


def sweep(
    mode: str,
    n: int,
    rates: list[int],
    seconds: float,
    settle: float = 0.5,
    quiet: float = 3.0,
    max_settle: float = 20.0,
) -> dict:
    """Start `n` nodes of `mode`, then measure each rate in turn (stopping after two clear failures)."""
    procs = [Proc(mode, i) for i in range(n)]
    try:
        _connect(procs)
        results: list[dict] = []
        drops_before = _drops(_poll(procs, 0)[1])
        for rnd, rate in enumerate(rates, start=1):
            result, drops_before = _measure_rate(procs, rnd, rate, seconds, drops_before, settle, quiet, max_settle)
            results.append(result)
            print(f"[{mode}] {result}", file=sys.stderr, flush=True)
            if len(results) >= 2 and all(_failed(r) for r in results[-2:]):
                break  # two clearly failed rates in a row: higher ones only add minutes
        # Deliveries that came after their round was counted: late, not lost.
        for rnd, result in enumerate(results, start=1):
            result["late"] = len(_poll(procs, rnd)[0]) - result["delivered"]
        return _summary(mode, n, rates, results)
    finally:
        _stop(procs)


def _connect(procs: list[Proc]) -> None:
    """Wire the nodes up and wait (at most 30 s) until every node has a gossip mesh."""
    n = len(procs)
    addrs = [p.wait("ready")["addr"] for p in procs]
    # Each node dials up to 3 earlier ones: a connected graph with several paths, not a full mesh.
    for i, p in enumerate(procs):
        targets = [addrs[j] for j in range(max(0, i - 3), i)]
        p.send(cmd="connect", addrs=targets)
        p.wait("connected")
    deadline = time.monotonic() + 30
    while True:
        meshes = []
        for p in procs:
            p.send(cmd="mesh")
            meshes.append(p.wait("mesh")["mesh"])
        if min(meshes) >= min(2, n - 1) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    time.sleep(1.5)  # one more heartbeat so the mesh is settled


def _measure_rate(
    procs: list[Proc],
    rnd: int,
    rate: int,
    seconds: float,
    drops_before: dict[str, int],
    settle: float,
    quiet: float,
    max_settle: float,
) -> tuple[dict, dict[str, int]]:
    """Round `rnd`: publish at `rate` for `seconds`, wait for the deliveries, and score it; also the drop counters
    after it (the next round's baseline)."""
    n = len(procs)
    per_node = max(1, round(rate * seconds / n))
    for i, p in enumerate(procs):
        # Spread the publishers' start times so the total rate is even, not n-message bursts.
        p.send(cmd="round", round=rnd, rate=rate / n, count=per_node, offset=0.2 + i / rate)
    reports = [p.wait("sent", timeout=seconds * 10 + 60) for p in procs]
    sent = sum(r["sent"] for r in reports)
    behind = max(r["behind_s"] for r in reports)
    expected = sent * (n - 1)
    # Wait until every delivery arrived, or none arrived for `quiet` seconds (capped by
    # `max_settle`), so the next rate starts on a drained network and "lost" means lost.
    start = last_growth = time.monotonic()
    last = -1
    while True:
        time.sleep(settle)
        lat, diags = _poll(procs, rnd)
        now = time.monotonic()
        if len(lat) != last:
            last, last_growth = len(lat), now
        if len(lat) >= expected or now - last_growth >= quiet or now - start >= max_settle:
            break
    drops_now = _drops(diags)
    result = {
        "rate": rate,
        "published": per_node * n,
        "sent": sent,
        "publish_behind_s": round(behind, 2),
        "achieved_rate": round(per_node * n / (seconds + max(0.0, behind)), 1),
        "delivered": len(lat),
        "expected": expected,
        "delivery_ratio": round(len(lat) / expected, 4) if expected else 0.0,
        "deliveries_per_s": round(len(lat) / seconds, 1),
        "latency_p50_ms": _pct(lat, 0.50),
        "latency_p99_ms": _pct(lat, 0.99),
        "settle_s": round(time.monotonic() - start, 1),
        "drops": {k: v - drops_before.get(k, 0) for k, v in drops_now.items() if v != drops_before.get(k, 0)},
        "pubsub_peers_min": min(d["pubsub_peers"] for d in diags),
    }
    return result, drops_now


def _summary(mode: str, n: int, rates: list[int], results: list[dict]) -> dict:
    """The sweep's figures: every rate's result, and which rates were lossless."""
    # Lossless: every message published on schedule (the network did not make the publishers wait
    # more than MAX_BEHIND) and delivered to every other node.
    lossless = [
        r["rate"]
        for r in results
        if r["delivered"] == r["expected"] and r["sent"] == r["published"] and r["publish_behind_s"] <= MAX_BEHIND
    ]
    # The highest rate up to which every swept rate was lossless.
    top = 0
    for r in results:
        if r["rate"] not in lossless:
            break
        top = r["rate"]
    return {
        "mode": mode,
        "nodes": n,
        "results": results,
        "skipped_rates": rates[len(results):],
        "lossless_rates": lossless,
        "lossless_max_rate": top,
        "capped": bool(results) and top == rates[-1],
    }


def _stop(procs: list[Proc]) -> None:
    """Ask every node to quit, give each 5 s, then kill what is left."""
    for p in procs:
        try:
            p.send(cmd="quit")
        except OSError:
            pass
    for p in procs:
        try:
            p.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        p.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the result as JSON (always JSON today)")
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)))
    parser.add_argument("--baseline-rates", default=None, help="default: the same as --rates")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--settle", type=float, default=0.5, help="seconds between delivery polls")
    parser.add_argument("--child", choices=("tuned", "default"))
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        trio.run(child, args.child, args.index)
        return
    if args.nodes < 2:
        parser.error("--nodes must be at least 2")
    rates = [int(r) for r in args.rates.split(",")]
    base_rates = [int(r) for r in args.baseline_rates.split(",")] if args.baseline_rates else rates
    t0 = time.monotonic()
    load_start = os.getloadavg()
    baseline = sweep("default", args.nodes, base_rates, args.seconds, args.settle)
    tuned = sweep("tuned", args.nodes, rates, args.seconds, args.settle)
    b, t = baseline["lossless_max_rate"], tuned["lossless_max_rate"]
    print(
        json.dumps(
            {
                "bench": "gossip",
                "nodes": args.nodes,
                "message_bytes": MSG_SIZE,
                "seconds_per_rate": args.seconds,
                "figure": {"lossless_max_rate": t, "capped": tuned["capped"]},
                "baseline": {"lossless_max_rate": b, "capped": baseline["capped"]},
                "speedup": round(t / b, 2) if b else None,
                "tuned": tuned,
                "default": baseline,
                "wall_s": round(time.monotonic() - t0, 1),
                "loadavg_1m": {"start": round(load_start[0], 2), "end": round(os.getloadavg()[0], 2)},
                "cpus": os.cpu_count(),
            },
            indent=None if args.json else 1,
        )
    )


if __name__ == "__main__":
    main()
