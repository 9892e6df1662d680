"""Auditable supply and duplicate-transaction accounting (issue 17).

`GET /supply` and `tensornet chain supply` report the one conservation identity the state checks itself
(protocol/state/supply.py); a transaction carried by several validators' blocks executes once and its copies are
counted as `duplicate`, not as failures, in receipts, /status and `tensornet_txs_total`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from node.api.app import build_app
from node.chain import CommitInfo
from node.cli.app import build_app as build_cli
from node.cli.cmd_chain import check_supply
from node.config import load_config
from node.daemon import Node
from node.errors import CliError
from node.health import count_commit
from node.metrics import NodeMetrics
from node.testnet.gen import account, generate
from node.testnet.local import free_port_base
from protocol import crypto
from protocol.crypto import Keypair
from protocol.economics.emission import UNIT, decimal_tokens
from protocol.economics.fees import DEFAULT_BASE_FEE, DEFAULT_BYTE_FEE
from protocol.messages import SignedTransaction, Transaction, Transfer
from protocol.state.state import supply_of
from tests.node.test_chain import make_network, step
from tests.protocol.state.test_state import KEYS, make_chain


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    out = tmp_path_factory.mktemp("supply")
    base = free_port_base(2)  # p2p at base, the API at base + 1
    plans, _ = generate(out, hosts=["127.0.0.1"], p2p_base=base, api_base=base + 1,
                        funded={"rich": 1000 * UNIT})
    n = Node(plans[0].home, load_config(plans[0].home))
    n.test_rich = account(out, "rich")
    yield n
    n.close()


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 40000)), base_url="http://n")


# --- the identity ---------------------------------------------------------------------------------------


def test_fees_are_counted_apart_and_the_identity_holds() -> None:
    c = make_chain(tx_base_fee=DEFAULT_BASE_FEE, tx_byte_fee=DEFAULT_BYTE_FEE)
    before = supply_of(c.state)
    assert before.balanced and before.fees_burned == 0
    c.ok(KEYS[2], Transfer(KEYS[3].public, 5 * UNIT))
    after = supply_of(c.state)
    fee = after.burned - before.burned
    assert fee > 0 and after.fees_burned == fee  # a transfer burns only its fee
    assert after.balanced and after.issued - before.issued == after.pending - before.pending  # minted: pending
    c.state.burned += 1  # a unit from nowhere: the identity, and the state's own invariant check, see it
    assert not supply_of(c.state).balanced
    with pytest.raises(AssertionError, match="conservation"):
        c.state.check_invariants()


def test_check_supply_recomputes_instead_of_trusting_the_verdict() -> None:
    obj = supply_of(make_chain().state).to_json()
    check_supply(obj)
    with pytest.raises(CliError, match="does not balance"):
        check_supply(obj | {"burned": obj["burned"] + 1})  # the node says balanced; its numbers do not
    with pytest.raises(CliError, match="lacks"):
        check_supply({k: v for k, v in obj.items() if k != "escrow"})


# --- the routes -----------------------------------------------------------------------------------------


async def test_supply_route_balances_with_units_and_decimal_tokens(node: Node) -> None:
    async with client(build_app(node)) as http:
        r = await http.get("/supply")
    assert r.status_code == 200
    s = r.json()
    assert s["balanced"] is True and s["held"] == s["issued"]
    parts = ("balances", "stake", "escrow", "deposits", "pending", "burned")
    assert sum(s[k] for k in parts) == s["issued"]
    assert s["issued"] == node.chain.state.issued and s["stake"] == node.chain.state.total_stake()
    assert s["balances"] >= 1000 * UNIT  # the funded account
    assert s["tokens"]["issued"] == decimal_tokens(s["issued"]) and "." not in decimal_tokens(5 * UNIT)
    assert decimal_tokens(UNIT // 10) == "0.1"


async def test_accounts_show_addresses_and_decimal_tokens(node: Node) -> None:
    coldkey, hotkey = next(iter(node.chain.state.stakes))
    amount = node.chain.state.stakes[(coldkey, hotkey)]
    async with client(build_app(node)) as http:
        a = (await http.get(f"/accounts/{crypto.address(coldkey)}")).json()
        rich = (await http.get(f"/accounts/{crypto.address(node.test_rich.public)}")).json()
    assert "b'" not in str(a)
    assert a["stakes"] == {crypto.address(hotkey): amount}
    assert a["tokens"]["stakes"] == {crypto.address(hotkey): decimal_tokens(amount)}
    assert rich["balance"] == 1000 * UNIT and rich["tokens"]["balance"] == "1000"


def test_chain_supply_cli(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command against the real app (NodeClient's HTTP client swapped for the in-process transport)."""
    import node.client.api_client as nc

    real = httpx.Client

    def local(*args: Any, **kw: Any) -> httpx.Client:
        kw.pop("transport", None)
        return real(*args, **kw, transport=_SyncASGI(build_app(node)))

    monkeypatch.setattr(nc.httpx, "Client", local)
    runner = CliRunner()
    r = runner.invoke(build_cli(), ["chain", "supply", "--node", "http://n", "--json"])
    assert r.exit_code == 0, r.output
    assert '"balanced": true' in r.output
    r = runner.invoke(build_cli(), ["chain", "supply", "--node", "http://n"])
    assert r.exit_code == 0 and "balanced" in r.output and "fees_burned" in r.output


class _SyncASGI(httpx.BaseTransport):
    """httpx's ASGITransport is async-only; run each request to completion on a fresh Trio loop."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        import trio

        async def go() -> httpx.Response:
            resp = await self.inner.handle_async_request(request)
            body = await resp.aread()
            return httpx.Response(resp.status_code, headers=resp.headers, content=body)

        return trio.run(go)


# --- defect 6: duplicates are not failures ----------------------------------------------------------------


def test_receipts_say_whether_a_transaction_executed() -> None:
    """A copy in the same commit is `duplicate`; in a later one a stale `nonce`, executed by neither; a call
    that fails after the envelope still executed (its nonce and fee are spent), so its copies are duplicates."""
    c = make_chain()
    raw = c.tx(KEYS[2], Transfer(KEYS[3].public, 5))
    ok, same = c.commit(raw, raw)
    (later,) = c.commit(raw)
    (refused,) = c.commit(c.tx(KEYS[2], Transfer(KEYS[3].public, 2**63)))
    assert ok.executed and same.rule == "duplicate" and not same.executed
    assert later.rule == "nonce" and not later.executed
    assert refused.rule == "balance" and refused.executed


def test_gossiped_tx_in_every_validators_block_counts_once_ok_and_never_failed(tmp_path: Path) -> None:
    """Defect 6: 4 validators each carry the transaction; `failed` was 3x `ok`."""
    chains, _, alice, _, clock = make_network(tmp_path)
    bob = Keypair(b"\xbb" * 32)
    txs = [SignedTransaction.create(Transaction("test-chain", alice.public, n, Transfer(bob.public, UNIT), 0), alice)
           for n in range(3)]
    infos: list[CommitInfo] = []
    chains[0].on_commit = infos.append
    for c in chains:  # as gossip does: every validator's mempool holds every transaction
        c.mempool.fallback_after = 1  # the others' fallback races the owner (node/mempool.py): copies land
        for tx in txs:
            c.submit_tx(tx.to_bytes())
    step(chains, clock, 16)
    st = chains[0].stats
    assert all(c.state.account(bob.public)["balance"] == 3 * UNIT for c in chains)
    assert st.txs_ok == 3 and st.txs_failed == 0
    assert st.txs_duplicate == sum(i.txs for i in infos) - 3 > 0  # several validators did carry them
    metrics = NodeMetrics()
    for info in infos:
        count_commit(metrics, info)  # what the daemon's commit hook records
    value = metrics.registry.get_sample_value
    assert value("tensornet_txs_total", {"outcome": "ok"}) == 3
    assert value("tensornet_txs_total", {"outcome": "failed"}) == 0
    assert value("tensornet_txs_total", {"outcome": "duplicate"}) == st.txs_duplicate
    for c in chains:
        assert supply_of(c.state).balanced
        c.close()
