"""Equivocation evidence and its penalty (spec/economics.md §4).

Pure rules: `check_evidence` decides whether two signed headers prove that one committee member
signed two different blocks for one slot; `slash` computes who loses what. protocol/state/state.py stores
the outcome. Integer arithmetic only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from protocol import crypto
from protocol.errors import BadSignatureError, TxRejected
from protocol.messages import ReportEquivocation
from protocol.state.genesis import PPM


def check_evidence(
    ev: ReportEquivocation, chain_id: str, committees: Mapping[int, Sequence[bytes]]
) -> tuple[int, bytes]:
    """The (epoch, hotkey) of the proven offence, or TxRejected naming the rule that failed.

    `committees` maps each epoch whose evidence is still accepted to its ordered member hotkeys."""
    a, b = ev.first.body, ev.second.body
    for h in (a, b):
        if h.chain_id != chain_id:
            raise TxRejected("evidence chain", f"a header is for chain {h.chain_id!r}, this chain is {chain_id!r}")
    if (a.epoch, a.round, a.author) != (b.epoch, b.round, b.author):
        raise TxRejected(
            "evidence slot",
            f"the headers are for different slots: (epoch {a.epoch}, round {a.round}, author {a.author}) and "
            f"(epoch {b.epoch}, round {b.round}, author {b.author})",
        )
    if a == b:
        raise TxRejected("evidence slot", "the two headers are the same block: that is not equivocation")
    members = committees.get(a.epoch)
    if members is None:
        known = ", ".join(str(e) for e in sorted(committees))
        raise TxRejected("evidence epoch", f"evidence for epoch {a.epoch}; only epochs {known} are accepted now")
    if a.author >= len(members):
        raise TxRejected(
            "evidence author", f"author {a.author} is not in epoch {a.epoch}'s committee of {len(members)}"
        )
    key = members[a.author]
    for signed in (ev.first, ev.second):
        try:
            signed.verify(chain_id, key)
        except BadSignatureError:
            raise TxRejected(
                "evidence signature",
                f"a header of round {a.round} is not signed by committee member {a.author} ({crypto.address(key)})",
            ) from None
    return a.epoch, key


def slash(
    stakes: Iterable[tuple[bytes, int]], slash_ppm: int, reporter_ppm: int
) -> tuple[list[tuple[bytes, int]], int, int]:
    """Cut each (coldkey, amount) stake on the offender by slash_ppm (rounded down).

    Returns the cuts in coldkey order, the reporter's reward (reporter_ppm of the total, rounded down)
    and the amount burned (the rest), so cuts sum to reward + burned exactly."""
    cuts = [(ck, amount * slash_ppm // PPM) for ck, amount in sorted(stakes)]
    cuts = [(ck, cut) for ck, cut in cuts if cut]
    total = sum(cut for _, cut in cuts)
    reward = total * reporter_ppm // PPM
    return cuts, reward, total - reward
