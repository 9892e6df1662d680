"""Consensus benchmark: N validators as separate processes on loopback, optional signed-tx load.

    python -m bench.consensus --validators 4 --seconds 20 [--tx-rate 3000 [--accounts N]] [--crash K] [--idle] --json

The last line is JSON: rounds_per_s, commit_latency_ms_p50/p99 (leader block creation to its
commit on EVERY node, i.e. the slowest node's commit time), tx_per_s (committed and executed
signed transactions per second), state_roots_agree, and as the same-run baseline the rounds per
wall-clock second of the same consensus core in the in-process simulator (no network, no disk),
which bounds what the networking leaves of the protocol's own speed.

With `--tx-rate` each transaction goes to its proposer's API (`--submit owner`, what a client does, spec/state.md
§3.3), or to any validator's, which pushes it on (`--submit any`). The run first measures the network without
load for a quarter of SECONDS (at least 5 s):
`idle_rounds_per_s`, the same-run figure the loaded rounds/s compare with. `--accounts N` adds N funded accounts
(random keys, no transactions of their own) to the genesis, so the state the chain roots and snapshots is that
large (`genesis_accounts`).

With `--crash K` the run first measures all validators up for half of SECONDS (`all_up_rounds_per_s`), then
kills K validator processes (SIGKILL) and measures the survivors for SECONDS: every other figure is theirs,
after the kill, recovery included (a crashed leader costs a leader timeout per slot until reputation
swaps it out, spec/consensus.md §2.1).

With `--idle` no load is offered: `cpu_per_node_pct` is each validator process's CPU (utime + stime from
/proc/<pid>/stat) over the SECONDS window in % of one core (`cpu_per_node_pct_max` the busiest), then one
transfer is submitted to node 0 and `first_tx_latency_ms` is the time from its submission to its commit on
every node (their /timing commit times). `--idle-interval-ms MS` writes the validators' config.toml
`idle_interval_ms` first (0: never rest, the pacing before rest-when-idle; spec/consensus.md §D.2a). It defaults
to a real node's default (NodeConfig, 1 s; not the local testnet's 100 ms) with `--idle`, and to 0 otherwise: the
other modes measure the protocol's own pace (an idle phase at the resting pace would say nothing about it), as
the figures before resting did.

The load stays admissible to the fee mempool (spec/state.md §3.3: at most 15 nonces ahead of a sender's
committed one, 64 pending per sender): it is spread over SENDERS funded accounts, so at 3,000 tx/s each
sends ~6 tx/s and has a handful pending. `tx_refused` counts what the APIs refused, by rule (HTTP errors as
`http <status> <rule>`); `mempool_refused` sums the nodes' own mempool refusals by rule.

With `--profile` (alone or with `--tx-rate`) each validator runs under cProfile (TENSORNET_PROFILE, node/daemon.py)
and `profile_ms_per_round` is the CPU ms per round per validator (mean over validators) by category: each function's
exclusive CPU time (tottime, on the Trio thread's own CPU clock) goes to the category of its file, and a C function's
(file `~`) or generated code's to the file of its caller. `unprofiled` is the rest of the process's CPU (/proc): the
API server and SQLite writer threads and the profiler's own cost. `profile_top` lists the hottest functions.
Rounds/s under the profiler are lower than without it (cProfile costs on every call). `--profile-validators K`
profiles only the first K validators (16 processes all under cProfile on 2 cores do not form a network in time); the
others then get a third of a profiled one's CPU share (`yield_cpu`), so the profiled ones keep the network's pace.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx

from node.config import NodeConfig, load_config, write_config
from node.daemon import PROFILE_ENV
from node.mempool import tx_owner
from node.testing.procs import NodeProc, state_roots_at, stop_all, wait_for
from node.testnet.gen import account, generate
from node.testnet.local import free_port_base
from protocol import codec
from protocol.crypto import Keypair
from protocol.messages import SignedTransaction, Transaction, Transfer
from protocol.state.genesis import load_genesis
from protocol.testing.sim import Simulation

UNIT = 10**9
SENDERS = 512  # 64 gave ~47 tx/s per sender at 3,000 tx/s: past the nonce gap whenever commits lag 0.3 s
POSTERS_PER_API = 2
POST_EVERY_S = 0.25  # each poster's batch interval: 2 posters x 4 POSTs/s stay inside an API's 20 POSTs/s per client IP
SENDER_FUNDS = 1_000 * UNIT  # ~3 million transfer fees each; 512 of them stay far inside the supply cap


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def inprocess_baseline(validators: int) -> float:
    sim = Simulation([1] * validators, seed=1)
    t0 = time.perf_counter()
    sim.run(2000)
    wall = time.perf_counter() - t0
    return max(n.core.quorum_round for n in sim.nodes) / wall


class Load(threading.Thread):
    """Pre-signs transfers from many funded senders and posts them in batches to the validators' APIs.

    `submit="owner"` sends each sender's transactions to the validator that proposes them (node/mempool.py's
    `tx_owner`), as a Narwhal or Mysticeti client submits to one validator; `"any"` spreads senders over the APIs
    regardless, so 3 of 4 transactions take the push to their owner (node/service.py `push_to_owners`) first."""

    def __init__(self, chain_id: str, testnet: Path, rate: int, seconds: float, submit: str = "owner") -> None:
        super().__init__(daemon=True)
        self.apis: list[str] = []  # by committee index: `route` sets them once the nodes are up
        self.rate = rate
        self.seconds = seconds
        self.submit = submit
        self.sent = 0
        self.refused: dict[str, int] = {}
        self._lock = threading.Lock()
        self.senders = [account(testnet, f"load{i}") for i in range(SENDERS)]  # funded by generate()
        dest = Keypair.generate().public
        total = int(rate * seconds) + 1
        self.txs = []
        for i in range(total):
            kp = self.senders[i % SENDERS]
            tx = Transaction(chain_id, kp.public, i // SENDERS, Transfer(dest, 1), 0)
            self.txs.append(SignedTransaction.create(tx, kp).to_bytes())

    def route(self, apis_by_index: list[str]) -> None:
        self.apis = apis_by_index

    def _api_of(self, sender: int) -> int:
        n = len(self.apis)
        return tx_owner(self.senders[sender].public, n) if self.submit == "owner" else sender % n

    def run(self) -> None:
        # POSTERS_PER_API posters per API, in parallel: a node verifies a batch before it answers, so one poster
        # per API waited on each answer and capped the offered rate below what the nodes could take. A sender's
        # transactions stay with one poster, in nonce order.
        lanes: dict[tuple[int, int], list[bytes]] = {}
        for i, t in enumerate(self.txs):
            sender = i % SENDERS
            lanes.setdefault((self._api_of(sender), sender % POSTERS_PER_API), []).append(t)
        share = self.rate / len(self.txs)
        share = self.rate / len(self.txs)
        posters = [threading.Thread(target=self._post, args=(self.apis[api], txs, int(share * len(txs))), daemon=True)
                   for (api, _), txs in lanes.items()]
        for t in posters:
            t.start()
        for t in posters:
            t.join()

    def _post(self, api: str, txs: list[bytes], rate: int) -> None:
        client = httpx.Client(timeout=10)
        start = time.monotonic()
        step = POST_EVERY_S
        per_step = max(1, int(rate * step))
        k = 0
        for i in range(0, len(txs), per_step):
            if time.monotonic() - start >= self.seconds:
                break
            batch = txs[i : i + per_step]
            try:
                resp = client.post(api + "/txs", content=codec.encode(batch))
                body = resp.json()
            except (httpx.HTTPError, ValueError) as exc:
                self._count({f"error {type(exc).__name__}": len(batch)})
            else:
                if resp.status_code == 200:
                    with self._lock:
                        self.sent += body.get("accepted", 0)
                    self._count(body.get("refused", {}))
                else:  # the whole batch: a 429 (POST budget) or 413 is a refusal too, not silence
                    self._count({f"http {resp.status_code} {body.get('rule', '')}".strip(): len(batch)})
            k += 1
            delay = start + k * step - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        client.close()

    def _count(self, refused: dict[str, int]) -> None:
        with self._lock:
            for key, n in refused.items():
                self.refused[key] = self.refused.get(key, 0) + n


def mempool_refused(statuses: list[dict]) -> dict[str, int]:
    """The nodes' mempool refusals since start, by rule, summed over nodes."""
    out: dict[str, int] = {}
    for s in statuses:
        for rule, n in (s.get("mempool_stats") or {}).get("refused", {}).items():
            out[rule] = out.get(rule, 0) + n
    return dict(sorted(out.items()))


def median_rounds_per_s(before: list[dict], after: list[dict], elapsed: float, epoch_rounds: int) -> float:
    """Each DAG starts again at round 1 every epoch (spec/consensus.md §7): an epoch passed counts `epoch_rounds`
    (the closing commit's few rounds past it are not counted)."""
    return statistics.median(
        (b["round"] - a["round"] + (b["epoch"] - a["epoch"]) * epoch_rounds) / elapsed
        for a, b in zip(before, after, strict=True)
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (/proc/<pid>/stat fields 14 and 15, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_tx_latency_ms(nodes: list[NodeProc], chain_id: str, workdir: Path, timeout: float = 30.0) -> float:
    """Submit one transfer to node 0; ms from just before the POST to its commit on every node."""
    sender = account(workdir, "idle")  # funded by generate()
    tx = SignedTransaction.create(Transaction(chain_id, sender.public, 0, Transfer(Keypair.generate().public, 1), 0),
                                  sender)
    start_h = max(n.height() for n in nodes)
    sent_ms = time.time() * 1000
    resp = httpx.post(nodes[0].api + "/tx", content=tx.to_bytes(), timeout=10)
    resp.raise_for_status()
    committed: list[float] = []

    def everywhere() -> bool:
        committed.clear()
        for n in nodes:
            rows = [r for r in n.get(f"/timing?from={start_h + 1}") or [] if r["ok_txs"]]
            if not rows:
                return False
            committed.append(rows[0]["committed_ms"])
        return True

    wait_for(everywhere, timeout, "the first transaction's commit", nodes=nodes)
    return max(committed) - sent_ms


# Where a function's exclusive time goes, by a fragment of its file's path; the first match wins.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("signatures", ("/nacl/", "/protocol/crypto.py")),
    ("codec", ("/cbor2/", "/protocol/codec.py", "/protocol/schema.py", "/protocol/messages.py")),
    ("dag", ("/protocol/consensus/",)),
    ("state", ("/protocol/state/", "/protocol/economics/")),
    ("storage", ("/sqlite3/", "/node/storage.py")),
    ("networking", ("/libp2p/", "/p2pnet/", "/trio/", "/multiaddr/", "/noise/", "/yamux/", "/socket.py", "/ssl.py")),
)
PROFILE_METHOD = ("cProfile per validator on its Trio thread (CPU clock: time.thread_time); each function's tottime "
                  "goes to its file's category, a C function's (and generated code's) to its caller's file; "
                  "unprofiled = process CPU (/proc) minus the profiled total; ms per round of that validator, "
                  "mean over validators")


def category(path: str) -> str:
    return next((name for name, frags in CATEGORIES if any(f in path for f in frags)), "other")


def split_profile(stats: dict) -> tuple[dict[str, float], dict[str, float]]:
    """(seconds by category, seconds by Python function) from a pstats table, C functions charged to their callers."""
    by_cat: dict[str, float] = {}
    by_func: dict[str, float] = {}

    def charge(func: tuple, seconds: float, depth: int = 0) -> None:
        path, line, name = func
        if not path.startswith(("~", "<")) or depth > 4:
            by_cat[category(path)] = by_cat.get(category(path), 0.0) + seconds
            key = f"{'/'.join(Path(path).parts[-2:])}:{line}({name})"
            by_func[key] = by_func.get(key, 0.0) + seconds
            return
        callers = stats[func][4]
        total = sum(c[2] for c in callers.values()) or 1.0
        if not callers:  # the root of the profile: nothing called it
            by_cat["other"] = by_cat.get("other", 0.0) + seconds
        for caller, c in callers.items():
            charge(caller, seconds * c[2] / total, depth + 1)

    for func, (_cc, _nc, tt, _ct, _callers) in stats.items():
        if tt > 0 and "_lsprof.Profiler" not in func[2]:
            charge(func, tt)
    return by_cat, by_func


UNPROFILED_NICE = 5  # CPU weight 335 against a profiled validator's 1024 (Linux CFS), see yield_cpu


def yield_cpu(pid: int) -> None:
    """Give a validator that is not profiled a third of a profiled one's CPU share. Under cProfile a validator needs
    about twice the CPU per round; with equal shares the unprofiled ones (12 of 16, a quorum) ran ahead while the
    profiled few, starved, missed libp2p's 10 s stream-negotiation and ping deadlines, lost their connections and
    never reached height 3 (spec/consensus.md §D.8). Each node runs in its own session, so in its own scheduler
    autogroup, where a plain nice changes nothing: the autogroup's nice does. Linux only; elsewhere it does nothing."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(UNPROFILED_NICE))
    except OSError:
        pass


class Profiles:
    """Starts each validator under cProfile (TENSORNET_PROFILE) and reads back one window per validator."""

    def __init__(self, workdir: Path, count: int) -> None:
        self.count = count  # the first `count` validators run under the profiler
        self.folder = workdir / "profiles"
        self.folder.mkdir()
        self.window = 0

    def start(self, plans: list) -> list[NodeProc]:
        procs = []
        for i, p in enumerate(plans):
            env = {PROFILE_ENV: str(self.folder)} if i < self.count else {}
            os.environ.update(env)  # inherited by the node process started next
            try:
                procs.append(NodeProc(p.home, p.api).start())
            finally:
                os.environ.pop(PROFILE_ENV, None)
            if i >= self.count:
                yield_cpu(procs[-1].proc.pid)
        return procs

    def mark(self, nodes: list[NodeProc]) -> None:
        """SIGUSR1: each validator writes its profile so far and starts a new window; wait for the files."""
        nodes = nodes[: self.count]
        self.window += 1
        for n in nodes:
            n.proc.send_signal(signal.SIGUSR1)
        # polled often, so the profiled window and the /proc CPU window around it differ by little
        wait_for(lambda: all(self.path(n).exists() for n in nodes), 60, "profile dumps", interval=0.01, nodes=nodes)

    def path(self, n: NodeProc) -> Path:
        return self.folder / f"{n.proc.pid}-{self.window}.prof"

    def report(self, nodes: list[NodeProc], rounds: list[int], cpu_s: list[float]) -> dict:
        nodes, rounds, cpu_s = nodes[: self.count], rounds[: self.count], cpu_s[: self.count]
        cats: dict[str, float] = {}
        funcs: dict[str, float] = {}
        for n, r, cpu in zip(nodes, rounds, cpu_s, strict=True):
            by_cat, by_func = split_profile(pstats.Stats(str(self.path(n))).stats)  # type: ignore[attr-defined]
            by_cat["unprofiled"] = max(0.0, cpu - sum(by_cat.values()))
            for src, dst in ((by_cat, cats), (by_func, funcs)):
                for k, v in src.items():
                    dst[k] = dst.get(k, 0.0) + 1000 * v / max(1, r) / len(nodes)
        order = [name for name, _ in CATEGORIES] + ["other", "unprofiled"]
        top = sorted(funcs.items(), key=lambda kv: -kv[1])[:15]
        return {
            "profile_ms_per_round": {k: round(cats.get(k, 0.0), 3) for k in order},
            "profile_cpu_ms_per_round": round(sum(cats.values()), 3),
            "profile_top": {k: round(v, 3) for k, v in top},
            "profile_method": PROFILE_METHOD,
            "profile_validators": len(nodes),
        }


def passive_accounts(n: int) -> dict[bytes, int]:
    """N accounts with 1 token each and no keys: state for the chain to carry, not to move."""
    return {os.urandom(32): UNIT for _ in range(n)}


def rounds_without_load(nodes: list[NodeProc], seconds: float, epoch_rounds: int) -> float:
    """The network's rounds/s over `seconds` with nothing offered: the same-run baseline of a loaded run."""
    a0, t0 = [n.status() for n in nodes], time.monotonic()
    time.sleep(seconds)
    a1 = [n.status() for n in nodes]
    return round(median_rounds_per_s(a0, a1, time.monotonic() - t0, epoch_rounds), 2)


def commit_latencies(nodes: list[NodeProc], start_h: int, end_h: int) -> tuple[list[float], int]:
    """Each height's latency (its leader block's creation to its commit on every node), and the transactions
    committed, over the heights every node reports."""
    timings = [{r["height"]: r for r in n.get(f"/timing?from={start_h + 1}") or []} for n in nodes]
    lat, txs = [], 0
    for h in range(start_h + 1, end_h + 1):
        rows = [t.get(h) for t in timings]
        if any(r is None for r in rows):
            continue
        lat.append(max(r["committed_ms"] for r in rows) - rows[0]["leader_ms"])
        txs += rows[0]["ok_txs"]
    return lat, txs


def run(validators: int, seconds: float, tx_rate: int, workdir: Path, crash: int = 0, idle: bool = False,
        idle_interval_ms: int | None = None, profile: int = 0, accounts: int = 0, submit: str = "owner") -> dict:
    chain_id = "bench"
    funded = {f"load{i}": SENDER_FUNDS for i in range(SENDERS)} if tx_rate else {}
    if idle:
        funded["idle"] = SENDER_FUNDS
    base = free_port_base(2 * validators)  # free ports, so the bench can run beside tests and other testnets
    plans, _ = generate(workdir, hosts=["127.0.0.1"] * validators, chain_id=chain_id, p2p_base=base,
                        api_base=base + validators, funded=funded, passive_balances=passive_accounts(accounts))
    epoch_rounds = load_genesis(str(workdir / "genesis.json")).epoch_rounds
    if idle_interval_ms is not None:
        for p in plans:
            write_config(p.home, replace(load_config(p.home), idle_interval_ms=idle_interval_ms))
    profiles = Profiles(workdir, profile) if profile else None
    procs = profiles.start(plans) if profiles is not None else [NodeProc(p.home, p.api).start() for p in plans]
    nodes = list(procs)
    load = Load(chain_id, workdir, tx_rate, seconds, submit) if tx_rate else None
    try:
        wait_for(lambda: min(n.height() for n in nodes) >= 3, 120, "first commits", nodes=nodes)
        if load is not None:
            load.route([n.api for n in sorted(nodes, key=lambda n: n.status()["validator_index"])])
        time.sleep(2)  # warm-up
        extra: dict = {"genesis_accounts": accounts} if accounts else {}
        if load is not None:
            extra["idle_rounds_per_s"] = rounds_without_load(nodes, max(5.0, seconds / 4), epoch_rounds)
        if crash:
            extra["all_up_rounds_per_s"] = rounds_without_load(nodes, max(5.0, seconds / 2), epoch_rounds)
            for n in nodes[validators - crash:]:
                n.kill()
            extra["crashed"] = crash
            nodes = nodes[: validators - crash]  # the survivors; `finally` still stops every process
        if profiles is not None:
            profiles.mark(nodes)  # the window starts here: start-up and warm-up are left out
        cpu0 = [cpu_seconds(n.proc.pid) for n in nodes if n.proc is not None]
        s0 = [n.status() for n in nodes]
        t0 = time.monotonic()
        start_h = max(s["height"] for s in s0)
        if load is not None:
            load.start()
        time.sleep(seconds)
        s1 = [n.status() for n in nodes]
        elapsed = time.monotonic() - t0
        cpu = [100 * (cpu_seconds(n.proc.pid) - c) / elapsed for n, c in zip(nodes, cpu0, strict=True) if n.proc]
        if profiles is not None:
            profiles.mark(nodes)
            own = [b["round"] - a["round"] + (b["epoch"] - a["epoch"]) * epoch_rounds
                   for a, b in zip(s0, s1, strict=True)]
            extra.update(profiles.report(nodes, own, [c * elapsed / 100 for c in cpu]))
        if idle:
            extra["cpu_per_node_pct"] = round(statistics.mean(cpu), 1)
            extra["cpu_per_node_pct_max"] = round(max(cpu), 1)
            extra["idle_interval_ms"] = load_config(plans[0].home).idle_interval_ms
            extra["first_tx_latency_ms"] = round(first_tx_latency_ms(nodes, chain_id, workdir))
        if load is not None:
            load.join(timeout=30)
        rounds = median_rounds_per_s(s0, s1, elapsed, epoch_rounds)
        end_h = min(s["height"] for s in s1)
        lat, txs = commit_latencies(nodes, start_h, end_h)
        roots = state_roots_at(nodes, end_h)
        return {
            "validators": validators,
            "seconds": round(elapsed, 2),
            "rounds_per_s": round(rounds, 2),
            "commits_per_s": round((end_h - start_h) / elapsed, 2),
            "commit_latency_ms_p50": percentile(lat, 0.5),
            "commit_latency_ms_p99": percentile(lat, 0.99),
            "tx_rate_offered": tx_rate,
            "tx_submitted": load.sent if load else 0,
            "tx_senders": SENDERS if load else 0,
            "tx_submit": submit if load else None,
            "tx_refused": dict(sorted(load.refused.items())) if load else {},
            "mempool_refused": mempool_refused([n.status() for n in nodes]),
            "tx_per_s": round(txs / elapsed, 1),
            "state_roots_agree": len(roots) == 1,
            "height": end_h,
            "baseline_inprocess_rounds_per_s": round(inprocess_baseline(validators), 1),
            **extra,
        }
    finally:
        stop_all(procs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--validators", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--tx-rate", type=int, default=0)
    ap.add_argument("--crash", type=int, default=0, metavar="K",
                    help="kill K validators after measuring all up (at most f: the rest must hold a quorum)")
    ap.add_argument("--idle", action="store_true",
                    help="no load: CPU per idle validator, then the first transaction's latency")
    ap.add_argument("--idle-interval-ms", type=int, default=None, metavar="MS",
                    help="the validators' idle_interval_ms (default: a real node's with --idle, else 0 = never rest)")
    ap.add_argument("--profile", action="store_true",
                    help="each validator under cProfile: CPU ms per round by category (profile_ms_per_round)")
    ap.add_argument("--profile-validators", type=int, default=None, metavar="K",
                    help="with --profile: profile only the first K validators (default: all)")
    ap.add_argument("--accounts", type=int, default=0, metavar="N",
                    help="add N funded accounts to the genesis (a large state; e.g. 100000)")
    ap.add_argument("--submit", choices=("owner", "any"), default="owner",
                    help="with --tx-rate: post each transaction to its proposer's API (owner, what a client does) or "
                         "to any validator's, which pushes it on (any)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.profile and (args.idle or args.crash):
        ap.error("--profile measures the plain network (with or without --tx-rate): drop --idle and --crash")
    if args.idle and (args.tx_rate or args.crash):
        ap.error("--idle measures a network without load or crashes: drop --tx-rate and --crash")
    if not 0 <= args.crash <= (args.validators - 1) // 3:
        ap.error(f"--crash must be in 0..{(args.validators - 1) // 3} for {args.validators} equal-stake validators")
    with tempfile.TemporaryDirectory(prefix="tn-bench-") as d:
        interval = args.idle_interval_ms
        if interval is None:
            interval = NodeConfig().idle_interval_ms if args.idle else 0
        result = run(args.validators, args.seconds, args.tx_rate, Path(d), crash=args.crash, idle=args.idle,
                     idle_interval_ms=interval, accounts=args.accounts, submit=args.submit,
                     profile=(args.profile_validators or args.validators) if args.profile else 0)
    if not args.json:
        for k, v in result.items():
            print(f"{k:36} {v}", file=sys.stderr)
    print(json.dumps(result))
    return 0 if result["state_roots_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
