"""`tensornet gov propose|vote|list|show|params`: on-chain governance through a node's API.

A proposal sets one network parameter (or a default hyperparameter of new subnets, `default.<name>`) and
locks the deposit; votes are yes / no / abstain, weighted by the stake snapshot taken when the proposal was
made: a coldkey votes its own stake, a validator's hotkey (`--validator`, `--hotkey-file`) the stake delegated to
it unless the delegator votes itself. spec/economics.md §2 is normative. Both transactions show the fee first
and take the --tip/--fee flags of every signing command (node/cli/feeflags.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from node.cli.app import HomeOption, JsonOption, NodeOption, PasswordFileOption, WalletOption, emit, unlock_coldkey
from node.cli.feeflags import MaxFeeOption, TipOption
from node.cli.submit import fetch, signing_client, submit, submitted
from node.client.home import resolve_home
from node.client.wallet import read_hotkey
from node.config import VALIDATOR_KEY_FILE
from node.errors import CliError, NodeError
from protocol import crypto
from protocol.economics.emission import decimal_tokens
from protocol.messages import Propose, Vote

gov_app = typer.Typer(help="Propose and vote on network parameter changes.", no_args_is_help=True)
CHOICE_CODES = {"no": 0, "yes": 1, "abstain": 2}
POLL_S = 0.3  # between inclusion checks of `propose --wait`
ValidatorOption = Annotated[bool, typer.Option(
    "--validator", help="Sign with the node's validator hotkey (<home>/validator_key, funded on testnets); a vote "
    "then carries the stake delegated to it.")]
HotkeyFileOption = Annotated[Path | None, typer.Option(
    "--hotkey-file", help="Sign with this hotkey file, not the wallet's coldkey.", show_default=False)]


def register(app: typer.Typer) -> None:
    app.add_typer(gov_app, name="gov")


def _signer(home: Path | None, wallet: str, password_file: Path | None, validator: bool,
           hotkey_file: Path | None) -> Any:
    """The key that signs: a hotkey file, the node home's validator key, or the wallet's coldkey."""
    if validator and hotkey_file is not None:
        raise CliError("--validator and --hotkey-file both name the signing key: give one")
    if validator:
        path = resolve_home(home) / VALIDATOR_KEY_FILE
        if not path.exists():
            raise CliError(f"--validator: no {VALIDATOR_KEY_FILE} in {path.parent} (give a node home with --home)")
        return read_hotkey(path)
    if hotkey_file is not None:
        return read_hotkey(hotkey_file)
    return unlock_coldkey(home, wallet, password_file)


def _included(c: Any, signer: bytes, nonce: int, call: Any, known: int, digest: str, timeout: float) -> dict:
    """The proposal `call` made once the signer's transaction `nonce` is executed (NodeError if refused or late).

    The node keeps no receipts: the nonce shows the transaction executed, and the new proposal is the
    lowest id above `known` (the newest id before signing) with this proposer, parameter, value and memo."""
    deadline = time.monotonic() + timeout
    while int(c.account(signer).get("nonce", 0)) <= nonce:  # the chain's next nonce, not the mempool's
        if time.monotonic() > deadline:
            raise NodeError(f"proposal transaction {digest} not on chain after {timeout:.0f}s; "
                            "check `tensornet gov list` later, or raise --tip")
        time.sleep(POLL_S)
    for p in sorted(c.get("/proposals"), key=lambda r: r["id"]):
        if p["id"] > known and (p["proposer"], p["parameter"], p["value"], p["memo"]) == (
            crypto.address(signer), call.name, call.value, call.memo,
        ):
            return p
    raise NodeError(f"proposal transaction {digest} was executed but made no proposal: the chain refused it "
                    "(its fee was paid); `tensornet gov params` shows the rules, `gov list` the open proposals")


@gov_app.command("propose")
def propose(
    param: Annotated[str, typer.Option("--param", help="Parameter name (see `gov params`), e.g. max_subnets.")],
    value: Annotated[int, typer.Option("--value", help="New value (an integer; amounts in units).")],
    memo: Annotated[str, typer.Option("--memo", help="Why (at most 256 characters).")] = "",
    wallet: WalletOption = "default",
    home: HomeOption = None,
    password_file: PasswordFileOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    validator: ValidatorOption = False,
    hotkey_file: HotkeyFileOption = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it is on chain; print its id.")] = True,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds --wait waits for inclusion.")] = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Propose a parameter change; the deposit is locked until the tally. Prints the proposal id."""
    call, key = Propose(param, value, memo), _signer(home, wallet, password_file, validator, hotkey_file)
    if not wait:
        submit(node, key, call, as_json, tip, max_fee)
        return
    with signing_client(node, tip, max_fee, as_json) as c:
        newest = c.get("/proposals")
        known = newest[0]["id"] if newest else 0
        digest = c.send(key, call)
        p = _included(c, key.public, c.sent[-1].tx.nonce, call, known, digest.hex(), timeout)
    made = {k: p[k] for k in ("id", "created_at", "voting_ends", "executes_at", "status")}
    emit({**submitted(c, key, call, digest), **made}, as_json, title="proposed")


@gov_app.command("vote")
def vote(
    proposal: Annotated[int, typer.Option("--proposal", help="Proposal id.")],
    choice: Annotated[str, typer.Option("--choice", help="yes, no or abstain.")],
    wallet: WalletOption = "default",
    home: HomeOption = None,
    password_file: PasswordFileOption = None,
    validator: ValidatorOption = False,
    hotkey_file: HotkeyFileOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Vote once on an open proposal. A coldkey votes its own stake; a hotkey (--validator, --hotkey-file) votes
    the stake delegated to it, except where a delegator votes itself (spec/economics.md §2.4)."""
    if choice not in CHOICE_CODES:
        raise NodeError(f"--choice must be yes, no or abstain, got {choice!r}")
    key = _signer(home, wallet, password_file, validator, hotkey_file)
    submit(node, key, Vote(proposal, CHOICE_CODES[choice]), as_json, tip, max_fee)


@gov_app.command("list")
def list_(node: NodeOption = None, as_json: JsonOption = False) -> None:
    """Every proposal, newest first, with its tally and status."""
    rows = fetch(node, "/proposals")
    view = [
        {k: r[k] for k in ("id", "parameter", "value", "status", "yes", "no", "abstain", "voting_ends", "executes_at")}
        for r in rows
    ]
    emit(rows if as_json else view, as_json, title="proposals")


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def tally_view(p: dict[str, Any]) -> dict[str, Any]:
    """A proposal (GET /proposals/{id}) with its tally as percentages against the quorum and the threshold."""
    turnout, decided = p["yes"] + p["no"] + p["abstain"], p["yes"] + p["no"]
    return {
        **p,
        "turnout_pct": _pct(turnout, p["snapshot_stake"]),  # of the snapshot stake; abstentions count
        "quorum_pct": p["quorum_bps"] / 100,
        "quorum_reached": p["snapshot_stake"] > 0 and turnout * 10_000 >= p["quorum_bps"] * p["snapshot_stake"],
        "yes_pct": _pct(p["yes"], decided),  # of yes + no
        "threshold_pct": p["threshold_bps"] / 100,  # yes must be above it
        "threshold_reached": p["yes"] * 10_000 > p["threshold_bps"] * decided,
    }


@gov_app.command("show")
def show(proposal: int, node: NodeOption = None, as_json: JsonOption = False) -> None:
    """One proposal: tally, turnout against the quorum and yes against the threshold (percentages), the
    height voting ends and the height it executes if it passes, its votes (while voting) and outcome."""
    p = tally_view(fetch(node, f"/proposals/{proposal}"))
    if as_json:
        emit(p, True)
        return
    votes = [{**v, "weight": f"{decimal_tokens(v['weight'])} token"} for v in p.pop("votes", [])]
    mark = {True: "reached", False: "not reached"}
    emit({"proposal": f"{p['id']}: {p['parameter']} = {p['value']} ({p['status']})",
          "turnout": f"{p['turnout_pct']}% of {decimal_tokens(p['snapshot_stake'])} token staked; quorum "
                     f"{p['quorum_pct']}% {mark[p['quorum_reached']]}",
          "yes share": f"{p['yes_pct']}% of yes + no; threshold > {p['threshold_pct']}% "
                       f"{mark[p['threshold_reached']]}",
          "tally": " / ".join(f"{k} {decimal_tokens(p[k])}" for k in ("yes", "no", "abstain")) + " token",
          "voting": f"heights {p['created_at']}..{p['voting_ends']} (now {p['height']})",
          "executes at": f"height {p['executes_at']}" + {"voting": " if it passes", "passed": "", "executed": ""}.get(
              p["status"], f" (not executed: {p['status']})"),
          "voters": p["voters"], "outcome": p["outcome"]},
         False, title=f"proposal {proposal}")
    if votes:
        emit(votes, False, title="votes")


@gov_app.command("params")
def params(node: NodeOption = None, as_json: JsonOption = False) -> None:
    """The governance rules now in force and every governable parameter with its value and bounds."""
    g = fetch(node, "/governance")
    if as_json:
        emit(g, True)
        return
    emit({k: v for k, v in g.items() if k != "parameters"}, False, title="governance")
    emit([{"parameter": k, **v} for k, v in g["parameters"].items()], False, title="governable parameters")
