"""`tensornet tx ...`: build, sign and submit each transaction kind through a node's API.

Balance-moving calls are signed by the wallet's coldkey (password needed); serve-axon and the
weight calls by a hotkey. Amounts are in tokens (e.g. 1.5); the node's refusal comes back as
one line naming the rule. Before signing, the fee (spec/economics.md §6) and the balance after it are shown;
`--tip` adds to the fee (priority), `--fee MAX` refuses to sign above MAX (node/cli/feeflags.py, shared by every
command that signs).
"""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

from node.cli.app import (
    HomeOption,
    HotkeyOption,
    JsonOption,
    NodeOption,
    PasswordFileOption,
    WalletOption,
    load_hotkey,
    unlock_coldkey,
)
from node.cli.feeflags import MaxFeeOption, TipOption
from node.cli.submit import submit
from node.client.amounts import parse_amount
from node.errors import NodeError
from protocol.crypto import parse_address
from protocol.messages import (
    AddStake,
    CommitWeights,
    CreateSubnet,
    Register,
    RemoveStake,
    RevealWeights,
    ServeAxon,
    SetHyperparameter,
    SetWeights,
    Transfer,
)

tx_app = typer.Typer(help="Build, sign and submit transactions.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(tx_app, name="tx")


def _u16_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise NodeError(f"{what} must be comma-separated integers, got {text!r}") from None
    if any(not 0 <= v <= 65535 for v in values):
        raise NodeError(f"{what} must be in 0..65535")
    return values


@tx_app.command("transfer")
def transfer(
    to: Annotated[str, typer.Option("--to", help="Destination address.")],
    amount: Annotated[str, typer.Option("--amount", help="Tokens, e.g. 1.5.")],
    wallet: WalletOption = "default",
    home: HomeOption = None,
    password_file: PasswordFileOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send tokens from the wallet's coldkey."""
    cold = unlock_coldkey(home, wallet, password_file)
    submit(node, cold, Transfer(parse_address(to), parse_amount(amount)), as_json, tip, max_fee)


@tx_app.command("add-stake")
def add_stake(
    hotkey_address: Annotated[str, typer.Option("--hotkey-address", help="Hotkey to stake to.")],
    amount: Annotated[str, typer.Option("--amount", help="Tokens.")],
    wallet: WalletOption = "default",
    home: HomeOption = None,
    password_file: PasswordFileOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stake from the coldkey to a hotkey."""
    call = AddStake(parse_address(hotkey_address), parse_amount(amount))
    submit(node, unlock_coldkey(home, wallet, password_file), call, as_json, tip, max_fee)


@tx_app.command("remove-stake")
def remove_stake(
    hotkey_address: Annotated[str, typer.Option("--hotkey-address", help="Hotkey to unstake from.")],
    amount: Annotated[str, typer.Option("--amount", help="Tokens.")],
    wallet: WalletOption = "default",
    home: HomeOption = None,
    password_file: PasswordFileOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move stake back to the coldkey's balance."""
    call = RemoveStake(parse_address(hotkey_address), parse_amount(amount))
    submit(node, unlock_coldkey(home, wallet, password_file), call, as_json, tip, max_fee)


@tx_app.command("create-subnet")
def create_subnet(
    name: Annotated[str, typer.Option("--name", help="Subnet name.")],
    max_burn: Annotated[str, typer.Option("--max-burn", help="Refuse if the price is above this (tokens).")],
    wallet: WalletOption = "default",
    home: HomeOption = None,
    password_file: PasswordFileOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Burn the current subnet price and become the owner of a new subnet."""
    cold = unlock_coldkey(home, wallet, password_file)
    submit(node, cold, CreateSubnet(name, parse_amount(max_burn)), as_json, tip, max_fee)


@tx_app.command("register")
def register_neuron(
    netuid: Annotated[int, typer.Option("--netuid")],
    max_burn: Annotated[str, typer.Option("--max-burn", help="Refuse if the burn is above this (tokens).")],
    wallet: WalletOption = "default",
    hotkey: HotkeyOption = "default",
    home: HomeOption = None,
    password_file: PasswordFileOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register the wallet's hotkey on a subnet, paying the burn from the coldkey."""
    hot = load_hotkey(home, wallet, hotkey)
    call = Register(netuid, hot.public, parse_amount(max_burn))
    submit(node, unlock_coldkey(home, wallet, password_file), call, as_json, tip, max_fee)


@tx_app.command("serve-axon")
def serve_axon(
    netuid: Annotated[int, typer.Option("--netuid")],
    peer_id: Annotated[str, typer.Option("--peer-id", help="libp2p peer id serving queries.")],
    multiaddr: Annotated[list[str], typer.Option("--multiaddr", help="Listen multiaddr (repeatable).")],
    wallet: WalletOption = "default",
    hotkey: HotkeyOption = "default",
    home: HomeOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Announce where this hotkey serves (netuid 0: the validator's consensus endpoint)."""
    submit(node, load_hotkey(home, wallet, hotkey), ServeAxon(netuid, peer_id, tuple(multiaddr)), as_json, tip, max_fee)


@tx_app.command("set-weights")
def set_weights(
    netuid: Annotated[int, typer.Option("--netuid")],
    uids: Annotated[str, typer.Option("--uids", help="Comma-separated uids.")],
    values: Annotated[str, typer.Option("--values", help="Comma-separated u16 weights.")],
    version_key: Annotated[int, typer.Option("--version-key")] = 0,
    wallet: WalletOption = "default",
    hotkey: HotkeyOption = "default",
    home: HomeOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set weights directly (subnets without commit-reveal)."""
    call = SetWeights(netuid, _u16_list(uids, "uids"), _u16_list(values, "values"), version_key)
    submit(node, load_hotkey(home, wallet, hotkey), call, as_json, tip, max_fee)


@tx_app.command("commit-weights")
def commit_weights(
    netuid: Annotated[int, typer.Option("--netuid")],
    uids: Annotated[str, typer.Option("--uids")],
    values: Annotated[str, typer.Option("--values")],
    version_key: Annotated[int, typer.Option("--version-key")] = 0,
    salt: Annotated[str | None, typer.Option("--salt", help="Hex salt (default: random; printed).")] = None,
    wallet: WalletOption = "default",
    hotkey: HotkeyOption = "default",
    home: HomeOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Commit a hash of weights; reveal them later with the printed salt."""
    from protocol.economics.weights import weights_commit_hash  # start-up time: numpy

    hot = load_hotkey(home, wallet, hotkey)
    salt_b = bytes.fromhex(salt) if salt else secrets.token_bytes(16)
    u, v = _u16_list(uids, "uids"), _u16_list(values, "values")
    h = weights_commit_hash(hot.public, netuid, u, v, salt_b, version_key)
    submit(node, hot, CommitWeights(netuid, h), as_json, tip, max_fee, commit_hash=h.hex(), salt=salt_b.hex())


@tx_app.command("reveal-weights")
def reveal_weights(
    netuid: Annotated[int, typer.Option("--netuid")],
    uids: Annotated[str, typer.Option("--uids")],
    values: Annotated[str, typer.Option("--values")],
    salt: Annotated[str, typer.Option("--salt", help="Hex salt used at commit.")],
    version_key: Annotated[int, typer.Option("--version-key")] = 0,
    wallet: WalletOption = "default",
    hotkey: HotkeyOption = "default",
    home: HomeOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reveal committed weights in the reveal epoch."""
    call = RevealWeights(netuid, _u16_list(uids, "uids"), _u16_list(values, "values"), bytes.fromhex(salt), version_key)
    submit(node, load_hotkey(home, wallet, hotkey), call, as_json, tip, max_fee)


@tx_app.command("set-hyperparameter")
def set_hyperparameter(
    netuid: Annotated[int, typer.Option("--netuid")],
    name: Annotated[str, typer.Option("--name")],
    value: Annotated[int, typer.Option("--value")],
    wallet: WalletOption = "default",
    home: HomeOption = None,
    password_file: PasswordFileOption = None,
    node: NodeOption = None,
    tip: TipOption = "0",
    max_fee: MaxFeeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change one of your subnet's hyperparameters (owner only, within bounds)."""
    cold = unlock_coldkey(home, wallet, password_file)
    submit(node, cold, SetHyperparameter(netuid, name, value), as_json, tip, max_fee)
