"""A `tensornet bootstrap` process survives a DHT peer that answers lookups with peers it gives no address for.

Defect 7 of issue 13: a bootstrap node (the only node kind that runs the py-libp2p Kademlia DHT; validators run
with dht=False) took every DHT lookup result to libp2p's peerstore, which raises for a peer it holds no (or only
expired) addresses of. That escaped the discovery task and took the whole process down: later nodes that knew
only the bootstrap could not join ("Failed to open TCP stream"). Any stranger's DHT answer, or a peer that
went away between the lookup and the read (kill -9 of a validator), triggered it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import varint
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.peer.id import ID

from node.testing.procs import BootstrapProc
from p2pnet.discovery import DiscoveryConfig
from p2pnet.host import open_host
from p2pnet.stack import open_stack

pytestmark = pytest.mark.slow

KAD = "/ipfs/kad/1.0.0"
DEADLINE = 150.0  # the bootstrap runs a DHT round every 30 s; two are needed


def addressless_peers(n: int) -> bytes:
    """A FIND_NODE answer naming `n` well-formed peer IDs without a single address."""
    msg = Message()
    msg.type = Message.MessageType.FIND_NODE
    for _ in range(n):
        peer = msg.closerPeers.add()
        peer.id = ID.from_pubkey(create_new_key_pair().public_key).to_bytes()
    data = msg.SerializeToString()
    return varint.encode(len(data)) + data


async def wait_until(predicate, what: str, boot: BootstrapProc) -> None:
    with trio.move_on_after(DEADLINE):
        while not predicate():
            assert boot.alive, f"the bootstrap died while waiting for {what}:\n{boot.log_tail(60)}"
            await trio.sleep(0.2)
        return
    raise AssertionError(f"timed out waiting for {what}\n{boot.log_tail(30)}")


def test_bootstrap_survives_dht_answers_without_addresses(tmp_path: Path) -> None:
    boot = BootstrapProc(tmp_path / "boot").start()
    served: list[int] = []

    async def evil_kad(stream) -> None:
        """Answer every lookup (and anything else) with address-less peers."""
        await stream.read(4096)
        await stream.write(addressless_peers(5))
        served.append(1)
        await stream.close()

    async def main() -> None:
        async with open_host(create_new_key_pair()) as evil:
            evil.set_stream_handler(KAD, evil_kad, framed=False)
            await evil.connect(boot.multiaddr)
            # Two lookups reach the evil peer: a lookup asks each peer once, so the second proves the
            # first one's answer went all the way through the bootstrap's DHT round.
            await wait_until(lambda: len(served) >= 2, "two DHT lookups answered by the evil peer", boot)
            # And it still serves: a fresh node that knows only the bootstrap learns of the evil peer by PX.
            fresh_cfg = DiscoveryConfig(dht=False, interval=0.3)
            async with open_stack(create_new_key_pair(), bootstrap=[boot.multiaddr], discovery=fresh_cfg) as fresh:
                await wait_until(lambda: str(evil.peer_id) in fresh.store, "a PX answer from the bootstrap", boot)

    try:
        trio.run(main)
        assert boot.alive
        assert "restarting" not in (tmp_path / "boot" / "bootstrap.log").read_text(), boot.log_tail(60)
        assert boot.stop() == 0, boot.log_tail(30)
    finally:
        boot.stop()
