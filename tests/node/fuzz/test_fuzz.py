"""`tensornet fuzz`: every target fuzzed briefly without a crash, and the harness catches what it must.

The per-target runs are the CI fuzz smoke test: a few hundred structure-aware mutants each (re-signed
half the time, so they reach the deep checks); a crash fails the test with the finding's signature and
traceback. The harness tests use tiny fake targets to show that a crash, a hang and a memory blow-up
each become a saved finding that `fuzz repro` replays.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
from typer.testing import CliRunner

from node.cli.app import build_app
from node.fuzz import engines, targets
from node.fuzz.engines import Budget, Harness, run_random
from node.fuzz.mutate import Mutator, encode_loose, walk
from node.fuzz.targets import Target
from node.sync import Fetcher
from p2pnet.reqresp import Refused
from protocol import codec
from protocol.errors import ProtocolError
from protocol.messages import CALLS, BlocksResponse, FetchBlocks, SignedBlock, SignedTransaction

RUNS = 1000
RUNS_SLOW = {"state": 200, "blocks_response": 400, "fetch_blocks": 500}  # ~5 ms and ~1 ms an input
REQUIRED = {"block", "dag", "state", "status", "fetch_blocks", "blocks_response", "fetch_commits", "commits_response",
            "query", "response", "frame", "tx.commit_weights", "tx.reveal_weights", "tx.transfer"}


@pytest.fixture(scope="module")
def app():
    return build_app()


def cli(app, *args: str):
    return CliRunner().invoke(app, ["fuzz", *args], catch_exceptions=False)


@pytest.mark.parametrize("name", list(targets.registry()))
def test_every_target_survives_a_short_run(name: str, tmp_path: Path) -> None:
    t = targets.get(name)
    for resign in (False, True):
        with Harness(t, findings_dir=tmp_path, engine="random", budget_s=5.0) as h:
            st = run_random(h, t.seeds(), Budget(runs=RUNS_SLOW.get(name, RUNS)), seed=11, resign=resign)
        assert st.runs == RUNS_SLOW.get(name, RUNS)
        assert st.crashes == 0, json.dumps(st.summary()["findings"], indent=1) + "".join(
            json.loads(p.read_text())["traceback"] for p in tmp_path.glob("*.json")
        )
        assert len(st.labels) > 3, st.labels  # the mutants reach more than one outcome


def test_seeds_are_accepted() -> None:
    """Each target's seeds pass all its checks: mutants start from deep inside, not at the first gate."""
    for t in targets.registry().values():
        for data in t.seeds():
            t.check(data)


def test_list_names_every_kind_of_target(app) -> None:
    result = cli(app, "list", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    names = {r["name"] for r in rows}
    assert REQUIRED <= names, REQUIRED - names
    assert {f"tx.{c.KIND}" for c in CALLS} <= names
    assert all(r["description"] for r in rows)


def test_run_json_last_line(app, tmp_path: Path) -> None:
    result = cli(app, "run", "tx.set_weights", "--runs", "200", "--sign-with-test-key", "--corpus", str(tmp_path),
                 "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["target"] == "tx.set_weights" and summary["runs"] == 200 and summary["crashes"] == 0
    assert summary["findings"] == [] and summary["inputs_per_s"] > 0
    assert any((tmp_path / "tx.set_weights").iterdir())  # new behaviours were kept as seeds


def test_hypothesis_engine(app) -> None:
    result = cli(app, "run", "tx.reveal_weights", "--runs", "60", "--engine", "hypothesis", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["runs"] == 60


def test_missing_atheris_says_how_to_install(app, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "atheris_available", lambda: False)
    result = CliRunner().invoke(app, ["fuzz", "run", "codec", "--runs", "5", "--engine", "atheris"])
    assert result.exit_code == 2
    assert "pip install" in result.output and "atheris" in result.output


def test_unknown_target_is_a_typed_error(app) -> None:
    result = CliRunner().invoke(app, ["fuzz", "run", "nosuch", "--runs", "1"])
    assert result.exit_code == 1 and "unknown fuzz target" in result.output


def test_same_seed_same_mutants() -> None:
    t = targets.get("dag")
    seeds = t.seeds()
    a = [Mutator(SignedBlock, random.Random(5), resign=True).mutate(seeds[i % 4], seeds) for i in range(50)]
    b = [Mutator(SignedBlock, random.Random(5), resign=True).mutate(seeds[i % 4], seeds) for i in range(50)]
    assert a == b


def test_resigned_mutants_pass_the_signature() -> None:
    """--sign-with-test-key: most mutants whose body still decodes carry a valid signature (byte-level
    mutations after re-signing may still break one)."""
    rng = random.Random(3)
    t = targets.get("tx.transfer")
    seed = t.seeds()[0]
    checked = passed = 0
    for _ in range(200):
        data = Mutator(SignedTransaction, rng, resign=True).mutate(seed, [seed])
        try:
            stx = SignedTransaction.from_bytes(data)
        except ProtocolError:
            continue
        if stx.body.signer != targets.TEST_KEY.public or stx.body.chain_id != targets.CHAIN_ID:
            continue
        checked += 1
        try:
            stx.verify(targets.CHAIN_ID)
            passed += 1
        except ProtocolError:
            pass
    assert checked >= 40 and passed >= checked * 2 // 3, (passed, checked)


def test_schema_walk_and_loose_encoding() -> None:
    data = targets.get("block").seeds()[5]
    obj = codec.decode(data)
    kinds = {path: kind for path, _, kind in walk(obj, SignedBlock)}
    assert ("body", "round") in kinds and kinds[("body", "round")].bits == 64
    rng = random.Random(1)
    non_canonical = 0
    for _ in range(100):
        enc = encode_loose(obj, rng, p=0.3)
        try:
            assert codec.decode(enc) == obj  # whatever decodes must be the same value
        except ProtocolError:
            non_canonical += 1
    assert non_canonical > 50


def test_dag_clone_leaves_the_template_alone() -> None:
    fx = targets.dag_fixture()
    before = len(fx.dag)
    assert targets.check_dag(fx.blocks[-1]).startswith("accepted")  # a round-4 block: inserted into a copy
    assert len(fx.dag) == before


# --- the harness catches crashes, hangs and memory blow-ups ---------------------------------------


def _boom(data: bytes) -> str:
    if data.startswith(b"\x01"):
        raise KeyError("boom")
    raise ProtocolError("typed")


def _spin(data: bytes) -> str:
    while True:
        time.sleep(0.001)


def _hog(data: bytes) -> str:
    block = bytearray(96 << 20)
    block[:: 4096] = b"x" * len(block[:: 4096])  # touch every page: resident, not just reserved
    return "accepted"


def _fake(name: str, check) -> Target:
    return Target(name, "test", check, lambda: [b"\x00", b"\x01\x02"])


def test_crash_becomes_a_finding_and_repro_replays_it(app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = _fake("boom", _boom)
    monkeypatch.setitem(targets.registry(), "boom", t)
    with Harness(t, findings_dir=tmp_path) as h:
        st = run_random(h, t.seeds(), Budget(runs=100), seed=1)
    assert st.crashes > 0 and st.rejected > 0
    [finding] = st.summary()["findings"]
    assert finding["error"] == "KeyError" and finding["signature"].startswith("crash:KeyError@")
    path = Path(finding["files"][0])
    saved = json.loads(path.read_text())
    assert saved["target"] == "boom" and bytes.fromhex(saved["data"]) == path.with_suffix(".bin").read_bytes()
    assert "KeyError" in saved["traceback"]
    again = CliRunner().invoke(app, ["fuzz", "repro", str(path), "--json"])
    assert again.exit_code == 1
    report = json.loads(again.stdout)
    assert report["reproduced"] and report["outcome"] == "crash" and report["signature"] == saved["signature"]
    raw = CliRunner().invoke(app, ["fuzz", "repro", str(path.with_suffix(".bin"))])
    assert raw.exit_code == 1 and "KeyError" in raw.stdout
    monkeypatch.setitem(targets.registry(), "boom", _fake("boom", lambda d: "accepted"))  # "fixed"
    fixed = CliRunner().invoke(app, ["fuzz", "repro", str(path), "--json"])
    assert fixed.exit_code == 0 and json.loads(fixed.stdout)["outcome"] == "accepted"


def test_hang_is_cut_off_at_the_budget(tmp_path: Path) -> None:
    t = _fake("spin", _spin)
    t0 = time.monotonic()
    with Harness(t, budget_s=0.2, findings_dir=tmp_path) as h:
        out = h.run_one(b"\x00")
    assert time.monotonic() - t0 < 2
    assert out.status == "hang" and out.finding is not None and "_spin" in out.finding.traceback
    assert list(tmp_path.glob("*.json"))


def test_memory_blow_up_is_a_finding() -> None:
    with Harness(_fake("hog", _hog), mem_cap_mb=32) as h:
        out = h.run_one(b"\x00")
    assert out.status == "memory" and out.finding is not None


def test_repro_shows_a_diagnostic_of_non_canonical_input(app, tmp_path: Path) -> None:
    raw = tmp_path / "in.bin"
    raw.write_bytes(bytes.fromhex("a2616101616202") + b"")  # canonical {"a": 1, "b": 2}
    ok = CliRunner().invoke(app, ["fuzz", "repro", str(raw), "--target", "codec", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["decoded"] == "{'a': 1, 'b': 2}"
    raw.write_bytes(bytes.fromhex("a2616202616101"))  # keys out of order
    bad = CliRunner().invoke(app, ["fuzz", "repro", str(raw), "--target", "codec", "--json"])
    report = json.loads(bad.stdout)
    assert bad.exit_code == 0 and report["outcome"] == "rejected" and "not canonical" in report["decoded"]


# --- fixes in node/service.py and node/sync.py that fuzzing led to --------------------------------


def test_malformed_requests_are_refused_not_handler_errors() -> None:
    """A malformed FetchBlocks/FetchCommits is REFUSED (the peer's fault), not a handler failure that the
    server logs as a warning with attacker-chosen text (found by `fuzz live`)."""
    for handler in (targets._STUB_SERVICE.serve_blocks, targets._STUB_SERVICE.serve_commits):
        with pytest.raises(Refused, match="malformed"):
            targets._drive(handler(None, b"\xa1\x61x\x00"))


async def test_synced_blocks_are_counted() -> None:
    """Fetcher.request_blocks returns how many blocks the response added (the count line was unreachable, so a
    catching-up node never woke its proposer for synced blocks)."""
    blocks = targets.dag_fixture().blocks[:3]

    async def request(peer, pid, data):
        return BlocksResponse(tuple(blocks)).to_bytes()

    arrived = trio.Event()
    stack = SimpleNamespace(reqresp=SimpleNamespace(request=request))
    chain = SimpleNamespace(receive_block=lambda data, sender=None: (["v"], ()))
    fetcher = Fetcher(chain, None, stack=lambda: stack, wake=arrived.set, halt=None)
    assert await fetcher.request_blocks(None, FetchBlocks(0, (), 1, 2)) == 3
    assert arrived.is_set()
