"""What a channel front end hands back to the HTTP server, and the switches that corrupt replies.

`Reply.delay_s` makes the server wait before answering (slow codes); `Reply.swallow` makes it keep
the connection open and never answer (noreply codes). `Faults` lets a test make the sandbox sign its
replies wrongly, drop the signature or change a signed field, to prove the clients refuse them.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    delay_s: float = 0.0
    swallow: bool = False
    headers: tuple[tuple[str, str], ...] | dict[str, str] = ()  # extra response headers (WeChat APIv3's Wechatpay-*)


class SignatureFault(enum.Enum):
    OK = "ok"  # replies signed as the channel does
    CORRUPT = "corrupt"  # the signature is altered
    MISSING = "missing"  # no signature at all
    TAMPER = "tamper"  # a field is changed after signing


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._signature = {"WECHAT": SignatureFault.OK, "ALIPAY": SignatureFault.OK}

    def signature(self, channel: str) -> SignatureFault:
        with self._lock:
            return self._signature[channel]

    def set_signature(self, channel: str, fault: SignatureFault) -> None:
        with self._lock:
            self._signature[channel] = fault

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            return {channel: fault.value for channel, fault in self._signature.items()}


def corrupt_signature(signature: str) -> str:
    """Same length and alphabet, different value."""
    if not signature:
        return "0"
    first = signature[0]
    swapped = "B" if first == "A" else "A"
    return swapped + signature[1:]
