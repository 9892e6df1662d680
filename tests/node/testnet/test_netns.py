"""The network-namespace testnet: real namespaces, a bridge, real node processes (spec/testnet.md §6).

Skipped, with the reason, only where namespaces cannot be created (not root, no iproute2); the
delay/loss test is skipped on its own where the kernel has no netem.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.testing.procs import REPO, tensornet_cmd
from node.testnet import netns as net
from node.testnet import netns_links as links
from node.testnet.netns_check import CheckSpec
from node.testnet.netns_links import NetnsError

_REASON = links.unavailable_reason()
needs_netns = pytest.mark.skipif(_REASON is not None, reason=f"network namespaces unavailable: {_REASON}")


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*tensornet_cmd(), "testnet", "netns", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)


def last_json(res: subprocess.CompletedProcess[str]) -> dict:
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert lines, f"no output (rc {res.returncode}); stderr:\n{res.stderr[-3000:]}"
    return json.loads(lines[-1])


def wait_process(directory: Path, name: str, want: str) -> None:
    """Signals are asynchronous: poll /proc (bounded) until the host's process is in state `want`."""
    end = time.monotonic() + 15
    while net.proc_state(net.host(net.load(directory), name)) != want:
        assert time.monotonic() < end, f"{name} never became {want}"
        time.sleep(0.05)


def leftovers(prefix: str) -> list[str]:
    """Namespaces and links whose names carry the run's prefix."""
    names = links.ip("netns", "list").stdout + links.ip("-o", "link").stdout
    return [w for w in names.split() if w.startswith(prefix)]


@pytest.fixture
def netdir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "netns"
    yield d
    net.down(d)  # whatever a failed test left behind


# --- no namespaces needed -----------------------------------------------------------------------


def test_check_refuses_a_kill_that_leaves_no_quorum() -> None:
    CheckSpec(hosts=5, kill=1).validate()
    with pytest.raises(NetnsError, match="at most 1 may be killed"):
        CheckSpec(hosts=5, kill=2).validate()
    with pytest.raises(NetnsError, match="at most 1 may be paused"):
        CheckSpec(hosts=4, kill=0, pause=2).validate()
    with pytest.raises(NetnsError, match="--partition 4"):
        CheckSpec(hosts=4, kill=0, partition=4).validate()
    assert [CheckSpec(hosts=n).quorum() for n in (4, 5, 7)] == [3, 4, 5]


def test_impairment_options_are_checked() -> None:
    net.check_impairment("20ms", "1%")
    with pytest.raises(NetnsError, match="--delay"):
        net.check_impairment("20 parsecs", None)
    with pytest.raises(NetnsError, match="--loss"):
        net.check_impairment(None, "0.5")


def test_commands_on_a_directory_without_a_network(tmp_path: Path) -> None:
    with pytest.raises(NetnsError, match="no netns testnet"):
        net.partition(tmp_path, ["node0"])
    assert net.down(tmp_path)["removed"] == []


# --- real namespaces ----------------------------------------------------------------------------


@pytest.mark.slow
@needs_netns
def test_check_kill_partition_heal_and_late_host(netdir: Path) -> None:
    res = cli("check", "--dir", str(netdir), "--hosts", "5", "--kill", "1", "--pause", "1", "--partition", "2",
              "--delay", "20ms", "--loss", "1%", "--timeout", "360", "--json", timeout=450)
    out = last_json(res)
    assert res.returncode == 0 and out["passed"], f"{out.get('failure')}\n{res.stderr[-4000:]}"
    assert out["roots_agree"] is True and out["quorum"] == 4
    assert out["impairment"].startswith(("netem", "userspace relay")), out["impairment"]
    assert [p["phase"] for p in out["phases"]] == ["start", "kill", "pause", "partition", "late"]
    for outage in out["phases"][1:3]:
        assert outage["hosts"] == ["node4"] and None not in outage["heights_during"].values()
        assert "node4" not in outage["heights_during"] and outage["heights_after"]["node4"] is not None
    part = out["phases"][3]
    assert part["side"] == ["node3", "node4"]
    assert all(not side["commits"] for side in part["during"].values())  # 2 | 3 of 5: neither side has 4
    stalled_top = max(h for side in part["during"].values() for h in side["heights"].values())
    assert min(part["heights_after_heal"].values()) > stalled_top  # commits resumed after the heal
    late = out["phases"][4]
    assert late["host"] == "late0" and late["heights"]["late0"] >= late["joined_at"]
    # the check removed everything it created
    assert not (netdir / net.STATE).exists()
    assert leftovers(out["prefix"]) == []


@pytest.mark.slow
@needs_netns
def test_perturbation_commands_and_down(netdir: Path) -> None:
    res = cli("up", "--hosts", "4", "--dir", str(netdir), "--delay", "20ms", "--loss", "1%", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    up = last_json(res)
    prefix = json.loads((netdir / net.STATE).read_text())["prefix"]
    assert [h["name"] for h in up["hosts"]] == ["node0", "node1", "node2", "node3"]
    state = net.load(netdir)
    if not links.netem_available():  # no netem: a relay in every namespace, and the output says so
        assert up["impairment"].startswith("userspace relay") and "no netem" in up["impairment"]
        assert all(links.in_namespace(h["relay_pid"], h["ns"]) for h in state["hosts"])

    assert cli("pause", "node3", "--dir", str(netdir)).returncode == 0
    wait_process(netdir, "node3", "paused")
    assert cli("cont", "node3", "--dir", str(netdir)).returncode == 0
    wait_process(netdir, "node3", "running")
    assert cli("kill", "3", "--dir", str(netdir)).returncode == 0
    wait_process(netdir, "node3", "stopped")
    assert cli("start", "node3", "--dir", str(netdir)).returncode == 0
    wait_process(netdir, "node3", "running")

    res = cli("partition", "node2", "node3", "--dir", str(netdir), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["routes"] == 8  # 2 x 2 pairs, one route each way
    ns3 = net.host(state, "node3")["ns"]
    routes = links.ip("route", "show", ns=ns3).stdout
    assert f"blackhole {net.host(state, 'node0')['ip']}" in routes
    assert f"blackhole {net.host(state, 'node2')['ip']}" not in routes  # same side
    assert cli("heal", "--dir", str(netdir)).returncode == 0
    assert "blackhole" not in links.ip("route", "show", ns=ns3).stdout

    res = cli("status", "--dir", str(netdir), "--json")
    assert {r["process"] for r in json.loads(res.stdout)} == {"running"}

    res = cli("down", "--dir", str(netdir), "--json")
    assert res.returncode == 0, res.stderr
    assert leftovers(prefix) == [] and not (netdir / net.STATE).exists()


@pytest.mark.slow
@needs_netns
def test_delay_and_loss_with_netem(netdir: Path) -> None:
    if not links.netem_available():
        pytest.skip("this kernel has no netem (sch_netem): delay/loss cannot be applied here")
    state = net.up(netdir, 2, "20ms", "1%")
    assert state["impairment"].startswith("netem")
    for h in state["hosts"]:
        assert "netem" in links.tc("qdisc", "show", "dev", "eth0", ns=h["ns"]).stdout


@pytest.mark.slow
@needs_netns
def test_down_after_up_was_killed_half_way(netdir: Path) -> None:
    """`up` SIGKILLed while it creates namespaces: `down` still removes everything it had made."""
    proc = subprocess.Popen([*tensornet_cmd(), "testnet", "netns", "up", "--hosts", "4", "--dir", str(netdir)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 60
        while True:
            try:
                made = json.loads((netdir / net.STATE).read_text()).get("namespaces", [])
            except (OSError, ValueError):
                made = []
            if len(made) >= 2 or proc.poll() is not None:
                break
            assert time.monotonic() < end, "up never recorded two namespaces"
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    prefix = json.loads((netdir / net.STATE).read_text())["prefix"]
    assert leftovers(prefix), "the killed up had created nothing to clean"
    res = cli("down", "--dir", str(netdir), "--json")
    assert res.returncode == 0, res.stderr
    assert leftovers(prefix) == [] and not (netdir / net.STATE).exists()
