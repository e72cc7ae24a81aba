"""posflash/hints.py: the advice pos-flash adds to every flash error, once."""

from __future__ import annotations

from posflash.hints import HINTS, advise
from protocol import flash as fc
from protocol.flash import FlashCode, FlashError


def test_every_code_has_a_hint() -> None:
    assert set(HINTS) == set(FlashCode)


def test_advice_follows_what_went_wrong_and_is_added_once() -> None:
    err = advise(FlashError(FlashCode.DOWNGRADE, "counter 3 is below 5"))
    assert err.code is FlashCode.DOWNGRADE and err.detail == "counter 3 is below 5"
    assert err.message.startswith("counter 3 is below 5; ") and HINTS[FlashCode.DOWNGRADE] in err.message
    assert advise(err).message == err.message


def test_an_error_from_the_device_gets_the_advice_once_after_the_link() -> None:
    sent = FlashError(FlashCode.DOWNGRADE, "counter 3 is below 5")
    reply = fc.decode(*fc.encode(fc.error_reply(sent, req=7, op=fc.FlashType.BEGIN)))
    assert isinstance(reply, fc.ErrorReply)
    back = reply.to_error()
    shown = advise(back).message
    assert shown.count(HINTS[FlashCode.DOWNGRADE]) == 1 and shown.startswith("counter 3 is below 5")
