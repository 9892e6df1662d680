"""`tensornet chain ...`: audit a running node from outside. `supply` recomputes its conservation identity
(spec/economics.md §7); `balance`, `stake` and `neuron` read one state key, and with `--verify` believe it only
with a proof to a state root that over 2/3 of the trusted committee's stake signed (spec/state-tree.md §7);
`committee --verify` walks that trust from the trusted committee's epoch to the current one, boundary by boundary."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer

from node.cli.app import JsonOption, NodeOption, emit
from node.cli.submit import fetch
from node.errors import CliError, NodeError
from protocol import codec, crypto
from protocol.crypto import parse_address
from protocol.economics.emission import decimal_tokens
from protocol.errors import ProtocolError
from protocol.lightclient import BoundaryError, epoch_committee
from protocol.state import keys
from protocol.state.genesis import load_genesis
from protocol.state.supply import Supply

if TYPE_CHECKING:
    from node.client.api_client import Crossing, NodeClient

chain_app = typer.Typer(help="Audit the chain: supply, and single state values checked against signed roots.",
                        no_args_is_help=True)

VerifyOption = Annotated[bool, typer.Option(
    "--verify", help="Trust nothing the node says: check the value's proof against a state root signed by over 2/3 "
    "of the trusted committee's stake (--genesis or --committee).")]
GenesisOption = Annotated[Path | None, typer.Option(
    "--genesis", help="Genesis file whose chain id and committee --verify trusts (default $TENSORNET_GENESIS).",
    show_default=False)]
CommitteeOption = Annotated[Path | None, typer.Option(
    "--committee", help="Trust this committee file (from `chain committee --verify --save`) instead of the genesis.",
    show_default=False)]


class Trust(NamedTuple):
    """What --verify trusts: the chain id, a committee (hotkey -> stake), and the epoch whose committee it is."""

    chain_id: str
    committee: dict[bytes, int]
    epoch: int


def register(app: typer.Typer) -> None:
    app.add_typer(chain_app, name="chain")


def check_supply(obj: dict[str, Any]) -> None:
    """Recompute the conservation identity from the node's figures (protocol/state/supply.py, the same function
    the node's invariant check uses), so the audit trusts the node's numbers, not its verdict."""
    try:
        fields = {k: int(obj[k]) for k in Supply.__slots__}
    except (KeyError, TypeError, ValueError) as exc:
        raise CliError(f"the node's /supply answer lacks or garbles {exc}") from None
    sup = Supply(**fields)
    if not sup.balanced or not obj.get("balanced"):
        raise CliError(
            f"supply does not balance at height {sup.height}: issued {sup.issued} units, held {sup.held} units "
            f"(balances + stake + escrow + deposits + pending + burned)"
        )


@chain_app.command("supply")
def supply(node: NodeOption = None, as_json: JsonOption = False) -> None:
    """Issued, burned (fees among it), balances, stake, escrow, deposits and pending emission, checked.

    Exits 1 if issued != balances + stake + escrow + deposits + pending + burned, recomputed here from the
    node's figures."""
    obj = fetch(node, "/supply")
    check_supply(obj)
    if as_json:
        emit(obj, True)
        return
    names = ("issued", "balances", "stake", "escrow", "deposits", "pending", "burned", "fees_burned", "held")
    rows = [{"": k, "tokens": obj["tokens"][k], "units": obj[k]} for k in names]
    emit(rows, False, title=f"supply at height {obj['height']}: {obj['identity']} (balanced)")


def _decoded(value: bytes | None) -> Any:
    """A state value as the state encodes it (canonical CBOR), or its hex if it is not."""
    if value is None:
        return None
    try:
        return codec.decode(value)
    except ProtocolError:
        return value.hex()


def _trusted(genesis: Path | None, committee_file: Path | None) -> Trust:
    """The chain id and committee (hotkey -> stake) that --verify trusts: a --committee file written by
    `chain committee --verify --save`, else the --genesis committee."""
    if committee_file is not None:
        try:
            doc = json.loads(committee_file.read_text())
            members = {parse_address(m["hotkey"]): int(m["stake"]) for m in doc["members"]}
            return Trust(str(doc["chain_id"]), members, int(doc["epoch"]))
        except (OSError, ValueError, KeyError, TypeError, ProtocolError) as exc:
            raise CliError(f"cannot read committee file {committee_file}: {exc}") from None
    path = genesis or os.environ.get("TENSORNET_GENESIS")
    if not path:
        raise CliError("--verify needs a committee to trust: pass --genesis FILE (or set $TENSORNET_GENESIS) or "
                       "--committee FILE")
    g = load_genesis(str(path))
    committee: dict[bytes, int] = {}
    for c in g.committee:
        committee[c.hotkey] = committee.get(c.hotkey, 0) + c.stake
    return Trust(g.chain_id, committee, 0)


def _lookup(node: str | None, key: bytes, trust: Trust | None) -> tuple[dict[str, Any], bytes | None]:
    """`key`'s value, decoded in the result and raw beside it: the node's word, or checked against a root that the
    `trust` committee certified."""
    if trust is None:
        ans = fetch(node, f"/proof/{key.hex()}")
        try:
            value = None if ans["value"] is None else bytes.fromhex(ans["value"])
            result = {"key": key.hex(), "value": _decoded(value), "height": int(ans["height"]),
                      "root": str(ans["root"]), "verified": False}
        except (KeyError, TypeError, ValueError) as exc:
            raise CliError(f"the node's /proof answer lacks or garbles {exc}") from None
        return result, value
    from node.client.api_client import NodeClient  # start-up time: httpx

    with NodeClient(node) as client:
        try:
            value, cert = client.verified(key, trust.chain_id, trust.committee)
        except ProtocolError as exc:  # ProofError, CertificateError: the node's answer does not check out
            raise CliError(f"verification failed, do not trust this node's answer: {exc}") from None
    return {"key": key.hex(), "value": _decoded(value), "height": cert.height, "root": cert.root.hex(),
            "verified": True, "certified_stake": cert.stake, "trusted_stake": cert.total}, value


def _report(what: str, result: dict[str, Any], as_json: bool, shown: str) -> None:
    if as_json:
        emit(result, True)
        return
    typer.echo(f"{what}: {shown}")
    if result["verified"]:
        typer.echo(f"verified against root {result['root']} at height {result['height']} certified by "
                   f"{result['certified_stake']} of {result['trusted_stake']} stake")
    else:
        typer.echo(f"at height {result['height']}, root {result['root']} (the node's word: --verify to check it)")


def _units(result: dict[str, Any]) -> int:
    """An amount's value: absent is 0; anything but an integer is a node we cannot read."""
    v = result["value"]
    if v is None:
        return 0
    if type(v) is not int:
        raise CliError(f"the state value at key {result['key']} is not an amount: {v!r}")
    return v


@chain_app.command("balance")
def balance(address: Annotated[str, typer.Argument(help="Account address (tn... or 64 hex).")],
            node: NodeOption = None, verify: VerifyOption = False, genesis: GenesisOption = None,
            committee: CommitteeOption = None, as_json: JsonOption = False) -> None:
    """An account's free balance."""
    result, _ = _lookup(node, keys.account(parse_address(address)), _trusted(genesis, committee) if verify else None)
    result["value"] = units = _units(result)
    _report("balance", result, as_json, f"{decimal_tokens(units)} ({units} units)")


@chain_app.command("stake")
def stake(address: Annotated[str, typer.Argument(help="The staking coldkey's address.")],
          hotkey_address: Annotated[str, typer.Option("--hotkey-address", help="The staked-on hotkey's address.")],
          node: NodeOption = None, verify: VerifyOption = False, genesis: GenesisOption = None,
          committee: CommitteeOption = None, as_json: JsonOption = False) -> None:
    """The stake a coldkey holds on a hotkey."""
    key = keys.stake(parse_address(hotkey_address), parse_address(address))
    result, _ = _lookup(node, key, _trusted(genesis, committee) if verify else None)
    result["value"] = units = _units(result)
    _report("stake", result, as_json, f"{decimal_tokens(units)} ({units} units)")


@chain_app.command("neuron")
def neuron(netuid: Annotated[int, typer.Argument(min=0, help="Subnet id.")],
           uid: Annotated[int, typer.Option("--uid", min=0, help="The neuron's uid on the subnet.")],
           node: NodeOption = None, verify: VerifyOption = False, genesis: GenesisOption = None,
           committee: CommitteeOption = None, as_json: JsonOption = False) -> None:
    """A neuron's record as the state holds it (spec/state.md §9), or none."""
    try:
        key = keys.neuron(netuid, uid)
    except ProtocolError as exc:
        raise CliError(str(exc)) from None
    result, _ = _lookup(node, key, _trusted(genesis, committee) if verify else None)
    shown = json.dumps(result["value"], default=bytes.hex)  # the record's fields in order (spec/state.md §9)
    _report("neuron", result, as_json, "none" if result["value"] is None else shown)


def _step_line(c: Crossing) -> str:
    cert = c.certified
    return (f"epoch {c.epoch} -> {c.epoch + 1} at height {c.height}: root {cert.root.hex()[:16]}… certified by "
            f"{decimal_tokens(cert.stake)} of {decimal_tokens(cert.total)} trusted stake; epoch {c.epoch + 1}'s "
            f"committee: {len(c.committee)} members, {decimal_tokens(sum(c.committee.values()))} stake")


def _step_obj(c: Crossing) -> dict[str, Any]:
    return {"epoch": c.epoch, "height": c.height, "root": c.certified.root.hex(), "certified_stake": c.certified.stake,
            "trusted_stake": c.certified.total, "next_members": len(c.committee),
            "next_stake": sum(c.committee.values())}


WALK_TRIES = 3  # a boundary may pass while we walk: then walk on from where we got, up to this many times


def _walk(client: NodeClient, trust: Trust, on_step: Callable[[Crossing], None]) -> tuple[dict[str, Any], bytes]:
    """Walk from `trust` to the node's current epoch, then check the head's epoch record under the committee
    reached: (the verified result, the record's bytes, with result["walk"] the boundaries crossed)."""
    epoch, members, steps = trust.epoch, trust.committee, []
    for _ in range(WALK_TRIES):
        try:
            for c in client.walk(trust.chain_id, epoch, members, on_step):
                steps.append(_step_obj(c))
                epoch, members = c.epoch + 1, c.committee
            value, cert = client.verified(keys.global_("epoch"), trust.chain_id, members)
            head, _ = epoch_committee(value or b"")
        except BoundaryError as exc:
            raise CliError(f"walk failed at {exc}. Do not trust this node: the committee of epoch {exc.epoch} is the "
                           "last one verified; ask another node (--node URL)") from None
        except ProtocolError as exc:
            raise CliError(f"walk failed at the head (epoch {epoch}'s committee trusted): {exc}. Do not trust this "
                           "node's answer; ask another node (--node URL)") from None
        except NodeError as exc:
            raise CliError(f"{exc}; the committee of epoch {epoch} is the last one verified: ask another node "
                           "(--node URL)") from None
        if head < epoch:
            raise CliError(f"the node's head is in epoch {head}, before epoch {epoch} that is already trusted: the "
                           "node is behind; ask another node (--node URL)")
        if head == epoch:
            result = {"key": keys.global_("epoch").hex(), "value": _decoded(value), "height": cert.height,
                      "root": cert.root.hex(), "verified": True, "certified_stake": cert.stake,
                      "trusted_stake": cert.total, "from_epoch": trust.epoch, "walk": steps}
            return result, value
    raise CliError(f"the node's head is in epoch {head}, but it keeps boundary proofs only up to epoch {epoch}: "
                   "ask another node (--node URL)")


@chain_app.command("committee")
def committee_cmd(node: NodeOption = None, verify: VerifyOption = False, genesis: GenesisOption = None,
                  committee: CommitteeOption = None,
                  save: Annotated[Path | None, typer.Option(
                      "--save", help="With --verify: write the verified committee to FILE, to trust with --committee "
                      "once the genesis committee has moved on.", show_default=False)] = None,
                  as_json: JsonOption = False) -> None:
    """The current epoch's consensus committee (the state's `epoch` record, spec/state.md §9).

    With --verify, trust walks from the trusted committee (the genesis's, or a --committee FILE's epoch) to today's,
    one epoch boundary at a time: each closing commit's state root must be signed by over 2/3 of the committee
    trusted then, and the next committee proven under it (spec/state-tree.md §7)."""
    if save is not None and not verify:
        raise CliError("--save writes only a committee this command verified: add --verify")
    if not verify:
        result, raw = _lookup(node, keys.global_("epoch"), None)
        trust = None
    else:
        from node.client.api_client import NodeClient  # start-up time: httpx

        trust = _trusted(genesis, committee)
        with NodeClient(node) as client:
            result, raw = _walk(client, trust, (lambda c: None) if as_json else (lambda c: typer.echo(_step_line(c))))
    try:
        epoch, members = epoch_committee(raw or b"")
    except ProtocolError as exc:
        raise CliError(f"the state's epoch record at height {result['height']}: {exc}") from None
    rows = [{"hotkey": crypto.address(k), "stake": v} for k, v in members.items()]
    result["value"] = {"epoch": epoch, "members": rows}
    if save is not None and trust is not None:
        doc = {"chain_id": trust.chain_id, "height": result["height"], "root": result["root"], **result["value"]}
        save.write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"{m['hotkey']} {decimal_tokens(m['stake'])}" for m in result["value"]["members"]]
    _report("committee", result, as_json, f"epoch {epoch}, {len(members)} members\n" + "\n".join(lines))
