"""Paid inference end to end on a real local chain (spec/economics.md §3): a node, a miner host selling
text queries, and a client that is neither miner nor validator, each a separate `tensornet` process.

`tensornet client query` opens an escrow, learns the miner's price, pays with a voucher and gets the
answer; the miner's claim lands on chain and moves exactly the price out of the escrow (the miner's
coldkey gets its share, the subnet's pots the rest); after expiry `tensornet client close-escrow`
returns the rest, so the client paid exactly one price in all, plus the fees of its open and close
transactions; the miner's hotkey holds nothing and its claim's fee comes out of its share (§6.1).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.client.wallet import Wallet
from node.testing.procs import REPO, NodeProc, tensornet_cmd
from node.testnet.gen import account, generate
from node.testnet.local import free_port_base
from protocol import crypto
from protocol.state.escrow import fee_split
from tests.subnets.test_e2e import Proc, _kill_workers, wait_until

pytestmark = pytest.mark.slow

CHAIN = "tensornet-e2e-paid"
UNIT = 10**9
PASSWORD = "e2e password"
PRICE = 2 * UNIT // 1000  # 0.002 token: above the claim fee (~0.0008 token) the miner share pays (§6.1)
DEPOSIT = UNIT // 10
EXPIRES_IN = 400


def test_paid_query_is_served_and_settled(tmp_path: Path) -> None:
    p2p_port = free_port_base(2)  # the API on the next port
    api_port = p2p_port + 1
    funded = {"owner": UNIT, "miner": 100 * UNIT, "client": 10 * UNIT}
    plans, _ = generate(
        tmp_path / "net", hosts=["127.0.0.1"], chain_id=CHAIN, p2p_base=p2p_port, api_base=api_port, funded=funded,
        subnets=[("owner", "text", {"tempo": 65535})],
    )
    home = tmp_path / "home"
    for name in funded:
        Wallet.create(home, name, PASSWORD, coldkey=account(tmp_path / "net", name), kdf="fast")
    pw = tmp_path / "password"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    api = plans[0].api
    common = ["--home", str(home), "--node", api, "--password-file", str(pw)]
    node = NodeProc(plans[0].home, api)
    http = httpx.Client(base_url=api, timeout=5)
    procs: list[Proc] = []
    client_addr = crypto.address(account(tmp_path / "net", "client").public)
    miner_cold = crypto.address(account(tmp_path / "net", "miner").public)

    def get(path: str) -> Any:
        return http.get(path).json()

    def wait(pred: Any, what: str, timeout: float) -> None:
        wait_until(pred, what, timeout, procs, node)

    def cli(*args: str, timeout: float = 120) -> dict:
        out = subprocess.run([*tensornet_cmd(), *args, *common, "--json"], capture_output=True, text=True,
                             timeout=timeout, cwd=REPO)
        assert out.returncode == 0, f"{args[:2]} failed:\n{out.stdout}\n{out.stderr}"
        return json.loads(out.stdout)

    try:
        node.start()
        wait(lambda: node.height() >= 2, "the chain to commit", 60)
        procs.append(Proc("miner", ["miner", "run", "--subnet", "1", "--wallet", "miner", "--gpus", "none",
                                    "--cpu-workers", "1", "--miner-config", "steps=5", "--price", "0.002",
                                    "--status-interval-s", "1", *common], tmp_path))
        wait(lambda: any(r["axon"] for r in get("/subnets/1/metagraph")), "the miner to announce its axon", 120)
        miner_hotkey = Wallet.load(home, "miner").hotkey("worker0").public
        client_before = get(f"/accounts/{client_addr}")["balance"]
        miner_before = get(f"/accounts/{miner_cold}")["balance"]

        text = tmp_path / "input.txt"
        text.write_text("def main():\n    return sel")
        answer = cli("client", "query", "--subnet", "1", "--input", str(text), "--max-price", "0.004",
                     "--deposit", "0.1", "--expires-in", str(EXPIRES_IN), "--wallet", "client")
        assert answer["price"] == PRICE and answer["miner"] == crypto.address(miner_hotkey)
        (dist,) = answer["answer"]["next_byte"]
        assert len(dist) == 5 and sum(d["ppm"] for d in dist) > 0
        eid = answer["escrow_id"]

        # a price cap below the miner's price: nothing is sent, nothing is paid
        refused = subprocess.run([*tensornet_cmd(), "client", "query", "--subnet", "1", "--input", str(text),
                                  "--max-price", "0.001", "--escrow", str(eid), "--wallet", "client", *common],
                                 capture_output=True, text=True, timeout=120, cwd=REPO)
        assert refused.returncode == 1 and "above --max-price" in refused.stderr, refused.stderr

        wait(lambda: get(f"/escrows/{eid}")["claimed"] == PRICE, "the miner's claim to settle", 60)
        escrow = get(f"/escrows/{eid}")
        assert (escrow["remaining"], escrow["claims"]) == (DEPOSIT - PRICE, 1)
        # the miner's hotkey holds nothing: its claim paid no fee up front, the claim fee came out of its share
        fees = get("/status")["fees"]
        claim_fee = fee_split(PRICE)[0] - (get(f"/accounts/{miner_cold}")["balance"] - miner_before)
        claim_bytes, rest = divmod(claim_fee - fees["tx_base_fee"], fees["tx_byte_fee"])
        assert rest == 0 and 300 < claim_bytes < 2000, (claim_fee, fees)
        assert get(f"/accounts/{crypto.address(miner_hotkey)}")["balance"] == 0
        status_file = home / "miners/miner/sn1/worker0/status.json"
        wait(lambda: json.loads(status_file.read_text())["payments"]["claims_settled"] == 1,
             "the miner to see its claim committed", 30)
        status = json.loads(status_file.read_text())
        assert status["served_paid"] == 1 and status["payments"]["accepted"] == 1

        wait(lambda: node.height() > escrow["expires_at"], "the escrow to expire", 300)
        closed = cli("client", "close-escrow", "--escrow", str(eid), "--wallet", "client")
        assert closed["refunded"] == DEPOSIT - PRICE
        # one price, once, plus the chain fees of its two transactions, as the CLI reported them
        assert answer["fee"] > 0 and closed["fee"] > 0
        paid = client_before - get(f"/accounts/{client_addr}")["balance"]
        assert paid == PRICE + answer["fee"] + closed["fee"]
        assert get(f"/accounts/{client_addr}/escrows") == []
    finally:
        codes = {p.name: p.stop() for p in procs}
        _kill_workers(home)
        node.stop()
        http.close()
    assert all(code == 0 for code in codes.values()), codes
