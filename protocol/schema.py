"""Typed, frozen message classes over the one codec.

A message is a frozen dataclass whose fields carry their wire type in `Annotated[...]`. The
`@message` decorator compiles the field checks once; `from_bytes` then rejects unknown fields,
missing fields, wrong types, out-of-range integers, over-long strings and lists, and floats, each
with a typed error whose message names the field path.

Wire form: a message is a CBOR map from field name to value; lists are arrays; a `OneOf` value
is a 2-array `[kind, {fields}]`.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, ClassVar, Self, TypeVar

from protocol import codec
from protocol.errors import FieldTypeError, LimitError, MissingFieldError, SchemaError, UnknownFieldError


class Kind:
    """A wire type: `load` checks a decoded value, `dump` turns a Python value into codec input.

    `encode_into` appends the value's canonical bytes; it must equal `codec.encode(self.dump(value))`.
    `all_ok` is an optional whole-list check that ListOf uses to skip per-item calls when every item is
    valid; on failure the per-item `load` runs again to raise with the exact path.
    """

    def load(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    def dump(self, value: Any) -> Any:
        return value

    def encode_into(self, out: bytearray, value: Any, depth: int) -> None:
        codec.encode_into(out, self.dump(value), False, depth)

    def all_ok(self, values: list) -> bool:
        return False


class UInt(Kind):
    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.limit = 1 << bits

    def load(self, value: Any, path: str) -> int:
        if type(value) is not int:
            raise FieldTypeError(f"{path}: expected an unsigned integer, got {type(value).__name__}")
        if not 0 <= value < self.limit:
            raise FieldTypeError(f"{path}: {value} is outside u{self.bits}")
        return value

    def all_ok(self, values: list) -> bool:
        # map(type) and min/max run in C: a 4096-weight list costs microseconds, not a call per item.
        return not values or (set(map(type, values)) == {int} and min(values) >= 0 and max(values) < self.limit)


class Bytes(Kind):
    def __init__(self, size: int | None = None, max_size: int | None = None) -> None:
        self.size = size
        self.max_size = max_size

    def load(self, value: Any, path: str) -> bytes:
        if type(value) is not bytes:
            raise FieldTypeError(f"{path}: expected bytes, got {type(value).__name__}")
        if self.size is not None and len(value) != self.size:
            raise FieldTypeError(f"{path}: expected exactly {self.size} bytes, got {len(value)}")
        if self.max_size is not None and len(value) > self.max_size:
            raise FieldTypeError(f"{path}: {len(value)} bytes exceeds the cap of {self.max_size}")
        return value

    def all_ok(self, values: list) -> bool:
        if not values:
            return True
        if set(map(type, values)) != {bytes}:
            return False
        lengths = set(map(len, values))
        if self.size is not None and lengths != {self.size}:
            return False
        return self.max_size is None or max(lengths) <= self.max_size


class Text(Kind):
    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def load(self, value: Any, path: str) -> str:
        if type(value) is not str:
            raise FieldTypeError(f"{path}: expected text, got {type(value).__name__}")
        if len(value) > self.max_len:
            raise FieldTypeError(f"{path}: text of {len(value)} characters exceeds the cap of {self.max_len}")
        return value

    def all_ok(self, values: list) -> bool:
        return not values or (set(map(type, values)) == {str} and max(map(len, values)) <= self.max_len)


class Bool(Kind):
    def load(self, value: Any, path: str) -> bool:
        if type(value) is not bool:
            raise FieldTypeError(f"{path}: expected a boolean, got {type(value).__name__}")
        return value


class Nested(Kind):
    def __init__(self, cls: type[Message]) -> None:
        self.cls = cls

    def load(self, value: Any, path: str) -> Message:
        return self.cls.from_obj(value, path)

    def dump(self, value: Message) -> Any:
        return value.to_obj()

    def encode_into(self, out: bytearray, value: Message, depth: int) -> None:
        value._encode_into(out, depth)


class ListOf(Kind):
    def __init__(self, item: Kind | type[Message], max_len: int) -> None:
        self.item = Nested(item) if isinstance(item, type) else item
        self.max_len = max_len

    def load(self, value: Any, path: str) -> tuple:
        if type(value) is not list:
            raise FieldTypeError(f"{path}: expected a list, got {type(value).__name__}")
        if len(value) > self.max_len:
            raise FieldTypeError(f"{path}: list of {len(value)} items exceeds the cap of {self.max_len}")
        if self.item.all_ok(value):
            return tuple(value)
        load = self.item.load
        return tuple([load(v, f"{path}[{i}]") for i, v in enumerate(value)])

    def dump(self, value: Any) -> list:
        dump = self.item.dump
        return [dump(v) for v in value]

    def encode_into(self, out: bytearray, value: Any, depth: int) -> None:
        item = self.item
        if type(item) in _LEAF_KINDS:  # leaves dump to themselves: the codec's list path is exact
            codec.encode_into(out, value, False, depth)
            return
        if depth >= codec.MAX_DEPTH:
            raise LimitError(f"value nests deeper than {codec.MAX_DEPTH} containers")
        out += codec._head(4, len(value))
        encode = item.encode_into
        for v in value:
            encode(out, v, depth + 1)


class OneOf(Kind):
    """A tagged union of message classes, each with a `KIND` name."""

    def __init__(self, *variants: type[Message]) -> None:
        self.by_kind = {v.KIND: v for v in variants}
        self.variants = variants
        self._prefix = {v: b"\x82" + codec.encode(v.KIND) for v in variants}

    def load(self, value: Any, path: str) -> Message:
        if type(value) is not list or len(value) != 2 or type(value[0]) is not str:
            raise FieldTypeError(f"{path}: expected [kind, {{fields}}]")
        cls = self.by_kind.get(value[0])
        if cls is None:
            raise FieldTypeError(f"{path}: unknown kind {value[0]!r} (known: {', '.join(self.by_kind)})")
        return cls.from_obj(value[1], f"{path}.{value[0]}")

    def dump(self, value: Message) -> list:
        if type(value) not in self.variants:
            raise SchemaError(f"{type(value).__name__} is not one of {', '.join(self.by_kind)}")
        return [value.KIND, value.to_obj()]

    def encode_into(self, out: bytearray, value: Message, depth: int) -> None:
        prefix = self._prefix.get(type(value))
        if prefix is None:
            self.dump(value)  # raises the SchemaError
        if depth >= codec.MAX_DEPTH:
            raise LimitError(f"value nests deeper than {codec.MAX_DEPTH} containers")
        out += prefix
        value._encode_into(out, depth + 1)


_LEAF_KINDS = (UInt, Bytes, Text, Bool)
_FAST_NONE, _FAST_UINT, _FAST_BYTES = 0, 1, 2


def _fast_check(kind: Kind) -> tuple[int, int]:
    if type(kind) is UInt:
        return _FAST_UINT, kind.limit
    if type(kind) is Bytes and kind.size is not None:
        return _FAST_BYTES, kind.size
    return _FAST_NONE, 0

U8, U16, U32, U64 = UInt(8), UInt(16), UInt(32), UInt(64)
BOOL = Bool()
B32 = Bytes(32)
B64 = Bytes(64)


class Message:
    """Base of every wire message; subclasses are built with `@message`."""

    KIND: ClassVar[str] = ""
    MAX_SIZE: ClassVar[int] = codec.MAX_SIZE
    _fields: ClassVar[tuple[tuple[str, Kind], ...]] = ()
    _names: ClassVar[frozenset[str]] = frozenset()
    # Encoding plan compiled by @message: the map head, then (encoded key, name, kind) in canonical key order.
    _map_head: ClassVar[bytes] = b"\xa0"
    _wire: ClassVar[tuple[tuple[bytes, str, Kind], ...]] = ()
    # Decoding plan: (name, kind, fast-check code, its argument) in declaration order (the constructor's order).
    _plan: ClassVar[tuple[tuple[str, Kind, int, int], ...]] = ()

    def to_obj(self) -> dict[str, Any]:
        return {name: kind.dump(getattr(self, name)) for name, kind in self._fields}

    def to_bytes(self) -> bytes:
        """Canonical bytes; equal to `codec.encode(self.to_obj())`, without building the dict or sorting keys."""
        out = bytearray()
        self._encode_into(out, 0)
        return bytes(out)

    def _encode_into(self, out: bytearray, depth: int) -> None:
        if depth >= codec.MAX_DEPTH:
            raise LimitError(f"value nests deeper than {codec.MAX_DEPTH} containers")
        out += self._map_head
        depth += 1
        for key, name, kind in self._wire:
            out += key
            kind.encode_into(out, getattr(self, name), depth)

    @classmethod
    def from_obj(cls, obj: Any, path: str = "") -> Self:
        path = path or cls.__name__
        if type(obj) is not dict:
            raise FieldTypeError(f"{path}: expected a map, got {type(obj).__name__}")
        if len(obj) != len(cls._fields) or obj.keys() != cls._names:
            unknown = sorted(str(k) for k in obj if k not in cls._names)
            if unknown:
                raise UnknownFieldError(f"{path}: unknown field(s) {', '.join(unknown)}")
            missing = sorted(n for n in cls._names if n not in obj)
            raise MissingFieldError(f"{path}: missing field(s) {', '.join(missing)}")
        args = []
        append = args.append
        for name, kind, fast, arg in cls._plan:
            value = obj[name]
            # Inline checks for the common leaves; anything that fails them goes to `load` for the exact error.
            if fast == _FAST_UINT:
                if type(value) is int and 0 <= value < arg:
                    append(value)
                    continue
            elif fast == _FAST_BYTES:
                if type(value) is bytes and len(value) == arg:
                    append(value)
                    continue
            append(kind.load(value, f"{path}.{name}"))
        return cls(*args)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls.from_obj(codec.decode(data, max_size=cls.MAX_SIZE))


def _kind_of(hint: Any) -> Kind:
    if typing.get_origin(hint) is typing.Annotated:
        meta = hint.__metadata__[0]
        if isinstance(meta, Kind):
            return meta
    if isinstance(hint, type) and issubclass(hint, Message):
        return Nested(hint)
    raise TypeError(f"field type {hint!r} needs an Annotated wire kind")


M = TypeVar("M", bound=type[Message])


def message(cls: M) -> M:
    """Make `cls` a frozen dataclass and compile its wire schema from the annotations."""
    cls = dataclasses.dataclass(frozen=True, slots=True)(cls)
    hints = typing.get_type_hints(cls, include_extras=True)
    cls._fields = tuple((f.name, _kind_of(hints[f.name])) for f in dataclasses.fields(cls))
    cls._names = frozenset(name for name, _ in cls._fields)
    cls._map_head = codec._head(5, len(cls._fields))
    cls._wire = tuple(sorted((codec.encode(name), name, kind) for name, kind in cls._fields))
    cls._plan = tuple((name, kind, *_fast_check(kind)) for name, kind in cls._fields)
    if any(f.kw_only or not f.init for f in dataclasses.fields(cls)):
        raise TypeError(f"{cls.__name__}: message fields must be positional init fields")
    return cls
