"""A testnet whose nodes each run in their own network namespace on one Linux host (spec/testnet.md §6).

`up` writes a genesis and one home per host with node.testnet.gen (host i gets SUBNET.i on the run's
bridge), then starts `tensornet node run` inside each namespace with `ip netns exec`. Everything the run
creates (namespaces, bridge, veths, blackhole routes, PIDs) is kept in `<dir>/netns.json`, written before
each object is made, so `down` removes exactly that. The perturbations (kill, pause, cont, start,
partition, heal, join) act on the recorded hosts; `observe` reads every node's API over the bridge.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from node.config import load_config, write_config
from node.testnet import netns_links as links
from node.testnet.gen import generate
from node.testnet.local import tensornet_argv
from node.testnet.netns_links import NetnsError
from node.testnet.netns_relay import RTO_S

STATE = "netns.json"
P2P_PORT = 30400
API_PORT = 26700
ROUND_MS = 200
HTTP_TIMEOUT_S = 10.0  # nodes on a loaded host answer slowly; a slow answer is not a failure
_DELAY = re.compile(r"^\d+(\.\d+)?(us|ms|s)$")
_LOSS = re.compile(r"^\d+(\.\d+)?%$")


# --- state ---------------------------------------------------------------------------------------


def load(directory: Path) -> dict[str, Any]:
    path = directory / STATE
    if not path.exists():
        raise NetnsError(f"no netns testnet in {directory} (no {STATE}); start one with `tensornet testnet netns up`")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise NetnsError(f"{path} is not a netns testnet state file: {exc}") from None


def saver(directory: Path, state: dict[str, Any]) -> Callable[[], None]:
    """A function that writes `state` atomically (called before every object is created)."""

    def save() -> None:
        tmp = directory / (STATE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(directory / STATE)

    return save


def host(state: dict[str, Any], name: str) -> dict[str, Any]:
    """A host by name (node0, late0) or by index in the list (0, 1, ...)."""
    hosts = state["hosts"]
    if name.isdigit() and int(name) < len(hosts):
        return hosts[int(name)]
    for h in hosts:
        if h["name"] == name:
            return h
    raise NetnsError(f"no host {name!r} (have: {', '.join(h['name'] for h in hosts)})")


# --- processes -----------------------------------------------------------------------------------


def proc_state(h: dict[str, Any]) -> str:
    """running | paused | stopped, from /proc (a PID counts only while it lives in the host's namespace)."""
    pid = h.get("pid")
    if not pid:
        return "stopped"
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap our own killed child, else it lingers as a zombie
    if not links.in_namespace(pid, h["ns"]):
        return "stopped"
    try:
        st = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "stopped"
    return "paused" if st in ("T", "t") else "stopped" if st in ("Z", "X") else "running"


def start(directory: Path, state: dict[str, Any], h: dict[str, Any]) -> None:
    """Start (or restart from its home) host `h`'s node inside its namespace, its API on its own IP."""
    if proc_state(h) != "stopped":
        raise NetnsError(f"{h['name']} is already running (pid {h['pid']})")
    if h.get("late"):
        cmd = ["node", "join", "--bootstrap", h["bootstrap"], "--genesis", str(directory / "genesis.json")]
    else:
        cmd = ["node", "run"]
    listen = "127.0.0.1" if h.get("relay_pid") else h["ip"]  # behind its relay, only the relay reaches it
    argv = ["ip", "netns", "exec", h["ns"], *tensornet_argv(), *cmd, "--home", h["home"],
            "--listen", f"/ip4/{listen}/tcp/{P2P_PORT}", "--api", f"{h['ip']}:{API_PORT}"]
    log = directory / "logs" / f"{h['name']}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        # `ip netns exec` execs the command, so this PID is the node's
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    h.update(pid=p.pid, argv=argv, log=str(log))
    saver(directory, state)()


def signal_host(h: dict[str, Any], sig: signal.Signals) -> str:
    """Send `sig` to the host's node process group; returns the state before."""
    before = proc_state(h)
    if before == "stopped":
        return before
    with contextlib.suppress(ProcessLookupError):
        os.killpg(h["pid"], sig)
    if sig == signal.SIGKILL:
        end = time.monotonic() + 10
        while proc_state(h) != "stopped" and time.monotonic() < end:
            time.sleep(0.05)
    return before


# --- the network ---------------------------------------------------------------------------------


def check_impairment(delay: str | None, loss: str | None) -> None:
    if delay and not _DELAY.match(delay):
        raise NetnsError(f"--delay {delay!r}: use a number with us, ms or s (e.g. 20ms)")
    if loss and not _LOSS.match(loss):
        raise NetnsError(f"--loss {loss!r}: use a percentage (e.g. 1%)")


def up(directory: Path, hosts: int, delay: str | None = None, loss: str | None = None,
       chain_id: str = "tensornet-netns", round_ms: int = ROUND_MS) -> dict[str, Any]:
    """Create the namespaces, write the homes and start every node; on any failure remove it all again.

    `round_ms` is each validator's `min_round_delay_ms`: every node shares this one host's cores, and
    unthrottled rounds would leave little CPU for syncing a restarted or late node.
    """
    reason = links.unavailable_reason()
    if reason:
        raise NetnsError(reason)
    if not 1 <= hosts <= 200:
        raise NetnsError(f"--hosts {hosts}: use 1..200")
    check_impairment(delay, loss)
    if (directory / STATE).exists() or (directory / "genesis.json").exists():
        raise NetnsError(f"{directory} already holds a testnet; `tensornet testnet netns down --dir {directory}` "
                         "first (or choose another --dir)")
    directory.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"runner_pid": os.getpid(), "hosts": [], "namespaces": [], "blackholes": []}
    save = saver(directory, state)
    try:
        with links.allocation_lock():
            state["prefix"], state["subnet"] = links.pick_prefix_and_subnet()
            save()
            links.create_bridge(state, save)
        created = [links.create_host(state, save, i + 1) for i in range(hosts)]
        # the API listens on the namespace's own interfaces: reached only over this run's private bridge
        plans, _ = generate(directory, hosts=[c["ip"] for c in created], chain_id=chain_id,
                            p2p_base=P2P_PORT, api_base=API_PORT, api_bind="0.0.0.0")
        state["chain_id"] = chain_id
        state["impairment"] = impair(state, created, delay, loss)
        for plan in plans:
            cfg = replace(load_config(plan.home), min_round_delay_ms=round_ms)
            if "relay" in state:  # the node listens on loopback behind its relay: announce the relay
                cfg = replace(cfg, external_addrs=(plan.multiaddr.split("/p2p/")[0],))
            write_config(plan.home, cfg)
        for plan, c in zip(plans, created, strict=True):
            state["hosts"].append({"name": plan.name, "ns": c["ns"], "ip": c["ip"], "home": str(plan.home),
                                   "api": f"http://{c['ip']}:{API_PORT}", "multiaddr": plan.multiaddr,
                                   "late": False})
        save()
        for h in state["hosts"]:
            if "relay" in state:
                start_relay(directory, state, h)
            start(directory, state, h)
    except BaseException:
        links.destroy(state)
        with contextlib.suppress(OSError):
            (directory / STATE).unlink()
        raise
    return state


def impair(state: dict[str, Any], created: list[dict[str, str]], delay: str | None, loss: str | None) -> str:
    """Apply --delay/--loss: netem on every namespace's egress where the kernel has it, else a userspace
    relay in every namespace (node.testnet.netns_relay); returns which way was used."""
    if not delay and not loss:
        return "none"
    for c in created:
        why = links.apply_netem(c["ns"], delay, loss)
        if why:
            for done in created:  # all or nothing
                links.tc("qdisc", "del", "dev", "eth0", "root", ns=done["ns"], check=False)
            state["relay"] = {"delay_ms": _ms(delay), "loss": float(loss.rstrip("%")) / 100 if loss else 0.0}
            return (f"userspace relay in each namespace ({why}): delay {delay or '0ms'} per hop, "
                    f"loss {loss or '0%'} as a {RTO_S * 1000:g} ms retransmission")
    return f"netem on each namespace's egress: delay {delay or '0'} loss {loss or '0%'}"


def _ms(delay: str | None) -> float:
    if not delay:
        return 0.0
    num = float(re.match(r"[\d.]+", delay).group())  # type: ignore[union-attr]  # checked by check_impairment
    return num / 1000 if delay.endswith("us") else num if delay.endswith("ms") else num * 1000


def start_relay(directory: Path, state: dict[str, Any], h: dict[str, Any]) -> None:
    """The delay/loss relay of host `h`: on its address's p2p port, to its node on the namespace loopback."""
    r = state["relay"]
    argv = ["ip", "netns", "exec", h["ns"], sys.executable, "-m", "node.testnet.netns_relay",
            "--listen", f"{h['ip']}:{P2P_PORT}", "--to", f"127.0.0.1:{P2P_PORT}",
            "--delay-ms", f"{r['delay_ms']:g}", "--loss", f"{r['loss']:g}"]
    log = directory / "logs" / f"{h['name']}-relay.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
    h["relay_pid"] = p.pid
    saver(directory, state)()


def join(directory: Path) -> dict[str, Any]:
    """A host that joins late: a new namespace running `tensornet node join` against node0."""
    state = load(directory)
    if state.get("blackholes"):  # a partition in force would not cover the newcomer
        raise NetnsError("heal the partition before a host joins")
    save = saver(directory, state)
    late = [h for h in state["hosts"] if h.get("late")]
    c = links.create_host(state, save, len(state["namespaces"]) + 1)
    name = f"late{len(late)}"
    h = {"name": name, "ns": c["ns"], "ip": c["ip"], "home": str(directory / name),
         "api": f"http://{c['ip']}:{API_PORT}", "late": True, "bootstrap": state["hosts"][0]["multiaddr"]}
    state["hosts"].append(h)
    save()
    if "relay" in state:
        start_relay(directory, state, h)
    start(directory, state, h)
    return h


def partition(directory: Path, names: list[str]) -> dict[str, Any]:
    """Cut the named hosts from all the others (both ways); the root namespace still reaches every API."""
    state = load(directory)
    side = [host(state, n) for n in names]
    if not side or len(side) >= len(state["hosts"]):
        raise NetnsError("a partition needs at least one host on each side")
    try:
        links.cut(state, [h["ip"] for h in side])
    finally:
        saver(directory, state)()
    return {"side": [h["name"] for h in side],
            "rest": [h["name"] for h in state["hosts"] if h not in side], "routes": len(state["blackholes"])}


def heal(directory: Path) -> dict[str, Any]:
    state = load(directory)
    n = links.heal(state)
    saver(directory, state)()
    return {"removed_routes": n}


def perturb(directory: Path, names: list[str], action: str) -> dict[str, str]:
    """kill (SIGKILL) | pause (SIGSTOP) | cont (SIGCONT) | start (restart a stopped node); name -> before."""
    state = load(directory)
    out = {}
    for n in names:
        h = host(state, n)
        if action == "start":
            out[h["name"]] = proc_state(h)
            start(directory, state, h)
        else:
            sig = {"kill": signal.SIGKILL, "pause": signal.SIGSTOP, "cont": signal.SIGCONT}[action]
            out[h["name"]] = signal_host(h, sig)
    return out


def down(directory: Path) -> dict[str, Any]:
    """Remove everything the state file records (processes, namespaces, bridge); safe to repeat."""
    path = directory / STATE
    if not path.exists():
        return {"removed": [], "note": f"nothing recorded in {directory}"}
    state = load(directory)
    for h in state.get("hosts", []):
        if proc_state(h) != "stopped":
            signal_host(h, signal.SIGKILL)
    removed = links.destroy(state)
    path.unlink()
    return {"removed": removed}


# --- observation ---------------------------------------------------------------------------------


def observe(state: dict[str, Any], names: list[str] | None = None,
            timeout: float = HTTP_TIMEOUT_S) -> dict[str, Any]:
    """name -> /status of every (named) host whose API answers, else None."""
    out: dict[str, Any] = {}
    with httpx.Client(timeout=timeout) as client:
        for h in state["hosts"]:
            if names is not None and h["name"] not in names:
                continue
            try:
                r = client.get(h["api"] + "/status")
                out[h["name"]] = r.json() if r.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                out[h["name"]] = None
    return out


def commit_at(h: dict[str, Any], height: int, tries: int = 3) -> tuple[str, str] | None:
    """(state_root, digest) of the host's commit at `height`; None when it has none (404).

    An API that does not answer after `tries` attempts raises: a silent None would drop the host from
    the comparison instead of failing it.
    """
    error = ""
    for _ in range(tries):
        try:
            r = httpx.get(f"{h['api']}/commits/{height}", timeout=HTTP_TIMEOUT_S)
            if r.status_code == 404:
                return None
            if r.status_code == 200:
                body = r.json()
                return body["state_root"], body["digest"]
            error = f"HTTP {r.status_code}"
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            error = repr(exc)
        time.sleep(0.5)
    raise NetnsError(f"{h['name']}'s API gave no commit {height} after {tries} tries: {error}")


def status(directory: Path) -> list[dict[str, Any]]:
    state = load(directory)
    live = observe(state, [h["name"] for h in state["hosts"] if proc_state(h) == "running"])
    rows = []
    for h in state["hosts"]:
        s = live.get(h["name"])
        rows.append({"name": h["name"], "ip": h["ip"], "ns": h["ns"], "pid": h.get("pid"), "process": proc_state(h),
                     "height": s["height"] if s else None, "peers": s["peers"] if s else None,
                     "state_root": s["state_root"][:16] if s else None})
    return rows
