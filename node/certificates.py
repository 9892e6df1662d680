"""State-root votes: the ones this validator puts in its next block, and the ones the blocks it accepted carry.

A light client asks `GET /certificate/{height}` for the signed headers voting for a commit's state root and checks
them itself (protocol/lightclient.py, spec/state-tree.md §7). The book is memory only and bounded: it keeps the votes
of the last WINDOW heights around the head, at most one per signer and height (an honest validator votes once), so
a restart forgets them and a Byzantine author cannot grow it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

from protocol.consensus.core import Vertex
from protocol.lightclient import vote_digest
from protocol.messages import CommitVote, SignedBlock

MAX_VOTES = 16  # per block: the wire's cap on Block.commit_votes
WINDOW = 512  # heights kept below and above the head
HEADERS = 4096  # signed headers kept decoded for GET /certificate (a block may be up to 4 MiB to decode)


class VoteBook:
    def __init__(self) -> None:
        self.head = 0
        self._own: deque[CommitVote] = deque(maxlen=MAX_VOTES)  # executed, not yet in one of our blocks
        # height -> signer key -> (vote digest, block digest)
        self._seen: dict[int, dict[bytes, tuple[bytes, bytes]]] = {}
        self._headers: OrderedDict[bytes, bytes] = OrderedDict()  # block digest -> SignedHeader bytes

    def executed(self, index: int, commit_digest: bytes, state_root: bytes) -> None:
        """We applied commit `index`: vote for its root in our next block, and forget votes below the window."""
        self._own.append(CommitVote(index, vote_digest(commit_digest, state_root)))
        self.head = max(self.head, index)
        for h in [h for h in self._seen if h < self.head - WINDOW]:
            del self._seen[h]

    def own(self) -> tuple[CommitVote, ...]:
        """The votes for our next block: the latest MAX_VOTES commits executed since our last block."""
        return tuple(self._own)

    def sent(self) -> None:
        """Our block carrying `own()` is built."""
        self._own.clear()

    def record(self, accepted: Iterable[Vertex], keys: tuple[bytes, ...]) -> None:
        """Index the votes of blocks accepted into the DAG; `keys` is their epoch's committee, by author index."""
        for v in accepted:
            signer = keys[v.author]
            for vote in v.signed.body.commit_votes:
                if abs(vote.index - self.head) <= WINDOW:
                    self._seen.setdefault(vote.index, {}).setdefault(signer, (vote.digest, v.digest))

    def voters(self, index: int, vote: bytes) -> list[tuple[bytes, bytes]]:
        """(signer key, block digest) of each block seen voting `vote` for height `index`, in key order."""
        return sorted((k, block) for k, (d, block) in self._seen.get(index, {}).items() if d == vote)

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
