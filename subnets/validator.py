"""The validator loop: challenge a subnet's miners over libp2p, score them, and put weights on chain.

Two concurrent tasks, so that a slow round of queries never makes a reveal miss its epoch:

- **scoring**, every `step_s`: refresh the metagraph; once this hotkey holds a validator permit (miners
  refuse everyone else), pick `sample` miners with an axon, least recently queried first; build each
  challenge from `challenge_seed(latest commit digest, a fresh nonce, uid)`; query them in parallel with
  the task's deadline; score with the task's scorer; fold into a per-uid moving average (`MovingScores`).
  No answer, a wrong answer or a refusal scores 0, except NOT_VALIDATOR: the miner's permit list is stale,
  which is not the miner's work being bad, so that round is skipped for it.
- **weights**, polled every second: every `interval_s`, the averaged scores become u16 weights. With
  commit-reveal off: `set_weights`, not before `last_update + weights_rate_limit`. With it on:
  `commit_weights` with a random salt, and `reveal_weights` in the reveal epoch (spec/state.md §3).
  Salts and pending commits are written to the validator's home BEFORE the commit is sent, so a
  validator restarted between commit and reveal still reveals.

State lives in `<home>/validators/<wallet>/<hotkey>/sn<netuid>/` (node key, state.json).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from node.client.api_client import ApiError, NodeClient
from node.errors import NodeError
from node.log import get_logger
from p2pnet.host import as_peer_id
from p2pnet.nodekey import load_or_create_node_key
from p2pnet.stack import open_stack
from protocol.crypto import Keypair
from protocol.economics.weights import weights_commit_hash
from protocol.messages import AddStake, CommitWeights, Register, RevealWeights, SetWeights
from protocol.state.state import next_epoch_height
from subnets import registry
from subnets.axon import SPEC, QueryError, QueryStatus, build_query, query_miner
from subnets.miner import CarriedError
from subnets.scoring import MovingScores
from subnets.task import challenge_seed

log = get_logger(__name__)

DROP_RULES = ("commit expired", "no commit", "commit mismatch")
MAX_PENDING_COMMITS = 3


class ValidatorError(NodeError):
    """A validator that cannot start (no subnet, no funds for the stake, registration did not land)."""


@dataclass
class ValidatorConfig:
    home: Path
    wallet: str
    hotkey: str
    netuid: int
    node: str | None
    interval_s: float = 60.0
    step_s: float = 5.0
    sample: int = 16
    stake: int = 100 * 10**9  # units the hotkey should hold; topped up from the coldkey
    max_burn: int = 10 * 10**9
    task_config: dict[str, Any] = field(default_factory=dict)
    listen_host: str = "127.0.0.1"
    alpha: int | None = None
    timeout_s: float | None = None  # per query; default the task's TIMEOUT_MS
    version_key: int | None = None  # default: the subnet's weights_version_key


@dataclass
class PendingCommit:
    commit_hash: str
    uids: list[int]
    values: list[int]
    salt: str
    version_key: int
    submitted_at: int  # chain height when sent
    reveal_from: int  # estimated first height of the reveal epoch


class Validator:
    def __init__(self, cfg: ValidatorConfig, coldkey: Callable[[], Keypair], hotkey: Keypair) -> None:
        self.cfg = cfg
        self.coldkey = coldkey
        self.hotkey = hotkey
        self.client = NodeClient(cfg.node)
        self.root = Path(cfg.home) / "validators" / cfg.wallet / cfg.hotkey / f"sn{cfg.netuid}"
        self.state_path = self.root / "state.json"
        self.scores = MovingScores(cfg.alpha) if cfg.alpha is not None else MovingScores()
        self.uid_hotkeys: dict[int, str] = {}
        self.pending: list[PendingCommit] = []
        self.last_queried: dict[int, float] = {}
        self.dialled: dict[str, tuple[str, ...]] = {}  # peer id -> the announced addresses we dialled
        self.last_weights_at = 0.0
        self.last_commit_height: int | None = None
        self.uid: int | None = None
        self.chain_id = ""
        self.task: Any = None
        self.hp: dict[str, Any] = {}
        self.metagraph: list[dict[str, Any]] = []
        self.has_permit = False
        self._save_lock = threading.Lock()  # the scoring and weights tasks both save, from worker threads
        self.stats = {"steps": 0, "queries": 0, "answers": 0, "failures": 0, "weights_set": 0, "commits": 0,
                      "reveals": 0}

    # --- persistence ---------------------------------------------------------------------------

    def load_state(self) -> None:
        try:
            obj = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise ValidatorError(f"{self.state_path} is unreadable ({exc}); move it away to start afresh") from None
        self.scores.restore({int(k): int(v) for k, v in obj.get("scores", {}).items()})
        self.uid_hotkeys = {int(k): v for k, v in obj.get("uid_hotkeys", {}).items()}
        self.pending = [PendingCommit(**p) for p in obj.get("pending", [])]
        self.last_commit_height = obj.get("last_commit_height")
        if self.pending:
            log.info("pending weight commits restored", count=len(self.pending))

    def save_state(self) -> None:
        with self._save_lock:
            self._save_state()

    def _save_state(self) -> None:
        obj = {
            "scores": {str(k): v for k, v in self.scores.snapshot().items()},
            "uid_hotkeys": {str(k): v for k, v in self.uid_hotkeys.items()},
            "pending": [p.__dict__ for p in self.pending],
            "last_commit_height": self.last_commit_height,
            "updated_unix": time.time(),
        }
        tmp = self.state_path.with_name("state.json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(obj, indent=1).encode())
            os.fsync(fd)  # a salt that is lost cannot be revealed
        finally:
            os.close(fd)
        os.replace(tmp, self.state_path)

    # --- setup (blocking) ------------------------------------------------------------------------

    def setup(self) -> None:
        """Register and stake if needed; load the task. Runs before the event loop."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.load_state()
        c = self.client
        self.chain_id = c.status()["chain_id"]
        try:
            info = c.get(f"/subnets/{self.cfg.netuid}")
        except ApiError as exc:
            raise ValidatorError(f"subnet {self.cfg.netuid}: {exc}") from None
        self.hp = info["hyperparameters"]
        self.task = registry.create(info["name"], self.cfg.task_config)
        row = self._own_row(c.metagraph(self.cfg.netuid))
        if row is None:
            digest = c.send(self.coldkey(), Register(self.cfg.netuid, self.hotkey.public, self.cfg.max_burn))
            log.info("registration sent", netuid=self.cfg.netuid, hotkey=self.hotkey.address, tx=digest.hex()[:16])
            row = self._wait_row(lambda r: r is not None, "registration")
        stake = int(row["stake"])
        if stake < self.cfg.stake:
            digest = c.send(self.coldkey(), AddStake(self.hotkey.public, self.cfg.stake - stake))
            log.info("stake topped up", hotkey=self.hotkey.address, add=self.cfg.stake - stake, tx=digest.hex()[:16])
            row = self._wait_row(lambda r: r is not None and int(r["stake"]) >= self.cfg.stake, "stake")
        self.uid = int(row["uid"])
        log.info("validator ready", netuid=self.cfg.netuid, task=info["name"], uid=self.uid, stake=int(row["stake"]),
                 permit=bool(row["validator_permit"]), commit_reveal=bool(self.hp.get("commit_reveal_enabled")))

    def _own_row(self, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        me = self.hotkey.public.hex()
        return next((r for r in rows if r["hotkey"] == me), None)

    def _wait_row(self, ok: Callable[[dict[str, Any] | None], bool], what: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            row = self._own_row(self.client.metagraph(self.cfg.netuid))
            if ok(row):
                assert row is not None
                return row
            if time.monotonic() > deadline:
                raise ValidatorError(f"{what} of {self.hotkey.address} did not land within {timeout:.0f}s")
            time.sleep(0.5)

    # --- scoring ---------------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Metagraph and hyperparameters; forget scores of uids that changed hands."""
        self.metagraph = self.client.metagraph(self.cfg.netuid)
        self.hp = self.client.get(f"/subnets/{self.cfg.netuid}")["hyperparameters"]
        for r in self.metagraph:
            uid, hk = int(r["uid"]), r["hotkey"]
            if self.uid_hotkeys.get(uid) not in (None, hk):
                self.scores.reset(uid)
                self.last_queried.pop(uid, None)
            self.uid_hotkeys[uid] = hk
        self.scores.retain(int(r["uid"]) for r in self.metagraph)
        own = self._own_row(self.metagraph)
        self.uid = None if own is None else int(own["uid"])
        self.has_permit = bool(own and own["validator_permit"])

    def pick(self) -> list[dict[str, Any]]:
        """Up to `sample` miners with an axon (not ourselves), least recently queried first."""
        rows = [r for r in self.metagraph if r.get("axon") and int(r["uid"]) != self.uid]
        random.shuffle(rows)
        rows.sort(key=lambda r: self.last_queried.get(int(r["uid"]), 0.0))
        return rows[: self.cfg.sample]

    async def _query_one(self, stack: Any, row: dict[str, Any], chain_digest: bytes, nonce: bytes) -> None:
        uid = int(row["uid"])
        self.last_queried[uid] = time.monotonic()
        peer_id, addrs = row["axon"][0], row["axon"][1]
        timeout = self.cfg.timeout_s if self.cfg.timeout_s is not None else self.task.TIMEOUT_MS / 1000
        self.stats["queries"] += 1
        try:
            challenge = await trio.to_thread.run_sync(self.task.challenge, challenge_seed(chain_digest, nonce, uid))
            payload = self.task.encode_query(challenge)
            peer = await self._connect(stack.host, peer_id, addrs)
            miner = bytes.fromhex(row["hotkey"])
            signed = build_query(self.hotkey, self.chain_id, self.cfg.netuid, payload, miner=miner)
            result = await query_miner(stack.reqresp, peer, signed, miner, timeout)
        except (QueryError, NodeError, Exception) as exc:  # noqa: BLE001 - an unreachable miner scores 0
            self.stats["failures"] += 1
            log.debug("query failed", uid=uid, error=str(exc)[:200])
            self.scores.update(uid, 0)
            await self._drop_peer(stack, peer_id)  # a restarted miner is dialled afresh next time
            return
        if result.status in (QueryStatus.NOT_VALIDATOR, QueryStatus.PAYMENT_REQUIRED):
            log.info("miner does not see our permit yet; skipping it this round", uid=uid)
            return
        if result.status != QueryStatus.OK:
            self.stats["failures"] += 1
            log.debug("miner refused", uid=uid, status=result.status.name)
            self.scores.update(uid, 0)
            return
        score = await trio.to_thread.run_sync(self.task.score_payload, challenge, result.payload, result.latency_ms)
        self.stats["answers"] += 1
        avg = self.scores.update(uid, score)
        log.debug("scored", uid=uid, score=score, average=avg, latency_ms=result.latency_ms)

    async def _drop_peer(self, stack: Any, peer_id: str) -> None:
        self.dialled.pop(peer_id, None)
        try:
            peer = as_peer_id(peer_id)
        except Exception:  # noqa: BLE001 - a malformed announced peer id: nothing to drop
            return
        stack.reqresp.close_peer(peer)
        await stack.host.disconnect(peer)

    async def _connect(self, host: Any, peer_id: str, addrs: list[str]) -> Any:
        peer = as_peer_id(peer_id)
        if host.is_connected(peer) and self.dialled.get(peer_id) == tuple(addrs):
            return peer
        if host.is_connected(peer):  # the miner re-announced (restarted elsewhere): the old link is stale
            await host.disconnect(peer)
        try:  # dial only what the chain announces now: libp2p would also retry a dead address it saw before
            host.libp2p.get_peerstore().clear_addrs(peer)
        except Exception:  # noqa: BLE001 - an unknown peer has nothing to clear
            pass
        last: Exception | None = None
        for addr in addrs[:4]:
            try:
                peer = await host.connect(f"{addr}/p2p/{peer_id}", deadline=3.0)
                self.dialled[peer_id] = tuple(addrs)
                return peer
            except Exception as exc:  # noqa: BLE001 - try the next address
                last = exc
        raise ValidatorError(f"cannot reach {peer_id}: {last}")

    async def step(self, stack: Any) -> None:
        await trio.to_thread.run_sync(self._refresh)
        if not self.has_permit:
            height = int((await trio.to_thread.run_sync(self.client.status))["height"])
            nxt = next_epoch_height(height, self.cfg.netuid, int(self.hp["tempo"]))
            log.info("waiting for a validator permit (assigned by stake at each epoch)", uid=self.uid,
                     next_epoch_height=nxt, height=height)
            return
        status = await trio.to_thread.run_sync(self.client.status)
        last = status.get("last_commit") or {}
        chain_digest = bytes.fromhex(last.get("digest") or "00" * 32)
        nonce = secrets.token_bytes(16)
        rows = self.pick()
        with trio.move_on_after(max(self.cfg.step_s * 4, 30)):
            async with trio.open_nursery() as nursery:
                for row in rows:
                    nursery.start_soon(self._query_one, stack, row, chain_digest, nonce)
        self.stats["steps"] += 1
        await trio.to_thread.run_sync(self.save_state)
        log.info("step", height=status["height"], queried=len(rows), nonce=nonce.hex(),
                 scores=self.scores.scores())

    async def scoring_loop(self, stack: Any) -> None:
        while True:
            started = trio.current_time()
            try:
                await self.step(stack)
            except NodeError as exc:
                log.warning("step failed", error=str(exc))
            await trio.sleep_until(started + self.cfg.step_s)

    # --- weights ---------------------------------------------------------------------------------

    def _version_key(self) -> int:
        return self.cfg.version_key if self.cfg.version_key is not None else int(self.hp.get("weights_version_key", 0))

    def weights_tick(self, weights: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
        """One pass of the weights task (blocking; run in a thread) with a snapshot of the weights."""
        height = int(self.client.status()["height"])
        if self.hp.get("commit_reveal_enabled"):
            self._reveal_due(height)
        if time.monotonic() - self.last_weights_at < self.cfg.interval_s or not self.has_permit:
            return
        uids, values = weights
        if not uids:
            return
        rate = int(self.hp.get("weights_rate_limit", 0))
        if self.hp.get("commit_reveal_enabled"):
            self._commit(height, list(uids), list(values), rate)
        else:
            self._set(height, uids, values, rate)

    def _set(self, height: int, uids: tuple[int, ...], values: tuple[int, ...], rate: int) -> None:
        own = self._own_row(self.client.metagraph(self.cfg.netuid)) or {}
        last = int(own.get("last_update") or 0)
        if last and height < last + rate:
            log.info("weights rate limit", last_set=last, next_allowed=last + rate, height=height)
            return
        try:
            digest = self.client.send(self.hotkey, SetWeights(self.cfg.netuid, uids, values, self._version_key()))
        except ApiError as exc:
            log.warning("set_weights refused", rule=exc.rule, error=str(exc))
            return
        self.last_weights_at = time.monotonic()
        self.stats["weights_set"] += 1
        log.info("weights set", height=height, uids=list(uids), values=list(values), tx=digest.hex()[:16],
                 next_allowed=height + 1 + rate)

    def _commit(self, height: int, uids: list[int], values: list[int], rate: int) -> None:
        if self.last_commit_height is not None and height < self.last_commit_height + rate:
            log.info("weights rate limit", last_commit=self.last_commit_height,
                     next_allowed=self.last_commit_height + rate, height=height)
            return
        if len(self.pending) >= MAX_PENDING_COMMITS:
            return
        salt = secrets.token_bytes(16)
        vk = self._version_key()
        h = weights_commit_hash(self.hotkey.public, self.cfg.netuid, uids, values, salt, vk)
        tempo, period = int(self.hp["tempo"]), int(self.hp.get("reveal_period", 1))
        first_boundary = next_epoch_height(height, self.cfg.netuid, tempo)  # the commit's epoch ends here
        reveal_from = first_boundary + (period - 1) * (tempo + 1) + 1
        pc = PendingCommit(h.hex(), uids, values, salt.hex(), vk, height, reveal_from)
        self.pending.append(pc)
        self.save_state()  # the salt is on disk before the commit can be on chain
        try:
            digest = self.client.send(self.hotkey, CommitWeights(self.cfg.netuid, h))
        except ApiError as exc:
            self.pending.remove(pc)
            self.save_state()
            log.warning("commit_weights refused", rule=exc.rule, error=str(exc))
            return
        self.last_commit_height = height
        self.last_weights_at = time.monotonic()
        self.stats["commits"] += 1
        self.save_state()
        log.info("weights committed", height=height, reveal_from=reveal_from, uids=uids, values=values,
                 tx=digest.hex()[:16], next_commit_allowed=height + 1 + rate)

    def _reveal_due(self, height: int) -> None:
        changed = False
        for pc in list(self.pending):
            if height + 1 < pc.reveal_from:
                continue
            call = RevealWeights(self.cfg.netuid, tuple(pc.uids), tuple(pc.values), bytes.fromhex(pc.salt),
                                 pc.version_key)
            try:
                digest = self.client.send(self.hotkey, call)
            except ApiError as exc:
                if exc.rule in DROP_RULES:
                    log.warning("dropping a commit that cannot be revealed", rule=exc.rule, error=str(exc))
                    self.pending.remove(pc)
                    changed = True
                elif exc.rule == "reveal too early":
                    log.debug("reveal too early; retrying", error=str(exc))
                else:
                    log.warning("reveal_weights refused", rule=exc.rule, error=str(exc))
                break  # reveal oldest first
            self.pending.remove(pc)
            changed = True
            self.stats["reveals"] += 1
            log.info("weights revealed", height=height, committed_at=pc.submitted_at, uids=pc.uids,
                     values=pc.values, tx=digest.hex()[:16])
        if changed:
            self.save_state()

    async def weights_loop(self) -> None:
        while True:
            try:
                await trio.to_thread.run_sync(self.weights_tick, self.scores.weights())
            except NodeError as exc:
                log.warning("weights tick failed", error=str(exc))
            await trio.sleep(1.0)

    # --- run ---------------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        """Until SIGINT/SIGTERM; returns a summary."""
        key = load_or_create_node_key(self.root)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
            carried = CarriedError()
            async with open_stack(key, listen=[f"/ip4/{self.cfg.listen_host}/tcp/0"]) as stack, carried:
                stack.reqresp.register(SPEC)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.scoring_loop, stack)
                    nursery.start_soon(self.weights_loop)
                    async for signum in received:
                        log.info("stopping validator", signal=signal.Signals(signum).name)
                        break
                    nursery.cancel_scope.cancel()
            carried.reraise()
        self.save_state()
        self.client.close()
        return {"netuid": self.cfg.netuid, "uid": self.uid, "hotkey": self.hotkey.address, **self.stats,
                "scores": self.scores.scores(), "pending_commits": len(self.pending)}
