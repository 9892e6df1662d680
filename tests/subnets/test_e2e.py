"""End to end on a real local chain: both shipped subnets, 3 miners each (one weak or cheating), one
validator each, everything as separate `tensornet` processes talking over loopback libp2p.

Checks, after the validators' weights have gone through Yuma: the better miners hold more incentive
than the weak one (text: an untrained model), the cheater (compute: a wrong product) holds none, the
worker that crashed on its first query was restarted and earns, the commit-reveal subnet revealed, and
one epoch's emission went owner / miners / validators in 18 / 41 / 41.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.client.wallet import Wallet
from node.testing.procs import REPO, NodeProc, tensornet_cmd
from node.testnet.gen import account, generate
from node.testnet.local import free_port_base
from protocol import crypto
from protocol.state.state import next_epoch_height

pytestmark = pytest.mark.slow

CHAIN = "tensornet-e2e-subnets"
UNIT = 10**9
TEMPO = 40
TEXT, COMPUTE = 1, 2
PASSWORD = "e2e password"
BUDGET_S = 200


class Proc:
    """One CLI process in its own session, logging to a file."""

    def __init__(self, name: str, args: list[str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [*tensornet_cmd(), *args], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                start_new_session=True,
            )

    def tail(self, n: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, grace: float = 15) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        return self.proc.returncode


def wait_until(pred: Any, what: str, timeout: float, procs: list[Proc], node: NodeProc) -> None:
    """Poll `pred` until true; fail at once if a process died, or with every log's tail at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.proc.poll() is not None:
                raise AssertionError(f"{p.name} exited with {p.proc.returncode} waiting for {what}:\n{p.tail()}")
        try:
            if pred():
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    logs = "\n".join(f"--- {p.name}\n{p.tail(12)}" for p in procs)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}\n--- node\n{node.log_tail(8)}")


def _kill_workers(home: Path) -> None:
    """Workers run in their own sessions; kill any left alive by the pid their status file names."""
    for status in home.glob("miners/*/sn*/worker*/status.json"):
        try:
            pid = int(json.loads(status.read_text())["pid"])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass


def test_two_subnets_end_to_end(tmp_path: Path) -> None:
    started = time.monotonic()
    p2p_port = free_port_base(2)
    api_port = p2p_port + 1
    owners = {TEXT: "owner-text", COMPUTE: "owner-compute"}
    funded = {"owner-text": UNIT, "owner-compute": UNIT, "miner-text": 100 * UNIT, "miner-compute": 100 * UNIT,
              "validator-text": 2000 * UNIT, "validator-compute": 2000 * UNIT}
    hp = {"tempo": TEMPO, "weights_rate_limit": 5}
    plans, _ = generate(
        tmp_path / "net", hosts=["127.0.0.1"], chain_id=CHAIN, p2p_base=p2p_port, api_base=api_port, funded=funded,
        subnets=[(owners[TEXT], "text", hp), (owners[COMPUTE], "compute", {**hp, "commit_reveal_enabled": 1})],
    )
    home = tmp_path / "home"
    for name in funded:
        Wallet.create(home, name, PASSWORD, coldkey=account(tmp_path / "net", name), kdf="fast")
    pw = tmp_path / "password"
    pw.write_text(PASSWORD + "\n")
    api = plans[0].api
    common = ["--home", str(home), "--node", api, "--password-file", str(pw)]
    node = NodeProc(plans[0].home, api)
    procs: list[Proc] = []
    http = httpx.Client(base_url=api, timeout=5)

    def get(path: str) -> Any:
        return http.get(path).json()

    def wait(pred: Any, what: str, timeout: float) -> None:
        wait_until(pred, what, timeout, procs, node)

    try:
        node.start()
        wait(lambda: node.height() >= 2, "the chain to commit", 60)
        procs.append(Proc("miner-text", ["miner", "run", "--subnet", str(TEXT), "--wallet", "miner-text",
                                         "--gpus", "none", "--cpu-workers", "3", "--miner-config", "steps=40",
                                         "--miner-config", "2:steps=0", "--status-interval-s", "3",
                                         "--permit-refresh-s", "3", *common], tmp_path))
        procs.append(Proc("miner-compute", ["miner", "run", "--subnet", str(COMPUTE), "--wallet", "miner-compute",
                                            "--gpus", "none", "--cpu-workers", "3", "--fault", "0:crash-once",
                                            "--fault", "2:corrupt-answer", "--status-interval-s", "3",
                                            "--permit-refresh-s", "3", *common], tmp_path))
        compute_cfg = ["--task-config", "m=32", "--task-config", "k=256", "--task-config", "n=32",
                       "--task-config", "rate_gflops=1"]
        for netuid, wallet, extra in ((TEXT, "validator-text", []), (COMPUTE, "validator-compute", compute_cfg)):
            procs.append(Proc(wallet, ["validator", "run", "--subnet", str(netuid), "--wallet", wallet,
                                       "--stake", "1000", "--interval-s", "3", "--step-s", "2", "--sample", "8",
                                       *extra, *common], tmp_path))

        def axons(netuid: int) -> int:
            return sum(1 for r in get(f"/subnets/{netuid}/metagraph") if r["axon"])

        wait(lambda: axons(TEXT) == 3 and axons(COMPUTE) == 3, "6 miners to announce their axons", 90)

        miners = {n: [Wallet.load(home, f"miner-{s}").hotkey(f"worker{i}").public.hex() for i in range(3)]
                  for n, s in ((TEXT, "text"), (COMPUTE, "compute"))}
        validators = {n: Wallet.load(home, f"validator-{s}").hotkey().public.hex()
                      for n, s in ((TEXT, "text"), (COMPUTE, "compute"))}

        def rows(netuid: int) -> dict[str, dict]:
            return {r["hotkey"]: r for r in get(f"/subnets/{netuid}/metagraph")}

        def incentive(netuid: int) -> list[int]:
            mg = rows(netuid)
            return [mg[h]["incentive"] for h in miners[netuid]]

        def settled() -> bool:
            t, c = incentive(TEXT), incentive(COMPUTE)
            return min(t[0], t[1]) > t[2] and min(c[0], c[1]) > 0 and c[2] == 0
        left = BUDGET_S - (time.monotonic() - started)
        wait(settled, "incentives to follow quality on both subnets", max(30.0, left - 40))

        # one whole epoch of each subnet: owner's balance delta, and the emission each uid got in it
        period = TEMPO + 1

        def snap(netuid: int, owner: str, boundary: int) -> tuple[int, dict] | None:
            """State as of the epoch at `boundary`, or None if the reads ran into the next epoch."""
            wait(lambda: node.height() >= boundary, f"epoch at {boundary}", 60)
            bal, mg = get(f"/accounts/{owner}")["balance"], rows(netuid)
            return (bal, mg) if node.height() < boundary + period else None

        for netuid in (TEXT, COMPUTE):
            owner = crypto.address(account(tmp_path / "net", owners[netuid]).public)
            for _ in range(6):  # a loaded box can make a read miss its epoch window: take the next pair
                first = next_epoch_height(node.height(), netuid, TEMPO)
                snaps = [snap(netuid, owner, first), snap(netuid, owner, first + period)]
                if all(snaps):
                    break
            else:
                raise AssertionError("could not read two consecutive epochs; chain too fast for the reads")
            owner_delta = snaps[1][0] - snaps[0][0]
            mg = snaps[1][1]
            to_miners = sum(mg[h]["emission"] for h in miners[netuid])
            to_validators = mg[validators[netuid]]["emission"]
            total = owner_delta + to_miners + to_validators
            assert total > 0 and to_miners > 0 and to_validators > 0, (netuid, owner_delta, to_miners, to_validators)
            assert abs(owner_delta / total - 0.18) < 0.002, (netuid, owner_delta, total)
            assert abs(to_miners - to_validators) <= TEMPO + 1, (netuid, to_miners, to_validators)

        t, c = incentive(TEXT), incentive(COMPUTE)
        assert min(t[0], t[1]) > t[2] and c[2] == 0 and min(c[0], c[1]) > 0, (t, c)
        assert rows(COMPUTE)[validators[COMPUTE]]["dividends"] > 0
        assert rows(TEXT)[validators[TEXT]]["dividends"] > 0

        status = json.loads((home / "miners/miner-compute/sn2/status.json").read_text())
        w0 = status["workers"][0]
        assert w0["restarts"] >= 1 and w0["starts"] >= 2, w0  # crashed on its first query, restarted
        vstate = json.loads((home / "validators/validator-compute/default/sn2/state.json").read_text())
        assert "pending" in vstate
        assert "weights revealed" in (tmp_path / "validator-compute.log").read_text()
        assert "weights set" in (tmp_path / "validator-text.log").read_text()
    finally:
        codes = {p.name: p.stop() for p in procs}
        _kill_workers(home)
        node.stop()
        http.close()
    assert all(code == 0 for code in codes.values()), codes  # every process stopped cleanly on SIGTERM
    summary_lines = (tmp_path / "miner-compute.log").read_text()
    assert "stopping miner host" in summary_lines
    assert time.monotonic() - started < BUDGET_S + 60
    print(f"e2e took {time.monotonic() - started:.1f}s", file=sys.stderr)
