"""How a command reaches a node's API: read one endpoint, or sign and submit a transaction under the fee flags.

`--node` (default $TENSORNET_NODE) names the node. A refusal or an unreachable node raises `ApiError`, a
`NodeError`, which the app prints as one line with exit 1. node.client.api_client pulls in httpx, so it is
imported inside these functions: `tensornet --help` loads every command module and must stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from node.cli import feeflags
from node.cli.app import emit
from protocol import crypto
from protocol.crypto import Keypair

if TYPE_CHECKING:
    from node.client.api_client import NodeClient


def fetch(node: str | None, path: str) -> Any:
    """The node's JSON answer to GET `path`."""
    from node.client.api_client import NodeClient  # start-up time: httpx

    with NodeClient(node) as c:
        return c.get(path)


def signing_client(node: str | None, tip: str, max_fee: str | None, as_json: bool) -> NodeClient:
    """A client that quotes and shows each fee before signing and refuses above --fee (node/cli/feeflags.py)."""
    from node.client.api_client import NodeClient  # start-up time: httpx

    return NodeClient(node, fees=feeflags.policy(tip, max_fee, as_json))


def submitted(c: NodeClient, keypair: Keypair, call: Any, digest: bytes) -> dict[str, Any]:
    """What a command reports for a transaction it sent: kind, signer, digest, and the fees and tips `c` paid."""
    return {"kind": call.KIND, "signer": crypto.address(keypair.public), "digest": digest.hex(),
            **feeflags.report(c.sent)}


def submit(
    node: str | None, keypair: Keypair, call: Any, as_json: bool, tip: str = "0", max_fee: str | None = None,
    **extra: Any,
) -> None:
    """Quote the fee, show it (and the balance after it) before signing, refuse above --fee, submit, report."""
    with signing_client(node, tip, max_fee, as_json) as c:
        digest = c.send(keypair, call)
    emit({**submitted(c, keypair, call, digest), **extra}, as_json, title="submitted")
