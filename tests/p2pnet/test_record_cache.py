"""The signed-peer-record cache skips re-verifying a record already verified for that peer, and only that."""

from __future__ import annotations

from libp2p.pubsub import gossipsub as gossipsub_module
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub.pb import rpc_pb2

from p2pnet import hardening


def test_cached_consume_is_installed_and_keyed_by_peer_and_bytes(monkeypatch) -> None:
    hardening.install()
    assert pubsub_module.maybe_consume_signed_record is hardening._cached_consume_signed_record
    assert gossipsub_module.maybe_consume_signed_record is hardening._cached_consume_signed_record
    calls: list[bytes] = []

    def fake_verify(msg, host, peer_id) -> bool:
        calls.append(msg.senderRecord)
        return msg.senderRecord.startswith(b"good")

    monkeypatch.setattr(hardening, "_original_consume_record", fake_verify)
    monkeypatch.setattr(hardening, "_verified_records", {})
    good = rpc_pb2.RPC(senderRecord=b"good-record")
    bad = rpc_pb2.RPC(senderRecord=b"forged")
    assert hardening._cached_consume_signed_record(good, None, "peerA")
    assert hardening._cached_consume_signed_record(good, None, "peerA")
    assert calls == [b"good-record"], "a verified record was verified again"
    assert hardening._cached_consume_signed_record(good, None, "peerB")  # another peer: verified afresh
    assert not hardening._cached_consume_signed_record(bad, None, "peerA")
    assert not hardening._cached_consume_signed_record(bad, None, "peerA")  # failures are never cached
    assert calls == [b"good-record", b"good-record", b"forged", b"forged"]
    assert hardening._cached_consume_signed_record(rpc_pb2.RPC(), None, "peerA")  # no record: nothing to check
