"""The rules: given what each source says about one transaction, which class is it?

Effects are signed fen that moved (+ collected, - refunded, 0 nothing). Books (HIS) against money
(the channel) decides first, because that is what finance staff must act on; our journal explains
the difference, and is a difference of its own only where HIS and the channel agree with each
other but not with it.

    HIS == ours == channel                    matched
    collection, channel has more than HIS     long   (长款: money HIS does not show; e.g. failed write-back)
    collection, HIS has more than channel     short  (短款: HIS shows money that never arrived)
    refund on one side only                   status mismatch
    both have it, amounts differ              amount mismatch
    HIS == channel, ours differs              amount or status mismatch (our journal is wrong or missing)
"""

from __future__ import annotations

from reconcile.model import COLLECT, DiffClass, Reason


def classify(direction: int, he: int, oe: int, ce: int, his_present: bool, ours_present: bool) -> tuple[DiffClass, Reason | None]:
    if he == oe == ce:
        return DiffClass.MATCHED, None
    if he != ce:
        if he != 0 and ce != 0:
            return DiffClass.AMOUNT, Reason.AMOUNT_HIS_CHANNEL
        if direction == COLLECT:
            if ce > he:
                return DiffClass.LONG, (Reason.HIS_NOT_PAID if his_present else Reason.HIS_MISSING)
            return DiffClass.SHORT, Reason.CHANNEL_MISSING
        return DiffClass.STATUS, (Reason.REFUND_CHANNEL_ONLY if ce != 0 else Reason.REFUND_HIS_ONLY)
    if oe != 0 and he != 0:
        return DiffClass.AMOUNT, Reason.AMOUNT_OURS
    return DiffClass.STATUS, (Reason.OURS_DISAGREES if ours_present else Reason.OURS_MISSING)
