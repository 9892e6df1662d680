"""A chain node in its own OS process, driven over stdin/stdout with JSON lines (multi-process tests).

    python -m tests.p2pnet.node_proc --home DIR --bootstrap ADDR [--chain testnet]

Prints {"event": "ready", "peer_id", "addr"} once up, {"event": "msg", "data": hex, "source"} for each
delivered gossip message, and answers commands read from stdin:
    {"cmd": "publish", "data": hex}  -> {"event": "published", "id": hex}
    {"cmd": "peers"}                 -> {"event": "peers", "peers": [...], "chain_peers": [...], "known": n}
    {"cmd": "quit"}                  -> exits 0 (so does SIGTERM, or stdin closing)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

import trio

from p2pnet.discovery import DiscoveryConfig
from p2pnet.gossip import Verdict
from p2pnet.nodekey import load_or_create_node_key
from p2pnet.stack import open_stack
from protocol.messages import Status

GENESIS = b"\x01" * 32


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    keypair = load_or_create_node_key(args.home)

    def status() -> Status:
        return Status(args.chain, GENESIS, 0, b"\x00" * 32, 0, 0, False)

    cfg = DiscoveryConfig(target_peers=args.target, interval=0.5, px_interval=2.0, dht_interval=5.0)
    async with open_stack(
        keypair,
        listen=[args.listen],
        chain_id=args.chain,
        status_fn=status,
        bootstrap=args.bootstrap,
        home=args.home,
        discovery=cfg,
    ) as st:
        assert st.gossip is not None and st.handshake is not None
        topic = st.gossip.topic("blocks")
        channel = await st.gossip.subscribe(topic, lambda peer, data: Verdict.ACCEPT)
        async with trio.open_nursery() as nursery:

            async def deliver() -> None:
                async for msg in channel:
                    emit({"event": "msg", "data": msg.data.hex(), "source": str(msg.source)})

            async def stop_on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()

            nursery.start_soon(deliver)
            nursery.start_soon(stop_on_signal)
            emit({"event": "ready", "peer_id": str(st.host.peer_id), "addr": str(st.host.addrs[0])})
            stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
            buf = b""
            while True:
                chunk = await stdin.receive_some(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    cmd = json.loads(line)
                    if cmd["cmd"] == "publish":
                        mid = await st.gossip.publish(topic, bytes.fromhex(cmd["data"]))
                        emit({"event": "published", "id": mid.hex()})
                    elif cmd["cmd"] == "peers":
                        emit(
                            {
                                "event": "peers",
                                "peers": [str(p) for p in st.host.peers()],
                                "chain_peers": [str(p) for p in st.handshake.statuses],
                                "mesh": [str(p) for p in st.gossip.mesh_peers(topic)],
                                "known": len(st.store),
                            }
                        )
                    elif cmd["cmd"] == "quit":
                        nursery.cancel_scope.cancel()
                        return
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", required=True)
    parser.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--chain", default="testnet")
    parser.add_argument("--target", type=int, default=8)
    trio.run(main, parser.parse_args())
