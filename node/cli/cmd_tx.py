"""`tensornet tx ...`: build, sign and submit each transaction kind through a node's API.

Balance-moving calls are signed by the wallet's coldkey (password needed); serve-axon and the
weight calls by a hotkey. Amounts are in tokens (e.g. 1.5); the node's refusal comes back as
one line naming the rule. Before signing, the fee (spec/economics.md §6) and the balance after it are shown;
`--tip` adds to the fee (priority), `--fee MAX` refuses to sign above MAX (node/cli/feeflags.py, shared by every
command that signs).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any

import typer

from node.cli.app import HomeOption, HotkeyOption, JsonOption, PasswordFileOption, WalletOption, emit
from node.cli.feeflags import MaxFeeOption, TipOption

tx_app = typer.Typer(help="Build, sign and submit transactions.", no_args_is_help=True)
NodeOption = Annotated[str | None, typer.Option("--node", help="Node API URL (default $TENSORNET_NODE).")]


def register(app: typer.Typer) -> None:
    app.add_typer(tx_app, name="tx")


def _submit(
    node: str | None, keypair: Any, call: Any, as_json: bool, tip: str = "0", max_fee: str | None = None,
    **extra: Any,
) -> None:
    """Quote the fee, show it (and the balance after it) before signing, refuse above --fee, then submit."""
    from node.cli import feeflags
    from node.client.api_client import NodeClient
    from protocol import crypto

    with NodeClient(node, fees=feeflags.policy(tip, max_fee, as_json)) as c:
        digest = c.send(keypair, call)
        sent = feeflags.report(c.sent)
    emit({"kind": call.KIND, "signer": crypto.address(keypair.public), "digest": digest.hex(), **sent, **extra},
         as_json, title="submitted")


def _cold(home: Path | None, wallet: str, password_file: Path | None) -> Any:
    from node.cli.app import unlock_coldkey

    return unlock_coldkey(home, wallet, password_file)


def _hot(home: Path | None, wallet: str, hotkey: str) -> Any:
    from node.client.wallet import Wallet

    return Wallet.load(home, wallet).hotkey(hotkey)


def _key(text: str) -> bytes:
    from protocol.crypto import parse_address

    return parse_address(text)


def _amount(text: str) -> int:
    from node.client.api_client import parse_amount

    return parse_amount(text)


def _u16_list(text: str, what: str) -> tuple[int, ...]:
    from node.errors import NodeError

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
    from protocol.messages import Transfer

    _submit(node, _cold(home, wallet, password_file), Transfer(_key(to), _amount(amount)), as_json, tip, max_fee)


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
    from protocol.messages import AddStake

    call = AddStake(_key(hotkey_address), _amount(amount))
    _submit(node, _cold(home, wallet, password_file), call, as_json, tip, max_fee)


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
    from protocol.messages import RemoveStake

    call = RemoveStake(_key(hotkey_address), _amount(amount))
    _submit(node, _cold(home, wallet, password_file), call, as_json, tip, max_fee)


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
    from protocol.messages import CreateSubnet

    _submit(node, _cold(home, wallet, password_file), CreateSubnet(name, _amount(max_burn)), as_json, tip, max_fee)


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
    from protocol.messages import Register

    hot = _hot(home, wallet, hotkey)
    call = Register(netuid, hot.public, _amount(max_burn))
    _submit(node, _cold(home, wallet, password_file), call, as_json, tip, max_fee)


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
    from protocol.messages import ServeAxon

    _submit(node, _hot(home, wallet, hotkey), ServeAxon(netuid, peer_id, tuple(multiaddr)), as_json, tip, max_fee)


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
    from protocol.messages import SetWeights

    call = SetWeights(netuid, _u16_list(uids, "uids"), _u16_list(values, "values"), version_key)
    _submit(node, _hot(home, wallet, hotkey), call, as_json, tip, max_fee)


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
    from protocol.economics.weights import weights_commit_hash
    from protocol.messages import CommitWeights

    hot = _hot(home, wallet, hotkey)
    salt_b = bytes.fromhex(salt) if salt else secrets.token_bytes(16)
    u, v = _u16_list(uids, "uids"), _u16_list(values, "values")
    h = weights_commit_hash(hot.public, netuid, u, v, salt_b, version_key)
    _submit(node, hot, CommitWeights(netuid, h), as_json, tip, max_fee, commit_hash=h.hex(), salt=salt_b.hex())


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
    from protocol.messages import RevealWeights

    call = RevealWeights(netuid, _u16_list(uids, "uids"), _u16_list(values, "values"), bytes.fromhex(salt), version_key)
    _submit(node, _hot(home, wallet, hotkey), call, as_json, tip, max_fee)


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
    from protocol.messages import SetHyperparameter

    _submit(node, _cold(home, wallet, password_file), SetHyperparameter(netuid, name, value), as_json, tip, max_fee)
