"""The node's persistent libp2p identity: an ed25519 key in `<home>/node_key`.

The peer ID is derived from this key, so other nodes' address books and ban lists stay valid across
restarts only if the key persists. The file holds the 32-byte seed as hex, mode 0600; a key readable
by group or others is refused (anyone who reads it can impersonate the node), never silently fixed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from p2pnet.errors import NodeKeyError

FILE_NAME = "node_key"
SEED_SIZE = 32


def keypair_from_seed(seed: bytes) -> KeyPair:
    """libp2p ed25519 key pair from a 32-byte seed (deterministic: same seed, same peer ID)."""
    if len(seed) != SEED_SIZE:
        raise NodeKeyError(f"an ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}")
    return create_new_key_pair(seed)


def peer_id_of(keypair: KeyPair) -> ID:
    return ID.from_pubkey(keypair.public_key)


def load_node_key(path: Path | str) -> KeyPair:
    """Read a node key file; refuse unsafe permissions and malformed contents with a clear error."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise NodeKeyError(f"node key {path} does not exist") from exc
    if not stat.S_ISREG(st.st_mode):
        raise NodeKeyError(f"node key {path} is not a regular file")
    if st.st_mode & 0o077:
        raise NodeKeyError(
            f"node key {path} is readable or writable by group/others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run: chmod 600 {path}"
        )
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        seed = bytes.fromhex(text)
    except ValueError as exc:
        raise NodeKeyError(f"node key {path} is not hex: expected {2 * SEED_SIZE} hex characters") from exc
    if len(seed) != SEED_SIZE:
        raise NodeKeyError(f"node key {path} holds {len(seed)} bytes, expected {SEED_SIZE}")
    return keypair_from_seed(seed)


def write_node_key(path: Path | str, seed: bytes) -> None:
    """Write a seed atomically with mode 0600 (created 0600: never briefly world-readable)."""
    path = Path(path)
    if len(seed) != SEED_SIZE:
        raise NodeKeyError(f"an ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}")
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask cannot widen it, but an old tmp file could have other bits
        os.write(fd, (seed.hex() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_or_create_node_key(home: Path | str) -> KeyPair:
    """The key in `<home>/node_key`, generated (and `home` created, 0700) on first use."""
    home = Path(home)
    path = home / FILE_NAME
    if path.exists():
        return load_node_key(path)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    keypair = create_new_key_pair()
    write_node_key(path, keypair.private_key.to_bytes())
    return load_node_key(path)
