"""The channel clients' own exceptions: configuration mistakes and bill downloads.

Payment calls never raise for anything the network or the channel does (see `base`): those are
outcomes. Two things are not outcomes: a configuration that cannot work (a missing key file, an
unknown setting) is refused when the client is built, and a bill download, which returns bytes,
signals a missing or unreadable bill with `BillDownloadError`.
"""

from __future__ import annotations

from protocol.errors import CodedError


class ChannelError(CodedError):
    """Base of the channel exceptions; `code` is stable for logs and tests."""

    code = "channel_error"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.code}: {message}")
        self.message = message


class ChannelConfigError(ChannelError, ValueError):
    """The channel settings cannot work (missing field, unreadable key file, bad URL)."""

    code = "channel_config"


class BillDownloadError(ChannelError):
    """The bill could not be fetched.

    `no_bill` is True when the channel says there is no bill for that day (no transactions, or the
    day is not over yet); `channel_code` carries the channel's own code (WeChat error_code /
    return_msg, Alipay sub_code) when it gave one.
    """

    code = "bill_download_failed"

    def __init__(self, message: str, *, no_bill: bool = False, channel_code: str | None = None) -> None:
        super().__init__(message)
        self.no_bill = no_bill
        self.channel_code = channel_code
