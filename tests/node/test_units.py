"""Unit tests of node/ pieces: config files, amounts, the store (the mempool: tests/node/test_mempool.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from node.client.amounts import parse_amount
from node.config import ConfigError, NodeConfig, load_config, write_config
from node.errors import NodeError
from node.storage import CommitRecord, Store, StoreError
from protocol.economics.emission import decimal_tokens


def test_config_round_trips_and_flags_override(tmp_path: Path) -> None:
    cfg = NodeConfig(listen=("/ip4/127.0.0.1/tcp/1234",), bootnodes=("/ip4/1.2.3.4/tcp/1/p2p/x",), validator=True)
    write_config(tmp_path, cfg)
    text = (tmp_path / "config.toml").read_text()
    assert "# Peers to dial at start" in text, "the config file must explain itself"
    loaded = load_config(tmp_path)
    assert loaded == cfg
    assert loaded.override(api="127.0.0.1:9", validator=None).api == "127.0.0.1:9"
    assert loaded.override(validator=None).validator is True


@pytest.mark.parametrize(
    "body,match",
    [
        ("nonsense = 1\n", "unknown setting"),
        ("validator = 1\n", "true or false"),
        ('listen = "x"\n', "list of strings"),
        ("target_peers = \"8\"\n", "must be a int"),
        ('log_format = "xml"\n', "log_format"),
        ("listen = [\n", "config.toml"),
    ],
)
def test_bad_config_gets_a_clear_error(tmp_path: Path, body: str, match: str) -> None:
    (tmp_path / "config.toml").write_text(body)
    with pytest.raises(ConfigError, match=match):
        load_config(tmp_path)


def test_missing_config_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tensornet node init"):
        load_config(tmp_path)


def test_amounts_are_exact() -> None:
    assert parse_amount("1.5") == 1_500_000_000
    assert parse_amount("0.000000001") == 1
    assert decimal_tokens(1_500_000_000) == "1.5"
    for bad in ("-1", "0.0000000001", "abc"):
        with pytest.raises(NodeError):
            parse_amount(bad)


def test_store_commit_chain_and_own_block_guard(tmp_path: Path) -> None:
    s = Store(tmp_path / "chain.db")
    s.bind_genesis(b"g" * 32)
    with pytest.raises(StoreError, match="not the next one"):
        s.put_commit(CommitRecord(2, b"d" * 32, b"x", b"r" * 32))
    s.put_commit(CommitRecord(1, b"d" * 32, b"x", b"r" * 32))  # a state snapshot: tests/node/test_treestore.py
    assert s.last_commit().index == 1
    s.record_own_block(0, 5, b"a" * 32, b"blk", 0)
    s.record_own_block(0, 5, b"a" * 32, b"blk", 0)  # the same block again is fine
    with pytest.raises(StoreError, match="second block"):
        s.record_own_block(0, 5, b"b" * 32, b"blk2", 0)
    assert s.last_own_round(0) == 5
    assert s.check() == []
    s.close()
    reopened = Store(tmp_path / "chain.db")
    with pytest.raises(StoreError, match="genesis"):
        reopened.bind_genesis(b"h" * 32)
    assert reopened.last_own_round(0) == 5


def test_store_of_the_old_state_root_format_is_refused_with_the_fix(tmp_path: Path) -> None:
    db = tmp_path / "chain.db"
    s = Store(db)
    s.put_commit(CommitRecord(1, b"d" * 32, b"x", b"r" * 32))
    s.close()
    assert Store(db).get_meta("state_root_version") == 2  # a store of this build reopens
    old = sqlite3.connect(db)  # what a build before state root v2 left: commits, no state_root_version
    old.execute("DELETE FROM meta WHERE key = 'state_root_version'")
    old.commit()
    old.close()
    with pytest.raises(StoreError, match=r"older format \(state root v1\).*Remove .*chain\.db and restart"):
        Store(db)
