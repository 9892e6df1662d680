"""`tensornet demo`: what `make run` runs until a local network exists.

It says plainly what it runs: two throwaway wallets in a temporary home, a handful of signed
transactions taken through the real wire path (encode, decode, verify), and forged or broken
ones rejected with their typed errors. It checks its own verdicts and exits 1 if any is wrong,
so it doubles as a smoke test of the keys and wire layer.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from node.cli.app import JsonOption, emit, stdout_console
from node.client.wallet import Wallet
from node.errors import CliError
from protocol import codec, crypto
from protocol.crypto import Keypair
from protocol.errors import (
    BadSignatureError,
    OversizeError,
    ProtocolError,
    TruncatedError,
    UnknownFieldError,
    WrongChainError,
)
from protocol.messages import (
    MAX_TX_SIZE,
    AddStake,
    CreateSubnet,
    Register,
    ServeAxon,
    SetWeights,
    SignedTransaction,
    Transaction,
    Transfer,
)

HEADLINE = "tensornet demo: the local network is not built yet; this shows the wire layer that exists"
CHAIN_ID = "tensornet-demo"
OTHER_CHAIN = "tensornet-other"
PASSWORD = "demo password"  # throwaway wallets in a temporary directory
TAO = 10**9  # base units per token


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


@dataclass
class Case:
    """One message through the wire path, and the outcome it must have."""

    name: str
    call: str
    signer: str
    raw: bytes
    expect: type[ProtocolError] | None  # None: must be accepted
    verdict: str = ""
    ok: bool = False


def _check(raw: bytes) -> None:
    """What a node does with a transaction from a peer: decode strictly, then verify for its chain."""
    SignedTransaction.from_bytes(raw).verify(CHAIN_ID)


def _run_case(case: Case) -> None:
    try:
        _check(case.raw)
    except ProtocolError as exc:
        case.verdict = f"rejected: {type(exc).__name__}: {exc}"
        case.ok = case.expect is not None and isinstance(exc, case.expect)
    else:
        case.verdict = "accepted"
        case.ok = case.expect is None


def _signed(kp: Keypair, nonce: int, call: Any, chain_id: str = CHAIN_ID) -> SignedTransaction:
    return SignedTransaction.create(Transaction(chain_id, kp.public, nonce, call, 0), kp)


def _cases(alice: Keypair, alice_hot: Keypair, bob: Keypair, bob_hot: Keypair) -> list[Case]:
    honest = [
        ("transfer", alice, _signed(alice, 0, Transfer(bob.public, 5 * TAO))),
        ("add stake", alice, _signed(alice, 1, AddStake(alice_hot.public, 2 * TAO))),
        ("create subnet", alice, _signed(alice, 2, CreateSubnet("text-prompting", 100 * TAO))),
        ("register", bob, _signed(bob, 0, Register(1, bob_hot.public, 10 * TAO))),
        ("serve axon", bob_hot, _signed(bob_hot, 0, ServeAxon(1, "12D3KooWdemo", ("/ip4/127.0.0.1/tcp/30333",)))),
        ("set weights", alice_hot, _signed(alice_hot, 0, SetWeights(1, (0, 1), (40000, 25535), 1))),
    ]
    names = {alice.public: "alice", alice_hot.public: "alice/hot", bob.public: "bob", bob_hot.public: "bob/hot"}
    cases = [Case(label, tx.body.call.KIND, names[kp.public], tx.to_bytes(), None) for label, kp, tx in honest]

    transfer = honest[0][2]
    more = dataclasses.replace(transfer.body, call=Transfer(bob.public, 500 * TAO))
    forged = dataclasses.replace(transfer.body, signer=bob.public)
    obj = codec.decode(transfer.to_bytes())
    obj["body"]["memo"] = "extra"
    attacks: list[tuple[str, str, bytes, type[ProtocolError]]] = [
        ("tampered amount", "alice", SignedTransaction(more, transfer.signature).to_bytes(), BadSignatureError),
        ("signer swapped", "bob (forged)", SignedTransaction(forged, transfer.signature).to_bytes(), BadSignatureError),
        ("wrong chain", "alice", _signed(alice, 3, Transfer(bob.public, TAO), OTHER_CHAIN).to_bytes(), WrongChainError),
        ("truncated", "alice", transfer.to_bytes()[:-7], TruncatedError),
        ("unknown field", "alice", codec.encode(obj), UnknownFieldError),
        ("oversize", "-", bytes(MAX_TX_SIZE + 1), OversizeError),
    ]
    cases += [Case(label, "transfer", signer, raw, expect) for label, signer, raw, expect in attacks]
    return cases


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def _render(report: dict[str, Any]) -> None:
    console = stdout_console()
    wallets = Table(title="throwaway wallets (argon2id-encrypted coldkeys, 0600 hotkeys)")
    for column in ("wallet", "coldkey", "hotkey", "create s", "unlock s"):
        wallets.add_column(column)
    for w in report["wallets"]:
        wallets.add_row(w["name"], w["coldkey"], w["hotkey"], f"{w['create_s']:.3f}", f"{w['unlock_s']:.3f}")
    console.print(wallets)
    table = Table(title=f"signed transactions through decode + verify on chain {CHAIN_ID!r}")
    for column in ("case", "call", "signer", "bytes", "digest", "verdict"):
        table.add_column(column, overflow="fold")
    for c in report["cases"]:
        colour = "green" if c["verdict"] == "accepted" else "yellow"
        mark = "" if c["as_expected"] else " [bold red](UNEXPECTED)[/]"
        verdict = f"[{colour}]{escape(c['verdict'])}[/]{mark}"
        table.add_row(c["case"], c["call"], c["signer"], str(c["bytes"]), c["digest"][:16], verdict)
    console.print(table)
    good = sum(c["as_expected"] for c in report["cases"])
    console.print(f"{good}/{len(report['cases'])} verdicts as expected in {report['seconds']:.2f} s")


def demo(json_out: JsonOption = False) -> None:
    """Show the wire layer that exists: wallets, signed transactions, and typed rejections."""
    started = time.perf_counter()
    if not json_out:
        stdout_console().print(f"[bold]{HEADLINE}[/]")
    with tempfile.TemporaryDirectory(prefix="tensornet-demo-") as home:
        keys: dict[str, tuple[Keypair, Keypair]] = {}
        wallet_rows = []
        for name in ("alice", "bob"):
            wallet, create_s = _timed(lambda n=name: Wallet.create(home, n, PASSWORD))
            cold, unlock_s = _timed(lambda w=wallet: w.coldkey(PASSWORD))
            hot = wallet.hotkey()
            keys[name] = (cold, hot)
            row = {"name": name, "coldkey": cold.address, "hotkey": hot.address}
            wallet_rows.append({**row, "create_s": create_s, "unlock_s": unlock_s})
    cases = _cases(*keys["alice"], *keys["bob"])
    for case in cases:
        _run_case(case)
    report = {
        "headline": HEADLINE,
        "chain_id": CHAIN_ID,
        "wallets": wallet_rows,
        "cases": [
            {
                "case": c.name,
                "call": c.call,
                "signer": c.signer,
                "bytes": len(c.raw),
                "digest": crypto.digest(c.raw).hex(),
                "expected": "accepted" if c.expect is None else c.expect.__name__,
                "verdict": c.verdict,
                "as_expected": c.ok,
            }
            for c in cases
        ],
        "seconds": time.perf_counter() - started,
        "ok": all(c.ok for c in cases),
    }
    emit(report, json_out, render=_render)
    if not report["ok"]:
        wrong = ", ".join(c.name for c in cases if not c.ok)
        raise CliError(f"demo verdicts not as expected for: {wrong}")
