"""Network namespaces, a bridge and veth pairs for a one-host testnet (spec/testnet.md §6).

Everything is created through iproute2 (`ip`, `tc`) and recorded in the caller's state *before* it is
created, so `destroy` removes exactly what one run made, even after a crash half-way. Names carry a
random per-run prefix (`tn` + 4 hex) and each run takes its own /24 out of 10.77.0.0/16, so parallel
runs on one machine never collide. A partition is a set of /32 blackhole routes inside the namespaces
(longest prefix beats the bridge's /24), so both sides stay reachable from the root namespace, where
the runner reads every node's HTTP API over the bridge.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from node.errors import NodeError

NETNS_DIR = Path("/run/netns")
LOCK_FILE = Path("/run/tensornet-netns.lock")  # serialises subnet choice between parallel runs
SUBNET_BASE = "10.77"
BRIDGE_HOST = 254  # the root namespace's address on the bridge
IP_TIMEOUT_S = 20.0


class NetnsError(NodeError):
    """A namespace, link or route could not be created, changed or removed."""


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS` (inside namespace `ns` if given); a failure raises NetnsError with ip's message."""
    argv = ["ip", "-n", ns, *args] if ns else ["ip", *args]
    return _run(argv, check)


def tc(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", ns, "tc", *args] if ns else ["tc", *args]
    return _run(argv, check)


def _run(argv: list[str], check: bool) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(argv)}: {exc}") from None
    if check and res.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {res.stderr.strip() or f'exit {res.returncode}'}")
    return res


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here (None when they can): not root, no iproute2, or no permission."""
    if os.geteuid() != 0:
        return "netns needs root: run as root or with sudo"
    if shutil.which("ip") is None:
        return "netns needs iproute2 (`ip`): apt-get install -y iproute2"
    probe = f"tnprobe{secrets.token_hex(2)}"
    res = ip("netns", "add", probe, check=False)
    if res.returncode != 0:
        return f"cannot create a network namespace: {res.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


@contextlib.contextmanager
def allocation_lock() -> Iterator[None]:
    """Held while a run picks its prefix and subnet and creates its bridge (which claims the subnet)."""
    with LOCK_FILE.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def pick_prefix_and_subnet() -> tuple[str, str]:
    """A prefix no existing link or namespace uses, and a 10.77.X.0/24 no root-namespace address is in."""
    links = ip("-o", "link").stdout
    spaces = ip("netns", "list").stdout
    addrs = ip("-o", "-4", "addr").stdout
    for _ in range(100):
        prefix = "tn" + secrets.token_hex(2)
        if prefix not in links and prefix not in spaces:
            break
    else:
        raise NetnsError("no free name prefix (too many tensornet namespaces left over? `ip netns list`)")
    used = {int(m) for m in re.findall(rf"inet {re.escape(SUBNET_BASE)}\.(\d+)\.", addrs)}
    for x in range(1, 250):
        if x not in used:
            return prefix, f"{SUBNET_BASE}.{x}"
    raise NetnsError(f"every {SUBNET_BASE}.X.0/24 is in use on this machine")


def ns_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index}"


def create_bridge(state: dict[str, Any], save: Any) -> None:
    """The run's bridge with the root namespace's address on it (state: prefix, subnet)."""
    bridge = f"{state['prefix']}br"
    state["bridge"] = bridge
    save()
    ip("link", "add", bridge, "type", "bridge")
    ip("addr", "add", f"{state['subnet']}.{BRIDGE_HOST}/24", "dev", bridge)
    ip("link", "set", bridge, "up")


def create_host(state: dict[str, Any], save: Any, index: int) -> dict[str, str]:
    """Namespace `index` (1-based) with address SUBNET.index on a veth to the bridge; returns its record."""
    prefix = state["prefix"]
    host = {"ns": ns_name(prefix, index), "veth": f"{prefix}h{index}", "ip": f"{state['subnet']}.{index}"}
    state.setdefault("namespaces", []).append(host)
    save()
    peer = f"{prefix}n{index}"
    ip("netns", "add", host["ns"])
    ip("link", "add", host["veth"], "type", "veth", "peer", "name", peer)
    ip("link", "set", peer, "netns", host["ns"])
    ip("link", "set", host["veth"], "master", state["bridge"], "up")
    ns = host["ns"]
    ip("link", "set", "lo", "up", ns=ns)
    ip("link", "set", peer, "name", "eth0", ns=ns)
    ip("addr", "add", f"{host['ip']}/24", "dev", "eth0", ns=ns)
    ip("link", "set", "eth0", "up", ns=ns)
    return host


def apply_netem(ns: str, delay: str | None, loss: str | None) -> str | None:
    """Delay/loss on the namespace's egress with netem; returns why not (None when applied)."""
    args = [*(["delay", delay] if delay else []), *(["loss", loss] if loss else [])]
    res = tc("qdisc", "add", "dev", "eth0", "root", "netem", *args, ns=ns, check=False)
    if res.returncode == 0:
        return None
    msg = res.stderr.strip()
    if "unknown" in msg.lower():
        return "this kernel has no netem (sch_netem)"
    return f"netem failed: {msg}"


def netem_available() -> bool:
    """Whether `tc ... netem` works here (probed on a throwaway namespace's loopback)."""
    probe = f"tnprobe{secrets.token_hex(2)}"
    if ip("netns", "add", probe, check=False).returncode != 0:
        return False
    try:
        return tc("qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms", ns=probe, check=False).returncode == 0
    finally:
        ip("netns", "del", probe, check=False)


def cut(state: dict[str, Any], side: list[str]) -> None:
    """Partition: no packet between an address in `side` and one outside it (root namespace excluded)."""
    hosts = state.get("namespaces", [])
    inside = [h for h in hosts if h["ip"] in side]
    outside = [h for h in hosts if h["ip"] not in side]
    routes = state.setdefault("blackholes", [])
    for a in inside:
        for b in outside:
            for ns, dst in ((a["ns"], b["ip"]), (b["ns"], a["ip"])):
                if [ns, dst] not in routes:
                    routes.append([ns, dst])
                    ip("route", "add", "blackhole", f"{dst}/32", ns=ns)


def heal(state: dict[str, Any]) -> int:
    """Remove every blackhole route `cut` added; returns how many there were."""
    routes = state.get("blackholes", [])
    for ns, dst in routes:
        ip("route", "del", "blackhole", f"{dst}/32", ns=ns, check=False)
    state["blackholes"] = []
    return len(routes)


def ns_pids(ns: str) -> list[int]:
    """Every process whose network namespace is `ns` (ours alone: nothing else runs in it)."""
    res = ip("netns", "pids", ns, check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def in_namespace(pid: int, ns: str) -> bool:
    """PID `pid` lives in namespace `ns` (so a recycled PID is never signalled)."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(NETNS_DIR / ns).st_ino
    except OSError:
        return False


def destroy(state: dict[str, Any]) -> list[str]:
    """Kill every process in the run's namespaces, delete them and the bridge; returns what was removed."""
    removed = []
    for host in state.get("namespaces", []):
        ns = host["ns"]
        if not (NETNS_DIR / ns).exists():
            continue
        for pid in ns_pids(ns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        # deleting the namespace deletes its end of the veth, which deletes the pair
        ip("netns", "del", ns, check=False)
        removed.append(f"netns {ns}")
    bridge = state.get("bridge")
    if bridge and ip("link", "show", bridge, check=False).returncode == 0:
        ip("link", "del", bridge, check=False)
        removed.append(f"bridge {bridge}")
    for host in state.get("namespaces", []):  # a veth created before it reached its namespace
        if ip("link", "show", host["veth"], check=False).returncode == 0:
            ip("link", "del", host["veth"], check=False)
            removed.append(f"veth {host['veth']}")
    return removed
