"""Admission to a miner's model under load: paid queries first, free ones shed when the queue is full.

One query runs on the model at a time; up to `max_waiting` wait. Waiting paid queries are admitted
before any waiting free query (each class in arrival order). When the queue is full, a new free query
is refused at once, and a new paid query takes the place of the most recently queued free one (which is
refused), so paying clients are never shed while free traffic waits. Only when every waiting slot holds a
paid query is a paid query refused too. A refused query gets status `BUSY`; a query whose deadline passes
while it waits leaves the queue (status `TIMEOUT`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import trio


@dataclass(eq=False)
class _Waiter:
    event: trio.Event = field(default_factory=trio.Event)
    granted: bool = False


@dataclass
class GateStats:
    admitted_paid: int = 0
    admitted_free: int = 0
    shed_paid: int = 0
    shed_free: int = 0
    evicted_free: int = 0  # free queries that were queued and then gave way to a paid one


class PriorityGate:
    """See the module docstring. `acquire(paid)` returns True when the caller holds the model slot
    (it must then call `release()` exactly once) and False when it was shed."""

    def __init__(self, max_waiting: int) -> None:
        if max_waiting < 0:
            raise ValueError("max_waiting must be >= 0")
        self.max_waiting = max_waiting
        self.busy = False
        self._paid: deque[_Waiter] = deque()
        self._free: deque[_Waiter] = deque()
        self.stats = GateStats()

    @property
    def waiting_paid(self) -> int:
        return len(self._paid)

    @property
    def waiting_free(self) -> int:
        return len(self._free)

    def _admit(self, paid: bool) -> bool:
        if paid:
            self.stats.admitted_paid += 1
        else:
            self.stats.admitted_free += 1
        return True

    def _shed(self, paid: bool) -> bool:
        if paid:
            self.stats.shed_paid += 1
        else:
            self.stats.shed_free += 1
        return False

    async def acquire(self, paid: bool) -> bool:
        if not self.busy and not self._paid and not self._free:
            self.busy = True
            return self._admit(paid)
        if len(self._paid) + len(self._free) >= self.max_waiting:
            if not (paid and self._free):
                return self._shed(paid)
            victim = self._free.pop()  # the newest free waiter gives way
            self.stats.evicted_free += 1
            victim.event.set()  # granted stays False: it was shed
        waiter = _Waiter()
        queue = self._paid if paid else self._free
        queue.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:  # cancelled (its deadline): leave the queue, or pass on a slot just granted
            if waiter.granted:
                self.release()
            elif waiter in queue:
                queue.remove(waiter)
            raise
        return self._admit(paid) if waiter.granted else self._shed(paid)

    def release(self) -> None:
        """Hand the model slot to the next waiter, paid first; or mark the model free."""
        for queue in (self._paid, self._free):
            if queue:
                waiter = queue.popleft()
                waiter.granted = True
                waiter.event.set()
                return
        self.busy = False
