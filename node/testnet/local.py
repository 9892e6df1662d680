"""A whole network on one machine: generate, start, watch, measure, check, stop (spec/testnet.md).

`up()` writes a genesis with small tempos and funded accounts (node.testnet.gen), starts every
validator node, miner and subnet validator as its own OS process (own session, log file under the
testnet directory, PIDs in `pids.json`), registers and stakes the neurons through the nodes' HTTP
API, then follows every subnet's epochs. The emission split is measured from the chain: the owner's
balance and every neuron's stake are read between epochs (payouts only ever land at epoch heights),
and the deltas are summed over the counted epochs. Finally every node's state root is compared at a
common height and every process is stopped (SIGTERM to its process group, SIGKILL after a deadline).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node import plugins
from node.client.api_client import ApiError, NodeClient
from node.client.home import ensure_private_dir
from node.client.wallet import Wallet, write_hotkey
from node.errors import NodeError
from node.testnet.gen import (
    TESTNET_EXECUTION_DELAY,
    TESTNET_VOTING_PERIOD,
    UNIT,
    VALIDATOR_BALANCE,
    account,
    check_gov_windows,
    generate,
)
from protocol import crypto
from protocol.crypto import Keypair
from protocol.economics.emission import decimal_tokens
from protocol.messages import AddStake, Register, SetWeights
from protocol.state.state import epoch_due

TASKS = ("compute", "text")  # subnet i (1-based) runs TASKS[(i - 1) % 2]
MANIFEST = "testnet.json"
PIDS = "pids.json"
PASSWORD_FILE = "password"
OWNER_FUNDS = 1_000 * UNIT
NEURON_FUNDS = 1_000 * UNIT
VALIDATOR_SELF_STAKE = 100 * UNIT
U16 = 65535
# Many torch processes share few cores here: one BLAS/OpenMP thread each avoids oversubscription.
NEURON_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class TestnetError(NodeError):
    """The local testnet could not be started, disagreed, or a process died."""


MAX_PRICE = 1000 * UNIT  # a sanity cap on `--price`: a query priced above it is a typo


@dataclass(frozen=True)
class TestnetSpec:
    """What `testnet up` builds; every count is >= 1 except `miners`/`subnet_validators` (>= 0)."""

    directory: Path
    validators: int = 4
    subnets: int = 2
    miners: int = 3
    subnet_validators: int = 1
    epochs: int = 2
    tempo: int = 12
    chain_id: str = "tensornet-local"
    timeout_s: float = 300.0
    stop_deadline_s: float = 10.0
    cheaters: int = 0  # per subnet, the last CHEATERS miners corrupt every answer (`--fault 0:corrupt-answer`)
    price: int = 0  # units per paid query every miner sells (`miner run --price`); 0: they serve validators only
    gov_voting_period: int = TESTNET_VOTING_PERIOD  # governance windows in heights (spec/testnet.md §1)
    gov_execution_delay: int = TESTNET_EXECUTION_DELAY

    def check(self) -> None:
        if not 1 <= self.validators <= 64:
            raise TestnetError(f"--validators {self.validators}: use 1..64")
        if not 1 <= self.subnets <= 16:
            raise TestnetError(f"--subnets {self.subnets}: use 1..16")
        if not 1 <= self.miners <= 64 or not 1 <= self.subnet_validators <= 16:
            raise TestnetError("--miners must be 1..64 and --subnet-validators 1..16 (a subnet needs both to pay)")
        if not 0 <= self.price <= MAX_PRICE:
            raise TestnetError(f"--price: use 0..{MAX_PRICE // UNIT} tokens")
        if not 0 <= self.cheaters < self.miners:
            raise TestnetError(f"--cheaters {self.cheaters}: use 0..{self.miners - 1} (some miner must be honest)")
        if not 1 <= self.epochs <= 100:
            raise TestnetError(f"--epochs {self.epochs}: use 1..100")
        if not 2 <= self.tempo <= 1000:
            raise TestnetError(f"--tempo {self.tempo}: use 2..1000")
        check_gov_windows(self.gov_voting_period, self.gov_execution_delay)


# --- ports and processes ------------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_base(count: int, start: int | None = None, stop: int = 60000, step: int = 97) -> int:
    """A `base` with ports base..base+count-1 all free on loopback (several testnets may coexist).

    Without `start` the scan begins at a random candidate and wraps around: two testnets or test runs started at
    the same moment would otherwise both find the first free range, and one of them lose the race to bind it."""
    bases = list(range(31000 if start is None else start, stop - count, step))
    first = secrets.randbelow(len(bases)) if start is None and bases else 0
    for base in bases[first:] + bases[:first]:
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise TestnetError(f"no {count} consecutive free TCP ports on 127.0.0.1 between {start} and {stop}")


def tensornet_argv() -> list[str]:
    """How to run the `tensornet` CLI in a child: the console script beside this interpreter, else -m."""
    script = Path(sys.executable).with_name("tensornet")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "node.cli.app"]


@dataclass
class Proc:
    name: str
    role: str  # node | miner | validator
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def tail(self, lines: int = 8) -> str:
        return tail_file(self.log, lines)


def tail_file(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Processes:
    """Child processes, each in its own session (so a signal reaches its workers), recorded in pids.json."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: list[Proc] = []

    def start(self, name: str, role: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        logs = self.directory / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        proc = Proc(name, role, argv, logs / f"{name}.log")
        with proc.log.open("ab") as out:
            proc.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
                cwd=self.directory,
            )
        self.procs.append(proc)
        self.record()
        return proc

    def record(self) -> None:
        entries = [
            {"name": p.name, "role": p.role, "pid": p.pid, "argv": p.argv, "log": str(p.log)}
            for p in self.procs
            if p.popen is not None
        ]
        tmp = self.directory / (PIDS + ".tmp")
        tmp.write_text(json.dumps({"runner_pid": os.getpid(), "processes": entries}, indent=2))
        tmp.replace(self.directory / PIDS)

    def dead(self) -> list[Proc]:
        return [p for p in self.procs if p.popen is not None and p.popen.poll() is not None]

    def stop(self, deadline_s: float) -> dict[str, str]:
        """SIGTERM every process group, SIGKILL what is left after `deadline_s`; name -> how it ended."""
        how = stop_pids([(p.name, p.pid) for p in self.procs if p.popen is not None], deadline_s)
        for p in self.procs:
            if p.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.popen.wait(timeout=1)
        with contextlib.suppress(OSError):
            (self.directory / PIDS).unlink()
        return how


def live_groups(pgids: set[int]) -> set[int]:
    """Which of these process groups still hold a process that is not a zombie (one scan of /proc)."""
    live: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) in pgids:
                live.add(int(fields[2]))
    return live


def stop_pids(named: list[tuple[str, int]], deadline_s: float) -> dict[str, str]:
    """Stop the process groups led by these PIDs: SIGTERM, wait up to `deadline_s`, then SIGKILL."""
    how: dict[str, str] = {}
    live: dict[int, str] = {}
    for name, pid in named:
        try:
            os.killpg(pid, signal.SIGTERM)
            live[pid] = name
        except ProcessLookupError:
            how[name] = "already gone"
    end = time.monotonic() + deadline_s
    while live and time.monotonic() < end:
        _reap(list(live))
        still = live_groups(set(live))
        for pid in set(live) - still:
            how[live.pop(pid)] = "SIGTERM"
        if live:
            time.sleep(0.1)
    for pid, name in live.items():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        how[name] = f"SIGKILL after {deadline_s:g}s"
    end = time.monotonic() + 5  # SIGKILL is asynchronous: wait (bounded) until the groups are really gone
    while live and time.monotonic() < end:
        _reap(list(live))
        if not live_groups(set(live)):
            break
        time.sleep(0.05)
    _reap([pid for _, pid in named])
    return how


def _reap(pids: list[int]) -> None:
    """Collect those of these PIDs that are exited children of this process (else they stay zombies)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


# --- plan: keys, genesis, wallets ---------------------------------------------------------------


@dataclass
class Neuron:
    name: str  # wallet name, e.g. s1-miner-0
    netuid: int
    role: str  # miner | validator
    coldkey: Keypair
    hotkey: Keypair
    fault: str | None = None  # a miner test hook (subnets/miner.py), e.g. corrupt-answer

    @property
    def hotkey_hex(self) -> str:
        return self.hotkey.public.hex()


@dataclass
class Plan:
    spec: TestnetSpec
    nodes: list[dict[str, Any]]  # name, home, api, multiaddr
    subnets: list[dict[str, Any]]  # netuid, task, owner (address), owner_hex
    neurons: list[Neuron]
    wallet_home: Path
    port_base: int

    def manifest(self) -> dict[str, Any]:
        return {
            "chain_id": self.spec.chain_id,
            "tempo": self.spec.tempo,
            "port_base": self.port_base,
            "nodes": self.nodes,
            "subnets": self.subnets,
            "wallet_home": str(self.wallet_home),
            "neurons": [
                {"name": n.name, "netuid": n.netuid, "role": n.role, "hotkey": n.hotkey_hex,
                 "coldkey": n.coldkey.public.hex(), "fault": n.fault}
                for n in self.neurons
            ],
        }


def _write_password_file(path: Path) -> str:
    """A fresh random password for the testnet's wallets, in a file created 0600 (never briefly readable)."""
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return password


def make_plan(spec: TestnetSpec) -> Plan:
    """Write genesis, node homes and neuron wallets under `spec.directory` (which must not hold a testnet)."""
    spec.check()
    d = spec.directory
    if (d / MANIFEST).exists() or (d / "genesis.json").exists():
        raise TestnetError(f"{d} already holds a testnet; run `tensornet testnet clean --dir {d}` first")
    ensure_private_dir(d)
    ports = free_port_base(2 * spec.validators + 2 * spec.subnets * (spec.miners + spec.subnet_validators) + 4)
    neuron_names: list[tuple[int, str, str]] = []
    cheaters = {f"s{s}-miner-{j}" for s in range(1, spec.subnets + 1)
                for j in range(spec.miners - spec.cheaters, spec.miners)}
    for s in range(1, spec.subnets + 1):
        neuron_names += [(s, "miner", f"s{s}-miner-{j}") for j in range(spec.miners)]
        neuron_names += [(s, "validator", f"s{s}-validator-{j}") for j in range(spec.subnet_validators)]
    funded = {f"owner-{s}": OWNER_FUNDS for s in range(1, spec.subnets + 1)}
    funded.update({name: NEURON_FUNDS for _, _, name in neuron_names})
    hp = {
        "tempo": spec.tempo,
        "weights_rate_limit": max(1, spec.tempo // 4),
        "immunity_period": 10 * spec.tempo,
        "min_burn": 1_000_000,  # 0.001 token: registration must not eat the test funds
        "max_burn": 10 * UNIT,
    }
    subnet_plan = [(f"owner-{s}", TASKS[(s - 1) % len(TASKS)], dict(hp)) for s in range(1, spec.subnets + 1)]
    node_plans, _ = generate(
        d,
        hosts=["127.0.0.1"] * spec.validators,
        chain_id=spec.chain_id,
        p2p_base=ports,
        api_base=ports + spec.validators,
        funded=funded,
        subnets=subnet_plan,
        genesis_params={"subnet_min_burn": 10 * UNIT, "gov_voting_period": spec.gov_voting_period,
                        "gov_execution_delay": spec.gov_execution_delay},
        validator_balance=VALIDATOR_BALANCE,
    )
    wallet_home = d / "wallets-home"
    password = _write_password_file(d / PASSWORD_FILE)
    neurons = []
    for netuid, role, name in neuron_names:
        cold = account(d, name)  # generate() drew it at random and funded it
        hot = Keypair.generate()
        wallet = Wallet.create(wallet_home, name, password, kdf="fast", coldkey=cold)
        # The miner host signs with hotkey `worker<i>` (one per worker); a validator with `default`.
        hk = wallet.hotkey_path()
        hk.unlink()
        write_hotkey(hk, hot)
        if role == "miner":
            write_hotkey(wallet.hotkey_path("worker0"), hot)
        neurons.append(Neuron(name, netuid, role, cold, hot, "corrupt-answer" if name in cheaters else None))
    plan = Plan(
        spec=spec,
        nodes=[{"name": p.name, "home": str(p.home), "api": p.api, "multiaddr": p.multiaddr} for p in node_plans],
        subnets=[
            {"netuid": s, "task": subnet_plan[s - 1][1], "owner": account(d, f"owner-{s}").address,
             "owner_hex": account(d, f"owner-{s}").public.hex()}
            for s in range(1, spec.subnets + 1)
        ],
        neurons=neurons,
        wallet_home=wallet_home,
        port_base=ports,
    )
    (d / MANIFEST).write_text(json.dumps(plan.manifest(), indent=2))
    return plan


# --- miners and validators (issue 6) ------------------------------------------------------------


def neuron_commands_available() -> dict[str, bool]:
    """Whether `tensornet miner run` / `tensornet validator run` are installed (subnets/ plugs them in)."""
    return {role: plugins.available(role) for role in ("miner", "validator")}


def neuron_argv(plan: Plan, n: Neuron, node_url: str, port: int, weights_interval_s: float) -> list[str]:
    """`tensornet miner run` (one CPU worker: hotkey `worker0`) or `tensornet validator run` for `n`."""
    common = [
        "--subnet", str(n.netuid), "--wallet", n.name, "--home", str(plan.wallet_home), "--node", node_url,
        "--password-file", str(plan.spec.directory / PASSWORD_FILE),
    ]
    if n.role == "miner":
        fault = ["--fault", f"0:{n.fault}"] if n.fault else []
        price = ["--price", decimal_tokens(plan.spec.price)] if plan.spec.price else []
        return [*tensornet_argv(), "miner", "run", *common, "--gpus", "none", "--cpu-workers", "1",
                "--base-port", str(port), "--status-interval-s", "5", *fault, *price]
    return [*tensornet_argv(), "validator", "run", *common, "--stake", str(VALIDATOR_SELF_STAKE // UNIT),
            "--interval-s", f"{weights_interval_s:g}", "--step-s", "2"]


# --- chain observation ------------------------------------------------------------------------


@dataclass
class Snapshot:
    height: int
    owner_balance: int
    stakes: dict[str, int]  # hotkey hex -> stake
    metagraph: list[dict[str, Any]]


@dataclass
class SubnetTrack:
    """Epoch accounting of one subnet from chain snapshots taken between its epochs."""

    netuid: int
    tempo: int
    owner_hex: str
    roles: dict[str, str]  # hotkey hex -> miner | validator
    last: Snapshot | None = None
    last_paid: bool = False  # the previous window paid neurons, so no pending pot carries into the next
    epochs_seen: int = 0
    counted: int = 0
    owner: int = 0
    miners: int = 0
    validators: int = 0
    per_neuron: dict[str, int] = field(default_factory=dict)
    first_counted_height: int | None = None

    def epochs_between(self, a: int, b: int) -> int:
        """Epoch heights h with a < h <= b (spec/state.md §7 schedule)."""
        return sum(1 for h in range(a + 1, b + 1) if epoch_due(h, self.netuid, self.tempo))

    def observe(self, snap: Snapshot, want: int) -> None:
        prev = self.last
        if prev is not None:
            n = self.epochs_between(prev.height, snap.height)
            if n == 0:
                return
            self.epochs_seen += n
            d_owner = snap.owner_balance - prev.owner_balance
            deltas = {h: snap.stakes.get(h, 0) - prev.stakes.get(h, 0) for h in snap.stakes}
            d_m = sum(v for h, v in deltas.items() if self.roles.get(h) == "miner")
            d_v = sum(v for h, v in deltas.items() if self.roles.get(h) == "validator")
            paid = d_m > 0 and d_v > 0
            # Only a window holding exactly one epoch is counted: in a longer one, an epoch that paid one
            # side only (its pot flowing to the other) could hide behind one that paid both.
            if n == 1 and paid and self.last_paid and self.counted < want:
                self.counted += 1
                self.owner += d_owner
                self.miners += d_m
                self.validators += d_v
                for h, v in deltas.items():
                    self.per_neuron[h] = self.per_neuron.get(h, 0) + v
                if self.first_counted_height is None:
                    self.first_counted_height = prev.height
            self.last_paid = n == 1 and d_m + d_v > 0  # a longer window may end with an epoch that paid nobody
        self.last = snap

    def split(self) -> dict[str, float]:
        total = self.owner + self.miners + self.validators
        if total == 0:
            return {"owner": 0.0, "miners": 0.0, "validators": 0.0}
        return {k: round(v / total, 6) for k, v in
                (("owner", self.owner), ("miners", self.miners), ("validators", self.validators))}


def snapshot(client: NodeClient, netuid: int, owner_hex: str, tempo: int) -> Snapshot:
    """Owner balance and neuron stakes, all read between the same two epoch heights (retried if not)."""
    for _ in range(5):
        h0 = int(client.status()["height"])
        mg = client.metagraph(netuid)
        bal = int(client.account(bytes.fromhex(owner_hex)).get("balance", 0))
        h1 = int(client.status()["height"])
        if not any(epoch_due(h, netuid, tempo) for h in range(h0 + 1, h1 + 1)):
            return Snapshot(h1, bal, {str(r["hotkey"]): int(r["stake"]) for r in mg}, mg)
    raise TestnetError(f"could not read subnet {netuid} between two epochs (tempo too small for this machine?)")


def check_state_roots(urls: list[str], back: int = 3) -> dict[str, Any]:
    """Every node's /commits/{h} at the highest common height (and `back` below it) must agree."""
    clients = [NodeClient(u, timeout=5) for u in urls]
    try:
        heights = [int(c.status()["height"]) for c in clients]
        common = min(heights)
        if common < 1:
            raise TestnetError(f"a node has committed nothing (heights {heights})")
        disagreements = []
        checked = []
        for h in range(common, max(0, common - back - 1), -1):
            roots = [c.get(f"/commits/{h}") for c in clients]
            pairs = {(r["state_root"], r["digest"]) for r in roots}
            checked.append(h)
            if len(pairs) != 1:
                disagreements.append(
                    {"height": h, "roots": {u: r["state_root"] for u, r in zip(urls, roots, strict=True)}}
                )
        root = clients[0].get(f"/commits/{common}")["state_root"]
        return {"agree": not disagreements, "height": common, "heights": heights, "checked": checked,
                "state_root": root, "disagreements": disagreements}
    finally:
        for c in clients:
            c.close()


# --- the run ------------------------------------------------------------------------------------


@dataclass
class LiveStatus:
    """What the live view shows; refreshed by `up()` at each poll."""

    phase: str = "starting"
    elapsed_s: float = 0.0
    nodes: list[dict[str, Any]] = field(default_factory=list)
    subnets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Testnet:
    """One local testnet run; `run()` returns the result object `testnet up --json` prints."""

    def __init__(self, spec: TestnetSpec, on_status: Callable[[LiveStatus], None] | None = None) -> None:
        self.spec = spec
        self.on_status = on_status or (lambda _s: None)
        self.procs = Processes(spec.directory)
        self.live = LiveStatus()
        self.plan: Plan | None = None
        self.clients: list[NodeClient] = []
        self.started = time.monotonic()
        self.scripted_weights = False
        self.weights_interval_s = 5.0
        self.heights_per_s: float | None = None
        self.ran: dict[str, str] = {}

    # -- helpers

    def _tick(self, phase: str | None = None) -> None:
        if phase:
            self.live.phase = phase
        self.live.elapsed_s = time.monotonic() - self.started
        self._check_alive()
        self.on_status(self.live)

    def _check_alive(self) -> None:
        dead = self.procs.dead()
        if dead:
            p = dead[0]
            code = p.popen.returncode if p.popen else None
            raise TestnetError(
                f"{p.name} ({p.role}) exited with code {code}; last lines of {p.log}:\n{p.tail(12)}"
            )

    def _deadline(self) -> float:
        return self.started + self.spec.timeout_s

    def _wait(self, what: str, cond: Callable[[], bool], interval: float = 0.3) -> None:
        while True:
            try:
                if cond():
                    return
            except ApiError:
                pass
            self._tick()
            if time.monotonic() > self._deadline():
                raise TestnetError(f"timed out after {self.spec.timeout_s:.0f}s waiting for {what}")
            time.sleep(interval)

    # -- phases

    def start_nodes(self) -> None:
        assert self.plan is not None
        for n in self.plan.nodes:
            self.procs.start(n["name"], "node", [*tensornet_argv(), "node", "run", "--home", n["home"]])
        self.clients = [NodeClient(n["api"], timeout=5) for n in self.plan.nodes]
        self._wait("every node to commit height 3", lambda: all(
            int(c.status()["height"]) >= 3 for c in self.clients))
        self.ran["nodes"] = f"{len(self.plan.nodes)} validator node processes"

    def register_neurons(self) -> None:
        """Register every hotkey (burn), stake the subnet validators, and wait until the chain shows it."""
        assert self.plan is not None
        c = self.clients[0]
        t0, h0 = time.monotonic(), int(c.status()["height"])
        for n in self.plan.neurons:
            c.send(n.coldkey, Register(n.netuid, n.hotkey.public, 10 * UNIT))
            if n.role == "validator":
                c.send(n.coldkey, AddStake(n.hotkey.public, VALIDATOR_SELF_STAKE))

        def done() -> bool:
            for s in self.plan.subnets:
                mg = {r["hotkey"]: r for r in c.metagraph(s["netuid"])}
                for n in self.plan.neurons:
                    if n.netuid != s["netuid"]:
                        continue
                    row = mg.get(n.hotkey_hex)
                    if row is None or (n.role == "validator" and int(row["stake"]) < VALIDATOR_SELF_STAKE):
                        return False
            return True

        self._wait("registrations and stakes to commit", done)
        dt, dh = time.monotonic() - t0, int(c.status()["height"]) - h0
        if dt > 0 and dh > 0:
            self.heights_per_s = dh / dt
            # Validators submit weights about twice per tempo, whatever this machine's commit rate.
            self.weights_interval_s = max(1.0, min(30.0, self.spec.tempo / self.heights_per_s / 2))

    def start_neurons(self) -> None:
        assert self.plan is not None
        have = neuron_commands_available()
        urls = [n["api"] for n in self.plan.nodes]
        port = self.plan.port_base + 2 * self.spec.validators
        started = {"miner": 0, "validator": 0}
        for i, n in enumerate(self.plan.neurons):
            if not have[n.role]:
                continue
            argv = neuron_argv(self.plan, n, urls[i % len(urls)], port + i, self.weights_interval_s)
            self.procs.start(n.name, n.role, argv, env=NEURON_ENV)
            started[n.role] += 1
        for role in ("miner", "validator"):
            if have[role]:
                self.ran[f"{role}s"] = f"{started[role]} `tensornet {role} run` processes"
            else:
                self.ran[f"{role}s"] = (
                    f"NOT RUN: `tensornet {role} run` is not built in this checkout (issue 6); "
                    + ("hotkeys registered on chain only" if role == "miner" else
                       "the runner sets uniform weights over the miners from each validator hotkey instead "
                       "(no queries, no scoring)")
                )
        self.scripted_weights = not have["validator"]
        if any(have.values()):
            self.live.notes.append("neuron logs: " + str(self.spec.directory / "logs"))

    def _scripted_weights(self, sent: dict[str, int]) -> None:
        """Issue-6 fallback: each subnet validator with a permit weights its miners equally, once per tempo."""
        assert self.plan is not None
        c = self.clients[0]
        head = int(c.status()["height"])
        for s in self.plan.subnets:
            mg = c.metagraph(s["netuid"])
            uid = {r["hotkey"]: r["uid"] for r in mg}
            mine = [n for n in self.plan.neurons if n.netuid == s["netuid"]]
            miners = sorted(uid[n.hotkey_hex] for n in mine if n.role == "miner")
            for n in mine:
                if n.role != "validator" or not mg[uid[n.hotkey_hex]]["validator_permit"]:
                    continue
                if head - sent.get(n.hotkey_hex, -(10**9)) < self.spec.tempo:
                    continue
                with contextlib.suppress(ApiError):
                    c.send(n.hotkey, SetWeights(s["netuid"], tuple(miners), tuple([U16] * len(miners)), 0))
                    sent[n.hotkey_hex] = head

    def follow_epochs(self) -> list[SubnetTrack]:
        """Poll until every subnet has `spec.epochs` counted epochs that paid both miners and validators."""
        assert self.plan is not None
        tracks = [
            SubnetTrack(
                s["netuid"], self.spec.tempo, s["owner_hex"],
                {n.hotkey_hex: n.role for n in self.plan.neurons if n.netuid == s["netuid"]},
            )
            for s in self.plan.subnets
        ]
        weights_sent: dict[str, int] = {}
        c = self.clients[0]
        while True:
            if self.scripted_weights:
                with contextlib.suppress(ApiError):
                    self._scripted_weights(weights_sent)
            for t in tracks:
                with contextlib.suppress(ApiError):
                    t.observe(snapshot(c, t.netuid, t.owner_hex, t.tempo), self.spec.epochs)
            self._refresh_view(tracks)
            self._tick("running epochs")
            if all(t.counted >= self.spec.epochs for t in tracks):
                return tracks
            if time.monotonic() > self._deadline():
                behind = ", ".join(f"subnet {t.netuid}: {t.counted}/{self.spec.epochs} paid epochs "
                                   f"({t.epochs_seen} seen)" for t in tracks)
                raise TestnetError(f"timed out after {self.spec.timeout_s:.0f}s: {behind}")
            time.sleep(0.2)

    def _refresh_view(self, tracks: list[SubnetTrack]) -> None:
        nodes = []
        assert self.plan is not None
        for n, c in zip(self.plan.nodes, self.clients, strict=True):
            try:
                s = c.status()
                nodes.append({"name": n["name"], "height": s["height"], "round": s["round"], "peers": s["peers"],
                              "latency_ms": s.get("commit_latency_ms_p50"), "state_root": s["state_root"][:12]})
            except ApiError:
                nodes.append({"name": n["name"], "height": None, "round": None, "peers": None,
                              "latency_ms": None, "state_root": "unreachable"})
        subnets = []
        for t, s in zip(tracks, self.plan.subnets, strict=True):
            top = []
            if t.last is not None:
                rows = sorted(t.last.metagraph, key=lambda r: -int(r["emission"]))[:3]
                top = [(t.roles.get(r["hotkey"], "?"), r["uid"], int(r["emission"])) for r in rows if r["emission"]]
            subnets.append({"netuid": t.netuid, "task": s["task"], "epochs_seen": t.epochs_seen,
                            "counted": t.counted, "want": self.spec.epochs, "top": top, "split": t.split()})
        self.live.nodes, self.live.subnets = nodes, subnets

    def result(self, tracks: list[SubnetTrack], roots: dict[str, Any]) -> dict[str, Any]:
        assert self.plan is not None
        concentration = None
        with contextlib.suppress(ApiError):
            concentration = self.clients[0].get("/concentration")  # display metrics (spec/economics.md §5)
        subnets = []
        faults = {n.hotkey_hex: n.fault for n in self.plan.neurons}
        for t, s in zip(tracks, self.plan.subnets, strict=True):
            mg = t.last.metagraph if t.last else []
            neurons = [
                {
                    "uid": r["uid"],
                    "hotkey": r["hotkey"],
                    "role": t.roles.get(r["hotkey"], "miner"),
                    "fault": faults.get(r["hotkey"]),
                    "stake": int(r["stake"]),
                    "incentive": round(int(r["incentive"]) / U16, 6),
                    "dividends": round(int(r["dividends"]) / U16, 6),
                    "emission": t.per_neuron.get(r["hotkey"], 0),
                    "last_epoch_emission": int(r["emission"]),
                }
                for r in mg
            ]
            subnets.append({
                "netuid": t.netuid,
                "task": s["task"],
                "concentration": concentration["subnets"].get(str(t.netuid)) if concentration else None,
                "neurons": neurons,
                "emission_split": t.split(),
                "emission_units": {"owner": t.owner, "miners": t.miners, "validators": t.validators},
                "epochs_counted": t.counted,
                "epochs_seen": t.epochs_seen,
            })
        lat = [n["latency_ms"] for n in self.live.nodes if n.get("latency_ms") is not None]
        return {
            "state_roots_agree": roots["agree"],
            "height": roots["height"],
            "state_root": roots["state_root"],
            "epochs": min((t.counted for t in tracks), default=0),
            "concentration": concentration,
            "subnets": subnets,
            "nodes": self.live.nodes,
            "commit_latency_ms_p50": sorted(lat)[len(lat) // 2] if lat else None,
            "ran": self.ran,
            "seconds": round(time.monotonic() - self.started, 1),
            "directory": str(self.spec.directory),
        }

    def run(self, detach: bool = False) -> dict[str, Any]:
        """Plan, start, follow the epochs, check roots; stops everything unless `detach` (then the caller owns it)."""
        ok = False
        try:
            self._tick("generating keys and genesis")
            self.plan = make_plan(self.spec)
            self._tick("starting nodes")
            self.start_nodes()
            self._tick("registering neurons")
            self.register_neurons()
            self._tick("starting miners and validators")
            self.start_neurons()
            tracks = self.follow_epochs()
            self._tick("checking state roots")
            roots = check_state_roots([n["api"] for n in self.plan.nodes])
            res = self.result(tracks, roots)
            if not roots["agree"]:
                res["error"] = f"state roots disagree: {roots['disagreements']}"
            ok = True
            return res
        finally:
            for c in self.clients:
                c.close()
            if not (detach and ok):
                self._tick_safe("stopping")
                res_stop = self.procs.stop(self.spec.stop_deadline_s)
                self.ran["stopped"] = ", ".join(f"{k}: {v}" for k, v in sorted(res_stop.items()))

    def _tick_safe(self, phase: str) -> None:
        self.live.phase = phase
        with contextlib.suppress(Exception):
            self.on_status(self.live)


# --- background network management --------------------------------------------------------------


def read_pids(directory: Path) -> list[dict[str, Any]]:
    path = directory / PIDS
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text())["processes"])
    except (ValueError, KeyError) as exc:
        raise TestnetError(f"{path} is not a testnet PID file: {exc}") from None


def _is_ours(entry: dict[str, Any]) -> bool:
    """The PID still runs the command we started (not a recycled PID): its command line ends with our
    arguments (a console script runs as `python <script> ...`, so argv[0] may be preceded by the interpreter)."""
    try:
        cmdline = [a.decode(errors="replace") for a in
                   Path(f"/proc/{int(entry['pid'])}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return False
    want = [str(a) for a in entry["argv"]]
    tail = want[1:]
    if not tail or cmdline[-len(tail):] != tail:
        return False
    return any(Path(a).name == Path(want[0]).name for a in cmdline[: len(cmdline) - len(tail)])


def down(directory: Path, deadline_s: float = 10.0) -> dict[str, str]:
    """Stop a testnet left running with `up --detach`; name -> how it ended."""
    entries = read_pids(directory)
    how = {e["name"]: "not running" for e in entries if not _is_ours(e)}
    how.update(stop_pids([(e["name"], int(e["pid"])) for e in entries if _is_ours(e)], deadline_s))
    with contextlib.suppress(OSError):
        (directory / PIDS).unlink()
    return how


def running(directory: Path) -> list[dict[str, Any]]:
    return [e for e in read_pids(directory) if _is_ours(e)]


def clean(directory: Path) -> dict[str, Any]:
    """Stop anything still running, then delete the testnet directory (only one `make_plan` wrote)."""
    if not directory.exists():
        return {"directory": str(directory), "removed": False, "stopped": {}}
    if not (directory / MANIFEST).exists() and not (directory / "network.json").exists():
        raise TestnetError(f"{directory} does not look like a testnet directory (no {MANIFEST}); not deleting it")
    stopped = down(directory)
    shutil.rmtree(directory)
    return {"directory": str(directory), "removed": True, "stopped": stopped}


def log_files(directory: Path, names: list[str] | None = None) -> list[Path]:
    logs = directory / "logs"
    if not logs.is_dir():
        raise TestnetError(f"no logs under {directory}; start one with `tensornet testnet up --dir {directory}`")
    files = sorted(logs.glob("*.log"))
    if names:
        files = [f for f in files if f.stem in names]
        if not files:
            have = ", ".join(p.stem for p in logs.glob("*.log"))
            raise TestnetError(f"no log named {', '.join(names)} (have: {have})")
    return files


def follow(files: list[Path], poll_s: float = 0.5) -> Iterator[tuple[str, str]]:
    """Yield (name, line) as lines are appended to any of `files` (like tail -f)."""
    handles = {f.stem: f.open("r", errors="replace") for f in files}
    try:
        for h in handles.values():
            h.seek(0, os.SEEK_END)
        while True:
            quiet = True
            for name, h in handles.items():
                line = h.readline()
                while line:
                    quiet = False
                    yield name, line.rstrip("\n")
                    line = h.readline()
            if quiet:
                time.sleep(poll_s)
    finally:
        for h in handles.values():
            h.close()


def address_of(hex_key: str) -> str:
    return crypto.address(bytes.fromhex(hex_key))
