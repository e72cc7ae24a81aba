"""Alipay third-party application authorisation (第三方应用授权): app_auth_code -> app_auth_token.

A hospital's merchant authorises the provider's third-party application on Alipay's authorisation
page (a link or QR code the provider sends it); Alipay hands the provider an `app_auth_code`. The
provider's app exchanges it, once, with `alipay.open.auth.token.app` (grant_type=authorization_code)
for the `app_auth_token` every later call for that merchant carries, an `app_refresh_token`, their
lifetimes (`expires_in`, `re_expires_in`, seconds) and who authorised (`user_id`: the merchant's
2088... id; `auth_app_id`: its own app). Before the token ends, the same method with
grant_type=refresh_token gives a new pair. `alipay.open.auth.token.app.query` says what a token
covers (its merchant, the methods, its end and status) without changing anything.

The answer to a code or refresh is read in both shapes Alipay has used: the pair in the response
node itself, or (current documents) in a `tokens` list, one entry per authorising merchant. A refusal
becomes an `AppAuthError` whose `kind` says what the operator does next; a success is believed only
with a verified signature (`AlipayClient.call_for_refusals`). Tokens never reach a log.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass, field

from gateway.channels.alipay import AlipayClient
from gateway.channels.alipay_codec import SignedReply
from gateway.channels.errors import ChannelError
from gateway.channels.failures import Failure, NoAnswer

log = logging.getLogger(__name__)

TOKEN_METHOD = "alipay.open.auth.token.app"
QUERY_METHOD = "alipay.open.auth.token.app.query"
# An app_auth_code as Alipay issues it (32 hex digits today; letters and digits allowed, bounded).
_CODE = re.compile(r"[A-Za-z0-9]{8,64}", re.ASCII)
_TOKEN = re.compile(r"[A-Za-z0-9._\-]{1,128}", re.ASCII)
_ID = re.compile(r"[0-9]{8,32}", re.ASCII)


class AuthFailure(enum.Enum):
    CODE_INVALID = "code_invalid"  # isv.code-invalid: wrong, already used or expired
    APP_MISMATCH = "app_mismatch"  # isv.invalid-app-id: the code or token belongs to another app
    REFRESH_EXPIRED = "refresh_expired"  # isv.refresh-token-time-out
    REFRESH_INVALID = "refresh_invalid"  # isv.refresh-token-invalid / isv.refreshed-token-invalid
    TOKEN_INVALID = "token_invalid"  # aop.invalid-app-auth-token (the query)
    REJECTED = "rejected"  # another refusal of the request (our app's key or app_id)
    NO_ANSWER = "no_answer"  # no reply, unreadable, or not verifiable: try again later
    MALFORMED = "malformed"  # a verified success that lacks what it must carry


_SUB_CODES = {
    "isv.code-invalid": AuthFailure.CODE_INVALID,
    "isv.invalid-app-id": AuthFailure.APP_MISMATCH,
    "isv.refresh-token-time-out": AuthFailure.REFRESH_EXPIRED,
    "isv.refresh-token-invalid": AuthFailure.REFRESH_INVALID,
    "isv.refreshed-token-invalid": AuthFailure.REFRESH_INVALID,
    "aop.invalid-app-auth-token": AuthFailure.TOKEN_INVALID,
}


class AppAuthError(ChannelError):
    """Alipay did not grant (or tell) what was asked; `kind` says which way, `sub_code` is Alipay's own."""

    code = "alipay_app_auth"

    def __init__(self, kind: AuthFailure, message: str, *, sub_code: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.sub_code = sub_code


@dataclass(frozen=True, slots=True)
class AppAuthGrant:
    """What an exchange or a refresh gave: the token pair (secrets) and who authorised."""

    app_auth_token: str = field(repr=False)
    app_refresh_token: str = field(repr=False)
    user_id: str
    auth_app_id: str
    expires_in: int  # seconds the token lives, from now
    re_expires_in: int  # seconds the refresh token lives, from now


@dataclass(frozen=True, slots=True)
class AppAuthInfo:
    """alipay.open.auth.token.app.query: what a token covers (no secret in it)."""

    user_id: str
    auth_app_id: str
    status: str  # "valid" or "invalid"
    expires_in: int
    auth_start: str
    auth_end: str
    auth_methods: tuple[str, ...]


def check_code(code: str) -> str:
    """An app_auth_code as the operator pasted it (surrounding whitespace dropped), or ValueError."""
    text = code.strip() if isinstance(code, str) else ""
    if _CODE.fullmatch(text) is None:
        raise ValueError("an app_auth_code is 8-64 letters and digits, as Alipay's authorisation redirect gave it")
    return text


def exchange_code(client: AlipayClient, code: str) -> AppAuthGrant:
    """grant_type=authorization_code: the token pair for the merchant that authorised (once per code)."""
    return read_grant(client.call_for_refusals(TOKEN_METHOD, {"grant_type": "authorization_code", "code": check_code(code)}))


def refresh_token(client: AlipayClient, refresh: str) -> AppAuthGrant:
    """grant_type=refresh_token: a new pair (Alipay ends the old refresh token; the old token after a while)."""
    return read_grant(client.call_for_refusals(TOKEN_METHOD, {"grant_type": "refresh_token", "refresh_token": refresh}))


def query_token(client: AlipayClient, token: str) -> AppAuthInfo:
    """What the token covers; the token travels in biz_content only (not as the common parameter, so an
    ended token is still described, not refused at the door)."""
    node = _node(client.call_for_refusals(QUERY_METHOD, {"app_auth_token": token}))
    given = node.get("auth_methods")
    methods = [m for m in re.split(r"[,\s\[\]\"]+", given) if m] if isinstance(given, str) else given if isinstance(given, list) else []
    return AppAuthInfo(_text(node, "user_id"), _text(node, "auth_app_id"), str(node.get("status") or "unknown"),
                       _seconds(node.get("expires_in"), "expires_in", required=False), str(node.get("auth_start") or ""),
                       str(node.get("auth_end") or ""), tuple(str(m) for m in methods))


def _node(reply: SignedReply | NoAnswer) -> dict[str, object]:
    if isinstance(reply, NoAnswer):
        if reply.failure is Failure.REJECTED:
            raise AppAuthError(AuthFailure.REJECTED, reply.message)
        raise AppAuthError(AuthFailure.NO_ANSWER, f"{reply.message} ({reply.code}); try again")
    node = reply.node
    if node.get("code") == "10000":
        return node
    sub = str(node.get("sub_code") or node.get("code") or "")
    words = str(node.get("sub_msg") or node.get("msg") or "")
    kind = _SUB_CODES.get(sub, AuthFailure.REJECTED if node.get("code") in ("20001", "40001", "40002", "40006") else AuthFailure.NO_ANSWER)
    log.warning("alipay %s refused: %s %s", reply.node_name, sub, words)
    raise AppAuthError(kind, f"Alipay: {sub} {words}".strip(), sub_code=sub or None)


def read_grant(reply: SignedReply | NoAnswer) -> AppAuthGrant:
    """The token pair in an alipay.open.auth.token.app answer, or AppAuthError (pure)."""
    node = _node(reply)
    tokens = node.get("tokens")
    if tokens is not None:
        if not isinstance(tokens, list) or len(tokens) != 1 or not isinstance(tokens[0], dict):
            raise AppAuthError(AuthFailure.MALFORMED, "Alipay's answer names several merchants (a batch authorisation): authorise one "
                                                      "hospital's merchant per code")
        node = tokens[0]
    token, refresh = _text(node, "app_auth_token", _TOKEN), _text(node, "app_refresh_token", _TOKEN)
    return AppAuthGrant(token, refresh, _text(node, "user_id", _ID), _text(node, "auth_app_id", _ID),
                        _seconds(node.get("expires_in"), "expires_in"), _seconds(node.get("re_expires_in"), "re_expires_in"))


def _text(node: dict[str, object], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = node.get(name)
    if not isinstance(value, str) or not value or (pattern is not None and pattern.fullmatch(value) is None):
        raise AppAuthError(AuthFailure.MALFORMED, f"Alipay's answer has no valid {name}")
    return value


def _seconds(value: object, name: str, *, required: bool = True) -> int:
    """Alipay sends lifetimes as numbers or as digit strings."""
    if value is None and not required:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    raise AppAuthError(AuthFailure.MALFORMED, f"Alipay's answer has no valid {name}")
