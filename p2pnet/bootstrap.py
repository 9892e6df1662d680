"""A discovery-only bootstrap node: persistent identity, DHT server, peer exchange; no chain.

New nodes dial it first. It keeps its libp2p key in `<home>/node_key` (so its /p2p/ address, which
operators paste into configs, survives restarts) and its address book in `<home>/peers.json`. It
prints its full multiaddr as one line at start (a JSON object with `as_json`), then serves until
SIGINT or SIGTERM and shuts down cleanly.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from p2pnet.discovery import DiscoveryConfig
from p2pnet.host import parse_multiaddr
from p2pnet.nodekey import load_or_create_node_key
from p2pnet.stack import open_stack

log = logging.getLogger("p2pnet.bootstrap")


def _primary_ip() -> str:
    """The address other machines most likely reach us on (no packet is sent); loopback if none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def public_addrs(addrs: list[Any]) -> list[str]:
    """Full multiaddrs to print: a 0.0.0.0 listener is shown on the primary IP and on loopback."""
    out: list[str] = []
    for a in addrs:
        text = str(a)
        if "/ip4/0.0.0.0/" in text:
            for ip in dict.fromkeys([_primary_ip(), "127.0.0.1"]):
                out.append(text.replace("/ip4/0.0.0.0/", f"/ip4/{ip}/"))
        else:
            out.append(text)
    return list(dict.fromkeys(out))


RESTART_DELAY = 1.0  # seconds before a failed stack is started again


async def run_bootstrap(
    home: Path | str,
    listen: str,
    *,
    as_json: bool = False,
    bootstrap: list[str] | None = None,
    out: Callable[[str], None] | None = None,
    config: DiscoveryConfig | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or cancellation). `bootstrap` lets several bootstrap nodes know each other."""
    write = out or (lambda line: (sys.stdout.write(line + "\n"), sys.stdout.flush()))
    parse_multiaddr(listen)  # typed ConfigError for a bad address, before any key is created
    home = Path(home)
    keypair = load_or_create_node_key(home)
    cfg = config or DiscoveryConfig(target_peers=64, dht_server=True)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve, keypair, home, listen, bootstrap or [], cfg, as_json, write)
            async for signum in signals:
                log.info("bootstrap node got %s; shutting down", signal.Signals(signum).name)
                break
            nursery.cancel_scope.cancel()


async def _serve(
    keypair: Any, home: Path, listen: str, bootstrap: list[str], cfg: DiscoveryConfig, as_json: bool,
    write: Callable[[str], None],
) -> None:
    """Serve the stack; if it ever fails after a good start, log why and start it again on the same address.

    A bootstrap node holds nothing but its key and address book, so a restart loses nothing, while a dead
    bootstrap locks every newcomer out of the network. A failure before the first start (a bad or busy
    listen address) is a configuration error and is raised.
    """
    started = False
    while True:
        try:
            async with open_stack(keypair, listen=[listen], bootstrap=bootstrap, home=home, discovery=cfg) as st:
                if not started:
                    addrs = public_addrs(st.host.addrs)
                    if as_json:
                        write(json.dumps({"peer_id": str(st.host.peer_id), "multiaddr": addrs[0], "multiaddrs": addrs}))
                    else:
                        write(addrs[0])
                    started = True
                    listen = _pinned(listen, st.host.addrs)  # a restart keeps the port tcp/0 chose
                await trio.sleep_forever()
        except Exception as exc:
            if not started:
                raise
            log.error("bootstrap stack failed (%r); restarting it in %g s", exc, RESTART_DELAY, exc_info=exc)
            await trio.sleep(RESTART_DELAY)


def _pinned(listen: str, bound: list[Any]) -> str:
    """`listen` with a /tcp/0 port replaced by the port the OS chose (other addresses unchanged)."""
    parts = listen.split("/")
    if "tcp" not in parts or parts[parts.index("tcp") + 1] != "0" or not bound:
        return listen
    ours = str(bound[0]).split("/")
    parts[parts.index("tcp") + 1] = ours[ours.index("tcp") + 1]
    return "/".join(parts)
