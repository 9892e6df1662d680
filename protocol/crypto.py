"""ed25519 keys, domain-separated signatures, BLAKE2b-256 digests and checksummed addresses.

A signature covers `encode(["tensornet/v1", domain, chain_id, body])`: the domain keeps a block
signature from being replayed as a transaction, and the chain id keeps a testnet message from
being replayed on another chain.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac

import nacl.exceptions
import nacl.signing

from protocol import codec
from protocol.errors import BadAddressError, BadSignatureError, CryptoError

SIG_PREFIX = "tensornet/v1"
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
DIGEST_SIZE = 32
ADDRESS_PREFIX = "tn"
_CHECKSUM_SIZE = 4


class Domain(enum.StrEnum):
    """What a signature is for; each message kind signs under its own tag."""

    BLOCK = "block"
    TX = "tx"
    WEIGHT_COMMIT = "weight-commit"
    REQUEST = "request"
    RESPONSE = "response"
    HANDSHAKE = "handshake"
    EVIDENCE = "evidence"
    VOUCHER = "voucher"
    SERVICE = "service"


def digest(data: bytes) -> bytes:
    """BLAKE2b-256, the one hash of the protocol."""
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()


def signing_bytes(domain: Domain, chain_id: str, body: bytes) -> bytes:
    """The exact bytes an ed25519 signature covers."""
    return codec.encode([SIG_PREFIX, domain.value, chain_id, body])


class Keypair:
    """An ed25519 key pair. `seed` is the 32-byte secret; keep it out of logs."""

    __slots__ = ("_signing", "public")

    def __init__(self, seed: bytes) -> None:
        if type(seed) is not bytes or len(seed) != 32:
            raise CryptoError(f"an ed25519 seed is 32 bytes, got {type(seed).__name__} of length {_len(seed)}")
        self._signing = nacl.signing.SigningKey(seed)
        self.public: bytes = bytes(self._signing.verify_key)

    @classmethod
    def generate(cls) -> Keypair:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def seed(self) -> bytes:
        return bytes(self._signing)

    @property
    def address(self) -> str:
        return address(self.public)

    def sign(self, domain: Domain, chain_id: str, body: bytes) -> bytes:
        return self._signing.sign(signing_bytes(domain, chain_id, body)).signature

    def __repr__(self) -> str:
        return f"Keypair({self.address})"


def verify(public: bytes, domain: Domain, chain_id: str, body: bytes, signature: bytes) -> None:
    """Raise `BadSignatureError` unless `signature` is `public`'s over (domain, chain_id, body)."""
    if (
        type(public) is not bytes
        or type(signature) is not bytes
        or len(public) != PUBLIC_KEY_SIZE
        or len(signature) != SIGNATURE_SIZE
    ):
        raise BadSignatureError(
            f"malformed key or signature ({type(public).__name__} key of length {_len(public)},"
            f" {type(signature).__name__} signature of length {_len(signature)})"
        )
    try:
        nacl.signing.VerifyKey(public).verify(signing_bytes(domain, chain_id, body), signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError) as exc:
        raise BadSignatureError(
            f"{domain.value} signature does not verify for {address(public)} on chain {chain_id!r}"
        ) from exc


def _len(value: object) -> int | None:
    try:
        return len(value)  # type: ignore[arg-type]
    except TypeError:
        return None


# --- addresses ---------------------------------------------------------------------------------


def _checksum(public: bytes) -> bytes:
    return hashlib.blake2b(b"tensornet-address" + public, digest_size=_CHECKSUM_SIZE).digest()


def address(public: bytes) -> str:
    """Human-friendly form of a public key: 'tn' + base32(key || 4-byte checksum), lower case."""
    if type(public) is not bytes or len(public) != PUBLIC_KEY_SIZE:
        raise BadAddressError(f"a public key is {PUBLIC_KEY_SIZE} bytes, got {type(public).__name__} {public!r:.80}")
    return ADDRESS_PREFIX + base64.b32encode(public + _checksum(public)).decode().rstrip("=").lower()


def parse_address(text: str) -> bytes:
    """Public key from an address (or 64 hex characters); a typo fails the checksum.

    Only the canonical spelling is accepted (either letter case): base32's last character carries two
    unused bits, and without this check three other characters there would parse to the same key.
    """
    if type(text) is not str:
        raise BadAddressError(f"an address is text, got {type(text).__name__}")
    text = text.strip()
    if len(text) == 2 * PUBLIC_KEY_SIZE and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    if not text.startswith(ADDRESS_PREFIX):
        raise BadAddressError(f"address {text!r} must start with {ADDRESS_PREFIX!r}")
    body = text[len(ADDRESS_PREFIX) :].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except (ValueError, base64.binascii.Error) as exc:
        raise BadAddressError(f"address {text!r} is not valid base32") from exc
    if len(raw) != PUBLIC_KEY_SIZE + _CHECKSUM_SIZE:
        raise BadAddressError(f"address {text!r} has the wrong length")
    public, check = raw[:PUBLIC_KEY_SIZE], raw[PUBLIC_KEY_SIZE:]
    if not hmac.compare_digest(check, _checksum(public)):
        raise BadAddressError(f"address {text!r} fails its checksum (a typo?)")
    if address(public) != text.lower():
        raise BadAddressError(f"address {text!r} is not in canonical form (a typo in its last character?)")
    return public
