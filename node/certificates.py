"""State-root votes: the ones this validator puts in its next block, and the ones the blocks it accepted carry.

A light client asks `GET /certificate/{height}` for the signed headers voting for a commit's state root and checks
them itself (protocol/lightclient.py, spec/state-tree.md §7). The book is memory only and bounded: it keeps the votes
of the last WINDOW heights around the head, at most one per signer and height (an honest validator votes once), so
a restart forgets them and a Byzantine author cannot grow it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from protocol.consensus.core import Vertex
from protocol.lightclient import vote_digest
from protocol.messages import CommitVote

MAX_VOTES = 16  # per block: the wire's cap on Block.commit_votes
WINDOW = 512  # heights kept below and above the head


class VoteBook:
    def __init__(self) -> None:
        self.head = 0
        self._own: deque[CommitVote] = deque(maxlen=MAX_VOTES)  # executed, not yet in one of our blocks
        # height -> signer key -> (vote digest, block digest)
        self._seen: dict[int, dict[bytes, tuple[bytes, bytes]]] = {}

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
