"""A bootstrap node and 5 chain nodes, each its own OS process on loopback: discovery, gossip, kill -9 and rejoin."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
N = 5
WAIT = 90.0  # generous per-step bound on a loaded 2-core machine; never a timing assertion


class Child:
    """A child process speaking JSON lines; a thread turns its stdout into a queue."""

    def __init__(self, argv: list[str]) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), TENSORNET_LOG_LEVEL="warning")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.lines: queue.Queue[dict] = queue.Queue()
        self.msgs: set[bytes] = set()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if obj.get("event") == "msg":
                self.msgs.add(bytes.fromhex(obj["data"]))
            else:
                self.lines.put(obj)

    def wait_event(self, event: str, timeout: float = WAIT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {event!r} from pid {self.proc.pid}")
            try:
                obj = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if obj.get("event") == event:
                return obj

    def send(self, **cmd) -> None:
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()

    def peers(self) -> dict:
        self.send(cmd="peers")
        return self.wait_event("peers")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def _node(home: Path, bootstrap: str) -> Child:
    child = Child([sys.executable, "-m", "tests.p2pnet.node_proc", "--home", str(home), "--bootstrap", bootstrap])
    return child


def _until(pred, what: str, timeout: float = WAIT, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


@pytest.mark.slow
def test_bootstrap_and_five_nodes_discover_gossip_and_rejoin_after_kill9(tmp_path):
    children: list[Child] = []
    try:
        boot = Child(
            [sys.executable, "-c", "from node.cli.app import main; main()", "bootstrap"]
            + ["--home", str(tmp_path / "boot"), "--listen", "/ip4/127.0.0.1/tcp/0", "--json"]
        )
        children.append(boot)
        boot_info = boot.lines.get(timeout=WAIT)  # `tensornet bootstrap --json`: one JSON object
        boot_addr = boot_info["multiaddr"]
        assert boot_addr.startswith("/ip4/127.0.0.1/tcp/") and boot_addr.endswith("/p2p/" + boot_info["peer_id"])

        nodes = [_node(tmp_path / f"n{i}", boot_addr) for i in range(N)]
        children += nodes
        ids = [n.wait_event("ready")["peer_id"] for n in nodes]
        assert len(set(ids)) == N

        def all_found() -> bool:
            return all(set(n.peers()["chain_peers"]) == set(ids) - {ids[i]} for i, n in enumerate(nodes))

        _until(all_found, "every node to handshake with the 4 others, given only the bootstrap")
        _until(lambda: all(len(n.peers()["mesh"]) >= 2 for n in nodes), "gossip meshes")

        for i, n in enumerate(nodes):
            n.send(cmd="publish", data=(b"hello from %d" % i).hex())
            n.wait_event("published")
        expected = {b"hello from %d" % i for i in range(N)}
        for i, n in enumerate(nodes):
            _until(lambda n=n, i=i: n.msgs >= expected - {b"hello from %d" % i}, f"node {i} to receive all")
            assert b"hello from %d" % i not in n.msgs  # no echo of its own messages

        # kill -9 node 2, restart it from the same home: same identity, rejoins from its peer store.
        victim = nodes[2]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)
        assert (tmp_path / "n2" / "peers.json").exists()  # saved while running, not only on a clean exit
        reborn = _node(tmp_path / "n2", boot_addr)
        children.append(reborn)
        nodes[2] = reborn
        assert reborn.wait_event("ready")["peer_id"] == ids[2]
        _until(all_found, "the restarted node to rejoin everyone")
        _until(lambda: len(reborn.peers()["mesh"]) >= 2, "the restarted node's mesh")
        nodes[0].send(cmd="publish", data=b"after restart".hex())
        reborn.send(cmd="publish", data=b"from the reborn".hex())
        for i, n in enumerate(nodes):
            if i != 0:
                _until(lambda n=n: b"after restart" in n.msgs, f"node {i} to get the post-restart message")
            if i != 2:
                _until(lambda n=n: b"from the reborn" in n.msgs, f"node {i} to get the reborn node's message")

        # Clean shutdown: SIGTERM -> exit 0 for nodes and the bootstrap.
        for child in [boot, *nodes]:
            child.proc.send_signal(signal.SIGTERM)
        for child in [boot, *nodes]:
            assert child.proc.wait(timeout=30) == 0
    finally:
        for child in children:
            child.kill()
