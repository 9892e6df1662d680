"""Per-peer and per-IP limits, a peer score with bans, and the counters node/ exports.

A remote peer can only cost us what these limits allow: a few sockets per IP (so one address cannot
exhaust the inbound slots), a bounded number of concurrent streams per peer, a size cap per protocol
checked before a frame is read, and a deadline on every read. Each violation lowers the peer's score;
below `ban_threshold` the peer is disconnected and banned until the ban expires. Scores decay back to
zero, so a peer that misbehaved once is forgiven, and one that keeps misbehaving is not.

Protected peers (the committee, set by node/ through `set_protected`) are banned for at most
`protected_ban_seconds` unless the ban's reason is in `FAULT_REASONS`: a signed message that proves
fault. Anything else a committee member does (corrupt frames, timeouts, invalid but unsigned input) may
be a slow link or our own bug, and a long ban of an honest member halts the chain.

Time comes from an injected `clock` (seconds, monotonic) so unit tests need no sleeps. Nothing here
does I/O: the host calls into `PeerLimiter` and acts on its answers.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from p2pnet.errors import ConfigError, MessageTooLarge

MiB = 1024 * 1024

# Reasons that prove fault with a signed message: only these ban a protected (committee) peer for longer
# than `Limits.protected_ban_seconds`. Callers charge them where they verify the signature.
INVALID_SIGNATURE = "invalid_signature"  # a message whose ed25519 signature does not verify
EQUIVOCATION = "equivocation"  # two different signed blocks by one author for one round
FAULT_REASONS: frozenset[str] = frozenset({INVALID_SIGNATURE, EQUIVOCATION})

# Penalty per violation reason; anything not listed costs `Limits.default_penalty`.
DEFAULT_PENALTIES: Mapping[str, float] = MappingProxyType(
    {
        "malformed": 25.0,  # undecodable frame (protobuf or CBOR)
        "oversize": 25.0,  # frame over the protocol's cap
        "handler_error": 10.0,  # our handler raised on this peer's input
        "bad_request": 5.0,  # a request/response handler refused the request (`Refused`, default penalty)
        "read_timeout": 5.0,  # peer stalled a read past its deadline
        "too_many_streams": 5.0,  # more concurrent streams than allowed
        "invalid_message": 20.0,  # decoded but failed validation (reported by gossip/reqresp)
        "rate": 2.0,  # over a rate limit
        INVALID_SIGNATURE: 100.0,  # proof of fault: banned at once, for `ban_seconds` even if protected
        EQUIVOCATION: 100.0,
    }
)


@dataclass(frozen=True)
class Limits:
    """Tunable limits of one host. Defaults suit a validator on a public address."""

    max_inbound_conns: int = 512  # established inbound connections, all IPs together
    max_conns_per_ip: int = 16  # established connections (both directions) per remote IP
    max_pending_per_ip: int = 8  # sockets still in the security/muxer handshake, per remote IP
    handshake_timeout: float = 10.0  # seconds an inbound socket may take to finish noise + yamux
    max_streams_per_peer: int = 64  # concurrent inbound streams per peer
    default_message_cap: int = 1 * MiB  # frame cap of a protocol that has none of its own
    message_caps: Mapping[str, int] = field(default_factory=dict)  # protocol id (or prefix) -> cap
    max_message_size: int = 64 * MiB  # hard ceiling of every cap (and of pubsub frames)
    read_deadline: float = 10.0  # seconds a peer gets to deliver a frame it started (or a new stream's first frame)
    stream_idle_timeout: float = 300.0  # seconds a persistent inbound stream may go without a frame
    ban_threshold: float = -100.0  # a score at or below this bans the peer
    ban_seconds: float = 600.0  # how long a ban lasts
    protected_ban_seconds: float = 30.0  # the longest ban of a protected peer without a FAULT_REASONS reason
    score_half_life: float = 300.0  # seconds for a negative score to decay halfway back to zero
    default_penalty: float = 10.0
    penalties: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PENALTIES))

    def __post_init__(self) -> None:
        for name in ("max_inbound_conns", "max_conns_per_ip", "max_pending_per_ip", "max_streams_per_peer"):
            if getattr(self, name) < 1:
                raise ConfigError(f"Limits.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("handshake_timeout", "read_deadline", "stream_idle_timeout", "ban_seconds", "score_half_life",
                     "protected_ban_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"Limits.{name} must be positive, got {getattr(self, name)}")
        if self.ban_threshold >= 0:
            raise ConfigError(f"Limits.ban_threshold must be negative, got {self.ban_threshold}")
        for proto, cap in {"<default>": self.default_message_cap, **dict(self.message_caps)}.items():
            if not 0 < cap <= self.max_message_size:
                raise ConfigError(f"message cap of {proto} must be in 1..{self.max_message_size}, got {cap}")

    def message_cap(self, protocol: str) -> int:
        """Cap for `protocol`: an exact entry, else the longest matching prefix, else the default."""
        if protocol in self.message_caps:
            return self.message_caps[protocol]
        best = ""
        for prefix in self.message_caps:
            if protocol.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return self.message_caps[best] if best else self.default_message_cap

    def check_size(self, protocol: str, size: int) -> None:
        """Raise `MessageTooLarge` if a frame of `size` bytes is over `protocol`'s cap."""
        cap = self.message_cap(protocol)
        if size > cap:
            raise MessageTooLarge(size, cap, protocol)


class LogLimiter:
    """At most one log line per key (a peer) per `interval` seconds; the caller counts the rest instead.

    A peer that makes us fail 3,000 times must not write 3,000 warnings. Memory is bounded too: at
    `max_keys` keys seen within the interval, new keys are not logged either.
    """

    def __init__(self, interval: float = 60.0, max_keys: int = 1024, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.max_keys = max_keys
        self.clock = clock
        self.suppressed = 0
        self._last: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        """True if a line about `key` may be logged now (and start its quiet interval)."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self.suppressed += 1
            return False
        if last is None and len(self._last) >= self.max_keys:
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval}
            if len(self._last) >= self.max_keys:
                self.suppressed += 1
                return False
        self._last[key] = now
        return True


class PeerLimiter:
    """Book-keeping of limits, scores and bans for one host; all counters are plain and exportable.

    `rejects[reason]`: things refused (a connection over a cap, a stream over the limit, an oversize frame).
    `drops[reason]`: things lost that were not refused on purpose (a full queue, a failed send).
    `violations[reason]`: penalties applied to peers. `bans`: bans issued so far.
    Peers and IPs are plain strings (str(peer_id), "127.0.0.1").
    """

    def __init__(
        self,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_ban: Callable[[str], None] | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.clock = clock
        self.on_ban = on_ban  # the host sets this to disconnect a peer the moment it is banned
        self.rejects: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self.violations: Counter[str] = Counter()
        self.bans = 0
        self._scores: dict[str, tuple[float, float]] = {}  # peer -> (score, time of score)
        self._banned: dict[str, float] = {}  # peer -> expiry
        self.protected: frozenset[str] = frozenset()  # committee peers: short bans unless a proof of fault
        self._faulty: set[str] = set()  # peers whose current ban was for a FAULT_REASONS reason
        self._pending_by_ip: Counter[str] = Counter()
        self._conns_by_ip: Counter[str] = Counter()
        self._streams_by_peer: Counter[str] = Counter()
        self.inbound_conns = 0

    # --- score and bans ---------------------------------------------------------------------

    def score(self, peer: str) -> float:
        """Current score, decayed towards zero since the last violation."""
        entry = self._scores.get(peer)
        if entry is None:
            return 0.0
        value, at = entry
        elapsed = max(0.0, self.clock() - at)
        return value * math.pow(0.5, elapsed / self.limits.score_half_life)

    def penalize(self, peer: str, reason: str, weight: float | None = None) -> bool:
        """Lower `peer`'s score for `reason`; ban (and call `on_ban`) at the threshold. True if banned now."""
        self.violations[reason] += 1
        if weight is None:
            weight = self.limits.penalties.get(reason, self.limits.default_penalty)
        value = self.score(peer) - abs(weight)
        self._scores[peer] = (value, self.clock())
        if value <= self.limits.ban_threshold and not self.is_banned(peer):
            self.ban(peer, reason=reason)
            return True
        return False

    def set_protected(self, peers: Iterable[str]) -> None:
        """Replace the protected set; a current ban of a newly protected peer is cut to the cool-off."""
        self.protected = frozenset(peers)
        cap = self.clock() + self.limits.protected_ban_seconds
        for peer in self.protected & self._banned.keys():
            if peer not in self._faulty:
                self._banned[peer] = min(self._banned[peer], cap)

    def ban(self, peer: str, seconds: float | None = None, reason: str | None = None) -> None:
        """Ban `peer` for `seconds` (default `ban_seconds`); the host disconnects it via `on_ban`.

        A protected peer is banned for at most `protected_ban_seconds` unless `reason` proves fault.
        """
        duration = self.limits.ban_seconds if seconds is None else seconds
        if reason in FAULT_REASONS:
            self._faulty.add(peer)
        elif peer in self.protected:
            duration = min(duration, self.limits.protected_ban_seconds)
        self._banned[peer] = self.clock() + duration
        self.bans += 1
        if self.on_ban is not None:
            self.on_ban(peer)

    def is_banned(self, peer: str) -> bool:
        expiry = self._banned.get(peer)
        if expiry is None:
            return False
        if self.clock() >= expiry:
            del self._banned[peer]
            self._scores.pop(peer, None)  # a served ban wipes the slate
            self._faulty.discard(peer)
            return False
        return True

    def ban_expiry(self, peer: str) -> float | None:
        return self._banned.get(peer) if self.is_banned(peer) else None

    def banned_peers(self) -> list[str]:
        return [p for p in list(self._banned) if self.is_banned(p)]

    # --- sockets per IP ---------------------------------------------------------------------

    def admit_pending(self, ip: str) -> bool:
        """Take a handshake slot for a new inbound socket from `ip`; False (and counted) if over the cap."""
        if self._pending_by_ip[ip] >= self.limits.max_pending_per_ip:
            self.rejects["pending_per_ip"] += 1
            return False
        self._pending_by_ip[ip] += 1
        return True

    def release_pending(self, ip: str) -> None:
        self._dec(self._pending_by_ip, ip)

    def admit_conn(self, ip: str, inbound: bool) -> bool:
        """Count an established connection to `ip`; False (and counted) if over a cap."""
        if self._conns_by_ip[ip] >= self.limits.max_conns_per_ip:
            self.rejects["conns_per_ip"] += 1
            return False
        if inbound and self.inbound_conns >= self.limits.max_inbound_conns:
            self.rejects["inbound_conns"] += 1
            return False
        self._conns_by_ip[ip] += 1
        if inbound:
            self.inbound_conns += 1
        return True

    def release_conn(self, ip: str, inbound: bool) -> None:
        self._dec(self._conns_by_ip, ip)
        if inbound:
            self.inbound_conns = max(0, self.inbound_conns - 1)

    def pending(self, ip: str) -> int:
        return self._pending_by_ip[ip]

    def conns(self, ip: str) -> int:
        return self._conns_by_ip[ip]

    # --- streams per peer -------------------------------------------------------------------

    def admit_stream(self, peer: str) -> bool:
        """Take a stream slot for `peer`; False (counted and penalised) when it already has the maximum."""
        if self._streams_by_peer[peer] >= self.limits.max_streams_per_peer:
            self.rejects["too_many_streams"] += 1
            self.penalize(peer, "too_many_streams")
            return False
        self._streams_by_peer[peer] += 1
        return True

    def release_stream(self, peer: str) -> None:
        self._dec(self._streams_by_peer, peer)

    def streams(self, peer: str) -> int:
        return self._streams_by_peer[peer]

    # --- export -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Plain numbers for metrics: node/ turns these into Prometheus counters and gauges."""
        return {
            "rejects": dict(self.rejects),
            "drops": dict(self.drops),
            "violations": dict(self.violations),
            "bans": self.bans,
            "banned_now": len(self.banned_peers()),
            "inbound_conns": self.inbound_conns,
            "pending_sockets": sum(self._pending_by_ip.values()),
        }

    @staticmethod
    def _dec(counter: Counter[str], key: str) -> None:
        if counter[key] <= 1:
            counter.pop(key, None)
        else:
            counter[key] -= 1
