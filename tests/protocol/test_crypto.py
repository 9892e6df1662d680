"""Keys, domain-separated signatures, digests and checksummed addresses."""

from __future__ import annotations

import hashlib
import random

import nacl.signing
import pytest

from protocol import codec, crypto
from protocol.crypto import Domain, Keypair
from protocol.errors import BadAddressError, BadSignatureError, CryptoError

SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")  # RFC 8032 test 1
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
B32 = "abcdefghijklmnopqrstuvwxyz234567"


def test_keypair_matches_rfc8032():
    kp = Keypair(SEED)
    assert kp.public == RFC8032_PUBLIC
    assert kp.seed == SEED
    assert kp.address in repr(kp) and SEED.hex() not in repr(kp)


def test_signature_covers_exactly_the_documented_bytes():
    kp = Keypair(SEED)
    body = codec.encode({"x": 1})
    expected = codec.encode(["tensornet/v1", "tx", "tn-test", body])
    assert crypto.signing_bytes(Domain.TX, "tn-test", body) == expected
    sig = kp.sign(Domain.TX, "tn-test", body)
    nacl.signing.VerifyKey(kp.public).verify(expected, sig)  # a plain ed25519 verifier agrees
    crypto.verify(kp.public, Domain.TX, "tn-test", body, sig)


@pytest.mark.parametrize("domain", list(Domain))
def test_domain_separation(domain):
    kp = Keypair(SEED)
    body = b"\xa0"
    sig = kp.sign(domain, "c", body)
    crypto.verify(kp.public, domain, "c", body, sig)
    for other in Domain:
        if other is not domain:
            with pytest.raises(BadSignatureError) as info:
                crypto.verify(kp.public, other, "c", body, sig)
            assert other.value in str(info.value)


def test_domain_values_are_unique():
    assert len({d.value for d in Domain}) == len(Domain)


def test_chain_id_binding():
    kp = Keypair(SEED)
    sig = kp.sign(Domain.BLOCK, "tensornet-test", b"body")
    crypto.verify(kp.public, Domain.BLOCK, "tensornet-test", b"body", sig)
    for chain in ("tensornet-main", "tensornet-test ", "", "tensornet-tes"):
        with pytest.raises(BadSignatureError) as info:
            crypto.verify(kp.public, Domain.BLOCK, chain, b"body", sig)
        assert repr(chain) in str(info.value)


def test_framing_is_unambiguous():
    """Moving bytes between the chain id and the body changes the signed bytes (length-prefixed items)."""
    a = crypto.signing_bytes(Domain.TX, "ab", b"c")
    b = crypto.signing_bytes(Domain.TX, "a", b"bc")
    assert a != b


def test_verify_rejects_tampering_and_wrong_keys():
    kp, other = Keypair(SEED), Keypair(bytes(32))
    sig = kp.sign(Domain.TX, "c", b"body")
    with pytest.raises(BadSignatureError):
        crypto.verify(kp.public, Domain.TX, "c", b"bodY", sig)
    with pytest.raises(BadSignatureError):
        crypto.verify(other.public, Domain.TX, "c", b"body", sig)
    for i in range(0, 64, 7):
        bad = bytearray(sig)
        bad[i] ^= 0x80
        with pytest.raises(BadSignatureError):
            crypto.verify(kp.public, Domain.TX, "c", b"body", bytes(bad))


@pytest.mark.parametrize(
    ("public", "sig"),
    [
        (b"\x00" * 31, b"\x00" * 64),
        (b"\x00" * 32, b"\x00" * 63),
        (b"\x00" * 33, b"\x00" * 64),
        (7, b"\x00" * 64),  # a committee index passed where a key belongs
        ("ab" * 16, b"\x00" * 64),
        (b"\x00" * 32, None),
        (b"\x01" + b"\x00" * 31, b"\x00" * 64),  # small-order point: libsodium refuses it
    ],
)
def test_malformed_keys_and_signatures_are_typed(public, sig):
    with pytest.raises(BadSignatureError):
        crypto.verify(public, Domain.TX, "c", b"body", sig)


def test_non_canonical_signature_scalar_rejected():
    """S >= L (the group order) is a malleated signature; ed25519 as libsodium implements it refuses it."""
    kp = Keypair(SEED)
    sig = kp.sign(Domain.TX, "c", b"body")
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(sig[32:], "little") + order
    if s < 2**256:
        with pytest.raises(BadSignatureError):
            crypto.verify(kp.public, Domain.TX, "c", b"body", sig[:32] + s.to_bytes(32, "little"))


@pytest.mark.parametrize("seed", [b"\x00" * 31, b"\x00" * 33, "00" * 32, None, bytearray(32)])
def test_bad_seed(seed):
    with pytest.raises(CryptoError):
        Keypair(seed)


def test_generate_is_random():
    assert Keypair.generate().public != Keypair.generate().public


def test_digest_is_blake2b_256():
    assert crypto.digest(b"") == hashlib.blake2b(b"", digest_size=32).digest()
    assert crypto.digest(b"abc").hex() == "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"
    assert len(crypto.digest(b"x" * 1000)) == crypto.DIGEST_SIZE


# --- addresses ------------------------------------------------------------------------------------


def _keys(n: int) -> list[bytes]:
    rng = random.Random(11)
    return [Keypair(rng.randbytes(32)).public for _ in range(n)] + [bytes(32), b"\xff" * 32]


def test_address_round_trip():
    for public in _keys(50):
        addr = crypto.address(public)
        assert addr.startswith("tn") and addr == addr.lower() and len(addr) == 60
        assert crypto.parse_address(addr) == public
        assert crypto.parse_address(f"  {addr}\n") == public
        assert crypto.parse_address("tn" + addr[2:].upper()) == public  # letter case of the body is free


def test_hex_form_accepted():
    for public in _keys(5):
        assert crypto.parse_address(public.hex()) == public
        assert crypto.parse_address(public.hex().upper()) == public


def test_known_address():
    assert crypto.address(RFC8032_PUBLIC) == Keypair(SEED).address
    assert crypto.parse_address(Keypair(SEED).address) == RFC8032_PUBLIC


def test_every_one_character_typo_fails():
    """Each substitution at each position is refused (the checksum, plus canonical form for the last char)."""
    for public in _keys(3):
        addr = crypto.address(public)
        for i in range(2, len(addr)):
            for c in B32:
                if c == addr[i]:
                    continue
                with pytest.raises(BadAddressError):
                    crypto.parse_address(addr[:i] + c + addr[i + 1 :])


def test_dropped_swapped_and_extra_characters_fail():
    addr = Keypair(SEED).address
    cases = [addr[:-1], addr + "a", addr[:10] + addr[11:], addr[:10] + addr[11] + addr[10] + addr[12:]]
    cases += ["tx" + addr[2:], addr[2:], "", "tn", addr.replace(addr[5], "1", 1), "tn" + "=" * 58]
    for bad in cases:
        if bad == addr:
            continue
        with pytest.raises(BadAddressError):
            crypto.parse_address(bad)


@pytest.mark.parametrize("bad", [None, 5, b"tnabc", RFC8032_PUBLIC])
def test_address_input_type(bad):
    with pytest.raises(BadAddressError):
        crypto.parse_address(bad)


@pytest.mark.parametrize("public", [b"\x00" * 31, b"\x00" * 33, "x" * 32, None])
def test_address_of_bad_key(public):
    with pytest.raises(BadAddressError):
        crypto.address(public)
