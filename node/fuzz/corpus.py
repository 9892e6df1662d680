"""Seed corpora on disk, and capture of real messages from a local network.

Layout: `<corpus>/<target>/<sha256[:20]>.bin`, one raw input per file (the format libFuzzer and atheris
read too), and `<corpus>/findings/` for findings unless --corpus is absent (then ./fuzz-findings).
Real messages make better seeds than generated ones: they have the shapes, sizes and signatures the
network actually carries, so mutants of them start where real traffic is.

Capture sources: a running node over libp2p (its commits and their blocks via /tensornet/commits/1 and
/tensornet/blocks/1, its handshake Status; the HTTP API only serves JSON, not the signed bytes), or a
node's home directory (the `blocks` and `commits` tables of chain.db, read-only).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from node.errors import NodeError
from node.fuzz.live import fetch_chain, node_info, open_peer
from p2pnet.reqresp import Kind, encode_frame
from protocol import codec
from protocol.errors import ProtocolError
from protocol.messages import (
    BlockRef,
    BlocksResponse,
    CommitsResponse,
    FetchBlocks,
    SignedBlock,
    SignedTransaction,
    Status,
)
from protocol.state.genesis import load_genesis

FINDINGS = "findings"
DEFAULT_FINDINGS = Path("fuzz-findings")


class CaptureError(NodeError):
    """Nothing could be captured: an unreadable store, or an unreachable node."""


def findings_dir(corpus: Path | None) -> Path:
    return corpus / FINDINGS if corpus is not None else DEFAULT_FINDINGS


def load_seeds(corpus: Path | None, target: str) -> list[bytes]:
    """The target's seed files, in name order (deterministic runs); none if there is no such folder."""
    if corpus is None:
        return []
    d = corpus / target
    if not d.is_dir():
        return []
    return [p.read_bytes() for p in sorted(d.iterdir()) if p.is_file() and not p.name.startswith(".")]


def write_seed(corpus: Path, target: str, data: bytes) -> Path:
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{hashlib.sha256(data).hexdigest()[:20]}.bin"
    if not path.exists():
        path.write_bytes(data)
    return path


def classify(blocks: Iterable[bytes], commits: Iterable[bytes], responses: Iterable[bytes] = (),
             status: bytes | None = None) -> dict[str, list[bytes]]:
    """Sort captured messages into the targets they seed (a block seeds `block` and `dag`, its transactions
    seed `tx.<kind>`, its payload list seeds `state`, and so on)."""
    out: dict[str, list[bytes]] = {}

    def add(target: str, data: bytes) -> None:
        out.setdefault(target, []).append(data)

    refs = []
    for raw in blocks:
        try:
            sb = SignedBlock.from_bytes(raw)
        except ProtocolError:
            continue
        add("block", raw)
        add("dag", raw)
        add("codec", raw)
        refs.append(BlockRef(sb.body.round, sb.body.author, hashlib.blake2b(raw, digest_size=32).digest()))
        if sb.body.payload:
            add("state", codec.encode(list(sb.body.payload)))
        for tx in sb.body.payload:
            try:
                add(f"tx.{SignedTransaction.from_bytes(tx).body.call.KIND}", tx)
            except ProtocolError:
                continue
    for raw in commits:
        add("commit", raw)
    for raw in responses:
        for cls, target in ((BlocksResponse, "blocks_response"), (CommitsResponse, "commits_response")):
            try:
                cls.from_bytes(raw)
                add(target, raw)
                break
            except ProtocolError:
                continue
    if refs:
        req = FetchBlocks(0, tuple(refs[:32]), 0, 0).to_bytes()
        add("fetch_blocks", req)
        add("frame", encode_frame(Kind.REQUEST, 1, req))
    if status is not None:
        add("status", status)
    return out


def write_all(out: Path, groups: dict[str, list[bytes]]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for target, items in groups.items():
        for data in items:
            write_seed(out, target, data)
            counts[target] += 1
    return dict(sorted(counts.items()))


def capture_home(home: Path, out: Path, max_blocks: int = 2000) -> dict[str, int]:
    """Seeds from a node's chain.db (read-only: a running node keeps writing undisturbed)."""
    db = home / "chain.db"
    if not db.exists():
        raise CaptureError(f"{db} does not exist: is {home} a node home (tensornet node init)?")
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            blocks = [r[0] for r in con.execute("SELECT data FROM blocks ORDER BY round DESC LIMIT ?", (max_blocks,))]
            commits = [r[0] for r in con.execute("SELECT data FROM commits ORDER BY idx DESC LIMIT ?", (max_blocks,))]
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise CaptureError(f"cannot read {db}: {exc}") from exc
    status = None
    genesis = home / "genesis.json"
    if genesis.exists():
        g = load_genesis(str(genesis))
        status = Status(g.chain_id, g.hash(), len(commits), bytes(32), 0, 0, False).to_bytes()
    return write_all(out, classify(blocks, commits, (), status))


async def capture_node(api: str, out: Path, peer: str | None = None, max_commits: int = 64) -> dict[str, int]:
    """Seeds from a running node, fetched over libp2p like a syncing peer would."""
    info = node_info(api, peer)
    async with open_peer(info) as (stack, peer_id):
        responses, commits, blocks = await fetch_chain(stack, peer_id, max_commits)
        status = stack.handshake.statuses[peer_id].to_bytes()
    return write_all(out, classify(blocks, commits, responses, status))
