"""Paying clients' input in each subnet's natural form: the `parse_cli_input` hooks and `tensornet client query`.

The hooks run on real tasks and a real compute miner; the CLI test replaces only the network part of
`SubnetClient` (chain look-ups, libp2p, escrow), so what it checks is the command line -> hook -> payload
-> answer shown path.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from node.cli.app import build_app
from protocol.errors import ProtocolError
from subnets import registry
from subnets.client import PaidAnswer
from subnets.compute import CLI_INNER, MAX_DIM, ComputeMiner, ComputeQuery, ComputeTask, matrices
from subnets.task import CliInput, CliInputError, Task
from subnets.text import MAX_CONTEXT, TextAnswer, TextQuery, TextTask

CPU = torch.device("cpu")
PW = "correct horse battery"


def one_line_error(task: Task, given: CliInput, *needles: str) -> str:
    with pytest.raises(CliInputError) as info:
        task.parse_cli_input(given)
    message = str(info.value)
    assert "\n" not in message and message.startswith(task.name + ": "), message
    for needle in needles:
        assert needle in message, message
    return message


# --- compute ----------------------------------------------------------------------------------


def test_compute_rows_cols_seed_make_the_seeded_product_query() -> None:
    task = ComputeTask()
    payload = task.parse_cli_input(CliInput(rows=3, cols=5, seed=7))
    q = task.decode_query(payload)
    assert (q.m, q.k, q.n, q.seed) == (3, CLI_INNER, 5, (7).to_bytes(32, "big"))
    assert task.parse_cli_input(CliInput(rows=3, cols=5, seed=7)) == payload  # a given seed is reproducible
    q2 = task.decode_query(task.parse_cli_input(CliInput(rows=2, cols=2, inner=9)))
    assert (q2.m, q2.k, q2.n) == (2, 9, 2)
    assert q2.seed != task.decode_query(task.parse_cli_input(CliInput(rows=2, cols=2, inner=9))).seed  # random


def test_compute_npy_file_gives_the_products_shape(tmp_path: Path) -> None:
    task = ComputeTask()
    np.save(tmp_path / "like.npy", np.zeros((6, 11), dtype=np.float32))
    q = task.decode_query(task.parse_cli_input(CliInput(file=tmp_path / "like.npy", inner=4, seed=1)))
    assert (q.m, q.k, q.n) == (6, 4, 11)


@pytest.mark.parametrize(
    ("given", "needles"),
    [
        (CliInput(rows=0, cols=3), ("--rows 0", f"[1, {MAX_DIM}]")),
        (CliInput(rows=3, cols=MAX_DIM + 1), ("--cols",)),
        (CliInput(rows=3, cols=3, inner=0), ("--inner 0",)),
        (CliInput(rows=4096, cols=4096), ("--rows x --cols",)),
        (CliInput(rows=4000, cols=60, inner=65536), ("--inner", "exceeds")),
        (CliInput(rows=3), ("give --rows R --cols C",)),
        (CliInput(), ("give --rows R --cols C",)),
        (CliInput(rows=1, cols=1, seed=-1), ("--seed -1",)),
        (CliInput(rows=1, cols=1, seed=1 << 256), ("--seed",)),
        (CliInput(rows=1, cols=1, text="x"), ("--text not used",)),
    ],
)
def test_compute_bad_input_is_one_clear_line(given: CliInput, needles: tuple[str, ...]) -> None:
    one_line_error(ComputeTask(), given, *needles)


def test_compute_bad_files_are_one_clear_line(tmp_path: Path) -> None:
    task = ComputeTask()
    one_line_error(task, CliInput(file=tmp_path / "missing.npy"), "cannot read", "No such file")
    (tmp_path / "text.npy").write_text("1 2 3\n")
    one_line_error(task, CliInput(file=tmp_path / "text.npy"), "is not a .npy file")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    one_line_error(task, CliInput(file=tmp_path / "objects.npy"), "not a plain numeric .npy array")
    np.save(tmp_path / "vector.npy", np.zeros(4))
    one_line_error(task, CliInput(file=tmp_path / "vector.npy"), "1-D array")
    np.save(tmp_path / "m.npy", np.zeros((2, 2)))
    one_line_error(task, CliInput(file=tmp_path / "m.npy", rows=2), "not both")


def test_compute_answer_is_verified_and_shown() -> None:
    task = ComputeTask()
    query = task.parse_cli_input(CliInput(rows=2, cols=3, inner=5, seed=42))
    answer = task.handle(ComputeMiner(CPU), query)
    a, b = matrices(task.decode_query(query))
    described = task.describe_answer(answer, query)
    assert described["verified"] is True and described["product"] == (a.astype(np.int64) @ b).tolist()
    text = task.format_answer(answer, query)
    assert "2 x 3" in text and "verified" in text and str(int((a.astype(np.int64) @ b)[0, 0])) in text
    wrong = task.Answer(bytes(len(task.decode_answer(answer).product))).to_bytes()  # all zeros
    assert task.describe_answer(wrong, query)["verified"] is False
    assert "WRONG" in task.format_answer(wrong, query)
    short = task.Answer(b"\0" * 4).to_bytes()
    assert task.describe_answer(short, query)["verified"] is False


# --- text -------------------------------------------------------------------------------------


def test_text_from_text_or_utf8_file(tmp_path: Path) -> None:
    task = TextTask(corpus=None)
    assert task.decode_query(task.parse_cli_input(CliInput(text="héllo"))) == TextQuery(("héllo".encode(),))
    long = "x" * 1000 + "é" * 10
    (tmp_path / "in.txt").write_text(long, encoding="utf-8")
    (ctx,) = task.decode_query(task.parse_cli_input(CliInput(file=tmp_path / "in.txt"))).contexts
    assert ctx == long.encode()[-MAX_CONTEXT:]


def test_text_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    task = TextTask(corpus=None)
    one_line_error(task, CliInput(), "give one of --text")
    one_line_error(task, CliInput(text="a", file=tmp_path / "x"), "give one of --text")
    one_line_error(task, CliInput(text=""), "--text is empty")
    one_line_error(task, CliInput(text="\udcff"), "--text is not UTF-8")
    one_line_error(task, CliInput(text="a", rows=3), "--rows not used")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    one_line_error(task, CliInput(file=tmp_path / "latin1.txt"), "not UTF-8", "offset 3")
    (tmp_path / "empty.txt").write_bytes(b"")
    one_line_error(task, CliInput(file=tmp_path / "empty.txt"), "is empty")
    one_line_error(task, CliInput(file=tmp_path / "missing.txt"), "cannot read --input")


def test_text_answer_is_shown_with_its_context() -> None:
    task = TextTask(corpus=None)
    query = task.parse_cli_input(CliInput(text="def main"))
    masses = [1] * 256
    masses[ord("(")] = 60000
    answer = TextAnswer((b"".join(m.to_bytes(2, "big") for m in masses),)).to_bytes()
    assert task.describe_answer(answer, query)["next_byte"][0][0]["char"] == "("
    assert task.format_answer(answer, query).startswith("after 'def main': '(' ")


def test_a_task_without_a_natural_form_points_to_cbor() -> None:
    class Bare(ComputeTask):
        name = "bare"
        parse_cli_input = Task.parse_cli_input

    one_line_error(Bare(), CliInput(rows=1), "--input-cbor")


# --- the command ------------------------------------------------------------------------------


class NetlessClient:
    """`SubnetClient` without the network: the subnet's task from a fixed map, a real compute miner."""

    tasks = {1: "compute", 2: "text"}
    paid: list[tuple[bytes, int]] = []

    def __init__(self, key: Any, netuid: int, node: str | None = None, **_kwargs: Any) -> None:
        self.netuid = netuid
        self.task: Any = None
        self.api = SimpleNamespace(sent=[])  # the node client's record of chain transactions signed: none here

    def setup(self) -> None:
        self.task = registry.create(self.tasks[self.netuid])

    async def query_once(self, payload: bytes, max_price: int, escrow_id: int | None = None) -> PaidAnswer:
        self.paid.append((payload, max_price))
        if self.netuid == 1:
            answer = self.task.handle(ComputeMiner(CPU), payload)
        else:
            answer = TextAnswer((bytes(range(256)) * 2,) * len(self.task.decode_query(payload).contexts)).to_bytes()
        return PaidAnswer(0, bytes(32), 1000, 5, 1, bytes(32), bytes(32), answer, 12)

    def close(self) -> None:
        pass


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import subnets.client

    monkeypatch.setattr(subnets.client, "SubnetClient", NetlessClient)
    monkeypatch.setenv("TENSORNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TENSORNET_KDF", "fast")
    monkeypatch.setenv("NO_COLOR", "1")
    (tmp_path / "pw").write_text(PW + "\n")
    (tmp_path / "pw").chmod(0o600)  # else a warning about its mode is a second stderr line
    app = build_app()
    auth = ["--wallet", "alice", "--password-file", str(tmp_path / "pw")]
    created = CliRunner().invoke(app, ["wallet", "create", "--name", "alice", "--password-file", str(tmp_path / "pw")])
    assert created.exit_code == 0, created.output
    NetlessClient.paid.clear()

    def run(*args: str):
        return CliRunner().invoke(app, ["client", "query", *args, *auth])

    return run


def test_client_query_compute_by_shape(cli) -> None:
    result = cli("--subnet", "1", "--rows", "2", "--cols", "3", "--inner", "4", "--seed", "9", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    ((payload, max_price),) = NetlessClient.paid
    assert ComputeQuery.from_bytes(payload) == ComputeQuery((9).to_bytes(32, "big"), 2, 4, 3)
    assert max_price == 10_000_000  # the default --max-price 0.01
    assert out["answer"]["verified"] is True and len(out["answer"]["product"]) == 2
    shown = cli("--subnet", "1", "--rows", "2", "--cols", "3", "--seed", "9")
    assert shown.exit_code == 0, shown.output
    assert "verified by Freivalds' check" in shown.stdout and "answered in 12 ms for 0.000001 token" in shown.stdout


def test_client_query_text_and_cbor(cli, tmp_path: Path) -> None:
    result = cli("--subnet", "2", "--text", "import o", "--json")
    assert result.exit_code == 0, result.output
    assert TextQuery.from_bytes(NetlessClient.paid[-1][0]) == TextQuery((b"import o",))
    assert len(json.loads(result.stdout)["answer"]["next_byte"]) == 1
    raw = TextQuery((b"abc", b"def")).to_bytes()
    (tmp_path / "q.cbor").write_bytes(raw)
    assert cli("--subnet", "2", "--input-cbor", str(tmp_path / "q.cbor")).exit_code == 0
    assert NetlessClient.paid[-1][0] == raw


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--subnet", "1", "--text", "hello"], "compute: --text not used by this subnet"),
        (["--subnet", "1", "--rows", "0", "--cols", "2"], "compute: --rows 0 must be in"),
        (["--subnet", "2", "--input", "/nonexistent/in.txt"], "cannot read --input /nonexistent/in.txt"),
        (["--subnet", "2"], "no query input"),
        (["--subnet", "2", "--text", "a", "--input-cbor", "x"], "--input-cbor replaces --text"),
        (["--subnet", "1", "--input-cbor", "/nonexistent/q"], "cannot read --input-cbor"),
    ],
)
def test_client_query_bad_input_is_one_line_and_pays_nothing(cli, args: list[str], needle: str) -> None:
    result = cli(*args)
    assert result.exit_code == 1, result.output
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert NetlessClient.paid == []


def test_client_query_refuses_cbor_of_another_task(cli, tmp_path: Path) -> None:
    (tmp_path / "q.cbor").write_bytes(TextQuery((b"abc",)).to_bytes())
    result = cli("--subnet", "1", "--input-cbor", str(tmp_path / "q.cbor"))
    assert result.exit_code == 1 and "--input-cbor is not a compute query" in result.stderr, result.stderr
    assert NetlessClient.paid == []


def test_hooks_return_valid_queries_for_every_registered_task() -> None:
    """Whatever a shipped hook returns decodes as its task's query (what the miner will check)."""
    inputs = {"compute": CliInput(rows=1, cols=1), "text": CliInput(text="a")}
    for name in registry.names():
        task = registry.create(name)
        try:
            task.decode_query(task.parse_cli_input(inputs[name]))
        except ProtocolError as exc:  # pragma: no cover - the assertion message
            raise AssertionError(f"{name}: {exc}") from exc
