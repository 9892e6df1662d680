"""State-root votes: the ones this validator puts in its next block, and the ones the blocks it accepted carry.

A light client asks `GET /certificate/{height}` for the signed headers voting for a commit's state root and checks
them itself (protocol/lightclient.py, spec/state-tree.md §7). The votes seen are kept in the store (node/storage.py,
table `commit_votes`: signer, vote and the block carrying it, never the block again), one per signer and height, so
an old height's certificate, and with it each epoch's closing commit that a client needs to move its trust to the
next committee, is served long after and across restarts. Only votes for heights within WINDOW of the head are
taken, so a Byzantine author adds at most one row per height, like an honest one.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

from node.storage import Store
from protocol.consensus.core import Vertex
from protocol.lightclient import vote_digest
from protocol.messages import CommitVote, SignedBlock

MAX_VOTES = 16  # per block: the wire's cap on Block.commit_votes
WINDOW = 512  # votes are taken for heights this close to the head; further below, a height's votes are final
HEADERS = 4096  # signed headers kept decoded for GET /certificate (a block may be up to 4 MiB to decode)


class VoteBook:
    def __init__(self, store: Store) -> None:
        self.store = store
        last = store.last_commit()
        self.head = 0 if last is None else last.index  # a restarted node takes votes around its stored head
        self._own: deque[CommitVote] = deque(maxlen=MAX_VOTES)  # executed, not yet in one of our blocks
        self._headers: OrderedDict[bytes, bytes] = OrderedDict()  # block digest -> SignedHeader bytes

    def executed(self, index: int, commit_digest: bytes, state_root: bytes) -> None:
        """We applied commit `index`: vote for its root in our next block."""
        self._own.append(CommitVote(index, vote_digest(commit_digest, state_root)))
        self.head = max(self.head, index)

    def own(self) -> tuple[CommitVote, ...]:
        """The votes for our next block: the latest MAX_VOTES commits executed since our last block."""
        return tuple(self._own)

    def sent(self) -> None:
        """Our block carrying `own()` is built."""
        self._own.clear()

    def record(self, accepted: Iterable[Vertex], keys: tuple[bytes, ...]) -> None:
        """Store the votes of blocks accepted into the DAG; `keys` is their epoch's committee, by author index. A
        signer's first vote for a height stays (an honest validator votes once)."""
        rows = [
            (vote.index, keys[v.author], vote.digest, v.digest)
            for v in accepted
            for vote in v.signed.body.commit_votes
            if abs(vote.index - self.head) <= WINDOW
        ]
        if rows:
            self.store.put_votes(rows)

    def final(self, index: int) -> bool:
        """No more votes for `index` will be taken: it is over WINDOW below the head."""
        return index < self.head - WINDOW

    def voters(self, index: int, vote: bytes) -> list[tuple[bytes, bytes]]:
        """(signer key, block digest) of each block seen voting `vote` for height `index`, in key order."""
        return [(signer, block) for signer, d, block in self.store.votes_at(index) if d == vote]

    def headers(self, index: int, vote: bytes, load: Callable[[bytes], bytes | None]) -> list[tuple[bytes, bytes]]:
        """(signer key, SignedHeader bytes) of each block seen voting `vote` for `index`; `load` reads a stored block.

        Each header is cut from its block once and cached (the last HEADERS), so clients polling a certificate do
        not make the node decode whole blocks again on every request."""
        out = []
        for signer, block in self.voters(index, vote):
            header = self._headers.get(block)
            if header is None:
                data = load(block)
                if data is None:
                    continue
                header = self._headers[block] = SignedBlock.from_bytes(data).signed_header().to_bytes()
                if len(self._headers) > HEADERS:
                    self._headers.popitem(last=False)
            out.append((signer, header))
        return out
