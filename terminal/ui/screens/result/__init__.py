"""The result: success or failure in plain words (the service's reason text), the channel and
transaction number, and a printed receipt on request."""

from __future__ import annotations

from kivy.uix.screenmanager import Screen

from protocol.amount import Direction
from terminal.texts import CHANNEL_NAME
from terminal.ui.catalogue import pick, tr
from terminal.ui.model import Outcome, display_yuan


def title(outcome: Outcome | None, lang: str) -> str:
    if outcome is None:
        return ""
    refund = outcome.direction is Direction.REFUND
    if outcome.error_code == "duplicate_order":
        return tr("result.duplicate", lang)
    if outcome.ok:
        return tr("result.refunded" if refund else "result.collected", lang)
    return tr("result.not_refunded" if refund else "result.not_collected", lang)


def details(outcome: Outcome | None, lang: str) -> str:
    if outcome is None:
        return ""
    lines = [tr("order_no", lang, order_no=outcome.order_no)]
    if outcome.channel is not None:
        lines.append(tr("result.channel", lang, channel=pick(CHANNEL_NAME[outcome.channel], lang)))
    if outcome.pay_order_no:
        lines.append(tr("result.pay_order_no", lang, pay_order_no=outcome.pay_order_no))
    return "\n".join(lines)


def direction(outcome: Outcome | None) -> str:
    return "refund" if outcome is not None and outcome.direction is Direction.REFUND else "collect"


def amount(outcome: Outcome | None) -> str:
    return "" if outcome is None else display_yuan(outcome.amount_fen)


class ResultScreen(Screen):
    pass
