"""The HTTP API under bad input: typed 400s, one-line 500s, bodies capped while they stream, bounded
`/txs`, per-client POST budgets, and a server that keeps its HTTP work off the consensus loop.

In-process tests drive the real app of a real `Node` (real genesis, SQLite store, state); one runs
the real hypercorn server in its own thread, and a slow one attacks a real `tensornet node run`."""

from __future__ import annotations

import functools
import io
import logging
import os
import socket
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HyperConfig

from node.api.app import build_app, serve_api
from node.api.guard import ApiLimits, TokenBuckets
from node.api.view import NodeView
from node.config import load_config
from node.daemon import Node
from node.testing.procs import NodeProc, stop_all, wait_for
from node.testnet.gen import account, generate
from node.testnet.local import free_port_base
from protocol import codec, crypto
from protocol.crypto import Keypair
from protocol.messages import SignedTransaction, Transaction, Transfer

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    out = tmp_path_factory.mktemp("api")
    base = free_port_base(2)  # p2p at base, the API at base + 1
    plans, _ = generate(out, hosts=["127.0.0.1"], p2p_base=base, api_base=base + 1,
                        funded={"rich": 1000 * 10**9})
    n = Node(plans[0].home, load_config(plans[0].home))
    n.test_rich = account(out, "rich")  # a funded key: its forged transactions reach the signature check
    yield n
    n.close()


def client(app: Any, ip: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 40000)), base_url="http://node")


def one_line_error(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("application/json"), r.text[:200]
    assert "\n" not in r.text and len(r.text) < 400, r.text[:400]
    assert "error" in r.json()
    return r.json()["error"]


BAD_PARAMS = [
    "/commits/18446744073709551616",  # past u64
    "/commits/-1",
    "/commits/abc",
    "/commits/1e3",
    "/commits?from=abc",
    "/commits?to=-5",
    "/commits?from=%EF%BC%91",  # a fullwidth digit, which int() would take
    "/timing?from=abc",
    "/timing?from=99999999999999999999999999",
    "/blocks/zz",
    "/blocks/" + "ab" * 31,
    "/accounts/nonsense",
    "/accounts/" + "g" * 64 + "/nonce",
    "/accounts/tnxyz/escrows",
    "/escrows/-1",
    "/subnets/abc",
    "/subnets/1_0/metagraph",
    "/subnets/%201/weights",
    "/proposals/1.5",
]


def test_a_node_is_what_the_api_may_see(node: Node) -> None:
    """The API is typed against `NodeView`, not `Node` (no import circle): `Node` must keep every member."""
    assert isinstance(node, NodeView)
    assert not isinstance(SimpleNamespace(chain=node.chain, metrics=node.metrics), NodeView)  # it can fail


@pytest.mark.parametrize("path", BAD_PARAMS)
async def test_bad_parameters_get_a_400_json_line(node: Node, path: str) -> None:
    async with client(build_app(node)) as http:
        r = await http.get(path)
    assert r.status_code == 400, (path, r.status_code, r.text[:200])
    one_line_error(r)


@pytest.mark.parametrize("path", [
    "/commits/18446744073709551615",  # a valid u64 far past the head: the 500 of the report
    "/commits/0",
    "/blocks/" + "ab" * 32,
    "/escrows/18446744073709551615",
    "/subnets/18446744073709551615",
    "/subnets/18446744073709551615/metagraph",
    "/proposals/18446744073709551615",
    "/no/such/route",
])
async def test_unknown_items_get_a_404_json_line(node: Node, path: str) -> None:
    async with client(build_app(node)) as http:
        r = await http.get(path)
    assert r.status_code == 404, (path, r.status_code, r.text[:200])
    one_line_error(r)


async def test_good_parameters_still_work(node: Node) -> None:
    async with client(build_app(node)) as http:
        assert (await http.get("/commits?from=1&to=18446744073709551615")).json() == []
        assert (await http.get("/timing?from=0")).status_code == 200
        key = node.chain.committee.public_keys[0]
        r = await http.get(f"/accounts/{crypto.address(key)}/nonce")
        assert r.status_code == 200 and r.json() == {"next_nonce": 0}
        assert (await http.post("/status")).status_code == 405


async def test_account_stakes_are_addresses(node: Node) -> None:
    coldkey, hotkey = next(iter(node.chain.state.stakes))
    async with client(build_app(node)) as http:
        r = await http.get(f"/accounts/{crypto.address(coldkey)}")
        owner = (await http.get(f"/accounts/{crypto.address(hotkey)}")).json()["hotkey_owner"]
    assert r.status_code == 200
    assert "b'" not in r.text and "\\x" not in r.text
    assert crypto.address(hotkey) in r.json()["stakes"]
    assert owner is None or crypto.parse_address(owner) == node.chain.state.hotkey_owner[hotkey]


async def test_a_server_error_is_one_line_logged_once_per_interval(
    node: Node, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(netuid: int) -> dict:
        raise RuntimeError("boom\nand a second line that must not reach the log")

    monkeypatch.setattr(node, "subnet_obj", broken)
    monkeypatch.setattr(node.chain.state, "subnets", {7: object()})
    before = node.metrics.api_errors.labels("subnets")._value.get()
    app = build_app(node, ApiLimits(error_log_interval_s=3600))
    with caplog.at_level(logging.ERROR, logger="node.api"):
        async with client(app) as http:
            for _ in range(5):
                r = await http.get("/subnets")
                assert r.status_code == 500
                one_line_error(r)
    records = [rec for rec in caplog.records if rec.name == "node.api"]
    assert len(records) == 1, [rec.getMessage() for rec in records]
    line = records[0].getMessage()
    assert "RuntimeError: boom" in line and "\n" not in line and records[0].exc_info is None
    assert node.metrics.api_errors.labels("subnets")._value.get() - before == 5


def _secret() -> str:
    return "sentinel-" + "local-value"


def test_text_logs_render_tracebacks_without_locals(monkeypatch: pytest.MonkeyPatch) -> None:
    """structlog's default renderer drew rich tracebacks with every frame's locals (~60 KB a request)."""
    from node.log import configure

    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    configure("text")
    secret = _secret()
    try:
        raise ValueError("bad thing")
    except ValueError:
        logging.getLogger("tests.api").exception("failed with %d", len(secret))
    out = err.getvalue()
    assert "ValueError: bad thing" in out
    assert secret not in out, "a local variable's value was rendered into the log"


class Body:
    """An ASGI receive that streams `size` bytes in 64 KiB chunks and counts what the app pulled."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.pulled = 0

    async def __call__(self) -> dict[str, Any]:
        chunk = min(self.left, 64 * 1024)
        self.left -= chunk
        self.pulled += chunk
        return {"type": "http.request", "body": b"\0" * chunk, "more_body": self.left > 0}


async def call(app: Any, path: str, body: Body, length: int | None) -> int:
    headers = [(b"content-type", b"application/cbor")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "path": path,
             "raw_path": path.encode(), "query_string": b"", "headers": headers, "client": ("10.0.0.1", 1),
             "server": ("node", 80), "scheme": "http", "root_path": ""}
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, body, send)
    return statuses[0]


@pytest.mark.parametrize("path,cap", [("/txs", ApiLimits().txs_body_cap), ("/tx", ApiLimits().tx_body_cap),
                                      ("/status", ApiLimits().body_cap)])
async def test_bodies_are_capped_while_they_stream(node: Node, path: str, cap: int) -> None:
    app = build_app(node, ApiLimits(post_burst=100))
    size = 50 * MiB
    declared = Body(size)  # an honest Content-Length over the cap: refused before any byte is read
    assert await call(app, path, declared, size) == 413 and declared.pulled == 0
    chunked = Body(size)  # no Content-Length: reading stops as soon as the body passes the cap
    assert await call(app, path, chunked, None) == 413 and chunked.pulled <= cap + 64 * 1024
    lying = Body(size)  # a Content-Length under the cap, and far more body
    assert await call(app, path, lying, 100) == 413 and lying.pulled <= cap + 64 * 1024
    parallel = [Body(size) for _ in range(6)]
    async with trio.open_nursery() as nursery:
        for b in parallel:
            nursery.start_soon(call, app, path, b, None)
    assert sum(b.pulled for b in parallel) <= 6 * (cap + 64 * 1024)
    assert node.metrics.api_refused.labels("too_large")._value.get() >= 9


def bad_signature_txs(n: int, chain_id: str, kp: Keypair | None = None) -> list[bytes]:
    kp = kp or Keypair(os.urandom(32))
    return [SignedTransaction(Transaction(chain_id, kp.public, i, Transfer(os.urandom(32), 1), 0), bytes(64)).to_bytes()
            for i in range(n)]


async def test_txs_batches_and_signature_checks_are_bounded(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    limits = ApiLimits(post_burst=100)
    verified = [0]
    real_verify = crypto.verify

    def counting_verify(*args: Any, **kwargs: Any) -> Any:
        verified[0] += 1
        return real_verify(*args, **kwargs)

    monkeypatch.setattr(crypto, "verify", counting_verify)
    async with client(build_app(node, limits)) as http:
        too_many = codec.encode(bad_signature_txs(limits.txs_max_count + 1, node.chain.chain_id))
        r = await http.post("/txs", content=too_many)
        assert r.status_code == 413 and "at most 256" in one_line_error(r)
        assert verified[0] == 0
        forged = bad_signature_txs(limits.txs_max_count, node.chain.chain_id, node.test_rich)
        r = await http.post("/txs", content=codec.encode(forged))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["accepted"] == 0
        assert body["refused"] == {"signature": limits.txs_max_refused,
                                   "unchecked": limits.txs_max_count - limits.txs_max_refused}
        assert verified[0] == limits.txs_max_refused
        # from a key that holds nothing: refused on the fee, before any signature check, and counted
        before = node.chain.mempool.stats()["refused"].get("fee", 0)
        unpaid = bad_signature_txs(limits.txs_max_count, node.chain.chain_id)
        r = await http.post("/txs", content=codec.encode(unpaid))
    assert r.json()["refused"] == {"fee": limits.txs_max_refused,
                                   "unchecked": limits.txs_max_count - limits.txs_max_refused}
    assert verified[0] == limits.txs_max_refused
    assert node.chain.mempool.stats()["refused"]["fee"] == before + limits.txs_max_refused


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    b = TokenBuckets(rate=2.0, burst=3, max_clients=2, clock=lambda: now[0])
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("a") == pytest.approx(0.5)
    now[0] = 0.5
    assert b.take("a") == 0.0 and b.take("a") > 0
    assert b.take("b") == 0.0 and b.take("c") == 0.0
    assert len(b._buckets) == 2, "memory is bounded by max_clients"


async def test_posts_past_a_clients_budget_get_429(node: Node) -> None:
    app = build_app(node, ApiLimits(post_rate=0.01, post_burst=2))
    async with client(app, "10.1.1.1") as a, client(app, "10.2.2.2") as b:
        codes = [(await a.post("/tx", content=b"\x80")).status_code for _ in range(3)]
        assert codes[:2] == [400, 400] and codes[2] == 429
        r = await a.post("/txs", content=b"\x80")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        one_line_error(r)
        assert (await a.get("/commits")).status_code == 200, "GETs do not spend the POST budget"
        assert (await b.post("/tx", content=b"\x80")).status_code == 400, "another client has its own budget"


def _raw_request(port: int, head: bytes, body: bytes = b"") -> bytes:
    """Send a request with a plain socket (any Content-Length we like) and read the reply head."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head + body)
        reply = b""
        while b"\r\n\r\n" not in reply:
            data = s.recv(65536)
            if not data:
                break
            reply += data
        return reply


async def test_real_server_refuses_a_declared_50mib_body_before_reading_it(node: Node) -> None:
    """Hypercorn in its own thread, as the daemon runs it: the 413 comes back while the client has sent
    only the headers (the old code waited for the whole body first, so this read would time out)."""
    port = free_port_base(1)
    cfg = HyperConfig()
    cfg.bind = [f"127.0.0.1:{port}"]
    cfg.accesslog = None
    cfg.graceful_timeout = 1.0
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_api, node, cfg)
        head = b"POST /txs HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (50 * MiB)
        reply = await trio.to_thread.run_sync(_raw_request, port, head)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        bad = await trio.to_thread.run_sync(_raw_request, port, b"GET /timing?from=abc HTTP/1.1\r\nHost: x\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 400"), bad[:200]
        ok = await trio.to_thread.run_sync(functools.partial(httpx.get, f"http://127.0.0.1:{port}/commits/0"))
        assert ok.status_code == 404 and ok.json()["error"].startswith("no commit at height 0")
        nursery.cancel_scope.cancel()


def _vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _post_big(api: str, chunked: bool) -> str:
    data = b"\0" * (50 * MiB)
    content: Any = iter([data[i:i + MiB] for i in range(0, len(data), MiB)]) if chunked else data
    try:
        return str(httpx.post(api + "/txs", content=content, timeout=60).status_code)
    except httpx.HTTPError as exc:  # the server may close the connection after its 413, mid-upload
        return type(exc).__name__


@pytest.mark.slow
def test_real_node_keeps_committing_under_bad_gets_and_50mib_bodies(tmp_path: Path) -> None:
    base = free_port_base(2)
    plans, _ = generate(tmp_path, hosts=["127.0.0.1"], p2p_base=base, api_base=base + 1)
    node = NodeProc(plans[0].home, plans[0].api).start()
    stop = threading.Event()
    codes: dict[str, int] = {}

    def bad_gets() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                for path in ("/commits/18446744073709551615", "/timing?from=abc"):
                    code = str(http.get(node.api + path).status_code)
                    codes[code] = codes.get(code, 0) + 1

    try:
        wait_for(lambda: node.height() >= 3, 120, "first commits", nodes=[node])
        rss_before = _vm_kib(node.proc.pid, "VmRSS")
        loops = [threading.Thread(target=bad_gets, daemon=True) for _ in range(2)]
        for t in loops:
            t.start()
        outcomes: list[str] = []
        posts = [threading.Thread(target=lambda c=c: outcomes.append(_post_big(node.api, c)))
                 for c in [False] * 6 + [True]]
        for t in posts:
            t.start()
        for t in posts:
            t.join(120)
        h = node.height()
        wait_for(lambda: node.height() >= h + 20, 120, "20 commits during the bad-GET loop", nodes=[node])
        stop.set()
        for t in loops:
            t.join(30)
        peak = _vm_kib(node.proc.pid, "VmHWM")
        assert all(o in ("413", "WriteError", "RemoteProtocolError", "ReadError") for o in outcomes), outcomes
        assert outcomes.count("413") >= 1, outcomes
        assert set(codes) <= {"400", "404"} and sum(codes.values()) > 0, codes
        # 7 bodies of 50 MiB read whole would add 350 MiB; capped while streaming they add buffers only.
        assert peak - rss_before < 64 * 1024, f"peak RSS grew by {(peak - rss_before) // 1024} MiB"
        assert "Traceback" not in (node.home / "node.log").read_text(errors="replace")
    finally:
        stop.set()
        stop_all([node])

