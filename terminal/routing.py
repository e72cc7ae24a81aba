"""Which channel a scanned payment code belongs to, decided by its digits alone.

    WeChat Pay   18 digits, starting 10-15          (WeChat Pay "付款码" rules)
    Alipay       16-24 digits, starting 25-30       (Alipay "付款码" rules)

Anything else is refused with a `CodeRefused` that tells the cashier, in Chinese and English, what
they scanned instead; the instruction stays open for another scan. The scanner (a keyboard wedge)
ends a read with Enter, so surrounding ASCII whitespace is dropped; nothing else is "repaired":
full-width digits, dashes or inner spaces are refused.

Payment codes are bearer credentials for a minute: never log one whole, use `mask_code`.
"""

from __future__ import annotations

import re

from protocol.errors import CodedError
from protocol.messages import PayChannel
from terminal.texts import STRINGS, Text

_WECHAT = re.compile(r"1[0-5][0-9]{16}", re.ASCII)
_ALIPAY = re.compile(r"(2[5-9]|30)[0-9]{14,22}", re.ASCII)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://", re.ASCII)
# A scan longer than this is not a payment code of any kind; refuse before any regex work.
MAX_SCAN_CHARS = 512

NOT_A_PAYMENT_CODE = STRINGS["msg.not_a_payment_code"]
EMPTY_SCAN = STRINGS["msg.empty_scan"]
LINK_QR = STRINGS["msg.link_qr"]


class CodeRefused(CodedError, ValueError):
    """The scan is not a payment code we can route. `reason` is a stable code for logs and tests."""

    code = "code_refused"

    def __init__(self, reason: str, text: Text) -> None:
        super().__init__(f"{reason}: {text.en}")
        self.reason = reason
        self.text = text


def route_code(scan: str) -> tuple[PayChannel, str]:
    """Return (channel, code) for a payment code, or raise CodeRefused."""
    if not isinstance(scan, str):
        raise CodeRefused("not_a_payment_code", NOT_A_PAYMENT_CODE)
    if len(scan) > MAX_SCAN_CHARS:
        raise CodeRefused("not_a_payment_code", NOT_A_PAYMENT_CODE)
    code = scan.strip(" \t\r\n")
    if code == "":
        raise CodeRefused("empty_scan", EMPTY_SCAN)
    if _WECHAT.fullmatch(code):
        return PayChannel.WECHAT, code
    if _ALIPAY.fullmatch(code):
        return PayChannel.ALIPAY, code
    if _URL.match(code):
        raise CodeRefused("link_qr_code", LINK_QR)
    raise CodeRefused("not_a_payment_code", NOT_A_PAYMENT_CODE)


def mask_code(code: str) -> str:
    """'134567890123456789' -> '1345**********6789'; short or odd input shows no digits at all."""
    if len(code) < 12 or not _DIGITS.fullmatch(code):
        return "*" * min(len(code), 24)
    return code[:4] + "*" * (len(code) - 8) + code[-4:]
