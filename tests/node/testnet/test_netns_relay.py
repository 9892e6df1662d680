"""The userspace delay/loss relay, run as its own process on loopback (no namespaces needed)."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from node.testing.procs import REPO
from node.testnet.local import free_port_base
from node.testnet.netns_relay import RTO_S, Impairment

DELAY_MS = 50
RATE_KIB = 256


def test_due_times_keep_order_and_add_a_retransmission_for_a_loss() -> None:
    imp = Impairment(0.05, 0.0, random.Random(1))
    assert imp.due(10.0, 0.0) == pytest.approx(10.05)
    assert imp.due(10.0, 11.0) == 11.0  # never before the chunk ahead of it
    lossy = Impairment(0.05, 0.5, random.Random(1))
    extra = [lossy.due(10.0, 0.0) - 10.05 for _ in range(200)]
    late = [e for e in extra if e > 1e-9]
    assert late and len(late) < 200 and all(e == pytest.approx(RTO_S + 0.1) for e in late)
    with pytest.raises(ValueError):
        Impairment(0.0, 1.0, random.Random())


def test_a_rate_cap_spaces_chunks_by_their_transmission_time() -> None:
    imp = Impairment(0.05, 0.0, random.Random(1), rate=1024.0)
    first = imp.due(10.0, 0.0, 512)
    assert first == pytest.approx(10.55)  # delay + 512 B at 1 KiB/s
    assert imp.due(10.0, first, 1024) == pytest.approx(11.55)  # queued behind the first: its whole size later
    assert imp.sent(first) == pytest.approx(10.5)  # the next read may start once the chunk left the sender
    assert Impairment(0.05, 0.0, random.Random(1)).due(10.0, 0.0, 10**9) == pytest.approx(10.05)  # no cap
    with pytest.raises(ValueError):
        Impairment(0.0, 0.0, random.Random(), rate=-1.0)


def _echo_server(sock: socket.socket) -> None:
    """Echo every connection back until EOF (one thread per connection)."""

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


@pytest.fixture
def relay() -> Iterator[int]:
    """A relay process (delay 50 ms, loss 30%) in front of an echo server; yields the relay's port."""
    yield from _relay_to_echo("--delay-ms", str(DELAY_MS), "--loss", "0.3", "--seed", "7")


@pytest.fixture
def slow_relay() -> Iterator[int]:
    """A relay process capped at RATE_KIB KiB/s in front of an echo server; yields the relay's port."""
    yield from _relay_to_echo("--rate-kib", str(RATE_KIB))


def _relay_to_echo(*impairment: str) -> Iterator[int]:
    base = free_port_base(2, start=42000)
    echo = socket.create_server(("127.0.0.1", base + 1))
    threading.Thread(target=_echo_server, args=(echo,), daemon=True).start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.testnet.netns_relay", "--listen", f"127.0.0.1:{base}",
         "--to", f"127.0.0.1:{base + 1}", *impairment],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        end = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", base), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < end, "the relay never listened"
                time.sleep(0.1)
        yield base
        assert proc.poll() is None, "the relay died"  # a reset connection must not end the relay
    finally:
        proc.kill()
        proc.wait(timeout=10)
        echo.close()


def test_relay_delays_each_direction_and_keeps_every_byte_in_order(relay: int) -> None:
    with socket.create_connection(("127.0.0.1", relay), timeout=30) as s:
        t0 = time.monotonic()
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        assert time.monotonic() - t0 >= 2 * DELAY_MS / 1000  # one relay crossing each way
        payload = os.urandom(512 * 1024)
        sender = threading.Thread(target=s.sendall, args=(payload,))
        sender.start()
        got = bytearray()
        while len(got) < len(payload):
            chunk = s.recv(65536)
            assert chunk, "the relay closed early"
            got += chunk
        sender.join()
        assert bytes(got) == payload


def test_a_reset_connection_ends_only_itself(relay: int) -> None:
    s = socket.create_connection(("127.0.0.1", relay), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = RST
    s.sendall(b"y" * 1000)
    s.close()
    with socket.create_connection(("127.0.0.1", relay), timeout=30) as t:
        t.sendall(b"still here")
        got = b""
        while len(got) < 10:
            got += t.recv(64)
        assert got == b"still here"


def test_a_rate_capped_relay_carries_bytes_no_faster_than_its_cap(slow_relay: int) -> None:
    """A lower bound only (a slower machine is slower still): 1 MiB at 256 KiB/s cannot arrive within 4 s."""
    payload = os.urandom(1 << 20)
    with socket.create_connection(("127.0.0.1", slow_relay), timeout=60) as s:
        t0 = time.monotonic()
        sender = threading.Thread(target=s.sendall, args=(payload,))
        sender.start()
        got = bytearray()
        while len(got) < len(payload):
            chunk = s.recv(65536)
            assert chunk, "the relay closed early"
            got += chunk
        elapsed = time.monotonic() - t0
        sender.join()
    assert bytes(got) == payload
    assert elapsed >= 0.95 * len(payload) / (RATE_KIB * 1024), f"1 MiB came back in {elapsed:.2f} s"
