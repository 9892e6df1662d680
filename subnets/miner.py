"""The miner host: one worker OS process per local GPU (or K CPU workers), and a supervisor over them.

Why processes: each worker pins one GPU through `CUDA_VISIBLE_DEVICES` before torch starts, owns its
CUDA context, and can crash (driver error, OOM) without taking its siblings down; the supervisor then
restarts it with exponential backoff. Each worker has its own hotkey (`worker<i>` in the wallet), its own
uid on the subnet, its own libp2p identity and listener, and announces itself with `serve_axon`.

The coldkey stays in the supervisor: it pays the registrations before any worker starts; workers only
hold their hotkey. Layout under the home:

    miners/<wallet>/sn<netuid>/status.json           the supervisor's summary (refreshed periodically)
    miners/<wallet>/sn<netuid>/worker<i>/node_key    the worker's libp2p key
    miners/<wallet>/sn<netuid>/worker<i>/config.json what the worker was started with
    miners/<wallet>/sn<netuid>/worker<i>/status.json the worker's own figures
    miners/<wallet>/sn<netuid>/worker<i>/worker.log  its stdout and stderr

Faults (`--fault INDEX:KIND`) exist for tests and drills: `crash-once` raises on the first query of
the worker's life (once per home), `corrupt-answer` flips a bit of every answer (a cheater).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

from node import log as node_log
from node.client.api_client import NodeClient
from node.client.wallet import Wallet, read_hotkey
from node.errors import NodeError
from node.log import get_logger
from protocol.crypto import Keypair
from protocol.messages import Register, ServeAxon
from subnets.payments import PaymentConfig, PaymentDesk

log = get_logger(__name__)

FAULTS = ("crash-once", "corrupt-answer")
CRASH_MARKER = "crashed-once"
EXIT_FATAL = 3  # the model failed; the supervisor restarts the worker


class MinerError(NodeError):
    """A miner host that cannot start or keep running (bad options, no registration, unknown subnet)."""


# --- config ------------------------------------------------------------------------------------------


@dataclass
class WorkerConfig:
    """Everything a worker process needs; written to its directory as JSON and passed by path."""

    index: int
    netuid: int
    node: str
    hotkey_file: str
    directory: str
    device_label: str  # "gpu:<id>" or "cpu"
    listen_host: str = "127.0.0.1"
    announce_host: str = "127.0.0.1"
    port: int = 0
    task_config: dict[str, Any] = field(default_factory=dict)
    miner_config: dict[str, Any] = field(default_factory=dict)
    fault: str | None = None
    deadline_s: float | None = None  # default: the task's TIMEOUT_MS
    rate_per_s: float = 2.0
    burst: int = 10
    permit_refresh_s: float = 10.0
    status_every_s: float = 2.0
    threads: int = 1
    register_wait_s: float = 120.0
    price: int = 0  # units per paid query (spec/economics.md §3); 0: no paid queries
    max_waiting: int = 8  # queries queued for the model; paid ones first, free ones shed when full

    @classmethod
    def load(cls, path: str | Path) -> WorkerConfig:
        return cls(**json.loads(Path(path).read_text()))


def parse_kv(items: list[str], workers: int) -> list[dict[str, Any]]:
    """`key=value` (every worker) or `INDEX:key=value` (one worker) -> one config dict per worker.

    Values: integers, true/false, else strings, matching `subnets.task.Config`.
    """
    out: list[dict[str, Any]] = [{} for _ in range(workers)]
    for item in items:
        target: range | list[int] = range(workers)
        text = item
        head, sep, rest = item.partition(":")
        if sep and head.isdigit():
            idx = int(head)
            if idx >= workers:
                raise MinerError(f"{item!r}: worker {idx} does not exist ({workers} workers)")
            target, text = [idx], rest
        key, eq, raw = text.partition("=")
        if not eq or not key:
            raise MinerError(f"{item!r}: expected key=value or INDEX:key=value")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            try:
                value = int(raw)
            except ValueError:
                pass
        for i in target:
            out[i][key] = value
    return out


def parse_faults(items: list[str], workers: int) -> dict[int, str]:
    faults: dict[int, str] = {}
    for item in items:
        head, _, kind = item.partition(":")
        if not head.isdigit() or kind not in FAULTS:
            raise MinerError(f"--fault {item!r}: expected INDEX:KIND with KIND one of {', '.join(FAULTS)}")
        if int(head) >= workers:
            raise MinerError(f"--fault {item!r}: worker {head} does not exist ({workers} workers)")
        faults[int(head)] = kind
    return faults


def plan_devices(gpus: str, cpu_workers: int, env: Mapping[str, str] | None = None) -> list[str]:
    """One label per worker: `gpu:<id>` for each chosen GPU, else `cpu` x cpu_workers.

    `all` takes every GPU this process may see (none here: CPU workers); `none` forces CPU; `0,1` asks
    for those ids and fails if one is not visible, so an operator's typo is not a silent CPU run.
    """
    if cpu_workers < 1 and gpus == "none":
        raise MinerError("--cpu-workers must be at least 1")
    if gpus == "none":
        return ["cpu"] * cpu_workers
    from subnets.device import cuda_count, visible_gpu_ids  # start-up time: torch

    env = dict(os.environ if env is None else env)
    count = cuda_count(env)
    visible = visible_gpu_ids(env)
    ids = visible[:count] if visible is not None else [str(i) for i in range(count)]
    if gpus == "all":
        if not ids:
            log.info("no GPU visible; running CPU workers", cpu_workers=cpu_workers)
            if cpu_workers < 1:
                raise MinerError("no GPU visible and --cpu-workers is 0: nothing to run")
            return ["cpu"] * cpu_workers
        return [f"gpu:{i}" for i in ids]
    wanted = [x.strip() for x in gpus.split(",") if x.strip()]
    if not wanted or not all(x.isdigit() for x in wanted):
        raise MinerError(f"--gpus {gpus!r}: expected all, none, or comma-separated GPU indices")
    missing = [x for x in wanted if int(x) >= len(ids)]
    if missing:
        raise MinerError(f"--gpus {gpus!r}: GPU(s) {', '.join(missing)} not visible ({len(ids)} visible)")
    return [f"gpu:{ids[int(x)]}" for x in wanted]


def worker_env(device_label: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["CUDA_VISIBLE_DEVICES"] = device_label.split(":", 1)[1] if device_label.startswith("gpu:") else ""
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- chain helpers (blocking; run them in a thread from trio) ---------------------------------------------


def subnet_task_name(client: NodeClient, netuid: int) -> str:
    info = client.get(f"/subnets/{netuid}")
    return str(info["name"])


def find_uid(client: NodeClient, netuid: int, hotkey: bytes) -> tuple[int, dict[str, Any]] | None:
    for row in client.metagraph(netuid):
        if bytes.fromhex(row["hotkey"]) == hotkey:
            return int(row["uid"]), row
    return None


def ensure_registered(
    client: NodeClient,
    netuid: int,
    hotkeys: list[Keypair],
    coldkey: Callable[[], Keypair],
    max_burn: int,
    timeout: float = 60.0,
) -> dict[bytes, int]:
    """Register every hotkey not yet on the subnet (one Register each, signed by the coldkey) and wait
    until all hold a uid. The coldkey is unlocked only if a registration is needed."""
    registered = {bytes.fromhex(r["hotkey"]): int(r["uid"]) for r in client.metagraph(netuid)}
    missing = [k for k in hotkeys if k.public not in registered]
    if missing:
        cold = coldkey()
        for k in missing:
            digest = client.send(cold, Register(netuid, k.public, max_burn))
            log.info("registration sent", netuid=netuid, hotkey=k.address, tx=digest.hex()[:16])
        deadline = time.monotonic() + timeout
        while True:
            registered = {bytes.fromhex(r["hotkey"]): int(r["uid"]) for r in client.metagraph(netuid)}
            if all(k.public in registered for k in missing):
                break
            if time.monotonic() > deadline:
                left = [k.address for k in missing if k.public not in registered]
                raise MinerError(
                    f"registration of {', '.join(left)} on subnet {netuid} did not land in {timeout:.0f}s "
                    "(burn above --max-burn, or coldkey balance too low?)"
                )
            time.sleep(0.5)
    return {k.public: registered[k.public] for k in hotkeys}


class CarriedError:
    """Holds an error raised inside `open_stack`, which today returns normally when its body raises
    (the exception is lost somewhere in py-libp2p's host shutdown); `reraise()` after the block."""

    def __init__(self) -> None:
        self.error: Exception | None = None

    async def __aenter__(self) -> CarriedError:
        return self

    async def __aexit__(self, typ: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, Exception):
            self.error = exc
        return False

    def reraise(self) -> None:
        if self.error is not None:
            raise self.error


# --- the worker process ---------------------------------------------------------------------------------


class _FaultyMiner:
    """Wraps a task's miner to inject one fault (see the module docstring)."""

    def __init__(self, inner: Any, fault: str, directory: Path) -> None:
        self.inner = inner
        self.device = inner.device
        self.fault = fault
        self.marker = directory / CRASH_MARKER

    def prepare(self) -> None:
        self.inner.prepare()

    def answer(self, query: Any) -> Any:
        if self.fault == "crash-once" and not self.marker.exists():
            self.marker.write_text("1")
            raise RuntimeError("injected fault: crash-once")
        answer = self.inner.answer(query)
        if self.fault == "corrupt-answer":
            answer = _flip_first_bit(answer)
        return answer


def _flip_first_bit(message: Any) -> Any:
    """The same message with the lowest bit of its first byte string flipped: well-formed, wrong."""
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if isinstance(value, bytes) and value:
            return dataclasses.replace(message, **{f.name: bytes([value[0] ^ 1]) + value[1:]})
        if isinstance(value, tuple) and value and isinstance(value[0], bytes) and value[0]:
            first = bytes([value[0][0] ^ 1]) + value[0][1:]
            return dataclasses.replace(message, **{f.name: (first, *value[1:])})
    return message


async def run_worker(cfg: WorkerConfig) -> int:
    """One worker's life: load the task and model, listen, announce, serve until a signal. Returns the
    exit code (0 on a clean stop, EXIT_FATAL when the model failed)."""
    # start-up time: torch and libp2p load in the worker processes, never in the supervisor
    import torch

    from p2pnet.nodekey import load_or_create_node_key, peer_id_of
    from p2pnet.stack import open_stack
    from subnets import registry
    from subnets.axon import Axon, AxonConfig, PermitCache
    from subnets.device import select_device

    torch.set_num_threads(max(1, cfg.threads))
    directory = Path(cfg.directory)
    hotkey = read_hotkey(Path(cfg.hotkey_file))
    client = NodeClient(cfg.node)
    status = _starting_status(cfg, hotkey)
    status_path = directory / "status.json"
    _write_json(status_path, status)

    chain_id = (await trio.to_thread.run_sync(client.status))["chain_id"]
    name = await trio.to_thread.run_sync(subnet_task_name, client, cfg.netuid)
    task = registry.create(name, cfg.task_config)
    uid, row = await _wait_registered(client, cfg, hotkey)
    device = select_device("auto")
    status.update(uid=uid, task=name, device=f"{cfg.device_label} ({device})", state="preparing")
    _write_json(status_path, status)
    miner = await _prepare_miner(task, device, cfg, directory, status)
    exit_code = 0
    node_key = load_or_create_node_key(directory)
    listen = [f"/ip4/{cfg.listen_host}/tcp/{cfg.port}"]
    carried = CarriedError()
    async with open_stack(node_key, listen=listen) as stack, carried, trio.open_nursery() as nursery:

        def fatal(exc: BaseException) -> None:
            nonlocal exit_code
            exit_code = EXIT_FATAL
            status["state"] = f"failed: {exc!r}"[:200]
            nursery.cancel_scope.cancel()

        permits = PermitCache(_permit_fetcher(client, cfg.netuid), refresh_s=cfg.permit_refresh_s)
        await nursery.start(permits.run)
        desk = None
        if cfg.price > 0:
            desk = PaymentDesk(hotkey, chain_id, cfg.netuid, PaymentConfig(cfg.price), *_chain_calls(client, hotkey))
            await nursery.start(desk.run)
        axon_cfg = AxonConfig(
            deadline_s=cfg.deadline_s if cfg.deadline_s is not None else task.TIMEOUT_MS / 1000,
            rate_per_s=cfg.rate_per_s,
            burst=cfg.burst,
            max_waiting=cfg.max_waiting,
        )
        axon = Axon(task, miner, hotkey, chain_id, cfg.netuid, permits, axon_cfg, on_fatal=fatal, payments=desk)
        axon.attach(stack.reqresp)
        peer_id = str(peer_id_of(node_key))
        addrs = sorted({_announce(str(a), cfg.announce_host) for a in stack.host.addrs})
        if row.get("axon") != [peer_id, addrs]:
            digest = await trio.to_thread.run_sync(client.send, hotkey, ServeAxon(cfg.netuid, peer_id, tuple(addrs)))
            log.info("axon announced", worker=cfg.index, uid=uid, peer_id=peer_id, addrs=addrs, tx=digest.hex()[:16])
        status.update(state="serving", peer_id=peer_id, addrs=addrs, price=cfg.price)

        def figures() -> dict[str, Any]:
            return {**axon.stats.summary(), "payments": desk.stats.summary() if desk else None,
                    "admission": asdict(axon.gate.stats)}

        def live() -> dict[str, Any]:
            return {**figures(), "permits_known": len(permits.hotkeys)}

        nursery.start_soon(_report_status, status, status_path, live, cfg.status_every_s)
        nursery.start_soon(_stop_on_signal, status, nursery.cancel_scope, cfg.index)
    carried.reraise()
    status.update(figures(), updated_unix=time.time())
    if status["state"] == "serving":
        status["state"] = "stopped"
    _write_json(status_path, status)
    client.close()
    return exit_code


def _starting_status(cfg: WorkerConfig, hotkey: Keypair) -> dict[str, Any]:
    """The worker's status.json before it knows its uid: what the supervisor shows while it starts."""
    return {
        "index": cfg.index,
        "pid": os.getpid(),
        "hotkey": hotkey.address,
        "device": cfg.device_label,
        "state": "starting",
        "started_unix": time.time(),
    }


async def _wait_registered(client: NodeClient, cfg: WorkerConfig, hotkey: Keypair) -> tuple[int, dict[str, Any]]:
    """The worker's uid and metagraph row, once its hotkey shows up on the subnet (the supervisor registered it;
    the registration may still be committing). MinerError after `register_wait_s`."""
    deadline = time.monotonic() + cfg.register_wait_s
    while (found := await trio.to_thread.run_sync(find_uid, client, cfg.netuid, hotkey.public)) is None:
        if time.monotonic() > deadline:
            raise MinerError(f"hotkey {hotkey.address} is not registered on subnet {cfg.netuid}")
        await trio.sleep(1)
    return found


async def _prepare_miner(task: Any, device: Any, cfg: WorkerConfig, directory: Path, status: dict[str, Any]) -> Any:
    """The task's miner on `device`, wrapped in the configured fault (if any), prepared (weights loaded, warmed up)
    off the event loop; the time that took goes into `status`."""
    miner: Any = task.load_miner(device, cfg.miner_config)
    if cfg.fault:
        miner = _FaultyMiner(miner, cfg.fault, directory)
    t0 = time.monotonic()
    await trio.to_thread.run_sync(miner.prepare)
    status["prepare_s"] = round(time.monotonic() - t0, 2)
    log.info("model ready", worker=cfg.index, uid=status["uid"], task=status["task"], device=str(device),
             prepare_s=status["prepare_s"])
    return miner


def _permit_fetcher(client: NodeClient, netuid: int) -> Callable[[], Awaitable[set[bytes]]]:
    """What the axon's PermitCache calls: the hotkeys that hold a validator permit on the subnet now."""

    async def fetch_permits() -> set[bytes]:
        rows = await trio.to_thread.run_sync(client.metagraph, netuid)
        return {bytes.fromhex(r["hotkey"]) for r in rows if r.get("validator_permit")}

    return fetch_permits


async def _report_status(
    status: dict[str, Any], path: Path, figures: Callable[[], dict[str, Any]], every_s: float
) -> None:
    """Refresh the worker's status.json with its figures every `every_s` seconds, until cancelled."""
    while True:
        status.update(figures(), updated_unix=time.time())
        await trio.to_thread.run_sync(_write_json, path, status)
        await trio.sleep(every_s)


async def _stop_on_signal(status: dict[str, Any], scope: trio.CancelScope, index: int) -> None:
    """On SIGINT or SIGTERM, mark the worker stopped and cancel `scope` (the worker's nursery)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
        async for signum in received:
            log.info("stopping worker", worker=index, signal=signal.Signals(signum).name)
            status["state"] = "stopped"
            scope.cancel()
            return


def _chain_calls(client: NodeClient, hotkey: Keypair) -> tuple[Any, Any, Any]:
    """The payment desk's view of the chain through the node API: escrow reads, claim submission (returns
    the nonce used), and the hotkey's committed next nonce."""

    async def fetch_escrow(escrow_id: int) -> dict[str, Any] | None:
        return await trio.to_thread.run_sync(client.escrow, escrow_id)

    def _submit(call: Any) -> int:
        nonce = client.next_nonce(hotkey.public)
        client.send(hotkey, call, nonce=nonce)
        return nonce

    async def submit(call: Any) -> int:
        return await trio.to_thread.run_sync(_submit, call)

    async def committed() -> int:
        return int((await trio.to_thread.run_sync(client.account, hotkey.public))["nonce"])

    return fetch_escrow, submit, committed


def _announce(listen_addr: str, announce_host: str) -> str:
    """`/ip4/<listen>/tcp/<port>[/p2p/..]` -> `/ip4/<announce_host>/tcp/<port>` (what validators dial)."""
    parts = listen_addr.split("/p2p/")[0].split("/")
    if len(parts) >= 5 and parts[1] in ("ip4", "ip6") and parts[3] == "tcp":
        return f"/{'ip6' if ':' in announce_host else 'ip4'}/{announce_host}/tcp/{parts[4]}"
    return listen_addr.split("/p2p/")[0]


def worker_main(config_path: str) -> int:
    """Entry point of a worker process (`python -m subnets.miner worker CONFIG`)."""
    node_log.configure(os.environ.get("TENSORNET_LOG_FORMAT", "text"), os.environ.get("TENSORNET_LOG_LEVEL", "info"))
    cfg = WorkerConfig.load(config_path)
    return trio.run(run_worker, cfg)


# --- the supervisor --------------------------------------------------------------------------------------


@dataclass
class HostConfig:
    """Options of `tensornet miner run`."""

    home: Path
    wallet: str
    netuid: int
    node: str | None
    devices: list[str]
    listen_host: str = "127.0.0.1"
    announce_host: str | None = None
    base_port: int = 0
    task_config: dict[str, Any] = field(default_factory=dict)
    miner_configs: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[int, str] = field(default_factory=dict)
    max_burn: int = 10 * 10**9
    status_every_s: float = 10.0
    deadline_s: float | None = None
    rate_per_s: float = 2.0
    burst: int = 10
    permit_refresh_s: float = 10.0
    price: int = 0
    max_waiting: int = 8
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    stable_after_s: float = 60.0  # a run this long resets the backoff
    stop_grace_s: float = 10.0


@dataclass
class WorkerSlot:
    index: int
    device: str
    hotkey: Keypair
    directory: Path
    uid: int | None = None
    pid: int | None = None
    starts: int = 0
    restarts: int = 0
    last_exit: int | None = None
    running: bool = False
    backoff_until: float | None = None


class Supervisor:
    """Starts the workers, restarts the ones that die (exponential backoff), reports, and stops them all
    on SIGINT/SIGTERM (SIGTERM, then SIGKILL after `stop_grace_s`)."""

    def __init__(self, cfg: HostConfig, coldkey: Callable[[], Keypair]) -> None:
        self.cfg = cfg
        self.coldkey = coldkey
        self.wallet = Wallet.load(cfg.home, cfg.wallet)
        self.root = Path(cfg.home) / "miners" / cfg.wallet / f"sn{cfg.netuid}"
        self.slots: list[WorkerSlot] = []
        self.stopping = False
        self._procs: dict[int, trio.Process] = {}
        self.started_unix = time.time()

    # blocking: run before trio starts, so registration errors surface as plain CLI errors
    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        names = set(self.wallet.hotkey_names())
        for i, device in enumerate(self.cfg.devices):
            name = f"worker{i}"
            hotkey = self.wallet.hotkey(name) if name in names else self.wallet.new_hotkey(name)
            directory = self.root / name
            directory.mkdir(exist_ok=True, mode=0o700)
            self.slots.append(WorkerSlot(i, device, hotkey, directory))
        with NodeClient(self.cfg.node) as client:
            try:
                subnet_task_name(client, self.cfg.netuid)
            except NodeError as exc:
                raise MinerError(f"subnet {self.cfg.netuid}: {exc}") from None
            uids = ensure_registered(
                client, self.cfg.netuid, [s.hotkey for s in self.slots], self.coldkey, self.cfg.max_burn
            )
        for slot in self.slots:
            slot.uid = uids[slot.hotkey.public]
            log.info("worker planned", worker=slot.index, device=slot.device, uid=slot.uid, hotkey=slot.hotkey.address)

    def _worker_config(self, slot: WorkerSlot) -> Path:
        cfg = self.cfg
        wc = WorkerConfig(
            index=slot.index,
            netuid=cfg.netuid,
            node=NodeClient(cfg.node).url,
            hotkey_file=str(self.wallet.hotkey_path(f"worker{slot.index}")),
            directory=str(slot.directory),
            device_label=slot.device,
            listen_host=cfg.listen_host,
            announce_host=cfg.announce_host or cfg.listen_host,
            port=cfg.base_port + slot.index if cfg.base_port else 0,
            task_config=cfg.task_config,
            miner_config=cfg.miner_configs[slot.index] if slot.index < len(cfg.miner_configs) else {},
            fault=cfg.faults.get(slot.index),
            deadline_s=cfg.deadline_s,
            rate_per_s=cfg.rate_per_s,
            burst=cfg.burst,
            permit_refresh_s=cfg.permit_refresh_s,
            price=cfg.price,
            max_waiting=cfg.max_waiting,
        )
        path = slot.directory / "config.json"
        _write_json(path, asdict(wc))
        return path

    async def _run_slot(self, slot: WorkerSlot) -> None:
        backoff = self.cfg.backoff_s
        config_path = self._worker_config(slot)
        while not self.stopping:
            logfile = open(slot.directory / "worker.log", "ab")  # noqa: SIM115 - the child writes to it
            try:
                proc = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "subnets.miner", "worker", str(config_path)],
                    env=worker_env(slot.device),
                    stdout=logfile,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor, which stops workers in order
                )
            finally:
                logfile.close()
            self._procs[slot.index] = proc
            slot.pid, slot.running = proc.pid, True
            slot.starts += 1
            started = time.monotonic()
            log.info("worker started", worker=slot.index, pid=proc.pid, device=slot.device, start=slot.starts)
            code = await proc.wait()
            slot.running, slot.last_exit = False, code
            self._procs.pop(slot.index, None)
            if self.stopping:
                break
            ran = time.monotonic() - started
            if ran >= self.cfg.stable_after_s:
                backoff = self.cfg.backoff_s
            slot.restarts += 1
            tail = _tail(slot.directory / "worker.log")
            log.warning(
                "worker exited; restarting",
                worker=slot.index,
                code=code,
                ran_s=round(ran, 1),
                restart_in_s=backoff,
                last_log=tail,
            )
            slot.backoff_until = time.time() + backoff
            await trio.sleep(backoff)
            slot.backoff_until = None
            backoff = min(self.cfg.max_backoff_s, backoff * 2)

    def summary(self) -> dict[str, Any]:
        workers = []
        for slot in self.slots:
            st = _read_json(slot.directory / "status.json") or {}
            workers.append(
                {
                    "worker": slot.index,
                    "device": slot.device,
                    "uid": slot.uid,
                    "hotkey": slot.hotkey.address,
                    "pid": slot.pid if slot.running else None,
                    "running": slot.running,
                    "state": st.get("state"),
                    "served": st.get("served", 0),
                    "served_paid": st.get("served_paid", 0),
                    "payments": st.get("payments"),
                    "refused": st.get("refused", {}),
                    "latency_ms_p50": st.get("latency_ms_p50"),
                    "latency_ms_p95": st.get("latency_ms_p95"),
                    "starts": slot.starts,
                    "restarts": slot.restarts,
                    "last_exit": slot.last_exit,
                }
            )
        return {
            "netuid": self.cfg.netuid,
            "wallet": self.cfg.wallet,
            "home": str(self.root),
            "uptime_s": round(time.time() - self.started_unix, 1),
            "workers": workers,
        }

    async def _report(self) -> None:
        while True:
            await trio.sleep(self.cfg.status_every_s)
            summary = self.summary()
            await trio.to_thread.run_sync(_write_json, self.root / "status.json", summary)
            for w in summary["workers"]:
                log.info(
                    "worker status",
                    worker=w["worker"],
                    device=w["device"],
                    uid=w["uid"],
                    state=w["state"],
                    served=w["served"],
                    refused=sum(w["refused"].values()),
                    p50_ms=w["latency_ms_p50"],
                    restarts=w["restarts"],
                )

    async def _stop_all(self) -> None:
        self.stopping = True
        for proc in list(self._procs.values()):
            _signal(proc, signal.SIGTERM)
        with trio.move_on_after(self.cfg.stop_grace_s):
            while self._procs:
                await trio.sleep(0.05)
        for proc in list(self._procs.values()):
            log.warning("worker did not stop in time; killing", pid=proc.pid)
            _signal(proc, signal.SIGKILL)

    async def run(self) -> dict[str, Any]:
        """Run until SIGINT/SIGTERM; returns the final summary."""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
            async with trio.open_nursery() as nursery:
                for slot in self.slots:
                    nursery.start_soon(self._run_slot, slot)
                nursery.start_soon(self._report)
                try:
                    async for signum in received:
                        log.info("stopping miner host", signal=signal.Signals(signum).name)
                        break
                finally:
                    with trio.CancelScope(shield=True):
                        await self._stop_all()
                    nursery.cancel_scope.cancel()
        summary = self.summary()
        _write_json(self.root / "status.json", summary)
        return summary


def _signal(proc: trio.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _tail(path: Path, n: int = 1) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            lines = fh.read().decode("utf-8", "replace").splitlines()
        return " | ".join(lines[-n:])[-300:]
    except OSError:
        return ""


def backoff_schedule(base: float, cap: float, n: int) -> list[float]:
    """The first `n` restart delays (for docs and tests): base, 2 base, 4 base, ... capped."""
    return [min(cap, base * math.pow(2, i)) for i in range(n)]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        sys.exit(worker_main(sys.argv[2]))
    print("usage: python -m subnets.miner worker CONFIG.json (started by `tensornet miner run`)", file=sys.stderr)
    sys.exit(2)
