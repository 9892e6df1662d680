"""`tensornet testnet`: epoch accounting, plans, process control, and whole local networks (slow)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.cli.app import build_app
from node.errors import NodeError
from node.testnet.local import (
    MANIFEST,
    Snapshot,
    SubnetTrack,
    clean,
    free_port_base,
    live_groups,
    make_plan,
    stop_pids,
    tensornet_argv,
)
from node.testnet.local import TestnetError as NetError
from node.testnet.local import TestnetSpec as NetSpec
from protocol.state.state import epoch_due

ROOT = Path(__file__).resolve().parents[3]


def _snap(height: int, owner: int, stakes: dict[str, int]) -> Snapshot:
    return Snapshot(height, owner, stakes, [])


def _epoch_heights(netuid: int, tempo: int, count: int) -> list[int]:
    return [h for h in range(1, 10_000) if epoch_due(h, netuid, tempo)][:count]


def test_track_counts_only_paid_epochs_after_a_drained_one() -> None:
    e = _epoch_heights(1, 4, 5)
    t = SubnetTrack(1, 4, "00", {"m": "miner", "v": "validator"})
    t.observe(_snap(e[0] - 1, 0, {"m": 0, "v": 100}), 2)
    t.observe(_snap(e[0] + 1, 18, {"m": 0, "v": 100}), 2)  # nobody paid: pots stay pending
    t.observe(_snap(e[1] + 1, 36, {"m": 82, "v": 182}), 2)  # paid, but carries the pending pot: not counted
    assert (t.epochs_seen, t.counted) == (2, 0)
    t.observe(_snap(e[1] + 2, 36, {"m": 82, "v": 182}), 2)  # same window: ignored
    t.observe(_snap(e[2] + 1, 54, {"m": 123, "v": 223}), 2)
    t.observe(_snap(e[3] + 1, 72, {"m": 164, "v": 264}), 2)
    t.observe(_snap(e[4] + 1, 90, {"m": 205, "v": 305}), 2)  # already enough
    assert t.counted == 2
    assert (t.owner, t.miners, t.validators) == (36, 82, 82)
    assert t.split() == {"owner": 0.18, "miners": 0.41, "validators": 0.41}
    assert t.per_neuron == {"m": 82, "v": 82}


def test_track_never_counts_a_window_spanning_two_epochs() -> None:
    e = _epoch_heights(1, 3, 5)
    t = SubnetTrack(1, 3, "00", {"m": "miner", "v": "validator"})
    t.observe(_snap(e[0] + 1, 0, {"m": 10, "v": 10}), 1)
    t.observe(_snap(e[1] + 1, 18, {"m": 51, "v": 51}), 1)  # one epoch, drained before: would count...
    t2 = SubnetTrack(1, 3, "00", {"m": "miner", "v": "validator"})
    t2.observe(_snap(e[0] + 1, 0, {"m": 10, "v": 10}), 1)
    t2.observe(_snap(e[1] + 1, 18, {"m": 51, "v": 51}), 1)
    t2.observe(_snap(e[3] + 1, 54, {"m": 92, "v": 174}), 1)  # two epochs, one paid validators only: skipped
    t2.observe(_snap(e[4] + 1, 72, {"m": 133, "v": 215}), 1)  # one epoch after a long window: not drained
    assert t.counted == 0 and t2.counted == 0  # the first window after the baseline is never counted
    t2.observe(_snap(e[4] + 2 + 3, 90, {"m": 174, "v": 256}), 1)
    assert t2.counted == 1 and t2.split() == {"owner": 0.18, "miners": 0.41, "validators": 0.41}


def test_track_skips_an_epoch_that_paid_only_one_side() -> None:
    e = _epoch_heights(2, 5, 3)
    t = SubnetTrack(2, 5, "00", {"m": "miner", "v": "validator"})
    t.observe(_snap(e[0] - 1, 0, {"m": 0, "v": 0}), 1)
    t.observe(_snap(e[0] + 1, 10, {"m": 0, "v": 50}), 1)  # validators only: drained but not counted
    t.observe(_snap(e[1] + 1, 20, {"m": 25, "v": 75}), 1)
    assert t.counted == 1 and (t.owner, t.miners, t.validators) == (10, 25, 25)


def test_free_port_base_skips_a_busy_port() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        base = free_port_base(3, start=busy - 1, stop=busy + 400, step=1)
        assert not base <= busy < base + 3


def test_make_plan_writes_wallets_and_refuses_to_overwrite(tmp_path: Path) -> None:
    spec = NetSpec(directory=tmp_path / "tn", validators=2, subnets=2, miners=2, subnet_validators=1)
    plan = make_plan(spec)
    manifest = json.loads((tmp_path / "tn" / MANIFEST).read_text())
    assert [s["task"] for s in manifest["subnets"]] == ["compute", "text"]
    assert len(manifest["neurons"]) == 6 and len(manifest["nodes"]) == 2
    genesis = json.loads((tmp_path / "tn" / "genesis.json").read_text())
    assert all(s["hyperparameters"]["tempo"] == spec.tempo for s in genesis["subnets"])
    from node.client.wallet import Wallet

    miner = next(n for n in plan.neurons if n.role == "miner")
    w = Wallet.load(plan.wallet_home, miner.name)
    assert w.hotkey("worker0").public == miner.hotkey.public == w.hotkey().public
    password = (tmp_path / "tn" / "password").read_text().strip()
    assert len(password) >= 24 and stat.S_IMODE((tmp_path / "tn" / "password").stat().st_mode) == 0o600
    assert w.coldkey(password).public == miner.coldkey.public
    with pytest.raises(NetError, match="already holds a testnet"):
        make_plan(spec)


def test_spec_rejects_bad_counts(tmp_path: Path) -> None:
    with pytest.raises(NetError, match="--validators"):
        NetSpec(directory=tmp_path, validators=0).check()
    with pytest.raises(NetError, match="--miners"):
        NetSpec(directory=tmp_path, miners=0).check()


def test_up_price_reaches_every_miner_and_no_validator(tmp_path: Path) -> None:
    from node.testnet.local import UNIT, neuron_argv

    def argvs(spec: NetSpec) -> dict[str, list[str]]:
        plan = make_plan(spec)
        return {n.role: neuron_argv(plan, n, "http://127.0.0.1:1", 40000, 5.0) for n in plan.neurons}

    priced = argvs(NetSpec(directory=tmp_path / "priced", validators=1, subnets=1, miners=1, price=UNIT // 1000))
    assert priced["miner"][priced["miner"].index("--price") + 1] == "0.001"
    assert "--price" not in priced["validator"]
    free = argvs(NetSpec(directory=tmp_path / "free", validators=1, subnets=1, miners=1))
    assert "--price" not in free["miner"]
    with pytest.raises(NetError, match="--price"):
        NetSpec(directory=tmp_path, price=-1).check()
    result = CliRunner().invoke(build_app(), ["testnet", "up", "--price", "cheap", "--dir", str(tmp_path / "x")])
    assert result.exit_code == 1 and result.stderr.startswith("error: amount 'cheap' is not a number"), result.stderr
    assert not (tmp_path / "x").exists()


def test_clean_refuses_a_directory_that_is_not_a_testnet(tmp_path: Path) -> None:
    (tmp_path / "precious").write_text("keep me")
    with pytest.raises(NetError, match="does not look like a testnet"):
        clean(tmp_path)
    assert (tmp_path / "precious").exists()


def test_gen_writes_one_home_per_host(tmp_path: Path) -> None:
    out = tmp_path / "net"
    res = CliRunner().invoke(build_app(), ["testnet", "gen", "--out", str(out), "--hosts", "10.0.0.1,10.0.0.2",
                                           "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert [n["multiaddr"].split("/")[2] for n in doc["nodes"]] == ["10.0.0.1", "10.0.0.2"]
    cfg = (out / "node0" / "config.toml").read_text()
    assert "10.0.0.2" in cfg and "0.0.0.0" in cfg  # p2p listens on every interface: peers must reach it
    assert (out / "node1" / "validator_key").exists() and (out / "genesis.json").exists()
    again = CliRunner().invoke(build_app(), ["testnet", "gen", "--out", str(out), "--hosts", "10.0.0.1"])
    assert again.exit_code == 1 and "already holds a genesis" in again.output


def _gen(out: Path, *extra: str) -> dict:
    res = CliRunner().invoke(build_app(), ["testnet", "gen", "--out", str(out), "--hosts", "10.0.0.1,10.0.0.2",
                                           "--chain-id", "same-chain", "--json", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def _keys(out: Path) -> set[str]:
    """The validator and node key seeds of both homes."""
    from node.client.wallet import read_hotkey

    return {k for i in (0, 1) for k in (read_hotkey(out / f"node{i}" / "validator_key").seed.hex(),
                                        (out / f"node{i}" / "node_key").read_text().strip())}


def test_gen_keys_are_random_not_derived_from_the_chain_id(tmp_path: Path) -> None:
    a, b = _gen(tmp_path / "a"), _gen(tmp_path / "b")
    assert {n["multiaddr"] for n in a["nodes"]}.isdisjoint(n["multiaddr"] for n in b["nodes"])  # peer ids differ
    ka, kb = _keys(tmp_path / "a"), _keys(tmp_path / "b")
    assert len(ka) == 4 and ka.isdisjoint(kb)
    ga, gb = (json.loads((tmp_path / d / "genesis.json").read_text()) for d in ("a", "b"))
    assert ga["chain_id"] == gb["chain_id"] == "same-chain" and ga != gb


def test_gen_binds_the_api_to_loopback_and_keeps_homes_private(tmp_path: Path) -> None:
    from node.config import load_config

    doc = _gen(tmp_path / "net")
    for i in (0, 1):
        home = tmp_path / "net" / f"node{i}"
        assert load_config(home).api.startswith("127.0.0.1:")
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        for key in ("validator_key", "node_key"):
            assert stat.S_IMODE((home / key).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "net").stat().st_mode) == 0o700
    assert all(n["api"].startswith("http://127.0.0.1:") for n in doc["nodes"])  # reachable on its own host
    opened = _gen(tmp_path / "open", "--api-bind", "0.0.0.0")
    assert load_config(tmp_path / "open" / "node1").api.startswith("0.0.0.0:")
    assert opened["nodes"][1]["api"].startswith("http://10.0.0.2:")
    bad = CliRunner().invoke(build_app(), ["testnet", "gen", "--out", str(tmp_path / "bad"), "--hosts", "10.0.0.1",
                                           "--api-bind", "everywhere"])
    assert bad.exit_code != 0 and "--api-bind" in bad.output


def test_node_init_creates_a_private_home(tmp_path: Path) -> None:
    _gen(tmp_path / "net")
    home = tmp_path / "joiner" / "home"
    res = CliRunner().invoke(build_app(), ["node", "init", "--home", str(home), "--genesis",
                                           str(tmp_path / "net" / "genesis.json")])
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(home.stat().st_mode) == 0o700 and stat.S_IMODE(home.parent.stat().st_mode) == 0o700


def test_generated_accounts_are_random_and_private(tmp_path: Path) -> None:
    from node.testnet.gen import account, generate

    keys = []
    for d in ("a", "b"):
        generate(tmp_path / d, hosts=["127.0.0.1"], chain_id="same-chain", p2p_base=1, api_base=2,
                 funded={"alice": 5})
        keys.append(account(tmp_path / d, "alice"))
        assert stat.S_IMODE((tmp_path / d / "keys").stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / d / "keys" / "alice").stat().st_mode) == 0o600
    assert keys[0].public != keys[1].public
    genesis = json.loads((tmp_path / "a" / "genesis.json").read_text())
    assert keys[0].address in json.dumps(genesis) or keys[0].public.hex() in json.dumps(genesis)
    with pytest.raises(NodeError, match="no key for account 'bob'"):
        account(tmp_path / "a", "bob")


def test_stop_pids_terminates_groups_and_kills_stubborn_ones() -> None:
    polite = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"],
        start_new_session=True,
    )
    try:
        time.sleep(0.3)
        how = stop_pids([("polite", polite.pid), ("stubborn", stubborn.pid)], deadline_s=1.5)
        assert how["polite"] == "SIGTERM"
        assert how["stubborn"].startswith("SIGKILL")
        assert live_groups({polite.pid, stubborn.pid}) == set()
    finally:
        for p in (polite, stubborn):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)


# --- whole networks ------------------------------------------------------------------------------


def _procs_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                found.append(f"{entry.name}: {cmd[:160]}")
    return found


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*tensornet_argv(), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.slow
def test_up_runs_epochs_measures_the_split_and_stops_everything(tmp_path: Path) -> None:
    d = tmp_path / "net"
    try:
        res = _run(["testnet", "up", "--validators", "4", "--subnets", "2", "--miners", "3", "--epochs", "2",
                    "--dir", str(d), "--timeout", "200", "--json"], timeout=260)
        assert res.returncode == 0, res.stderr[-3000:]
        doc = json.loads(res.stdout.strip().splitlines()[-1])
        assert doc["state_roots_agree"] is True and doc["height"] > 0 and doc["epochs"] >= 2
        assert [s["netuid"] for s in doc["subnets"]] == [1, 2]
        committee = doc["concentration"]["committee"]
        assert (committee["entities"], committee["nakamoto"]) == (4, 2)  # equal stakes: 2 of 4 reach 1/3
        assert committee["top5_stake_share"] == 1.0 and doc["concentration"]["top5_emission_share"] > 0
        for s in doc["subnets"]:
            assert s["concentration"]["nakamoto"] >= 1 and s["concentration"]["top5_emission_share"] == 1.0
            split = s["emission_split"]
            assert split["owner"] == pytest.approx(0.18, abs=0.005)
            assert split["miners"] == pytest.approx(0.41, abs=0.005)
            assert split["validators"] == pytest.approx(0.41, abs=0.005)
            roles = [n["role"] for n in s["neurons"]]
            assert roles.count("miner") == 3 and roles.count("validator") == 1
            assert sum(n["emission"] for n in s["neurons"]) == s["emission_units"]["miners"] + s[
                "emission_units"]["validators"]
            # After two short epochs a validator may not have scored every miner yet (it samples the
            # least recently queried first), so require earners, not that every miner already earns.
            assert any(n["incentive"] > 0 for n in s["neurons"] if n["role"] == "miner")
            assert all(n["dividends"] > 0 for n in s["neurons"] if n["role"] == "validator")
        assert not (d / "pids.json").exists()
        assert _procs_mentioning(str(d)) == []
    finally:
        for p in _procs_mentioning(str(d)):
            os.killpg(int(p.split(":")[0]), signal.SIGKILL)


@pytest.mark.slow
def test_detach_then_down_and_clean_leave_no_processes(tmp_path: Path) -> None:
    d = tmp_path / "bg"
    try:
        res = _run(["testnet", "up", "--validators", "4", "--subnets", "1", "--miners", "2", "--epochs", "1",
                    "--dir", str(d), "--timeout", "200", "--detach", "--json"], timeout=260)
        assert res.returncode == 0, res.stderr[-3000:]
        out = json.loads(res.stdout.strip().splitlines()[-1])
        assert out["detached"] is True
        assert all(n["api"].startswith("http://127.0.0.1:") for n in out["nodes"]), out["nodes"]
        st = _run(["testnet", "status", "--dir", str(d), "--json"], timeout=30)
        rows = json.loads(st.stdout)
        assert len(rows) == 7 and all(r["running"] for r in rows), rows
        logs = _run(["testnet", "logs", "node0", "--dir", str(d), "-n", "3"], timeout=30)
        assert logs.returncode == 0 and "==> node0" in logs.stdout
        down = _run(["testnet", "down", "--dir", str(d), "--json"], timeout=60)
        assert down.returncode == 0, down.stderr
        assert set(json.loads(down.stdout)) == {r["name"] for r in rows}
        assert _procs_mentioning(str(d)) == []
        cl = _run(["testnet", "clean", "--dir", str(d)], timeout=60)
        assert cl.returncode == 0 and not d.exists()
    finally:
        for p in _procs_mentioning(str(d)):
            os.killpg(int(p.split(":")[0]), signal.SIGKILL)
