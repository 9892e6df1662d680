"""Wallet files: encryption, permissions, tamper detection, names, passwords, and the home layout."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from node.client import home as layout
from node.client.home import BadNameError
from node.client.wallet import (
    KDF_PROFILES,
    ColdkeyFile,
    KdfParams,
    Wallet,
    kdf_params,
    list_wallets,
    read_hotkey,
    read_password,
)
from node.errors import KeyFileError, KeyPermissionError, NodeError, PasswordError, WalletError, WrongPasswordError
from protocol import crypto
from protocol.crypto import Domain, Keypair

PW = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("TENSORNET_HOME", "TENSORNET_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TENSORNET_KDF", "fast")


@pytest.fixture
def wallet(tmp_path: Path) -> Wallet:
    return Wallet.create(tmp_path / "home", "alice", PW)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _edit(path: Path, change) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


# --- round trip and layout ---------------------------------------------------------------------


def test_create_load_and_unlock(wallet: Wallet, tmp_path: Path) -> None:
    loaded = Wallet.load(tmp_path / "home", "alice")
    cold = loaded.coldkey(PW)
    assert cold.address == wallet.address == loaded.address
    assert loaded.public_key == cold.public
    hot = loaded.hotkey()
    assert hot.address == wallet.hotkey("default").address != cold.address
    sig = hot.sign(Domain.TX, "c", b"body")
    crypto.verify(hot.public, Domain.TX, "c", b"body", sig)
    assert loaded.kdf == KDF_PROFILES["fast"]


def test_layout_and_modes(wallet: Wallet, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert wallet.coldkey_path == home / "wallets" / "alice" / "coldkey"
    assert wallet.hotkey_path() == home / "wallets" / "alice" / "hotkeys" / "default"
    for key in (wallet.coldkey_path, wallet.hotkey_path()):
        assert _mode(key) == 0o600
    for folder in (home, home / "wallets", wallet.path, wallet.path / "hotkeys"):
        assert _mode(folder) == 0o700
    leftovers = [p.name for p in wallet.path.rglob(".*")]
    assert leftovers == []  # no temporary files left behind


def test_secrets_stay_out_of_info_and_coldkey_file(wallet: Wallet) -> None:
    cold, hot = wallet.coldkey(PW), wallet.hotkey()
    text = json.dumps(wallet.info())
    assert cold.seed.hex() not in text and hot.seed.hex() not in text
    assert cold.seed.hex() not in wallet.coldkey_path.read_text()
    assert wallet.info()["hotkeys"] == {"default": hot.address}


def test_given_coldkey_and_new_hotkeys(tmp_path: Path) -> None:
    seed = bytes(range(32))
    wallet = Wallet.create(tmp_path, "miner", PW, hotkey="gpu0", coldkey=Keypair(seed))
    assert wallet.coldkey(PW).seed == seed
    gpu1 = wallet.new_hotkey("gpu1")
    assert wallet.hotkey_names() == ["gpu0", "gpu1"]
    assert wallet.hotkey("gpu1").seed == gpu1.seed
    with pytest.raises(WalletError, match="already exists"):
        wallet.new_hotkey("gpu1")
    assert wallet.hotkey("gpu1").seed == gpu1.seed  # not overwritten


def test_each_file_has_its_own_salt(tmp_path: Path) -> None:
    key = Keypair(bytes(32))
    a = Wallet.create(tmp_path, "a", PW, coldkey=key)
    b = Wallet.create(tmp_path, "b", PW, coldkey=key)
    fa, fb = ColdkeyFile.read(a.coldkey_path), ColdkeyFile.read(b.coldkey_path)
    assert fa.salt != fb.salt and fa.ciphertext != fb.ciphertext


def test_default_kdf_is_the_documented_one(tmp_path: Path) -> None:
    wallet = Wallet.create(tmp_path, "real", PW, kdf="default")
    stored = json.loads(wallet.coldkey_path.read_text())["kdf"]
    assert (stored["opslimit"], stored["memlimit"]) == (3, 128 * 1024 * 1024)
    assert Wallet.load(tmp_path, "real").coldkey(PW).address == wallet.address


def test_kdf_profile_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kdf_params("default", env={}) == KdfParams(3, 128 * 1024 * 1024)
    assert kdf_params(None, env={}) == KDF_PROFILES["default"]
    assert kdf_params(None, env={"TENSORNET_KDF": "fast"}) == KDF_PROFILES["fast"]
    with pytest.raises(WalletError, match="unknown KDF profile 'slow'"):
        kdf_params("slow")


def test_unicode_password_is_normalised(tmp_path: Path) -> None:
    wallet = Wallet.create(tmp_path, "u", "caf\u00e9")  # precomposed é
    assert wallet.coldkey("cafe\u0301").address == wallet.address  # e + combining accent


# --- refusals ----------------------------------------------------------------------------------


def test_wrong_password(wallet: Wallet) -> None:
    with pytest.raises(WrongPasswordError, match="wrong password for coldkey"):
        wallet.coldkey(PW + "!")


def test_create_refuses_existing_and_empty_password(wallet: Wallet, tmp_path: Path) -> None:
    before = wallet.coldkey_path.read_bytes()
    with pytest.raises(WalletError, match="already exists"):
        Wallet.create(tmp_path / "home", "alice", "other")
    assert wallet.coldkey_path.read_bytes() == before
    with pytest.raises(PasswordError, match="empty"):
        Wallet.create(tmp_path / "home", "bob", "")


def test_missing_wallet_and_hotkey(wallet: Wallet, tmp_path: Path) -> None:
    with pytest.raises(WalletError, match="no wallet 'nobody'.*tensornet wallet create --name nobody"):
        Wallet.load(tmp_path / "home", "nobody")
    with pytest.raises(WalletError, match=r"no hotkey 'gpu9' \(has: default\)"):
        wallet.hotkey("gpu9")


@pytest.mark.parametrize("name", ["", "../evil", "a/b", ".hidden", "-flag", "x" * 65, "sp ace", "n\u00e9"])
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(BadNameError, match="not allowed"):
        Wallet.create(tmp_path / "home", name, PW)
    with pytest.raises(BadNameError):
        Wallet.create(tmp_path / "home", "ok", PW, hotkey=name)
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize("which", ["coldkey", "hotkey"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_group_or_world_access_is_refused(wallet: Wallet, tmp_path: Path, which: str, mode: int) -> None:
    path = wallet.coldkey_path if which == "coldkey" else wallet.hotkey_path()
    path.chmod(mode)
    with pytest.raises(KeyPermissionError, match=f"run: chmod 600 {path}"):
        Wallet.load(tmp_path / "home", "alice").hotkey()


def test_flipped_ciphertext_reads_as_wrong_password_or_modified(wallet: Wallet, tmp_path: Path) -> None:
    def flip(obj):
        ct = bytearray.fromhex(obj["cipher"]["ciphertext"])
        ct[0] ^= 1
        obj["cipher"]["ciphertext"] = ct.hex()

    _edit(wallet.coldkey_path, flip)
    with pytest.raises(WrongPasswordError, match="or the file was modified"):
        Wallet.load(tmp_path / "home", "alice").coldkey(PW)


def test_swapped_address_is_detected_after_unlock(wallet: Wallet, tmp_path: Path) -> None:
    _edit(wallet.coldkey_path, lambda obj: obj.update(address=Keypair.generate().address))
    loaded = Wallet.load(tmp_path / "home", "alice")
    with pytest.raises(KeyFileError, match="tampered"):
        loaded.coldkey(PW)


def _set_kdf(key: str, value):
    return lambda obj: obj["kdf"].update({key: value})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda obj: obj.update(version=2), "unsupported version 2"),
        (lambda obj: obj.update(type="tensornet-hotkey"), "not a tensornet-coldkey file"),
        (lambda obj: obj.update(address="tnnotanaddress"), "corrupted or tampered"),
        (lambda obj: obj.update(extra=1), "unknown extra"),
        (lambda obj: obj.pop("cipher"), "missing cipher"),
        (_set_kdf("memlimit", 1 << 40), "kdf cost out of range"),
        (_set_kdf("opslimit", 0), "kdf cost out of range"),
        (_set_kdf("opslimit", "3"), "kdf.opslimit is missing or not a int"),
        (_set_kdf("salt", "00"), "kdf.salt is 1 bytes, expected 16"),
        (_set_kdf("salt", "zz" * 16), "kdf.salt is not hex"),
        (_set_kdf("name", "scrypt"), "unsupported kdf 'scrypt'"),
        (lambda obj: obj["cipher"].update(nonce="00" * 8), "cipher.nonce is 8 bytes"),
        (lambda obj: obj.update(kdf=[1]), "must be JSON objects"),
    ],
)
def test_malformed_coldkey_files(wallet: Wallet, tmp_path: Path, change, message: str) -> None:
    _edit(wallet.coldkey_path, change)
    with pytest.raises(KeyFileError, match=message):
        Wallet.load(tmp_path / "home", "alice")


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"{not json", "not valid JSON"), (b"\xff\xfe", "not valid JSON"), (b"[1, 2]", "not a JSON object")],
)
def test_garbage_coldkey_file(wallet: Wallet, tmp_path: Path, content: bytes, message: str) -> None:
    wallet.coldkey_path.write_bytes(content)
    with pytest.raises(KeyFileError, match=message):
        Wallet.load(tmp_path / "home", "alice")


def test_oversized_and_non_regular_key_files(wallet: Wallet, tmp_path: Path) -> None:
    wallet.coldkey_path.write_bytes(b" " * (64 * 1024 + 1))
    with pytest.raises(KeyFileError, match="not a key file"):
        Wallet.load(tmp_path / "home", "alice")
    wallet.coldkey_path.unlink()
    wallet.coldkey_path.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        Wallet.load(tmp_path / "home", "alice")


def test_tampered_hotkey(wallet: Wallet) -> None:
    _edit(wallet.hotkey_path(), lambda obj: obj.update(seed="11" * 32))
    with pytest.raises(KeyFileError, match="does not match its seed"):
        read_hotkey(wallet.hotkey_path())
    _edit(wallet.hotkey_path(), lambda obj: obj.update(seed="11" * 31))
    with pytest.raises(KeyFileError, match="31 bytes, expected 32"):
        wallet.hotkey()


def test_list_wallets_reports_broken_ones(tmp_path: Path) -> None:
    assert list_wallets(tmp_path / "nothing") == []
    Wallet.create(tmp_path, "b", PW)
    Wallet.create(tmp_path, "a", PW)
    (tmp_path / "wallets" / "c").mkdir()
    (tmp_path / "wallets" / ".trash").mkdir()
    found = list_wallets(tmp_path)
    assert [w.name for w in found[:2]] == ["a", "b"]
    name, error = found[2]
    assert name == "c" and isinstance(error, KeyFileError) and "does not exist" in str(error)
    assert len(found) == 3


# --- passwords and home ------------------------------------------------------------------------


def test_read_password_sources(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("s3cret  \nsecond line\n")
    asked: list[tuple[bool, str]] = []

    def prompt(confirm: bool, what: str) -> str:
        asked.append((confirm, what))
        return "typed"

    env = {"TENSORNET_PASSWORD": "from-env"}
    assert read_password(f, env=env, prompt=prompt) == "s3cret  "  # file wins; only the newline goes
    assert read_password(None, env=env, prompt=prompt) == "from-env"
    assert asked == []
    assert read_password(None, env={}, prompt=prompt, confirm=True, what="new coldkey") == "typed"
    assert asked == [(True, "new coldkey")]


@pytest.mark.parametrize(
    ("content", "message"), [(b"", "is empty"), (b"\n", "is empty"), (b"\xff\xfe\n", "not UTF-8")]
)
def test_bad_password_files(tmp_path: Path, content: bytes, message: str) -> None:
    f = tmp_path / "pw"
    f.write_bytes(content)
    with pytest.raises(PasswordError, match=message):
        read_password(f, env={})


def test_password_file_readable_by_others_warns_with_the_fix(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    f = tmp_path / "pw"
    f.write_text("s3cret\n")
    os.chmod(f, 0o644)
    with capture_logs() as logs:
        assert read_password(f, env={}) == "s3cret"  # still read: a warning, not a refusal
    (entry,) = [e for e in logs if e["log_level"] == "warning"]
    assert str(f) in entry["event"] and f"chmod 600 {f}" in entry["event"] and "644" in entry["event"]
    os.chmod(f, 0o600)
    with capture_logs() as logs:
        assert read_password(f, env={}) == "s3cret"
    assert logs == []


def test_password_file_read_is_bounded() -> None:
    with pytest.raises(PasswordError, match="is empty"):
        read_password("/dev/null", env={})
    assert read_password("/dev/zero", env={}) == "\0" * (64 * 1024)  # returns, rather than reading forever


def test_missing_password_file_and_empty_prompt(tmp_path: Path) -> None:
    with pytest.raises(PasswordError, match="cannot read password file"):
        read_password(tmp_path / "absent", env={})
    with pytest.raises(PasswordError, match="empty password"):
        read_password(None, env={}, prompt=lambda confirm, what: "")


def test_no_terminal_means_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(PasswordError, match="--password-file or set \\$TENSORNET_PASSWORD"):
        read_password(None, env={})


def test_resolve_home(tmp_path: Path) -> None:
    assert layout.resolve_home(tmp_path / "x", env={"TENSORNET_HOME": "/elsewhere"}) == tmp_path / "x"
    assert layout.resolve_home(None, env={"TENSORNET_HOME": str(tmp_path)}) == tmp_path
    assert layout.resolve_home(None, env={}) == Path(os.path.expanduser("~/.tensornet"))
    assert layout.node_key_path(tmp_path) == tmp_path / "node_key"
    assert layout.data_dir(tmp_path) == tmp_path / "data"


def test_home_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(NodeError, match="cannot create directory .*: Not a directory"):
        Wallet.create(tmp_path / "file", "a", PW)
