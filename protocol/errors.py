"""Typed errors of the protocol layer.

Every rejection of outside input raises a subclass of `ProtocolError`, so a caller can catch one
class, log the message (which says what was wrong and where) and keep running.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every typed rejection raised by protocol/."""


# --- wire decoding -----------------------------------------------------------------------------


class DecodeError(ProtocolError):
    """Bytes that are not one canonical CBOR item within our limits."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        self.offset = offset
        super().__init__(message if offset is None else f"{message} (at byte {offset})")


class OversizeError(DecodeError):
    """Input longer than the size cap; checked before any parsing."""


class TruncatedError(DecodeError):
    """Input ends inside an item."""


class TrailingBytesError(DecodeError):
    """Bytes left after the one top-level item."""


class NonCanonicalError(DecodeError):
    """Valid CBOR, but not the RFC 8949 §4.2 deterministic encoding of its value."""


class IndefiniteLengthError(NonCanonicalError):
    """Indefinite-length strings, arrays and maps are not deterministic encodings."""


class UnsortedKeysError(NonCanonicalError):
    """Map keys not in bytewise order of their encodings."""


class DuplicateKeyError(DecodeError):
    """The same map key twice."""


class UnsupportedTypeError(DecodeError):
    """Tags, simple values, undefined, or floats where they are not allowed."""


class LimitError(DecodeError):
    """Nesting depth or container length beyond the caps."""


class InvalidUtf8Error(DecodeError):
    """A text string that is not valid UTF-8."""


# --- typed messages ----------------------------------------------------------------------------


class SchemaError(DecodeError):
    """A well-formed CBOR item that is not a valid message of the expected type."""


class UnknownFieldError(SchemaError):
    """A field the message type does not define."""


class MissingFieldError(SchemaError):
    """A field the message type requires."""


class FieldTypeError(SchemaError):
    """A field of the wrong type, or out of its range."""


# --- signatures --------------------------------------------------------------------------------


class CryptoError(ProtocolError):
    """Key or signature problems."""


class BadSignatureError(CryptoError):
    """A signature that does not verify for the claimed signer, domain and chain id."""


class WrongChainError(CryptoError):
    """A message signed for, or naming, another chain id."""


class BadAddressError(CryptoError):
    """A malformed address, or one whose checksum does not match (a typo)."""


# --- validation and state transition --------------------------------------------------------


class ValidationError(ProtocolError):
    """A decoded, signed message that breaks a protocol rule."""


class TxRejected(ValidationError):
    """A transaction the state machine refuses; `rule` names the rule that failed."""

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        super().__init__(f"{rule}: {message}")


class StateError(ValidationError):
    """Misuse of the state machine by its driver: a commit height out of order, a corrupt snapshot."""
