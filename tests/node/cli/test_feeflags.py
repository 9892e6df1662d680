"""The fee flags every signing command shares (node/cli/feeflags.py): each command that signs takes --tip and
--fee; NodeClient.send shows the fee before signing, refuses above the cap, and records what it sent.

The client talks to a real node Chain (store, state, mempool) through an in-memory HTTP transport."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.chain import Chain
from node.cli import feeflags
from node.cli.app import build_app
from node.client.api_client import FeePolicy, NodeClient, Quote
from node.errors import NodeError
from protocol import crypto
from protocol.crypto import Keypair
from protocol.economics.emission import UNIT
from protocol.errors import TxRejected
from protocol.messages import SignedTransaction, Transfer
from protocol.state.genesis import build_genesis
from tests.node.cli.test_cli_errors import leaf_commands

CHAIN_ID = "fee-flags"
VAL, ALICE, BOB = Keypair(b"\x01" * 32), Keypair(b"\x02" * 32), Keypair(b"\x03" * 32)
DAEMONS = {("miner", "run"), ("validator", "run")}  # long-running: they sign their own upkeep, fee-free or capped


def options(cmd: Any) -> set[str]:
    return {o for p in cmd.params for o in p.opts if o.startswith("--")}


def test_every_command_that_signs_takes_tip_and_fee() -> None:
    signing = []
    for path, cmd in leaf_commands(build_app()):
        opts = options(cmd)
        if "--node" in opts and opts & {"--password-file", "--hotkey"} and tuple(path) not in DAEMONS:
            signing.append(" ".join(path))
            assert {"--tip", "--fee"} <= opts, f"tensornet {' '.join(path)} signs but lacks --tip/--fee"
    assert {"tx transfer", "gov propose", "gov vote", "client open-escrow", "client close-escrow",
            "client query"} <= set(signing)


@pytest.fixture
def node(tmp_path: Path) -> Any:
    g = build_genesis(CHAIN_ID, validators=[(VAL.public, 1000 * UNIT)], balances={ALICE.public: 10 * UNIT})
    chain = Chain(tmp_path / "n", g, keypair=VAL)
    yield chain
    chain.close()


def client_of(chain: Chain, fees: Any) -> NodeClient:
    """A NodeClient whose HTTP requests are answered by `chain` (the routes NodeClient.send uses)."""

    def handle(req: httpx.Request) -> httpx.Response:
        path = req.url.path
        if path == "/status":
            p = chain.state.params
            return httpx.Response(200, json={"chain_id": CHAIN_ID, "fees": {"tx_base_fee": p.tx_base_fee,
                                                                              "tx_byte_fee": p.tx_byte_fee}})
        if m := re.fullmatch(r"/accounts/(\w+)/nonce", path):
            return httpx.Response(200, json={"next_nonce": chain.next_nonce(crypto.parse_address(m[1]))})
        if m := re.fullmatch(r"/accounts/(\w+)", path):
            return httpx.Response(200, json={"balance": chain.state.balances.get(crypto.parse_address(m[1]), 0)})
        if path == "/tx":
            try:
                return httpx.Response(200, json={"digest": chain.submit_tx(req.content).hex()})
            except TxRejected as exc:
                return httpx.Response(400, json={"error": str(exc), "rule": exc.rule})
        return httpx.Response(404, json={"error": path})

    c = NodeClient("http://node", fees=fees)
    c._http = httpx.Client(base_url=c.url, transport=httpx.MockTransport(handle))
    return c


def test_send_shows_the_fee_then_signs_with_the_tip_and_reports_it(node: Chain) -> None:
    shown: list[tuple[Quote, int]] = []
    c = client_of(node, FeePolicy(UNIT // 1000, UNIT // 100, lambda q, b: shown.append((q, b))))
    c.send(ALICE, Transfer(BOB.public, UNIT))
    ((q, balance),) = shown  # shown once, before the node saw anything
    assert balance == 10 * UNIT and q.tx.tip == UNIT // 1000
    (data,) = [d for _, d in node.mempool.pending()]
    assert node.state.fee_of(SignedTransaction.from_bytes(data)) == q.fee  # the quote is the node's fee
    assert feeflags.report(c.sent) == {"fee": q.fee, "tip": UNIT // 1000}


def test_send_refuses_to_sign_above_the_cap(node: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    c = client_of(node, feeflags.policy("0", "0.0001"))
    with pytest.raises(NodeError, match="above the maximum 0.0001 .*not signed"):
        c.send(ALICE, Transfer(BOB.public, UNIT))
    err = capsys.readouterr().err
    assert err.startswith("transfer: fee 0.000") and "balance 10 -> 9.999" in err and "after the fee" in err
    assert len(node.mempool) == 0 and c.sent == []


def test_json_output_keeps_the_fee_line_off_stderr(node: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    c = client_of(node, feeflags.policy(as_json=True))
    c.send(ALICE, Transfer(BOB.public, UNIT))
    assert capsys.readouterr().err == "" and len(c.sent) == 1
    assert json.loads(json.dumps(feeflags.report(c.sent)))["fee"] == c.sent[0].fee
