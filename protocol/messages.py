"""Every message the network carries, as frozen typed classes (spec/wire.md is normative).

Signed envelopes (`SignedBlock`, `SignedTransaction`, `SignedQuery`, `SignedResponse`) hold the
body and an ed25519 signature over the body's canonical bytes under the body's domain and chain
id. Digests are BLAKE2b-256 of the envelope's canonical bytes.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from protocol import codec, crypto
from protocol.crypto import Domain, Keypair
from protocol.errors import WrongChainError
from protocol.schema import (
    B32,
    B64,
    BOOL,
    U8,
    U16,
    U32,
    U64,
    Bytes,
    ListOf,
    Message,
    OneOf,
    Text,
    message,
)

# --- limits (spec/wire.md §Limits) -----------------------------------------------------------
MAX_CHAIN_ID = 64
MAX_PARENTS = 256  # one per committee member
MAX_BLOCK_TXS = 4096
MAX_TX_SIZE = 64 * 1024
MAX_BLOCK_SIZE = 4 * 1024 * 1024
MAX_WEIGHTS = 4096
MAX_FETCH = 32
MAX_QUERY_PAYLOAD = 1024 * 1024
MAX_MULTIADDRS = 8

ChainId = Annotated[str, Text(MAX_CHAIN_ID)]
Digest = Annotated[bytes, B32]
PublicKey = Annotated[bytes, B32]
Signature = Annotated[bytes, B64]
Netuid = Annotated[int, U16]
Amount = Annotated[int, U64]
Uids = Annotated[tuple[int, ...], ListOf(U16, MAX_WEIGHTS)]


# --- signed envelopes: the base ------------------------------------------------------------


class Signed(Message):
    """Body plus signature. Subclasses set DOMAIN and SIGNER (the body field holding the key)."""

    DOMAIN: ClassVar[Domain]
    SIGNER: ClassVar[str]
    body: Message
    signature: bytes

    @classmethod
    def create(cls, body: Message, keypair: Keypair):
        return cls(body, keypair.sign(cls.DOMAIN, body.chain_id, cls.covered(body)))

    @classmethod
    def covered(cls, body: Message) -> bytes:
        """The bytes the signature covers: the body's canonical encoding."""
        return body.to_bytes()

    def signer_key(self, public_keys: tuple[bytes, ...] = ()) -> bytes:
        value = getattr(self.body, self.SIGNER)
        return public_keys[value] if isinstance(value, int) else value

    def verify(self, chain_id: str, public_key: bytes | None = None) -> None:
        """Check the chain id, then the signature; raise a typed error if either is wrong."""
        if self.body.chain_id != chain_id:
            raise WrongChainError(f"message is for chain {self.body.chain_id!r}, this node is on {chain_id!r}")
        key = public_key if public_key is not None else getattr(self.body, self.SIGNER)
        crypto.verify(key, self.DOMAIN, chain_id, self.covered(self.body), self.signature)

    @property
    def digest(self) -> bytes:
        return crypto.digest(self.to_bytes())


# --- consensus ---------------------------------------------------------------------------------


@message
class BlockRef(Message):
    round: Annotated[int, U64]
    author: Annotated[int, U32]
    digest: Digest


@message
class CommitVote(Message):
    """A state-root vote: `digest` = H(tag || commit `index`'s digest || the state root after it), state-tree.md §7."""

    index: Annotated[int, U64]
    digest: Digest


@message
class BlockHeader(Message):
    """What a block's signature covers: the block with its payload replaced by the payload's digest.

    So evidence of equivocation (two signed headers for one slot) stays small whatever the blocks carry."""

    chain_id: ChainId
    epoch: Annotated[int, U64]
    round: Annotated[int, U64]
    author: Annotated[int, U32]
    timestamp_ms: Annotated[int, U64]
    parents: Annotated[tuple[BlockRef, ...], ListOf(BlockRef, MAX_PARENTS)]
    payload_digest: Digest
    commit_votes: Annotated[tuple[CommitVote, ...], ListOf(CommitVote, 16)]


def payload_digest(payload: tuple[bytes, ...]) -> bytes:
    """BLAKE2b-256 of the canonical CBOR array of a block's transactions."""
    return crypto.digest(codec.encode(list(payload)))


@message
class Block(Message):
    chain_id: ChainId
    epoch: Annotated[int, U64]
    round: Annotated[int, U64]
    author: Annotated[int, U32]  # index in the epoch's committee
    timestamp_ms: Annotated[int, U64]
    parents: Annotated[tuple[BlockRef, ...], ListOf(BlockRef, MAX_PARENTS)]
    payload: Annotated[tuple[bytes, ...], ListOf(Bytes(max_size=MAX_TX_SIZE), MAX_BLOCK_TXS)]
    commit_votes: Annotated[tuple[CommitVote, ...], ListOf(CommitVote, 16)]

    def header(self) -> BlockHeader:
        return BlockHeader(
            self.chain_id, self.epoch, self.round, self.author, self.timestamp_ms, self.parents,
            payload_digest(self.payload), self.commit_votes,
        )


@message
class Commit(Message):
    """One linearised sub-DAG: the chain's unit of height."""

    index: Annotated[int, U64]
    leader: BlockRef
    blocks: Annotated[tuple[BlockRef, ...], ListOf(BlockRef, 1 << 16)]
    timestamp_ms: Annotated[int, U64]
    prev_digest: Digest


@message
class SignedHeader(Signed):
    """A block header with its author's signature: one half of equivocation evidence."""

    DOMAIN: ClassVar[Domain] = Domain.BLOCK
    SIGNER: ClassVar[str] = "author"  # a committee index: verify with the committee's key
    body: BlockHeader
    signature: Signature


# --- transactions ------------------------------------------------------------------------------


@message
class Transfer(Message):
    KIND: ClassVar[str] = "transfer"
    dest: PublicKey
    amount: Amount


@message
class AddStake(Message):
    KIND: ClassVar[str] = "add_stake"
    hotkey: PublicKey
    amount: Amount


@message
class RemoveStake(Message):
    KIND: ClassVar[str] = "remove_stake"
    hotkey: PublicKey
    amount: Amount


@message
class CreateSubnet(Message):
    KIND: ClassVar[str] = "create_subnet"
    name: Annotated[str, Text(64)]
    max_burn: Amount  # refuse if the current price is above this


@message
class Register(Message):
    KIND: ClassVar[str] = "register"
    netuid: Netuid
    hotkey: PublicKey
    max_burn: Amount


@message
class ServeAxon(Message):
    KIND: ClassVar[str] = "serve_axon"
    netuid: Netuid
    peer_id: Annotated[str, Text(128)]
    multiaddrs: Annotated[tuple[str, ...], ListOf(Text(256), MAX_MULTIADDRS)]


@message
class SetWeights(Message):
    KIND: ClassVar[str] = "set_weights"
    netuid: Netuid
    uids: Uids
    values: Uids
    version_key: Amount


@message
class CommitWeights(Message):
    KIND: ClassVar[str] = "commit_weights"
    netuid: Netuid
    commit_hash: Digest


@message
class RevealWeights(Message):
    KIND: ClassVar[str] = "reveal_weights"
    netuid: Netuid
    uids: Uids
    values: Uids
    salt: Annotated[bytes, Bytes(max_size=64)]
    version_key: Amount


@message
class SetHyperparameter(Message):
    KIND: ClassVar[str] = "set_hyperparameter"
    netuid: Netuid
    name: Annotated[str, Text(64)]
    value: Amount


# --- paid inference (spec/economics.md §3) ----------------------------------------------------


@message
class Voucher(Message):
    """A client's promise: pay `price` units from escrow `escrow_id` to `miner` for the query whose
    SignedQuery digest is `query_digest`. `nonce` is chosen by the client and spent once per escrow."""

    chain_id: ChainId
    escrow_id: Annotated[int, U64]
    nonce: Annotated[int, U64]
    client: PublicKey
    miner: PublicKey
    query_digest: Digest
    price: Amount


@message
class ServiceProof(Message):
    """The miner's statement that it answered the query of voucher `voucher_digest` with the
    SignedResponse whose digest is `response_digest`."""

    chain_id: ChainId
    miner: PublicKey
    voucher_digest: Digest
    response_digest: Digest


@message
class SignedVoucher(Signed):
    DOMAIN: ClassVar[Domain] = Domain.VOUCHER
    SIGNER: ClassVar[str] = "client"
    MAX_SIZE: ClassVar[int] = 1024
    body: Voucher
    signature: Signature


@message
class SignedServiceProof(Signed):
    DOMAIN: ClassVar[Domain] = Domain.SERVICE
    SIGNER: ClassVar[str] = "miner"
    MAX_SIZE: ClassVar[int] = 1024
    body: ServiceProof
    signature: Signature


@message
class OpenEscrow(Message):
    KIND: ClassVar[str] = "open_escrow"
    netuid: Netuid
    amount: Amount
    expires_at: Annotated[int, U64]  # last height at which a voucher can be claimed


@message
class ClaimPayment(Message):
    KIND: ClassVar[str] = "claim_payment"
    voucher: SignedVoucher
    proof: SignedServiceProof


@message
class CloseEscrow(Message):
    KIND: ClassVar[str] = "close_escrow"
    escrow_id: Annotated[int, U64]


# --- governance (spec/economics.md §2) ---------------------------------------------------------


@message
class Propose(Message):
    """Propose setting network parameter `name` to `value` (a deposit is locked; see spec/economics.md §2)."""

    KIND: ClassVar[str] = "propose"
    name: Annotated[str, Text(64)]
    value: Amount
    memo: Annotated[str, Text(256)]


@message
class Vote(Message):
    """Vote on proposal `proposal`: choice 0 = no, 1 = yes, 2 = abstain."""

    KIND: ClassVar[str] = "vote"
    proposal: Annotated[int, U64]
    choice: Annotated[int, U8]


@message
class ReportEquivocation(Message):
    """Evidence that one committee member signed two different blocks for one round (spec/economics.md §4)."""

    KIND: ClassVar[str] = "report_equivocation"
    first: SignedHeader
    second: SignedHeader


CALLS = (
    Transfer,
    AddStake,
    RemoveStake,
    CreateSubnet,
    Register,
    ServeAxon,
    SetWeights,
    CommitWeights,
    RevealWeights,
    SetHyperparameter,
    OpenEscrow,
    ClaimPayment,
    CloseEscrow,
    Propose,
    Vote,
    ReportEquivocation,
)
Call = Transfer | AddStake | RemoveStake | CreateSubnet | Register | ServeAxon | SetWeights | CommitWeights
Call = Call | RevealWeights | SetHyperparameter | OpenEscrow | ClaimPayment | CloseEscrow | Propose | Vote
Call = Call | ReportEquivocation


@message
class Transaction(Message):
    """`tip` (units) is burned with the fee and buys mempool priority (spec/economics.md §6)."""

    chain_id: ChainId
    signer: PublicKey
    nonce: Annotated[int, U64]
    call: Annotated[Call, OneOf(*CALLS)]
    tip: Amount


# --- network requests ------------------------------------------------------------------------


@message
class Status(Message):
    """The handshake each side sends on connect; a peer on another chain is dropped."""

    chain_id: ChainId
    genesis_hash: Digest
    height: Annotated[int, U64]
    head_digest: Digest
    epoch: Annotated[int, U64]
    highest_round: Annotated[int, U64]
    validator: Annotated[bool, BOOL]


@message
class FetchBlocks(Message):
    """Blocks by reference, or all blocks of rounds [round_from, round_to] when refs is empty."""

    epoch: Annotated[int, U64]
    refs: Annotated[tuple[BlockRef, ...], ListOf(BlockRef, MAX_FETCH)]
    round_from: Annotated[int, U64]
    round_to: Annotated[int, U64]


@message
class FetchOwnLast(Message):
    """Ask a peer for the highest block it holds by `author` (a validator recovering a wiped store)."""

    epoch: Annotated[int, U64]
    author: Annotated[int, U32]


@message
class BlocksResponse(Message):
    MAX_SIZE: ClassVar[int] = MAX_FETCH * MAX_BLOCK_SIZE
    blocks: Annotated[tuple[bytes, ...], ListOf(Bytes(max_size=MAX_BLOCK_SIZE), MAX_FETCH)]


@message
class FetchCommits(Message):
    start: Annotated[int, U64]
    end: Annotated[int, U64]  # inclusive; servers may return fewer


@message
class CommitsResponse(Message):
    MAX_SIZE: ClassVar[int] = 8 * 1024 * 1024
    commits: Annotated[tuple[Commit, ...], ListOf(Commit, MAX_FETCH)]


@message
class Query(Message):
    """A validator's challenge to the miner whose hotkey is `miner`, on subnet `netuid`; `payload` is the
    task's own CBOR. Naming the miner under the signature stops one miner's query being replayed to another."""

    chain_id: ChainId
    netuid: Netuid
    caller: PublicKey
    miner: PublicKey
    request_id: Annotated[bytes, Bytes(16)]
    sent_ms: Annotated[int, U64]
    payload: Annotated[bytes, Bytes(max_size=MAX_QUERY_PAYLOAD)]


@message
class Response(Message):
    chain_id: ChainId
    netuid: Netuid
    miner: PublicKey
    request_id: Annotated[bytes, Bytes(16)]
    status: Annotated[int, U8]  # 0 ok; otherwise a refusal code (spec/wire.md)
    payload: Annotated[bytes, Bytes(max_size=MAX_QUERY_PAYLOAD)]


# --- signed envelopes --------------------------------------------------------------------------


@message
class SignedBlock(Signed):
    """A block and its author's signature, which covers `body.header()` (spec/wire.md)."""

    DOMAIN: ClassVar[Domain] = Domain.BLOCK
    SIGNER: ClassVar[str] = "author"  # a committee index: verify with the committee's key
    MAX_SIZE: ClassVar[int] = MAX_BLOCK_SIZE
    body: Block
    signature: Signature

    @classmethod
    def covered(cls, body: Message) -> bytes:
        assert isinstance(body, Block)
        return body.header().to_bytes()

    def signed_header(self) -> SignedHeader:
        return SignedHeader(self.body.header(), self.signature)

    @property
    def ref(self) -> BlockRef:
        return BlockRef(self.body.round, self.body.author, self.digest)


@message
class SignedTransaction(Signed):
    DOMAIN: ClassVar[Domain] = Domain.TX
    SIGNER: ClassVar[str] = "signer"
    MAX_SIZE: ClassVar[int] = MAX_TX_SIZE
    body: Transaction
    signature: Signature


@message
class SignedQuery(Signed):
    DOMAIN: ClassVar[Domain] = Domain.REQUEST
    SIGNER: ClassVar[str] = "caller"
    MAX_SIZE: ClassVar[int] = MAX_QUERY_PAYLOAD + 4096  # a full payload plus the envelope
    body: Query
    signature: Signature


@message
class SignedResponse(Signed):
    DOMAIN: ClassVar[Domain] = Domain.RESPONSE
    SIGNER: ClassVar[str] = "miner"
    MAX_SIZE: ClassVar[int] = MAX_QUERY_PAYLOAD + 4096
    body: Response
    signature: Signature


@message
class PaidQuery(Message):
    """A paying client's query with its voucher (`/tensornet/subnet-paid-query/1`, spec/economics.md §3);
    `voucher.query_digest` is `query.digest`."""

    MAX_SIZE: ClassVar[int] = SignedQuery.MAX_SIZE + SignedVoucher.MAX_SIZE
    query: SignedQuery
    voucher: SignedVoucher


# Every top-level type a peer can send us, by name: the fuzzers and the vector tests walk it.
WIRE_TYPES: dict[str, type[Message]] = {
    cls.__name__: cls
    for cls in (
        SignedBlock,
        SignedTransaction,
        SignedQuery,
        SignedResponse,
        PaidQuery,
        Status,
        FetchBlocks,
        FetchOwnLast,
        BlocksResponse,
        FetchCommits,
        CommitsResponse,
        Commit,
        BlockRef,
    )
}
