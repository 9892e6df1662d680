"""Wallets: one encrypted coldkey (holds and moves stake) and any number of plain hotkeys (sign work).

The coldkey is encrypted at rest because whoever holds it owns the funds; a hotkey sits in the clear
because a miner or validator must sign with it unattended, and losing one costs only its registration.
File formats, KDF parameters and the layout are documented in spec/keys.md. Every failure raises a
typed `node.errors.WalletError` whose message says what to do.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.utils

from node.client import home as layout
from node.errors import KeyFileError, KeyPermissionError, NodeError, PasswordError, WalletError, WrongPasswordError
from node.log import get_logger
from protocol import crypto
from protocol.crypto import Keypair
from protocol.errors import ProtocolError

COLDKEY_TYPE = "tensornet-coldkey"
HOTKEY_TYPE = "tensornet-hotkey"
VERSION = 1
KDF_NAME = "argon2id"
CIPHER_NAME = "xsalsa20-poly1305"
DEFAULT_HOTKEY = "default"
ENV_KDF = "TENSORNET_KDF"
ENV_PASSWORD = "TENSORNET_PASSWORD"
MAX_KEY_FILE = 64 * 1024  # key files are < 1 KiB; refuse to read anything large
# Bounds on KDF parameters read from a file, so a tampered file cannot demand 100 GiB or an hour.
_MAX_OPSLIMIT = 64
_MAX_MEMLIMIT = 1 << 30

log = get_logger(__name__)


@dataclass(frozen=True)
class KdfParams:
    """argon2id cost: `opslimit` passes over `memlimit` bytes."""

    opslimit: int
    memlimit: int


# default: ~0.2 s and 128 MiB per unlock on the project's 2-core machines (spec/keys.md has the figures).
# fast: libsodium's minimum, ~0.1 ms: for tests only, never for a key that guards real stake.
KDF_PROFILES: dict[str, KdfParams] = {
    "default": KdfParams(opslimit=3, memlimit=128 * 1024 * 1024),
    "fast": KdfParams(opslimit=argon2id.OPSLIMIT_MIN, memlimit=argon2id.MEMLIMIT_MIN),
}


def kdf_params(profile: str | None = None, env: Mapping[str, str] | None = None) -> KdfParams:
    """Parameters for a new coldkey: `profile`, else $TENSORNET_KDF, else "default"."""
    env = os.environ if env is None else env
    name = profile or env.get(ENV_KDF) or "default"
    if name not in KDF_PROFILES:
        raise WalletError(f"unknown KDF profile {name!r} (known: {', '.join(KDF_PROFILES)})")
    return KDF_PROFILES[name]


def _derive(password: str, salt: bytes, params: KdfParams) -> bytes:
    data = unicodedata.normalize("NFC", password).encode("utf-8")
    return argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, data, salt, opslimit=params.opslimit, memlimit=params.memlimit
    )


# --- passwords ---------------------------------------------------------------------------------


def _prompt_tty(confirm: bool, what: str) -> str:
    import getpass

    if not sys.stdin.isatty():
        raise PasswordError(f"no password for the {what}: use --password-file or set ${ENV_PASSWORD}")
    password = getpass.getpass(f"password for the {what}: ")
    if confirm and getpass.getpass("repeat the password: ") != password:
        raise PasswordError("the two passwords differ")
    return password


def read_password(
    password_file: str | os.PathLike[str] | None = None,
    *,
    confirm: bool = False,
    what: str = "coldkey",
    prompt: Callable[[bool, str], str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The password from `password_file`, else $TENSORNET_PASSWORD, else `prompt(confirm, what)`.

    A password file holds the password on its first line (one trailing newline is dropped, so
    `echo secret > f` works). With no prompt given, a terminal is asked; with no terminal it fails
    rather than hang a headless node.
    """
    env = os.environ if env is None else env
    if password_file not in (None, ""):
        path = Path(password_file)
        try:
            with path.open("rb") as fh:  # bounded: `--password-file /dev/stdin` works, /dev/zero cannot hang us
                _warn_if_shared(path, os.fstat(fh.fileno()))
                raw = fh.read(MAX_KEY_FILE)
        except OSError as exc:
            raise PasswordError(f"cannot read password file {path}: {exc.strerror or exc}") from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PasswordError(f"password file {path} is not UTF-8 text") from exc
        password = text.splitlines()[0] if text.splitlines() else ""
        if not password:
            raise PasswordError(f"password file {path} is empty")
        return password
    if env.get(ENV_PASSWORD):
        return env[ENV_PASSWORD]
    password = (prompt or _prompt_tty)(confirm, what)
    if not password:
        raise PasswordError("an empty password is not allowed")
    return password


def _warn_if_shared(path: Path, st: os.stat_result) -> None:
    """A password file others can read gives them the coldkey: say so (a warning, not a refusal, so
    a pipe or /dev/stdin, and a file on a filesystem without modes, still work)."""
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
        log.warning(
            f"password file {path} is accessible by group/others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run: chmod 600 {path}"
        )


# --- key files ---------------------------------------------------------------------------------


def _check_private(path: Path, st: os.stat_result) -> None:
    if st.st_mode & 0o077:
        raise KeyPermissionError(
            f"key file {path} is accessible by group/others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run: chmod 600 {path}"
        )


def _read_key_file(path: Path, kind: str) -> dict[str, Any]:
    """Parse a key file after refusing unsafe permissions; any structural problem is a KeyFileError."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise KeyFileError(f"{kind} file {path} does not exist") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot read {kind} file {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{kind} file {path} is not a regular file")
    _check_private(path, st)
    if st.st_size > MAX_KEY_FILE:
        raise KeyFileError(f"{kind} file {path} is {st.st_size} bytes: not a key file")
    try:
        obj = json.loads(path.read_bytes())
    except OSError as exc:
        raise KeyFileError(f"cannot read {kind} file {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyFileError(f"{kind} file {path} is not valid JSON (corrupted or tampered with)") from exc
    if not isinstance(obj, dict):
        raise KeyFileError(f"{kind} file {path} is not a JSON object")
    return obj


def _field(obj: Mapping[str, Any], name: str, typ: type, path: Path, where: str = "") -> Any:
    value = obj.get(name)
    if type(value) is not typ:
        raise KeyFileError(f"key file {path}: field {where}{name} is missing or not a {typ.__name__}")
    return value


def _hex_field(obj: Mapping[str, Any], name: str, size: int | None, path: Path, where: str = "") -> bytes:
    text = _field(obj, name, str, path, where)
    try:
        value = bytes.fromhex(text)
    except ValueError as exc:
        raise KeyFileError(f"key file {path}: field {where}{name} is not hex") from exc
    if size is not None and len(value) != size:
        raise KeyFileError(f"key file {path}: field {where}{name} is {len(value)} bytes, expected {size}")
    return value


def _check_keys(obj: Mapping[str, Any], expected: set[str], path: Path, where: str = "") -> None:
    if set(obj) != expected:
        extra, missing = sorted(set(obj) - expected), sorted(expected - set(obj))
        parts = [f"unknown {', '.join(extra)}"] if extra else []
        parts += [f"missing {', '.join(missing)}"] if missing else []
        detail = "; ".join(parts)
        raise KeyFileError(f"key file {path}: bad fields in {where or 'top level'} ({detail})")


def _check_header(obj: Mapping[str, Any], kind_type: str, path: Path) -> str:
    if obj.get("type") != kind_type:
        raise KeyFileError(f"{path} is not a {kind_type} file (type {obj.get('type')!r})")
    if obj.get("version") != VERSION:
        raise KeyFileError(f"{path} has unsupported version {obj.get('version')!r} (this build reads {VERSION})")
    address = _field(obj, "address", str, path)
    try:
        crypto.parse_address(address)
    except ProtocolError as exc:
        raise KeyFileError(f"key file {path}: {exc} (corrupted or tampered with)") from exc
    return address


def _write_new_private(path: Path, data: bytes) -> None:
    """Write `data` to a new file `path`, mode 0600 from the start, atomically; refuse to overwrite."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails if `path` exists: never replaces a key
    except FileExistsError as exc:
        raise WalletError(f"{path} already exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise WalletError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class ColdkeyFile:
    """An encrypted coldkey as stored: everything except the seed is readable without the password."""

    address: str
    params: KdfParams
    salt: bytes
    nonce: bytes
    ciphertext: bytes

    @classmethod
    def seal(cls, keypair: Keypair, password: str, params: KdfParams) -> ColdkeyFile:
        salt = nacl.utils.random(argon2id.SALTBYTES)
        box = nacl.secret.SecretBox(_derive(password, salt, params))
        sealed = box.encrypt(keypair.seed)
        return cls(keypair.address, params, salt, sealed.nonce, sealed.ciphertext)

    def open(self, password: str, path: Path) -> Keypair:
        box = nacl.secret.SecretBox(_derive(password, self.salt, self.params))
        try:
            seed = box.decrypt(self.ciphertext, self.nonce)
        except nacl.exceptions.CryptoError as exc:
            raise WrongPasswordError(f"wrong password for coldkey {path} (or the file was modified)") from exc
        keypair = Keypair(seed)
        if keypair.address != self.address:
            raise KeyFileError(f"coldkey {path} was tampered with: its address does not match the encrypted key")
        return keypair

    def to_json(self) -> bytes:
        obj = {
            "type": COLDKEY_TYPE,
            "version": VERSION,
            "address": self.address,
            "kdf": {
                "name": KDF_NAME,
                "opslimit": self.params.opslimit,
                "memlimit": self.params.memlimit,
                "salt": self.salt.hex(),
            },
            "cipher": {"name": CIPHER_NAME, "nonce": self.nonce.hex(), "ciphertext": self.ciphertext.hex()},
        }
        return (json.dumps(obj, indent=2) + "\n").encode()

    @classmethod
    def read(cls, path: Path) -> ColdkeyFile:
        obj = _read_key_file(path, "coldkey")
        address = _check_header(obj, COLDKEY_TYPE, path)
        _check_keys(obj, {"type", "version", "address", "kdf", "cipher"}, path)
        kdf, cipher = obj["kdf"], obj["cipher"]
        if not isinstance(kdf, dict) or not isinstance(cipher, dict):
            raise KeyFileError(f"key file {path}: kdf and cipher must be JSON objects")
        _check_keys(kdf, {"name", "opslimit", "memlimit", "salt"}, path, "kdf")
        _check_keys(cipher, {"name", "nonce", "ciphertext"}, path, "cipher")
        if kdf["name"] != KDF_NAME or cipher["name"] != CIPHER_NAME:
            raise KeyFileError(f"key file {path}: unsupported kdf {kdf['name']!r} or cipher {cipher['name']!r}")
        ops = _field(kdf, "opslimit", int, path, "kdf.")
        mem = _field(kdf, "memlimit", int, path, "kdf.")
        if not (argon2id.OPSLIMIT_MIN <= ops <= _MAX_OPSLIMIT and argon2id.MEMLIMIT_MIN <= mem <= _MAX_MEMLIMIT):
            raise KeyFileError(f"key file {path}: kdf cost out of range (opslimit {ops}, memlimit {mem})")
        return cls(
            address=address,
            params=KdfParams(ops, mem),
            salt=_hex_field(kdf, "salt", argon2id.SALTBYTES, path, "kdf."),
            nonce=_hex_field(cipher, "nonce", nacl.secret.SecretBox.NONCE_SIZE, path, "cipher."),
            ciphertext=_hex_field(cipher, "ciphertext", 32 + nacl.secret.SecretBox.MACBYTES, path, "cipher."),
        )


def _hotkey_json(keypair: Keypair) -> bytes:
    obj = {"type": HOTKEY_TYPE, "version": VERSION, "address": keypair.address, "seed": keypair.seed.hex()}
    return (json.dumps(obj, indent=2) + "\n").encode()


def write_hotkey(path: Path, keypair: Keypair) -> None:
    """Write a new hotkey file (0600); refuses to overwrite an existing key."""
    _write_new_private(Path(path), _hotkey_json(keypair))


def read_hotkey(path: Path) -> Keypair:
    """Load a hotkey file; refuse unsafe permissions and a seed that does not match the address."""
    obj = _read_key_file(path, "hotkey")
    address = _check_header(obj, HOTKEY_TYPE, path)
    _check_keys(obj, {"type", "version", "address", "seed"}, path)
    keypair = Keypair(_hex_field(obj, "seed", 32, path))
    if keypair.address != address:
        raise KeyFileError(f"hotkey {path} was tampered with: its address does not match its seed")
    return keypair


# --- wallets -----------------------------------------------------------------------------------


class Wallet:
    """A wallet directory under `<home>/wallets/<name>`; loading it needs no password."""

    def __init__(self, home: Path, name: str, coldkey_file: ColdkeyFile) -> None:
        self.home = home
        self.name = name
        self._coldkey_file = coldkey_file

    @property
    def path(self) -> Path:
        return layout.wallet_dir(self.home, self.name)

    @property
    def coldkey_path(self) -> Path:
        return layout.coldkey_path(self.home, self.name)

    @property
    def address(self) -> str:
        """The coldkey's address, read from the file without the password."""
        return self._coldkey_file.address

    @property
    def public_key(self) -> bytes:
        return crypto.parse_address(self.address)

    @property
    def kdf(self) -> KdfParams:
        return self._coldkey_file.params

    @classmethod
    def create(
        cls,
        home: str | os.PathLike[str] | None,
        name: str,
        password: str,
        *,
        hotkey: str = DEFAULT_HOTKEY,
        kdf: str | KdfParams | None = None,
        coldkey: Keypair | None = None,
    ) -> Wallet:
        """Make a new wallet with a fresh (or the given) coldkey and one hotkey; never overwrites one."""
        root = layout.resolve_home(home)
        layout.check_name("wallet", name)
        layout.check_name("hotkey", hotkey)
        if not password:
            raise PasswordError("an empty password is not allowed")
        params = kdf if isinstance(kdf, KdfParams) else kdf_params(kdf)
        path = layout.coldkey_path(root, name)
        if path.exists():
            raise WalletError(f"wallet {name!r} already exists at {path.parent}; choose another name")
        layout.ensure_private_dir(layout.hotkeys_dir(root, name))
        sealed = ColdkeyFile.seal(coldkey or Keypair.generate(), password, params)
        _write_new_private(path, sealed.to_json())
        wallet = cls(root, name, sealed)
        wallet.new_hotkey(hotkey)
        return wallet

    @classmethod
    def load(cls, home: str | os.PathLike[str] | None, name: str) -> Wallet:
        """Open an existing wallet (no password needed until `coldkey()`)."""
        root = layout.resolve_home(home)
        path = layout.coldkey_path(root, name)
        if not path.parent.is_dir():
            raise WalletError(
                f"no wallet {name!r} in {layout.wallets_dir(root)}; create one: tensornet wallet create --name {name}"
            )
        return cls(root, name, ColdkeyFile.read(path))

    def coldkey(self, password: str) -> Keypair:
        """Decrypt the coldkey (argon2id: ~0.2 s with default parameters)."""
        return self._coldkey_file.open(password, self.coldkey_path)

    def hotkey_path(self, name: str = DEFAULT_HOTKEY) -> Path:
        return layout.hotkey_path(self.home, self.name, name)

    def hotkey(self, name: str = DEFAULT_HOTKEY) -> Keypair:
        path = self.hotkey_path(name)
        if not path.exists():
            have = ", ".join(self.hotkey_names()) or "none"
            raise WalletError(
                f"wallet {self.name!r} has no hotkey {name!r} (has: {have}); "
                f"create one: tensornet wallet new-hotkey {self.name} --hotkey {name}"
            )
        return read_hotkey(path)

    def hotkey_names(self) -> list[str]:
        folder = layout.hotkeys_dir(self.home, self.name)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))

    def new_hotkey(self, name: str, keypair: Keypair | None = None) -> Keypair:
        """Add a hotkey (one per miner GPU worker, say); refuses to replace an existing one."""
        path = self.hotkey_path(name)
        layout.ensure_private_dir(path.parent)
        keypair = keypair or Keypair.generate()
        _write_new_private(path, _hotkey_json(keypair))
        return keypair

    def info(self) -> dict[str, Any]:
        """What `wallet show` prints: addresses and paths, never secrets."""
        hotkeys = {}
        for hk in self.hotkey_names():
            hotkeys[hk] = self.hotkey(hk).address
        return {
            "name": self.name,
            "path": str(self.path),
            "coldkey": self.address,
            "coldkey_public": self.public_key.hex(),
            "kdf": {"name": KDF_NAME, "opslimit": self.kdf.opslimit, "memlimit": self.kdf.memlimit},
            "hotkeys": hotkeys,
        }

    def __repr__(self) -> str:
        return f"Wallet({self.name!r}, {self.address})"


def list_wallets(home: str | os.PathLike[str] | None) -> list[Wallet | tuple[str, NodeError]]:
    """Every wallet under the home, by name; a broken one comes back as (name, error), not raised."""
    root = layout.resolve_home(home)
    folder = layout.wallets_dir(root)
    if not folder.is_dir():
        return []
    found: list[Wallet | tuple[str, NodeError]] = []
    for entry in sorted(folder.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        try:
            found.append(Wallet.load(root, entry.name))
        except NodeError as exc:
            found.append((entry.name, exc))
    return found
