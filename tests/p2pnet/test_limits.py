"""PeerLimiter and Limits: scores, bans with expiry, per-IP and per-peer caps (fake clock, no sleeps)."""

from __future__ import annotations

import pytest

from p2pnet.errors import ConfigError, MessageTooLarge
from p2pnet.limits import FAULT_REASONS, Limits, PeerLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**kw):
    clock = FakeClock()
    banned: list[str] = []
    limiter = PeerLimiter(Limits(**kw), clock=clock, on_ban=banned.append)
    return limiter, clock, banned


def test_violations_lower_score_and_ban_at_threshold():
    limiter, _, banned = make(ban_threshold=-50.0)
    assert limiter.score("p") == 0.0
    assert limiter.penalize("p", "malformed") is False  # -25
    assert limiter.score("p") == pytest.approx(-25.0)
    assert not limiter.is_banned("p")
    assert limiter.penalize("p", "malformed") is True  # -50: at the threshold
    assert limiter.is_banned("p")
    assert banned == ["p"]
    assert limiter.bans == 1
    assert limiter.violations["malformed"] == 2
    assert not limiter.is_banned("other")


def test_ban_expires_and_wipes_score():
    limiter, clock, _ = make(ban_threshold=-10.0, ban_seconds=60.0)
    limiter.penalize("p", "x", weight=10)
    assert limiter.is_banned("p")
    assert limiter.ban_expiry("p") == pytest.approx(1060.0)
    clock.now += 59.9
    assert limiter.is_banned("p")
    clock.now += 0.2
    assert not limiter.is_banned("p")
    assert limiter.score("p") == 0.0
    assert limiter.banned_peers() == []


def test_score_decays_by_half_life():
    limiter, clock, _ = make(score_half_life=100.0)
    limiter.penalize("p", "x", weight=40)
    clock.now += 100.0
    assert limiter.score("p") == pytest.approx(-20.0)
    clock.now += 100.0
    assert limiter.score("p") == pytest.approx(-10.0)


def test_repeated_small_violations_ban_only_if_faster_than_decay():
    slow, slow_clock, _ = make(ban_threshold=-30.0, score_half_life=10.0)
    for _ in range(20):
        slow.penalize("p", "rate", weight=5)
        slow_clock.now += 60.0  # decays almost fully between violations
    assert not slow.is_banned("p")
    fast, _, _ = make(ban_threshold=-30.0, score_half_life=10.0)
    for _ in range(6):
        fast.penalize("p", "rate", weight=5)
    assert fast.is_banned("p")


def test_pending_sockets_capped_per_ip_and_released():
    limiter, _, _ = make(max_pending_per_ip=2)
    assert limiter.admit_pending("10.0.0.1")
    assert limiter.admit_pending("10.0.0.1")
    assert not limiter.admit_pending("10.0.0.1")
    assert limiter.admit_pending("10.0.0.2")  # another IP is unaffected
    assert limiter.rejects["pending_per_ip"] == 1
    limiter.release_pending("10.0.0.1")
    assert limiter.admit_pending("10.0.0.1")
    for _ in range(5):
        limiter.release_pending("10.0.0.9")  # releasing what was never taken never goes negative
    assert limiter.pending("10.0.0.9") == 0


def test_connections_capped_per_ip_and_inbound_total():
    limiter, _, _ = make(max_conns_per_ip=2, max_inbound_conns=3)
    assert limiter.admit_conn("a", inbound=True)
    assert limiter.admit_conn("a", inbound=True)
    assert not limiter.admit_conn("a", inbound=True)
    assert limiter.admit_conn("b", inbound=True)
    assert not limiter.admit_conn("c", inbound=True)  # total inbound cap
    assert limiter.admit_conn("c", inbound=False)  # outbound does not count against inbound cap
    assert limiter.rejects == {"conns_per_ip": 1, "inbound_conns": 1}
    limiter.release_conn("a", inbound=True)
    assert limiter.conns("a") == 1
    assert limiter.admit_conn("c", inbound=True)


def test_streams_per_peer_limited_and_penalised():
    limiter, _, _ = make(max_streams_per_peer=2)
    assert limiter.admit_stream("p") and limiter.admit_stream("p")
    assert not limiter.admit_stream("p")
    assert limiter.rejects["too_many_streams"] == 1
    assert limiter.score("p") < 0
    limiter.release_stream("p")
    assert limiter.admit_stream("p")
    assert limiter.streams("p") == 2


def test_message_caps_exact_prefix_and_default():
    limits = Limits(default_message_cap=100, message_caps={"/tn/block": 1000, "/tn/block/sync/1": 5000})
    assert limits.message_cap("/tn/block/sync/1") == 5000
    assert limits.message_cap("/tn/block/2") == 1000
    assert limits.message_cap("/other") == 100
    limits.check_size("/tn/block/2", 1000)
    with pytest.raises(MessageTooLarge) as err:
        limits.check_size("/tn/block/2", 1001)
    assert err.value.reason == "oversize" and err.value.cap == 1000 and "1001" in str(err.value)


@pytest.mark.parametrize(
    "kw",
    [
        {"max_conns_per_ip": 0},
        {"read_deadline": 0},
        {"ban_threshold": 5.0},
        {"default_message_cap": 0},
        {"message_caps": {"/x": 10**12}},
    ],
)
def test_bad_limits_rejected(kw):
    with pytest.raises(ConfigError):
        Limits(**kw)


def test_snapshot_is_plain_numbers():
    limiter, _, _ = make(ban_threshold=-10.0)
    limiter.penalize("p", "oversize")
    limiter.drops["queue_full"] += 3
    snap = limiter.snapshot()
    assert snap["bans"] == 1 and snap["banned_now"] == 1
    assert snap["drops"] == {"queue_full": 3}
    assert snap["violations"] == {"oversize": 1}


def test_protected_peer_is_banned_only_for_the_cool_off_without_proof_of_fault():
    limiter, clock, banned = make(ban_threshold=-50.0, ban_seconds=600.0, protected_ban_seconds=30.0)
    limiter.set_protected({"member"})
    for peer in ("member", "stranger"):
        limiter.penalize(peer, "malformed")
        limiter.penalize(peer, "malformed")
    assert banned == ["member", "stranger"]
    assert limiter.ban_expiry("member") == pytest.approx(1030.0)
    assert limiter.ban_expiry("stranger") == pytest.approx(1600.0)
    clock.now += 30.0
    assert not limiter.is_banned("member")
    assert limiter.score("member") == 0.0  # the served cool-off wipes the slate
    assert limiter.is_banned("stranger")


@pytest.mark.parametrize("reason", sorted(FAULT_REASONS))
def test_proof_of_fault_bans_a_protected_peer_at_once_for_the_full_time(reason):
    limiter, clock, banned = make(ban_seconds=600.0, protected_ban_seconds=30.0)
    limiter.set_protected({"member"})
    assert limiter.penalize("member", reason) is True  # one signed proof is enough
    assert limiter.ban_expiry("member") == pytest.approx(1600.0)
    limiter.set_protected({"member"})  # re-protecting (a new epoch) does not shorten a fault ban
    assert limiter.ban_expiry("member") == pytest.approx(1600.0)
    clock.now += 600.0
    assert not limiter.is_banned("member")


def test_explicit_ban_of_a_protected_peer_is_capped_and_protecting_cuts_a_running_ban():
    limiter, _, _ = make(ban_seconds=600.0, protected_ban_seconds=30.0)
    limiter.set_protected({"member"})
    limiter.ban("member", seconds=3600.0)
    assert limiter.ban_expiry("member") == pytest.approx(1030.0)
    limiter.ban("newcomer")
    assert limiter.ban_expiry("newcomer") == pytest.approx(1600.0)
    limiter.set_protected({"member", "newcomer"})  # joins the committee while banned
    assert limiter.ban_expiry("newcomer") == pytest.approx(1030.0)
    limiter.set_protected(set())  # no longer protected: later bans are full length again
    limiter.ban("member")
    assert limiter.ban_expiry("member") == pytest.approx(1600.0)


def test_protected_ban_seconds_must_be_positive():
    with pytest.raises(ConfigError, match="protected_ban_seconds"):
        Limits(protected_ban_seconds=0)
