"""The POS's alarms: an instruction handed to a person (terminal.machine.NeedsPerson), and where
that is reported besides the screen and HIS's progress event: the provider's gateway, which lists
every open alarm for its operators (`gateway-admin alarms list`).

    sink.report(Alarm(...)) -> bool   # True once the gateway has it; never raises

A report that does not get through is sent again when the worker next looks at the instruction
(a RECHECK or a restart hands it over again if nothing changed); the gateway keeps one alarm per
(device, reference, reason), so repeats are harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from protocol.messages import PayChannel


@dataclass(frozen=True, slots=True)
class Alarm:
    reason: str  # terminal.machine.NeedsPerson value: a stable code
    kind: str  # "collect" or "refund"
    order_no: str
    amount_fen: int
    channel: PayChannel | None
    reference: str  # the out_trade_no (collect) or out_refund_no (refund) the channel knows it by
    message: str | None  # the channel's last words, if any (never a payment code or a patient's name)


class AlarmSink(Protocol):
    def report(self, alarm: Alarm) -> bool: ...
