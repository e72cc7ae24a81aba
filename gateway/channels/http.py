"""One bounded HTTP exchange with a channel, over requests.

Channel replies are small; a reply that keeps streaming, never arrives or is not a 200 becomes an
`HttpFailure`, never an exception, so the clients can turn it into an UNKNOWN outcome. Redirects
are not followed (a payment API never redirects; following one would send a signed request to a
host nobody configured).
"""

from __future__ import annotations

import enum
import threading
from urllib.parse import urlsplit
import time
from dataclasses import dataclass, field
from typing import Mapping

import requests

# A payment API reply is a few KiB; a bill can be large (a busy hospital: tens of thousands of rows).
MAX_REPLY_BYTES = 256 * 1024
MAX_BILL_BYTES = 64 * 1024 * 1024


class HttpFailure(enum.Enum):
    TIMEOUT = "timeout"  # no (complete) reply in time: the request may or may not have been acted on
    CONNECTION = "connection"  # could not connect, or the connection broke
    STATUS = "status"  # a reply that is not 200
    TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)  # case-insensitive (requests' CaseInsensitiveDict)


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float
    read_s: float

    def total_s(self) -> float:
        # A reply trickling in below the per-read timeout must still end: bound the whole exchange.
        return self.connect_s + 3 * self.read_s


class _Session(requests.Session):
    """A requests.Session that reads the environment's proxy and CA-bundle settings once per host.

    requests re-reads them (HTTP(S)_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE...) from os.environ on every
    call: about 1 ms of CPU per channel request at the gateway. A daemon's environment does not
    change while it runs, so the merged settings are kept per (scheme, host, and the call's own
    stream / verify / cert / proxies)."""

    def __init__(self) -> None:
        super().__init__()
        self._merged: dict[tuple, dict] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, tuple(sorted((proxies or {}).items())), stream, verify, cert)
        merged = self._merged.get(key)
        if merged is None:
            merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if len(self._merged) < 256:
                self._merged[key] = merged
        return dict(merged, proxies=dict(merged["proxies"]))


class SessionPool:
    """One requests.Session per thread: a Session is not documented as thread-safe, and the
    terminal service may query one order while the cashier's next payment starts on another."""

    def __init__(self, shared: requests.Session | None = None) -> None:
        self._shared = shared
        self._local = threading.local()

    def get(self) -> requests.Session:
        if self._shared is not None:
            return self._shared
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = _Session()
        return session


def exchange(
    session: requests.Session,
    method: str,
    url: str,
    *,
    timeouts: Timeouts,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    max_bytes: int = MAX_REPLY_BYTES,
    cert: tuple[str, str] | None = None,
    verify: bool | str = True,
    any_status: bool = False,
) -> HttpReply | HttpFailure:
    """`any_status`: a reply with any status is returned (WeChat APIv3 answers errors as 4xx/5xx
    with a JSON body); otherwise only a 200 is, and anything else is HttpFailure.STATUS."""
    started = time.monotonic()
    try:
        response = session.request(
            method,
            url,
            data=body,
            headers=headers,
            timeout=(timeouts.connect_s, timeouts.read_s),
            stream=True,
            allow_redirects=False,
            cert=cert,
            verify=verify,
        )
    except requests.exceptions.Timeout:
        return HttpFailure.TIMEOUT
    except requests.exceptions.RequestException:
        return HttpFailure.CONNECTION
    try:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                return HttpFailure.TOO_LARGE
            chunks.append(chunk)
            if time.monotonic() - started > timeouts.total_s():
                return HttpFailure.TIMEOUT
        if response.status_code != 200 and not any_status:
            return HttpFailure.STATUS
        return HttpReply(response.status_code, b"".join(chunks), response.headers.get("Content-Type", ""), response.headers)
    except requests.exceptions.Timeout:
        return HttpFailure.TIMEOUT
    except requests.exceptions.RequestException:
        return HttpFailure.CONNECTION
    finally:
        response.close()


def mask_code(code: str) -> str:
    """A payment code for logs: first 4 and last 4 digits at most (codes are bearer credentials)."""
    if len(code) < 12:
        return "*" * min(len(code), 24)
    return code[:4] + "*" * (len(code) - 8) + code[-4:]
