"""Check a node's answer without trusting the node: a state proof under a root that a quorum of stake signed.

Each validator's block carries, in its signed header, a `CommitVote(index, vote_digest(commit digest, state root))`
for each commit it executed since its previous block (spec/state-tree.md §7). Blocks of 2f+1 of the stake a client
trusts that carry the same vote certify that root: at least one of them is honest, and an honest validator votes
only for the root its own execution gave. A light client imports this module and protocol's base alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from protocol import codec, crypto
from protocol.errors import DecodeError, ProtocolError
from protocol.messages import SignedHeader
from protocol.proof import Proof, verify

VOTE_TAG = b"tensornet/state-root-vote"


class CertificateError(ProtocolError):
    """Too little trusted stake signed the vote for a root; the message says how much did."""


def vote_digest(commit_digest: bytes, state_root: bytes) -> bytes:
    """What a validator signs for a commit it executed: the commit and the state root after it, bound together."""
    return crypto.digest(VOTE_TAG + commit_digest + state_root)


def quorum(total: int) -> int:
    """Q = floor(2T/3) + 1, as the committee's (protocol/consensus/committee.py), restated so this stands alone."""
    return total * 2 // 3 + 1


@dataclass(frozen=True, slots=True)
class Certified:
    """A root that `stake` of `total` trusted stake signed for commit `height`."""

    height: int
    root: bytes
    stake: int
    total: int


def certified_stake(
    chain_id: str, committee: Mapping[bytes, int], height: int, vote: bytes, headers: Iterable[tuple[bytes, bytes]]
) -> int:
    """The trusted stake among `headers` ((signer key, SignedHeader bytes)) validly signing `CommitVote(height, vote)`.

    A header that does not decode, is for another chain, is badly signed, is by a key outside `committee`, or lacks
    the vote counts nothing; each key counts once. The header's author index is not checked: the node we ask could
    lie about which epoch's order it uses, while the key is what signed."""
    signed: set[bytes] = set()
    for key, data in headers:
        if key in signed or committee.get(key, 0) <= 0:
            continue
        try:
            header = SignedHeader.from_bytes(data)
            header.verify(chain_id, key)
        except ProtocolError:
            continue
        if any(v.index == height and v.digest == vote for v in header.body.commit_votes):
            signed.add(key)
    return sum(committee[k] for k in signed)


def check_certificate(
    chain_id: str, committee: Mapping[bytes, int], height: int, commit_digest: bytes, root: bytes,
    headers: Iterable[tuple[bytes, bytes]],
) -> Certified:
    """The certificate of `root` after commit `height`, or CertificateError if under a quorum of trusted stake."""
    total = sum(committee.values())
    if total <= 0:
        raise CertificateError("the trusted committee holds no stake")
    stake = certified_stake(chain_id, committee, height, vote_digest(commit_digest, root), headers)
    if stake < quorum(total):
        raise CertificateError(
            f"state root {root.hex()[:16]}… at height {height} is signed by {stake} of {total} trusted stake, "
            f"under the quorum of {quorum(total)}"
        )
    return Certified(height, root, stake, total)


class BoundaryError(CertificateError):
    """Trust could not move past the closing commit of `epoch` (at `height`, if known): the node's answer there does
    not check out against the committee trusted for that epoch (spec/state-tree.md §7)."""

    def __init__(self, epoch: int, height: int | None, reason: str) -> None:
        self.epoch, self.height, self.reason = epoch, height, reason
        at = "" if height is None else f" at height {height}"
        super().__init__(f"epoch {epoch}'s closing commit{at}: {reason}")


def epoch_committee(value: bytes) -> tuple[int, dict[bytes, int]]:
    """(epoch, hotkey -> stake) of the committee in the `epoch` global record (spec/state.md §9): what a client
    that verified that record under a certified root may trust next (spec/state-tree.md §7)."""
    epoch, committee, _ = epoch_record(value)
    return epoch, committee


def epoch_record(value: bytes) -> tuple[int, dict[bytes, int], int]:
    """(epoch, hotkey -> stake, first height of the epoch) in the `epoch` global record; CertificateError if the
    bytes are no such record."""
    try:
        record = codec.decode(value)
        epoch, members, start = record[0], record[1], record[4]
        committee: dict[bytes, int] = {}
        for hotkey, stake, *_ in members:
            if type(hotkey) is not bytes or len(hotkey) != 32 or type(stake) is not int or stake <= 0:
                raise ValueError("a member is [32-byte hotkey, positive stake, ...]")
            committee[hotkey] = committee.get(hotkey, 0) + stake
        if type(epoch) is not int or type(start) is not int or not committee:
            raise ValueError("the record is [epoch, [member...], _, _, epoch_start, ...] with at least one member")
    except (DecodeError, TypeError, ValueError, IndexError, KeyError) as exc:
        raise CertificateError(f"not an epoch record with a committee: {exc}") from None
    return epoch, committee, start


def next_committee(epoch: int, height: int, value: bytes | None) -> dict[bytes, int]:
    """The committee of epoch `epoch + 1`, from the `epoch` record that a client proved under the root that epoch
    `epoch`'s committee certified at `height`. The record must name epoch + 1 starting at height + 1: that makes
    `height` exactly the closing commit of `epoch`, where the state first names the next committee. BoundaryError
    otherwise."""
    if value is None:
        raise BoundaryError(epoch, height, "the state holds no epoch record there")
    try:
        named, committee, start = epoch_record(value)
    except CertificateError as exc:
        raise BoundaryError(epoch, height, str(exc)) from None
    if (named, start) != (epoch + 1, height + 1):
        raise BoundaryError(epoch, height, f"the state there is in epoch {named} from height {start}, not epoch "
                                           f"{epoch + 1} from height {height + 1}: not that epoch's closing commit")
    return committee


def verify_value(
    chain_id: str, committee: Mapping[bytes, int], height: int, commit_digest: bytes, root: bytes, key: bytes,
    value: bytes | None, proof: bytes, headers: Iterable[tuple[bytes, bytes]],
) -> Certified:
    """`key -> value` (None: absent) holds in the state after commit `height`: the proof leads to `root`, and a
    quorum of trusted stake signed that root. Raises ProofError or CertificateError, else returns the certificate."""
    verify(root, key, value, Proof.from_bytes(proof))
    return check_certificate(chain_id, committee, height, commit_digest, root, headers)
