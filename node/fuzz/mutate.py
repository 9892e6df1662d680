"""Structure-aware mutation: decode the CBOR, mutate fields, types, lengths and nesting, re-encode.

Why structure-aware: random bytes die in the first decode check, so they never reach the schema, the
signature check or the state machine. Here a mutant is usually a well-formed CBOR map whose schema
walk (`protocol.schema` kinds) gives each node its wire kind, so values land on the boundaries that
matter (u16 limit, exact digest size, a list one past its cap, a text of max_len multi-byte
characters). Re-encoding is canonical most of the time, and otherwise deliberately not (non-shortest
heads, indefinite lengths, unsorted or duplicate keys, tags, floats, undefined, trailing bytes) so the
codec's canonical checks are attacked too. Byte strings that hold encoded messages (a block's
transactions, a response's blocks, the state target's transaction list) are mutated recursively.
With `resign`, every envelope is signed again with the fixture's deterministic keys, so mutants get
past the signature into deeper validation.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from typing import Any

from node.fuzz.targets import CHAIN_ID, TEST_KEY, VALIDATOR_KEYS
from protocol import codec
from protocol.errors import ProtocolError
from protocol.messages import Block, BlocksResponse, Signed, SignedBlock, SignedTransaction
from protocol.schema import Bool, Bytes, Kind, ListOf, Message, Nested, OneOf, Text, UInt

MAX_MUTANT = 1 << 20  # mutants above this are cut back: big inputs only slow the loop down
INTERESTING_BYTES = [0x00, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1F, 0x3B, 0x5F, 0x7F, 0x9F, 0xBF, 0xC2, 0xD8, 0xF7,
                     0xFF, 0xF4, 0xF5, 0xF6, 0xFB, 0x80, 0xA0, 0x40, 0x60]
U64_MAX = (1 << 64) - 1
INTERESTING_INTS = [0, 1, 23, 24, 255, 256, 65535, 65536, (1 << 32) - 1, 1 << 32, U64_MAX, -1, -24, -25,
                    -(1 << 64), 1 << 64, -(1 << 64) - 1]
INTERESTING_TEXT = ["", "\x00", "é", "水", "😀", "\u202e", "\ufeff", "a" * 24, "/p2p/", "tensornet-fuzz"]


class Embedded(Kind):
    """A byte string that carries an encoded message of `cls` (mutated as a message, then re-encoded)."""

    def __init__(self, cls: type[Message]) -> None:
        self.cls = cls


# Fields whose bytes are themselves encoded messages.
EMBEDDED: dict[tuple[type[Message], str], type[Message]] = {
    (Block, "payload"): SignedTransaction,
    (BlocksResponse, "blocks"): SignedBlock,
}

Path = tuple[Any, ...]


# --- schema walk ----------------------------------------------------------------------------------


def walk(obj: Any, kind: Kind | type[Message] | None, path: Path = (), out: list | None = None) -> list:
    """Every node of a decoded value as (path, value, kind); kind is None where the schema says nothing
    (an unknown field, a value of the wrong type)."""
    if out is None:
        out = []
    out.append((path, obj, kind))
    if isinstance(kind, Nested):
        kind = kind.cls
    if isinstance(kind, type) and issubclass(kind, Message):
        if type(obj) is dict:
            fields = dict(kind._fields)
            for key, value in obj.items():
                fk = fields.get(key)
                if isinstance(fk, ListOf) and (kind, key) in EMBEDDED:
                    fk = ListOf(Embedded(EMBEDDED[(kind, key)]), fk.max_len)
                walk(value, fk, (*path, key), out)
        return out
    if isinstance(kind, ListOf):
        if type(obj) is list:
            for i, value in enumerate(obj):
                walk(value, kind.item, (*path, i), out)
        return out
    if isinstance(kind, OneOf):
        if type(obj) is list and len(obj) == 2 and type(obj[0]) is str:
            variant = kind.by_kind.get(obj[0])
            walk(obj[0], None, (*path, 0), out)
            walk(obj[1], variant, (*path, 1), out)
        return out
    if kind is None and type(obj) in (list, dict):
        items = obj.items() if type(obj) is dict else enumerate(obj)
        for key, value in items:
            walk(value, None, (*path, key), out)
    return out


def get_at(obj: Any, path: Path) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def set_at(root: Any, path: Path, value: Any) -> Any:
    """Replace the node at `path`; returns the new root (the root itself when `path` is empty)."""
    if not path:
        return value
    get_at(root, path[:-1])[path[-1]] = value
    return root


def _copy(obj: Any) -> Any:
    t = type(obj)
    if t is list:
        return [_copy(v) for v in obj]
    if t is dict:
        return {k: _copy(v) for k, v in obj.items()}
    return obj


# --- values ---------------------------------------------------------------------------------------


def _random_valid(kind: Kind, rng: random.Random) -> Any:
    """A valid value of `kind` in codec form (via protocol/testing/wire_strategies.py when importable)."""
    try:  # lazy: wire_strategies needs hypothesis, a test extra that is optional at run time
        from protocol.testing.wire_strategies import random_value
    except ImportError:
        random_value = None
    if random_value is not None and not isinstance(kind, Embedded):
        try:
            return _dump(kind, random_value(kind, rng))
        except NotImplementedError:
            pass
    return random_cbor(rng, 2)


def _dump(kind: Kind, value: Any) -> Any:
    return codec.decode(codec.encode(kind.dump(value)))


def random_cbor(rng: random.Random, depth: int = 3) -> Any:
    """Any value of the codec's data model (and some outside it: big ints, floats, surrogates)."""
    r = rng.random()
    if depth <= 0 or r < 0.55:
        choice = rng.randrange(16)
        if choice == 0:
            return rng.choice(INTERESTING_INTS)
        if choice == 1:
            return rng.randint(-1000, 1 << rng.choice((8, 16, 32, 64)))
        if choice == 2:
            return rng.randbytes(rng.choice((0, 1, 16, 31, 32, 33, 64, 65)))
        if choice == 3:
            return rng.choice(INTERESTING_TEXT)
        if choice == 4:
            return rng.choice([None, True, False])
        if choice == 5:
            return rng.choice([0.0, 1.5, float("inf"), float("nan"), -0.0])
        if choice == 6 and rng.random() < 0.3:
            return "\ud800x"  # a lone surrogate: not encodable as UTF-8, so the loose encoder emits invalid UTF-8
        return rng.randint(0, 30)
    if r < 0.8:
        return [random_cbor(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    keys = [rng.choice([rng.randint(0, 30), rng.choice(INTERESTING_TEXT), rng.randbytes(2)]) for _ in range(4)]
    return {k: random_cbor(rng, depth - 1) for k in keys[: rng.randint(0, 4)]}


def _int_for(kind: UInt, value: Any, rng: random.Random) -> int:
    lim = kind.limit
    cands = [0, 1, lim - 1, lim, lim + 1, U64_MAX, -1, 23, 24, 255, 256, 65535, 65536]
    if type(value) is int:
        cands += [value + 1, value - 1, value * 2, value ^ (1 << rng.randrange(kind.bits))]
    return rng.choice(cands)


def _bytes_for(kind: Bytes, value: Any, rng: random.Random) -> bytes:
    lengths = [0, 1]
    if kind.size is not None:
        lengths += [kind.size - 1, kind.size, kind.size, kind.size + 1]
    if kind.max_size is not None and kind.max_size <= 128 * 1024:
        lengths += [kind.max_size, kind.max_size + 1]
    if type(value) is bytes and value and rng.random() < 0.5:
        b = bytearray(value)
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    n = max(0, rng.choice(lengths))
    return rng.randbytes(n) if rng.random() < 0.7 else bytes(n)


def _text_for(kind: Text, value: Any, rng: random.Random) -> str:
    m = kind.max_len
    ch = rng.choice(["a", "é", "😀", "\x00", "水"])
    n = rng.choice([0, m, m + 1, m - 1 if m else 0, 1])
    if type(value) is str and value and rng.random() < 0.3:
        return value[: rng.randrange(len(value))] + rng.choice(INTERESTING_TEXT) + value[rng.randrange(len(value)):]
    return ch * n if rng.random() < 0.8 else rng.choice(INTERESTING_TEXT)


# --- the mutator ----------------------------------------------------------------------------------


class Mutator:
    """Makes one mutant from a seed; deterministic for a given `rng` state.

    `cls` is the input's message type (None: plain CBOR), `item_cls` the type of each element when the
    input is a CBOR array of encoded messages. `resign` signs envelopes again with the fixture's keys.
    """

    def __init__(self, cls: type[Message] | None, rng: random.Random, *, item_cls: type[Message] | None = None,
                 resign: bool = False, max_size: int = MAX_MUTANT) -> None:
        self.cls = cls
        self.item_cls = item_cls
        self.rng = rng
        self.resign = resign
        self.max_size = max_size

    def root_kind(self) -> Kind | type[Message] | None:
        if self.item_cls is not None:
            return ListOf(Embedded(self.item_cls), 1 << 12)
        return self.cls

    def mutate(self, data: bytes, pool: Sequence[bytes] = ()) -> bytes:
        rng = self.rng
        out: bytes | None = None
        if rng.random() < 0.85:
            try:
                obj = codec.decode(data)
            except ProtocolError:
                obj = None
            if obj is not None:
                obj = self.mutate_tree(obj, self.root_kind(), pool, 1 if rng.random() < 0.7 else rng.randint(2, 4))
                out = self.encode(obj)
        if out is None:
            other = rng.choice(pool) if pool else data
            out = mutate_bytes(data, other, rng)
        elif rng.random() < 0.1:
            out = mutate_bytes(out, out, rng)
        return out[: self.max_size]

    def encode(self, obj: Any) -> bytes:
        if self.rng.random() < 0.85:
            try:
                return codec.encode(obj)
            except ProtocolError:
                pass  # a big int, a surrogate or a float: only the loose encoder can write it
        return encode_loose(obj, self.rng, p=self.rng.choice((0.02, 0.1, 0.3)))

    def mutate_tree(self, obj: Any, kind: Kind | type[Message] | None, pool: Sequence[bytes], ops: int) -> Any:
        rng = self.rng
        for _ in range(ops):
            nodes = walk(obj, kind)
            path, value, nkind = rng.choice(nodes)
            obj = set_at(obj, path, self.mutate_node(value, nkind, path, pool))
        if self.resign:
            obj = self._resign_all(obj, kind)
        return obj

    def mutate_node(self, value: Any, kind: Kind | type[Message] | None, path: Path, pool: Sequence[bytes]) -> Any:
        rng = self.rng
        r = rng.random()
        if r < 0.08:
            return random_cbor(rng)  # type confusion
        if r < 0.12:
            return self._splice(value, path, pool)
        if r < 0.15:
            return _nest(value, rng)
        if isinstance(kind, Nested):
            kind = kind.cls
        if isinstance(kind, Embedded):
            return self._embedded(value, kind)
        if isinstance(kind, UInt):
            return _int_for(kind, value, rng)
        if isinstance(kind, Bytes):
            return _bytes_for(kind, value, rng)
        if isinstance(kind, Text):
            return _text_for(kind, value, rng)
        if isinstance(kind, Bool):
            return rng.choice([True, False, 0, 1, None])
        if isinstance(kind, ListOf) and type(value) is list:
            return self._list(value, kind)
        if isinstance(kind, OneOf) and type(value) is list and len(value) == 2:
            return self._oneof(value, kind)
        if isinstance(kind, type) and issubclass(kind, Message) and type(value) is dict:
            return self._map(value, kind)
        if type(value) is list:
            return self._list(value, None)
        if type(value) is dict:
            return self._map(value, None)
        return random_cbor(rng, 1)

    def _splice(self, value: Any, path: Path, pool: Sequence[bytes]) -> Any:
        if not pool:
            return value
        try:
            other = codec.decode(self.rng.choice(pool))
            return _copy(get_at(other, path))
        except (ProtocolError, KeyError, IndexError, TypeError):
            return value

    def _embedded(self, value: Any, kind: Embedded) -> Any:
        if type(value) is not bytes:
            return value
        try:
            inner = codec.decode(value)
        except ProtocolError:
            return mutate_bytes(value, value, self.rng)
        inner = self.mutate_tree(inner, kind.cls, (), self.rng.randint(1, 2))
        return self.encode(inner)

    def _list(self, value: list, kind: ListOf | None) -> list:
        rng = self.rng
        value = list(value)
        op = rng.randrange(7)
        if op == 0 and value:
            del value[rng.randrange(len(value))]
        elif op == 1 and value:
            i = rng.randrange(len(value))
            value.insert(i, _copy(value[i]))
        elif op == 2:
            item = _random_valid(kind.item, rng) if kind is not None else random_cbor(rng, 1)
            value.insert(rng.randint(0, len(value)), item)
        elif op == 3 and kind is not None:
            # to the cap, or one past it (the item repeated: cheap to build, still a whole list to check)
            n = kind.max_len + rng.choice((0, 1))
            if n <= 5000:
                filler = value[-1] if value else _random_valid(kind.item, rng)
                value = value + [filler] * max(0, n - len(value))
        elif op == 4:
            rng.shuffle(value)
        elif op == 5:
            value = []
        else:
            value.reverse()
        return value

    def _oneof(self, value: list, kind: OneOf) -> list:
        rng = self.rng
        value = list(value)
        op = rng.randrange(3)
        if op == 0:  # another variant's name over these fields
            value[0] = rng.choice(list(kind.by_kind))
        elif op == 1:
            value[0] = rng.choice(["", "Transfer", "transfer ", "unknown"])
        else:  # a valid body of a random variant
            v = rng.choice(kind.variants)
            try:  # lazy: wire_strategies needs hypothesis, a test extra that is optional at run time
                from protocol.testing.wire_strategies import random_message

                value = [v.KIND, codec.decode(random_message(v, rng).to_bytes())]
            except ImportError:
                value[0] = v.KIND
        return value

    def _map(self, value: dict, cls: type[Message] | None) -> dict:
        rng = self.rng
        value = dict(value)
        op = rng.randrange(5)
        keys = list(value)
        if op == 0 and keys:
            del value[rng.choice(keys)]
        elif op == 1:
            value[rng.choice(["extra", "", "body ", 0, -1, b"k"])] = random_cbor(rng, 1)
        elif op == 2 and keys:
            k = rng.choice(keys)
            new = rng.choice([k.upper() if isinstance(k, str) else k, f"{k}_", 7, b"x"]) if k != "" else 1
            value[new] = value.pop(k)
        elif op == 3 and cls is not None:  # a missing field comes back with a random valid value
            for name, fkind in cls._fields:
                if name not in value:
                    value[name] = _random_valid(fkind, rng)
                    break
            else:
                if keys:
                    k = rng.choice(keys)
                    value[k] = random_cbor(rng, 1)
        elif keys:
            k = rng.choice(keys)
            value[k] = random_cbor(rng, 1)
        return value

    # --- signatures -------------------------------------------------------------------------------

    def _resign_all(self, obj: Any, kind: Kind | type[Message] | None) -> Any:
        """Sign every envelope again, innermost first (a block's signature covers its transactions)."""
        nodes = walk(obj, kind)
        for path, value, nkind in reversed(nodes):
            if isinstance(nkind, Nested):
                nkind = nkind.cls
            cls = nkind.cls if isinstance(nkind, Embedded) else nkind
            if not (isinstance(cls, type) and issubclass(cls, Signed)):
                continue
            if isinstance(nkind, Embedded):
                if type(value) is not bytes:
                    continue
                try:
                    inner = codec.decode(value)
                except ProtocolError:
                    continue
                resign(cls, inner, self.rng)
                try:
                    obj = set_at(obj, path, codec.encode(inner))
                except ProtocolError:
                    continue
            elif type(value) is dict:
                resign(cls, value, self.rng)
        return obj


def resign(cls: type[Signed], obj: Any, rng: random.Random | None = None) -> None:
    """Replace `obj['signature']` (a decoded envelope of `cls`) with a valid signature by a fixture key:
    the committee key of the block's author, else the test key (made the signer 9 times in 10)."""
    if type(obj) is not dict or type(obj.get("body")) is not dict:
        return
    body = obj["body"]
    if cls is SignedBlock:
        a = body.get("author")
        key = VALIDATOR_KEYS[a] if type(a) is int and 0 <= a < len(VALIDATOR_KEYS) else VALIDATOR_KEYS[0]
    else:
        key = TEST_KEY
        if rng is None or rng.random() < 0.9:
            body[cls.SIGNER] = key.public
    chain = body.get("chain_id")
    try:
        covered = codec.encode(body)
        if cls is SignedBlock:  # a block's signature covers its header (spec/wire.md §6)
            covered = SignedBlock.covered(Block.from_bytes(covered))
        obj["signature"] = key.sign(cls.DOMAIN, chain if type(chain) is str else CHAIN_ID, covered)
    except ProtocolError:
        pass  # a body that does not decode cannot be verified either: leave the old signature


# --- encodings ------------------------------------------------------------------------------------


def _nest(value: Any, rng: random.Random) -> Any:
    if rng.random() < 0.2:
        for _ in range(rng.choice((31, 32, 33, 40))):  # around MAX_DEPTH
            value = [value]
        return value
    return [value] if rng.random() < 0.5 else {"x": value}


def _head(major: int, arg: int, twist: bool, rng: random.Random) -> bytes:
    if not twist:
        return codec._head(major, arg)
    widths = [w for w, lim in ((24, 1 << 8), (25, 1 << 16), (26, 1 << 32), (27, 1 << 64)) if arg < lim]
    ai = rng.choice(widths)  # not the shortest form (most of the time)
    size = {24: 1, 25: 2, 26: 4, 27: 8}[ai]
    return bytes([major << 5 | ai]) + arg.to_bytes(size, "big")


def encode_loose(obj: Any, rng: random.Random, p: float = 0.1) -> bytes:
    """Encode like the codec, but each item with probability `p` is written non-canonically."""
    out = bytearray()
    _loose(out, obj, rng, p)
    if rng.random() < p:
        out += rng.choice([b"\x00", b"\xff", b"\xf6", rng.randbytes(3)])  # trailing bytes
    return bytes(out)


def _loose(out: bytearray, obj: Any, rng: random.Random, p: float) -> None:
    twist = rng.random() < p
    if twist and rng.random() < 0.1:  # a tag in front of anything
        out += rng.choice([b"\xc0", b"\xc1", b"\xd8\x2a", b"\xd9\xd9\xf7", b"\xc2"])
    t = type(obj)
    if t is bool or obj is None:
        if twist and rng.random() < 0.5:
            out += rng.choice([b"\xf7", b"\xf8\x20", b"\xf0", b"\xf8\x14"])  # undefined, simple values
        else:
            out += b"\xf5" if obj is True else b"\xf4" if obj is False else b"\xf6"
    elif t is int:
        if obj > U64_MAX or obj < -(1 << 64):  # bignum tag
            neg = obj < 0
            mag = (-1 - obj) if neg else obj
            raw = mag.to_bytes((mag.bit_length() + 7) // 8, "big")
            out += b"\xc3" if neg else b"\xc2"
            out += codec._head(2, len(raw)) + raw
        elif twist and rng.random() < 0.3 and abs(obj) < (1 << 53):
            out += b"\xfb" + struct.pack(">d", float(obj))  # an integer as a float
        elif obj >= 0:
            out += _head(0, obj, twist, rng)
        else:
            out += _head(1, -1 - obj, twist, rng)
    elif t is float:
        out += b"\xfb" + struct.pack(">d", obj)
    elif t is bytes or t is str:
        raw = obj if t is bytes else obj.encode("utf-8", "surrogatepass")
        major = 2 if t is bytes else 3
        if twist and rng.random() < 0.4:
            out.append(major << 5 | 31)  # indefinite length, in chunks
            cut = rng.randint(0, len(raw))
            for chunk in (raw[:cut], raw[cut:]):
                out += codec._head(major, len(chunk)) + chunk
            out.append(0xFF)
        else:
            out += _head(major, len(raw), twist, rng) + raw
    elif t is list:
        indefinite = twist and rng.random() < 0.4
        out += b"\x9f" if indefinite else _head(4, len(obj), twist, rng)
        for item in obj:
            _loose(out, item, rng, p)
        if indefinite:
            out.append(0xFF)
    elif t is dict:
        pairs = []
        for k, v in obj.items():
            kb = bytearray()
            _loose(kb, k, rng, p / 4)
            pairs.append((bytes(kb), v))
        pairs.sort(key=lambda kv: kv[0])
        indefinite = False
        if twist:
            op = rng.randrange(3)
            if op == 0 and len(pairs) > 1:
                i = rng.randrange(len(pairs) - 1)
                pairs[i], pairs[i + 1] = pairs[i + 1], pairs[i]  # out of canonical order
            elif op == 1 and pairs:
                pairs.append(rng.choice(pairs))  # a duplicate key
            else:
                indefinite = True
        out += b"\xbf" if indefinite else _head(5, len(pairs), twist and rng.random() < 0.3, rng)
        for kb, v in pairs:
            out += kb
            _loose(out, v, rng, p)
        if indefinite:
            out.append(0xFF)
    else:
        raise TypeError(f"cannot encode {t.__name__}")


# --- raw bytes ------------------------------------------------------------------------------------


def mutate_bytes(data: bytes, other: bytes, rng: random.Random) -> bytes:
    """A classic byte-level mutation: flips, inserts, deletes, truncation, splices, interesting bytes."""
    b = bytearray(data)
    op = rng.randrange(9)
    if op == 0 and b:
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif op == 1:
        i = rng.randint(0, len(b))
        b[i:i] = rng.randbytes(rng.randint(1, 8))
    elif op == 2 and b:
        i = rng.randrange(len(b))
        del b[i : i + rng.randint(1, 8)]
    elif op == 3:
        del b[rng.randint(0, len(b)) :]
    elif op == 4:
        b = b[: rng.randint(0, len(b))] + other[rng.randint(0, len(other)) :]
    elif op == 5 and b:
        b[rng.randrange(len(b))] = rng.choice(INTERESTING_BYTES)
    elif op == 6 and b:
        i = rng.randrange(len(b))
        j = min(len(b), i + rng.randint(1, 32))
        b[j:j] = b[i:j] * rng.randint(1, 4)
    elif op == 7 and len(b) > 4:  # a length-like field set to a large claim
        i = rng.randrange(len(b) - 4)
        b[i : i + 5] = bytes([rng.choice((0x5A, 0x7A, 0x9A, 0xBA))]) + rng.randbytes(4)
    elif b:
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)
