"""Four validators, each its own OS process on loopback: commits, kill -9 and restart, a late full node."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from node.testing.procs import REPO, BootstrapProc, NodeProc, state_roots_at, stop_all, tensornet_cmd, wait_for
from node.testnet.gen import generate
from node.testnet.local import free_port_base

pytestmark = pytest.mark.slow


def own_blocks(db: Path, author: int) -> int:
    """How many blocks `author` has signed (rounds restart at each epoch, so a max round would not grow)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute("SELECT COUNT(*) FROM blocks WHERE author = ?", (author,)).fetchone()[0]


def equivocations(db: Path, author: int) -> list[tuple[int, int, int]]:
    """(epoch, round, count) of every slot in which `author` signed more than one block."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute(
            "SELECT epoch, round, COUNT(*) FROM blocks WHERE author = ? GROUP BY epoch, round HAVING COUNT(*) > 1",
            (author,),
        ).fetchall()


def stored_tree_at_snapshot(db: Path) -> int:
    """The height of the latest snapshot, after checking that it is the stored state tree (no full encoding), named
    with the root that the commit row at its height records (spec/state-tree.md §5.1)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        full = con.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0]
        (height,), (root,) = (con.execute("SELECT value FROM meta WHERE key = ?", (k,)).fetchone()
                              for k in ("state_tree_height", "state_tree_root"))
        recorded = con.execute("SELECT state_root FROM commits WHERE idx = ?", (height,)).fetchone()
    assert full == 0 and height and height % 5 == 0, f"snapshot at {height}, {full} full snapshots"
    assert recorded is not None and recorded[0] == root, f"the stored tree's root is not the one recorded at {height}"
    return height


def db_check(home: Path, *flags: str) -> dict:
    """`tensornet node db check --json` on a stopped node's store; its report."""
    check = subprocess.run([*tensornet_cmd(), "node", "db", "check", "--home", str(home), "--json", *flags],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    return json.loads(check.stdout)


def common_height(nodes: list[NodeProc]) -> int:
    return min(n.height() for n in nodes)


def assert_agree(nodes: list[NodeProc]) -> int:
    h = common_height(nodes)
    assert h > 0
    roots = state_roots_at(nodes, h)
    assert len(roots) == 1, f"state roots differ at height {h}: {roots}"
    return h


def test_four_validators_kill_restart_and_late_full_node(tmp_path: Path) -> None:
    # free ports (4 validators + the late full node), never fixed ones: another run may hold those
    p2p_base = free_port_base(5)
    api_base = free_port_base(5, start=p2p_base + 5)
    plans, genesis_path = generate(tmp_path / "net", hosts=["127.0.0.1"] * 4, p2p_base=p2p_base, api_base=api_base)
    # the bootstrap's logs go to a file that every wait below prints if it dies (it used to go to DEVNULL)
    boot = BootstrapProc(tmp_path / "boot")
    nodes: list[NodeProc] = []
    full: NodeProc | None = None
    for p in plans:  # snapshots (and the state tree stored with each) often, so the kill below falls between two
        cfg = p.home / "config.toml"
        cfg.write_text(cfg.read_text().replace("snapshot_every = 50", "snapshot_every = 5"))
    try:
        boot_addr = boot.start().multiaddr
        for p in plans:
            peers = [q.multiaddr for q in plans if q is not p] + [boot_addr]
            nodes.append(NodeProc(p.home, p.api, ["--bootnodes", ",".join(peers)]).start())
        wait_for(lambda: common_height(nodes) >= 10, 90, "10 commits on every validator", nodes=[*nodes, boot])
        assert_agree(nodes)

        # kill -9 one validator: the other three (>= 2f+1) keep committing
        victim = nodes[3]
        victim.kill()
        stored_tree_at_snapshot(victim.home / "chain.db")  # kill -9 left the snapshot and its tree together
        assert db_check(victim.home, "--no-replay")["ok"] is True  # the stored tree and stake positions are whole
        h = max(n.height() for n in nodes[:3])
        wait_for(lambda: min(n.height() for n in nodes[:3]) >= h + 10, 60, "commits without the killed node",
                 nodes=[*nodes[:3], boot])

        # restart it from disk: it resumes and catches up with the others
        victim.start()
        wait_for(lambda: victim.height() >= min(n.height() for n in nodes[:3]) - 2, 90, "restarted node catching up",
                 nodes=[*nodes, boot])
        assert_agree(nodes)
        # it took the stored state, and keeps storing it with each snapshot (a rebuild would have been logged)
        assert "rebuilding it" not in (victim.home / "node.log").read_text(errors="replace")
        stored_tree_at_snapshot(victim.home / "chain.db")

        # amnesia: wipe a validator's database and restart it; it must recover its last signed round
        # from its peers and never sign a second block for a round it already signed in
        amnesiac = nodes[2]
        amnesiac.kill()
        before = own_blocks(plans[0].home / "chain.db", author=2)
        assert before > 0
        for suffix in ("", "-wal", "-shm"):
            (amnesiac.home / f"chain.db{suffix}").unlink(missing_ok=True)
        amnesiac.start()
        wait_for(lambda: amnesiac.height() >= min(n.height() for n in nodes[:2]) - 2, 120,
                 "wiped validator catching up", nodes=[*nodes, boot])
        wait_for(lambda: own_blocks(plans[0].home / "chain.db", author=2) > before + 3, 60,
                 "wiped validator proposing again", nodes=[*nodes, boot])
        for p in plans:
            assert equivocations(p.home / "chain.db", author=2) == [], f"{p.name} saw node2 sign a round twice"
        assert_agree(nodes)

        # a fresh full node that knows only the bootstrap syncs from genesis to the head
        fhome = tmp_path / "full"
        subprocess.run(
            [*tensornet_cmd(), "node", "init", "--home", str(fhome), "--genesis", str(genesis_path),
             "--bootnodes", boot_addr, "--listen", f"/ip4/127.0.0.1/tcp/{p2p_base + 4}", "--api",
             f"127.0.0.1:{api_base + 4}"],
            check=True, cwd=REPO, capture_output=True,
        )
        full = NodeProc(fhome, f"http://127.0.0.1:{api_base + 4}").start()
        wait_for(lambda: full.height() >= min(n.height() for n in nodes) - 2, 120, "full node syncing to the head",
                 nodes=[*nodes, full, boot])
        assert_agree([*nodes, full])
        s = full.status()
        assert s is not None and s["validator"] is False
        # it was far behind, so it caught up by commit ranges (and the blocks they order)
        assert s["synced_blocks_by_commits"] > 0

        # clean shutdown on SIGTERM, and the store checks out afterwards
        codes = [n.stop() for n in nodes]
        assert codes == [0, 0, 0, 0], f"exit codes {codes}"
        assert boot.stop() == 0, f"bootstrap exit code {boot.proc.returncode}:\n{boot.log_tail()}"
        assert db_check(plans[0].home)["ok"] is True
    finally:
        stop_all([*nodes, *([full] if full else [])])
        boot.stop()
