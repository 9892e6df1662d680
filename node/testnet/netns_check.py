"""The scripted fault check of a namespace testnet: kill, pause, partition, heal, a late joiner (spec/testnet.md §6).

Every phase waits for a condition with a deadline and records the heights it saw. "Commits stop" cannot
be seen at one instant, so it is judged against the network's own pace: the time the healthy network took
for STEP commits, times WINDOW_FACTOR (at least MIN_WINDOW_S), is a window in which a live quorum would
certainly commit; a side that commits nothing over a whole window has stopped. A slower machine slows
both, so the judgement does not depend on this machine's speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.testnet import netns as net
from node.testnet.netns_links import NetnsError

STEP = 5  # commits that show a side is live
WINDOW_FACTOR = 4
MIN_WINDOW_S = 3.0
SETTLE_WINDOWS = 4  # commits in flight at the cut must end within this many windows
AGREE_BACK = 3  # heights below the common head compared too
MAX_SCAN = 40  # heights compared across the sides of a partition


class CheckFailed(NetnsError):
    """A property the check asserts did not hold."""


@dataclass(frozen=True)
class CheckSpec:
    hosts: int = 5
    kill: int = 1
    pause: int = 0
    partition: int = 2
    delay: str | None = None
    loss: str | None = None
    timeout_s: float = 300.0
    keep: bool = False  # leave the network running afterwards
    round_ms: int = net.ROUND_MS

    def quorum(self) -> int:
        """Hosts needed to commit: equal stakes, so Q = floor(2n/3) + 1 of n (spec/consensus.md)."""
        return 2 * self.hosts // 3 + 1

    def validate(self) -> None:
        q = self.quorum()
        if self.hosts < 2:
            raise NetnsError("--hosts: the check needs at least 2 hosts")
        if not 0 <= self.kill <= self.hosts - q:
            raise NetnsError(f"--kill {self.kill}: with {self.hosts} hosts a quorum is {q}, so at most "
                             f"{self.hosts - q} may be killed for the rest to keep committing")
        if not 0 <= self.pause <= self.hosts - q:
            raise NetnsError(f"--pause {self.pause}: with {self.hosts} hosts a quorum is {q}, so at most "
                             f"{self.hosts - q} may be paused for the rest to keep committing")
        if not 0 <= self.partition < self.hosts:
            raise NetnsError(f"--partition {self.partition}: use 0..{self.hosts - 1} (0 skips the partition)")


class Check:
    """One run of the scripted check; `run()` returns the result object `netns check --json` prints."""

    def __init__(self, directory: Path, spec: CheckSpec, say: Callable[[str], None] = lambda _m: None) -> None:
        self.directory = directory
        self.spec = spec
        self.say = say
        self.started = time.monotonic()
        self.state: dict[str, Any] = {}
        self.phases: list[dict[str, Any]] = []
        self.window_s = MIN_WINDOW_S
        self.roots_agree = True
        self.compared = 0  # heights whose commits were compared across hosts
        self.expect_up: set[str] = set()  # hosts whose death fails the check

    # -- helpers

    def _log(self, msg: str) -> None:
        self.say(f"[{time.monotonic() - self.started:6.1f}s] {msg}")

    def _reload(self) -> None:
        self.state = net.load(self.directory)

    def names(self, late: bool = False) -> list[str]:
        return [h["name"] for h in self.state["hosts"] if bool(h.get("late")) == late]

    def heights(self, names: list[str]) -> dict[str, int | None]:
        seen = net.observe(self.state, names)
        return {n: (int(s["height"]) if s else None) for n, s in seen.items()}

    def wait(self, what: str, cond: Callable[[], bool], interval: float = 0.3) -> None:
        deadline = self.started + self.spec.timeout_s
        while not cond():
            if time.monotonic() > deadline:
                raise CheckFailed(f"timed out after {self.spec.timeout_s:.0f}s waiting for {what}")
            for h in self.state["hosts"]:
                if h["name"] in self.expect_up and net.proc_state(h) == "stopped":
                    raise CheckFailed(f"{h['name']} died while waiting for {what}; see {h.get('log')}")
            time.sleep(interval)

    def min_height(self, names: list[str]) -> int:
        hs = self.heights(names).values()
        return -1 if any(h is None for h in hs) else min(hs)  # type: ignore[type-var]

    def wait_advance(self, names: list[str], by: int, what: str) -> dict[str, int | None]:
        base = max(h or 0 for h in self.heights(names).values())
        self.wait(f"{what}: {', '.join(names)} past height {base + by}", lambda: self.min_height(names) >= base + by)
        return self.heights(names)

    def wait_stalled(self, names: list[str], what: str) -> dict[str, int | None]:
        """Heights that stayed the same over one whole window (within SETTLE_WINDOWS windows)."""
        before = self.heights(names)
        for _ in range(SETTLE_WINDOWS):
            time.sleep(self.window_s)
            after = self.heights(names)
            if after == before and None not in after.values():
                return after
            before = after
        raise CheckFailed(f"{what}: {', '.join(names)} kept committing for {SETTLE_WINDOWS} windows of "
                          f"{self.window_s:.1f}s without a quorum (heights {before})")

    def agree(self, names: list[str], low: int, high: int, what: str) -> int:
        """Every host that has height h in [low, high] holds the same (state root, digest) there."""
        hosts = [net.host(self.state, n) for n in names]
        checked = 0
        for h in range(max(1, low), high + 1):
            seen = {n["name"]: c for n in hosts if (c := net.commit_at(n, h)) is not None}
            if len(set(seen.values())) > 1:
                self.roots_agree = False
                raise CheckFailed(f"{what}: commits differ at height {h}: "
                                  + ", ".join(f"{k}={v[0][:12]}" for k, v in seen.items()))
            checked += len(seen) > 1
        self.compared += checked
        return checked

    def agree_at_head(self, names: list[str], what: str) -> int:
        common = self.min_height(names)
        if common < 1:
            raise CheckFailed(f"{what}: a host has committed nothing")
        hosts = [net.host(self.state, n) for n in names]
        for h in range(common - AGREE_BACK, common + 1):
            if h >= 1 and any(net.commit_at(x, h) is None for x in hosts):
                raise CheckFailed(f"{what}: a host lacks commit {h} though its head is past it")
        self.agree(names, common - AGREE_BACK, common, what)
        return common

    def phase(self, name: str, **facts: Any) -> None:
        entry = {"phase": name, "seconds": round(time.monotonic() - self.started, 1), **facts}
        self.phases.append(entry)
        self._log(f"{name}: ok {facts}")

    def _mark_up(self, names: list[str], up: bool) -> None:
        self.expect_up = self.expect_up | set(names) if up else self.expect_up - set(names)

    # -- phases

    def start_phase(self) -> None:
        everyone = self.names()
        self._mark_up(everyone, True)
        self.wait("every host to commit height 3", lambda: self.min_height(everyone) >= 3)
        t0 = time.monotonic()
        hs = self.wait_advance(everyone, STEP, "a healthy network")
        pace = time.monotonic() - t0
        self.window_s = max(MIN_WINDOW_S, WINDOW_FACTOR * pace)
        self.phase("start", heights=hs, seconds_per_step=round(pace, 2), window_s=round(self.window_s, 1))

    def outage_phase(self, how: str) -> None:
        """kill: SIGKILL, then restart from the home; pause: SIGSTOP, then SIGCONT (the node holds its
        connections open but answers nothing). Either way the rest must keep committing and agree, and
        the hosts must catch up afterwards."""
        k = self.spec.kill if how == "kill" else self.spec.pause
        back = {"kill": "start", "pause": "cont"}[how]
        everyone = self.names()
        victims, rest = everyone[len(everyone) - k:], everyone[: len(everyone) - k]
        self._mark_up(victims, False)
        net.perturb(self.directory, victims, how)
        self._reload()
        self._log(f"{how} {victims}; waiting for {rest} to commit {STEP} more")
        during = self.wait_advance(rest, STEP, f"commits with {k} hosts' nodes {how}ed")
        self.agree_at_head(rest, f"after the {how}")
        net.perturb(self.directory, victims, back)
        self._reload()
        self._mark_up(everyone, True)
        head = max(h or 0 for h in self.heights(rest).values())
        self._log(f"{back} {victims}; waiting for them to reach height {head}")
        self.wait(f"{victims} to catch up to {head}", lambda: self.min_height(victims) >= head)
        self.phase(how, hosts=victims, heights_during=during, heights_after=self.heights(everyone))

    def partition_phase(self) -> None:
        p, q = self.spec.partition, self.spec.quorum()
        everyone = self.names()
        side, rest = everyone[len(everyone) - p:], everyone[: len(everyone) - p]
        before = self.heights(everyone)
        net.partition(self.directory, side)
        self._reload()
        self._log(f"partitioned {side} | {rest} (quorum {q} of {len(everyone)})")
        outcome: dict[str, Any] = {}
        for group in (side, rest):
            key = "+".join(group)
            if len(group) >= q:
                outcome[key] = {"commits": True, "heights": self.wait_advance(group, STEP, "the quorum side")}
            else:
                outcome[key] = {"commits": False, "heights": self.wait_stalled(group, "the side without quorum")}
        hs = {n: h for n, h in self.heights(everyone).items() if h is not None}
        low = min(hs.values()) - AGREE_BACK
        compared = self.agree(everyone, max(low, max(hs.values()) - MAX_SCAN), max(hs.values()),
                              "during the partition")
        net.heal(self.directory)
        self._reload()
        top = max(hs.values())
        self._log(f"healed; waiting for every host to pass height {top + STEP}")
        self.wait(f"commits after the heal past {top + STEP}", lambda: self.min_height(everyone) >= top + STEP)
        common = self.agree_at_head(everyone, "after the heal")
        self.phase("partition", side=side, rest=rest, quorum=q, heights_before=before, during=outcome,
                   heights_compared=compared, heights_after_heal=self.heights(everyone), agreed_at=common)

    def late_phase(self) -> None:
        h = net.join(self.directory)
        self._reload()
        self._mark_up([h["name"]], True)
        others = self.names()
        head = max(x or 0 for x in self.heights(others).values())
        self._log(f"{h['name']} joins late (node join) at head {head}; waiting for it to sync")
        self.wait(f"{h['name']} to sync to height {head}", lambda: self.min_height([h["name"]]) >= head)
        common = self.agree_at_head([*others, h["name"]], "the late host")
        self.phase("late", host=h["name"], joined_at=head, heights=self.heights([*others, h["name"]]),
                   agreed_at=common)

    # -- the run

    def run(self) -> dict[str, Any]:
        spec = self.spec
        spec.validate()
        created = not (self.directory / net.STATE).exists()
        failure = None
        try:
            if created:
                self._log(f"creating {spec.hosts} namespaces in {self.directory}")
                net.up(self.directory, spec.hosts, spec.delay, spec.loss, round_ms=spec.round_ms)
            self._reload()
            if len(self.names()) != spec.hosts:
                raise NetnsError(f"{self.directory} runs {len(self.names())} hosts, not --hosts {spec.hosts}")
            self._log(f"delay/loss: {self.state.get('impairment', 'none')}")
            self.start_phase()
            if spec.kill:
                self.outage_phase("kill")
            if spec.pause:
                self.outage_phase("pause")
            if spec.partition:
                self.partition_phase()
            self.late_phase()
        except NetnsError as exc:
            failure = str(exc)
            self._log(f"FAILED: {failure}")
        finally:
            if created and not spec.keep:
                net.down(self.directory)
            elif (self.directory / net.STATE).exists():
                net.heal(self.directory)
        return {
            "passed": failure is None,
            "failure": failure,
            "roots_agree": self.roots_agree and self.compared > 0,
            "hosts": spec.hosts,
            "quorum": spec.quorum(),
            "kill": spec.kill,
            "pause": spec.pause,
            "partition": spec.partition,
            "impairment": self.state.get("impairment", "none"),
            "phases": self.phases,
            "seconds": round(time.monotonic() - self.started, 1),
            "directory": str(self.directory),
            "prefix": self.state.get("prefix"),
            "kept": created and spec.keep,
        }
