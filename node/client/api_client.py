"""A small client of a node's HTTP API, for the CLI, miners, validators and the testnet runner.

Also builds and signs transactions: `client.send(keypair, call)` fetches the signer's next nonce,
quotes the fee, signs, submits, and returns the digest; an API refusal raises `ApiError` carrying the node's
rule. The client's `FeePolicy` (tip, maximum fee, who is shown the fee before signing) applies to every
transaction it sends, so a command sets it once however deep its signing happens.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from node.errors import NodeError
from protocol import crypto
from protocol.crypto import Keypair
from protocol.economics.emission import decimal_tokens
from protocol.economics.fees import tx_fee
from protocol.errors import ProtocolError
from protocol.lightclient import BoundaryError, CertificateError, Certified, check_certificate, next_committee
from protocol.messages import SignedTransaction, Transaction
from protocol.proof import Proof, verify
from protocol.state import keys

DEFAULT_NODE = "http://127.0.0.1:26657"


class ApiError(NodeError):
    """The node answered with an error (or could not be reached)."""

    def __init__(self, message: str, rule: str | None = None, status: int | None = None) -> None:
        self.rule = rule
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Quote:
    """A transaction about to be signed and the fee it will burn (spec/economics.md §6)."""

    tx: Transaction
    fee: int

    def check(self, max_fee: int | None) -> None:
        if max_fee is not None and self.fee > max_fee:
            raise NodeError(
                f"the fee would be {decimal_tokens(self.fee)} token ({self.fee} units), above the maximum "
                f"{decimal_tokens(max_fee)} ({max_fee} units): not signed"
            )

    def sign(self, keypair: Keypair) -> bytes:
        return SignedTransaction.create(self.tx, keypair).to_bytes()


@dataclass(frozen=True)
class Crossing:
    """One epoch boundary crossed by `NodeClient.walk`: trust moved from the committee of `epoch` to the next one's."""

    epoch: int  # the epoch that closed
    height: int  # its closing commit
    certified: Certified  # that commit's root, signed by the committee of `epoch`
    committee: dict[bytes, int]  # the committee of epoch + 1, proven under that root: trusted now


@dataclass(frozen=True)
class FeePolicy:
    """How a client pays for what it signs: `tip` units added to each fee, `max_fee` units above which it
    refuses to sign, and `show(quote, balance)` called before each signature (the CLI prints the fee)."""

    tip: int = 0
    max_fee: int | None = None
    show: Callable[[Quote, int], None] | None = None


class NodeClient:
    def __init__(self, url: str | None = None, timeout: float = 10.0, fees: FeePolicy | None = None) -> None:
        self.url = (url or os.environ.get("TENSORNET_NODE") or DEFAULT_NODE).rstrip("/")
        if not self.url.startswith("http"):
            self.url = "http://" + self.url
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self.fees = fees or FeePolicy()
        self.sent: list[Quote] = []  # what send() signed and the node accepted, in order (for reports)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, resp: httpx.Response) -> Any:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 400:
            msg = body.get("error") if isinstance(body, dict) else resp.text[:200]
            rule = body.get("rule") if isinstance(body, dict) else None
            raise ApiError(f"node refused: {msg}", rule, resp.status_code)
        return body

    def get(self, path: str, **params: Any) -> Any:
        try:
            return self._check(self._http.get(path, params=params or None))
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the node at {self.url}: {exc} (is `tensornet node run` up?)") from None

    def post_tx(self, data: bytes) -> bytes:
        try:
            resp = self._http.post("/tx", content=data, headers={"content-type": "application/cbor"})
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the node at {self.url}: {exc}") from None
        return bytes.fromhex(self._check(resp)["digest"])

    # --- conveniences ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self.get("/status")

    def healthy(self) -> bool:
        try:
            return self._http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def next_nonce(self, public: bytes) -> int:
        return int(self.get(f"/accounts/{crypto.address(public)}/nonce")["next_nonce"])

    def account(self, public: bytes) -> dict[str, Any]:
        return self.get(f"/accounts/{crypto.address(public)}")

    def metagraph(self, netuid: int) -> list[dict[str, Any]]:
        return self.get(f"/subnets/{netuid}/metagraph")

    def escrow(self, escrow_id: int) -> dict[str, Any] | None:
        """An open escrow (spec/economics.md §3), or None when it is closed or was never opened."""
        try:
            return self.get(f"/escrows/{escrow_id}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def escrows_of(self, public: bytes) -> list[dict[str, Any]]:
        return self.get(f"/accounts/{crypto.address(public)}/escrows")

    def verified(
        self, key: bytes, chain_id: str, committee: Mapping[bytes, int], timeout: float = 10.0
    ) -> tuple[bytes | None, Certified]:
        """`key`'s value (None: absent) in the node's latest committed state, trusting nothing the node says: the
        proof must lead to the root, and stake of `committee` (the caller's trusted keys -> stake) over its quorum
        must have signed that root on `chain_id` (protocol/lightclient.py). The votes come a round or two after
        the commit, so this polls GET /certificate for up to `timeout`; raises ProofError, CertificateError or
        ApiError."""
        height, digest, root, value = self._proven(key)
        return value, self._certified(chain_id, committee, height, digest, root, timeout)

    def _proven(self, key: bytes, height: int | None = None) -> tuple[int, bytes, bytes, bytes | None]:
        """(height, commit digest, root, value) from GET /proof, the value checked against the root only (ProofError
        if its proof does not lead there); at the latest commit, or at the epoch boundary `height`."""
        ans = self.get(f"/proof/{key.hex()}", **({} if height is None else {"height": height}))
        try:
            at, digest, root = int(ans["height"]), bytes.fromhex(ans["commit_digest"]), bytes.fromhex(ans["root"])
            value = None if ans["value"] is None else bytes.fromhex(ans["value"])
            proof = bytes.fromhex(ans["proof"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError(f"the node's /proof answer lacks or garbles {exc}") from None
        if height is not None and at != height:
            raise ApiError(f"the node's /proof answer is for height {at}, not the {height} asked for")
        verify(root, key, value, Proof.from_bytes(proof))
        return at, digest, root, value

    def _certified(self, chain_id: str, committee: Mapping[bytes, int], height: int, digest: bytes, root: bytes,
                   timeout: float) -> Certified:
        """`root` after commit `height` as signed by over 2/3 of `committee`'s stake, polling GET /certificate for up
        to `timeout` (the votes come a round or two after the commit); CertificateError after that."""
        deadline = time.monotonic() + timeout
        while True:
            cert = self.get(f"/certificate/{height}")
            try:
                headers = [(bytes.fromhex(x["signer"]), bytes.fromhex(x["header"])) for x in cert["headers"]]
            except (KeyError, TypeError, ValueError) as exc:
                raise ApiError(f"the node's /certificate answer lacks or garbles {exc}") from None
            try:
                return check_certificate(chain_id, committee, height, digest, root, headers)
            except CertificateError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def walk(self, chain_id: str, epoch: int, committee: Mapping[bytes, int],
             on_step: Callable[[Crossing], None] | None = None, timeout: float = 10.0) -> list[Crossing]:
        """Move trust from `committee` (of `epoch`) across every later epoch boundary the node keeps a proof at,
        oldest first (spec/state-tree.md §7): at each, over 2/3 of the committee trusted then must have signed the
        closing commit's root, and the `epoch` global record proven under it must name the next epoch and its
        committee, trusted from then on. Which boundaries exist is the node's word: the caller checks that the
        head's epoch is the last one reached. Raises BoundaryError naming the epoch, or ApiError."""
        steps: list[Crossing] = []
        key = keys.global_("epoch")
        while True:
            rows = self.get("/boundaries", **{"from": epoch})
            try:
                listed = [(int(r["epoch"]), int(r["height"])) for r in rows]
            except (KeyError, TypeError, ValueError) as exc:
                raise ApiError(f"the node's /boundaries answer lacks or garbles {exc}") from None
            if not listed:
                return steps
            for closed, height in listed:
                if closed != epoch:
                    raise ApiError(f"epoch {epoch}'s closing commit: this node keeps no proof there (its next is "
                                   f"epoch {closed}'s at height {height}); ask another node")
                try:
                    at, digest, root, value = self._proven(key, height)
                    certified = self._certified(chain_id, committee, at, digest, root, timeout)
                    committee = next_committee(epoch, at, value)
                except BoundaryError:
                    raise
                except ProtocolError as exc:  # ProofError, CertificateError: the node's answer does not check out
                    raise BoundaryError(epoch, height, str(exc)) from None
                except ApiError as exc:
                    raise ApiError(f"epoch {epoch}'s closing commit at height {height}: {exc}", exc.rule,
                                   exc.status) from None
                steps.append(Crossing(epoch, height, certified, committee))
                if on_step is not None:
                    on_step(steps[-1])
                epoch += 1

    def quote(self, keypair: Keypair, call: Any, nonce: int | None = None, tip: int = 0) -> Quote:
        """The unsigned transaction and the fee it will burn, from the chain's fee parameters (/status)."""
        status = self.status()
        if nonce is None:
            nonce = self.next_nonce(keypair.public)
        tx = Transaction(status["chain_id"], keypair.public, nonce, call, tip)
        size = len(SignedTransaction(tx, bytes(64)).to_bytes())  # a signature is always 64 bytes
        fees = status.get("fees") or {}
        fee = tx_fee(size, call, keypair.public, tip, int(fees.get("tx_base_fee", 0)), int(fees.get("tx_byte_fee", 0)))
        return Quote(tx, fee)

    def send(self, keypair: Keypair, call: Any, nonce: int | None = None) -> bytes:
        """Sign `call` with `keypair` under the client's FeePolicy and submit it; returns the digest."""
        q = self.quote(keypair, call, nonce, self.fees.tip)
        if self.fees.show is not None:
            self.fees.show(q, int(self.account(keypair.public).get("balance", 0)))
        q.check(self.fees.max_fee)
        digest = self.post_tx(q.sign(keypair))
        self.sent.append(q)
        return digest

    def wait_height(self, height: int, timeout: float = 30.0) -> int:
        """Block until the node's height reaches `height`; returns it (ApiError on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            h = int(self.status()["height"])
            if h >= height:
                return h
            if time.monotonic() > deadline:
                raise ApiError(f"node at {self.url} still at height {h} after {timeout:.0f}s (wanted {height})")
            time.sleep(0.2)
