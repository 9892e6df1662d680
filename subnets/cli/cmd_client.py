"""`tensornet client ...`: pay a subnet's miners for queries (spec/economics.md §3).

The wallet's coldkey owns the escrow and signs the queries and vouchers, so these commands unlock it.
Amounts are in tokens (e.g. 0.01); `--json` prints one JSON document. `balance`, `stake` and `neuron` (with
`--verify`: checked against a root the committee signed) are `tensornet chain`'s commands, listed here too because
a client checks its funds where it pays.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from node.cli import cmd_chain, feeflags
from node.cli.app import (
    HomeOption,
    JsonOption,
    NodeOption,
    PasswordFileOption,
    WalletOption,
    emit,
    stdout_console,
    unlock_coldkey,
)
from node.cli.feeflags import MaxFeeOption, TipOption
from node.cli.submit import fetch
from node.client.amounts import parse_amount
from node.errors import CliError
from protocol import crypto
from protocol.crypto import parse_address
from protocol.economics.emission import decimal_tokens
from protocol.errors import ProtocolError

if TYPE_CHECKING:
    from node.client.api_client import FeePolicy
    from subnets.client import SubnetClient

client_app = typer.Typer(help="Pay for queries to a subnet's miners.", no_args_is_help=True)
for _name, _command in (("balance", cmd_chain.balance), ("stake", cmd_chain.stake), ("neuron", cmd_chain.neuron)):
    client_app.command(_name)(_command)  # the same command objects as `tensornet chain <name>`: one implementation
ExpiresOption = Annotated[
    int, typer.Option("--expires-in", help="Heights a new escrow stays claimable (then close it to get the rest).")
]


def register(app: typer.Typer) -> None:
    app.add_typer(client_app, name="client")


@contextmanager
def _client(home: Path | None, wallet: str, password_file: Path | None, node: str | None, netuid: int,
            fees: FeePolicy, *, setup: bool = True, **kwargs: Any) -> Iterator[SubnetClient]:
    """The coldkey's SubnetClient under the fee flags, set up for `netuid` unless `setup` is false; closed after."""
    from subnets.client import SubnetClient  # start-up time: trio, httpx

    client = SubnetClient(unlock_coldkey(home, wallet, password_file), netuid, node, fees=fees, **kwargs)
    try:
        if setup:
            client.setup()
        yield client
    finally:
        client.close()


def _escrow_json(info: dict[str, Any]) -> dict[str, Any]:
    return {**info, "remaining_tokens": decimal_tokens(int(info["remaining"]))}


@client_app.command("query")
def query(
    subnet: Annotated[int, typer.Option("--subnet", help="Netuid of the subnet to query.")],
    input_file: Annotated[
        Path | None, typer.Option("--input", help="Input file in the task's form (compute: .npy; text: UTF-8).")
    ] = None,
    text: Annotated[str | None, typer.Option("--text", help="Text subnet: the text to continue.")] = None,
    rows: Annotated[int | None, typer.Option("--rows", help="Compute subnet: rows of the product.")] = None,
    cols: Annotated[int | None, typer.Option("--cols", help="Compute subnet: columns of the product.")] = None,
    inner: Annotated[int | None, typer.Option("--inner", help="Compute subnet: inner dimension (default 256).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Compute subnet: matrix seed (default random).")] = None,
    input_cbor: Annotated[
        Path | None, typer.Option("--input-cbor", help="The task's query as canonical CBOR (any subnet).")
    ] = None,
    max_price: Annotated[str, typer.Option("--max-price", help="Most to pay for this query (tokens).")] = "0.01",
    escrow: Annotated[int | None, typer.Option("--escrow", help="Escrow id to draw on (default: any, or new).")] = None,
    deposit: Annotated[
        str | None, typer.Option("--deposit", help="Tokens to lock if a new escrow is needed (default 10 queries).")
    ] = None,
    expires_in: ExpiresOption = 2000,
    timeout_s: Annotated[float | None, typer.Option("--timeout-s", help="Per-miner deadline.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the raw answer payload here.")] = None,
    wallet: WalletOption = "default",
    home: HomeOption = None,
    password_file: PasswordFileOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pay one miner to answer a query: the highest-incentive miner at or below --max-price answers.

    Give the input in the subnet's own form (compute: --rows/--cols [--inner --seed] or --input FILE.npy;
    text: --text or --input FILE), or any subnet's query as CBOR with --input-cbor.
    """
    import trio  # start-up time: trio, torch

    from subnets.task import CliInput

    given = CliInput(file=input_file, text=text, rows=rows, cols=cols, inner=inner, seed=seed)
    natural = [CliInput.flag(name) for name in given.given()]
    if input_cbor is not None and natural:
        raise CliError(f"--input-cbor replaces {', '.join(natural)}; give one or the other")
    if input_cbor is None and not natural:
        raise CliError("no query input: give the subnet's input options (see --help) or --input-cbor FILE")
    cbor = _read(input_cbor, "--input-cbor") if input_cbor is not None else None
    with _client(home, wallet, password_file, node, subnet, timeout_s=timeout_s,
                 deposit=None if deposit is None else parse_amount(deposit), expires_in=expires_in,
                 fees=feeflags.policy(tip, max_fee, as_json)) as client:
        payload = client.task.parse_cli_input(given) if cbor is None else _checked_cbor(client.task, cbor)
        answer = trio.run(client.query_once, payload, parse_amount(max_price), escrow)
    if out is not None:
        out.write_bytes(answer.payload)
    result = {**answer.to_json(), **feeflags.report(client.api.sent),  # chain fees of an escrow it opened
              "answer": client.task.describe_answer(answer.payload, payload)}
    emit(result, as_json, render=lambda r: _render_answer(r, client.task.format_answer(answer.payload, payload)))


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None


def _checked_cbor(task: Any, data: bytes) -> bytes:
    """Check a raw query before paying for it: a bad file fails here, not at the miner."""
    try:
        task.decode_query(data)
    except ProtocolError as exc:
        raise CliError(f"--input-cbor is not a {task.name} query: {exc}") from None
    return data


def _render_answer(result: dict[str, Any], answer_text: str) -> None:
    console = stdout_console()
    console.print(f"uid {result['uid']} ({result['miner']}) answered in {result['latency_ms']} ms for "
                  f"{decimal_tokens(int(result['price']))} token, from escrow {result['escrow_id']}", markup=False)
    console.print(answer_text, markup=False, highlight=False)


@client_app.command("open-escrow")
def open_escrow(
    subnet: Annotated[int, typer.Option("--subnet")],
    amount: Annotated[str, typer.Option("--amount", help="Tokens to lock.")],
    expires_in: ExpiresOption = 2000,
    wallet: WalletOption = "default",
    home: HomeOption = None,
    password_file: PasswordFileOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Lock tokens for paid queries to a subnet; waits until the escrow is on chain."""
    with _client(home, wallet, password_file, node, subnet, feeflags.policy(tip, max_fee, as_json)) as client:
        info = client.open_escrow(parse_amount(amount), expires_in)
    emit({**_escrow_json(info), **feeflags.report(client.api.sent)}, as_json, title="escrow opened")


@client_app.command("close-escrow")
def close_escrow(
    escrow: Annotated[int, typer.Option("--escrow", help="Escrow id.")],
    wallet: WalletOption = "default",
    home: HomeOption = None,
    password_file: PasswordFileOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Take back what an expired escrow still holds."""
    with _client(home, wallet, password_file, node, 0, feeflags.policy(tip, max_fee, as_json), setup=False) as client:
        refunded = client.close_escrow(escrow)
    emit({"escrow_id": escrow, "refunded": refunded, "refunded_tokens": decimal_tokens(refunded),
          **feeflags.report(client.api.sent)}, as_json, title="escrow closed")


@client_app.command("escrows")
def escrows(
    address: Annotated[str, typer.Option("--address", help="Client address (tn...).")],
    node: NodeOption = None,
    as_json: JsonOption = False,
) -> None:
    """List a client's open escrows (no password needed)."""
    rows = fetch(node, f"/accounts/{crypto.address(parse_address(address))}/escrows")
    emit([_escrow_json(r) for r in rows], as_json, title="open escrows")
