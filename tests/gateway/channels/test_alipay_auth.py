"""Reading alipay.open.auth.token.app answers (gateway.channels.alipay_auth), pure: both shapes Alipay
has used, each refusal as its kind, and anything else as an AppAuthError, never another exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from gateway.channels.alipay_auth import AppAuthError, AuthFailure, check_code, read_grant
from gateway.channels.alipay_codec import SignedReply
from gateway.channels.failures import rejected, unknown

PAIR = {"app_auth_token": "202612BBaa", "app_refresh_token": "202612BBbb", "user_id": "2088102146225135",
        "auth_app_id": "2021004100000099", "expires_in": 31536000, "re_expires_in": "32140800"}


def reply(node: dict) -> SignedReply:
    return SignedReply("alipay_open_auth_token_app_response", node, json.dumps(node), "sig")


def test_the_pair_is_read_in_the_node_itself_or_in_its_tokens_list() -> None:
    old = read_grant(reply({"code": "10000", "msg": "Success", **PAIR}))
    new = read_grant(reply({"code": "10000", "msg": "Success", "tokens": [PAIR]}))
    assert old == new and (new.expires_in, new.re_expires_in, new.user_id) == (31536000, 32140800, "2088102146225135")
    assert "202612BB" not in repr(new)  # the tokens never show in a repr (logs, tracebacks)


@pytest.mark.parametrize(("sub_code", "kind"), [
    ("isv.code-invalid", AuthFailure.CODE_INVALID), ("isv.invalid-app-id", AuthFailure.APP_MISMATCH),
    ("isv.refresh-token-time-out", AuthFailure.REFRESH_EXPIRED), ("isv.refresh-token-invalid", AuthFailure.REFRESH_INVALID),
    ("isv.grant-type-invalid", AuthFailure.REJECTED),
])
def test_each_refusal_has_its_kind(sub_code: str, kind: AuthFailure) -> None:
    with pytest.raises(AppAuthError) as caught:
        read_grant(reply({"code": "40002", "msg": "Invalid Arguments", "sub_code": sub_code, "sub_msg": "x"}))
    assert (caught.value.kind, caught.value.sub_code) == (kind, sub_code)


def test_no_answer_and_a_batch_of_merchants_are_refused() -> None:
    with pytest.raises(AppAuthError) as caught:
        read_grant(unknown("http_timeout", "no reply from Alipay"))
    assert caught.value.kind is AuthFailure.NO_ANSWER
    with pytest.raises(AppAuthError) as caught:
        read_grant(rejected("Alipay rejected the request (40002 isv.invalid-signature)"))
    assert caught.value.kind is AuthFailure.REJECTED
    with pytest.raises(AppAuthError, match="several merchants") as caught:
        read_grant(reply({"code": "10000", "tokens": [PAIR, PAIR]}))
    assert caught.value.kind is AuthFailure.MALFORMED


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


@given(st.dictionaries(st.sampled_from([*PAIR, "code", "tokens", "sub_code"]), json_values, max_size=8))
def test_any_answer_is_a_grant_or_an_app_auth_error(node: dict) -> None:
    try:
        grant = read_grant(reply(node))
    except AppAuthError:
        return
    assert node.get("code") == "10000" and grant.expires_in >= 0 and grant.user_id.isdigit()


@given(st.text(max_size=80))
def test_a_code_is_letters_and_digits_or_refused(text: str) -> None:
    try:
        code = check_code(text)
    except ValueError:
        return
    assert code.isascii() and code.isalnum() and 8 <= len(code) <= 64 and code == text.strip()


@pytest.mark.parametrize("biz", [{"grant_type": "authorization_code", "code": "603d0219f1884fc4b66093900e6b8X89"},
                                 {"grant_type": "refresh_token", "refresh_token": "201509BBdcba1e3347de4e75ba3fed2c9abebE36"},
                                 {"app_auth_token": "201509BBdcba1e3347de4e75ba3fed2c9abebE36"}])
def test_our_token_requests_are_signed_as_python_alipay_sdk_signs_them(biz: dict[str, str]) -> None:
    """RSA2 (PKCS#1 v1.5) is deterministic: the same form signed by python-alipay-sdk gives the same sign."""
    import datetime
    import urllib.parse

    from alipay import ISVAliPay
    from Crypto.PublicKey import RSA

    from gateway.channels.alipay import AlipayClient, AlipayConfig

    key = RSA.generate(2048)
    private, public = key.export_key().decode(), key.public_key().export_key().decode()
    ours = AlipayClient(AlipayConfig(app_id="2021004100000001", private_key_pem=private, alipay_public_key_pem=public))
    method = "alipay.open.auth.token.app" if "grant_type" in biz else "alipay.open.auth.token.app.query"
    params = ours.signed_params(method, biz, now=datetime.datetime(2026, 12, 2, 13, 54, 27, tzinfo=datetime.timezone.utc))
    assert "app_auth_token" not in params  # our app acts for no merchant when it exchanges, refreshes or asks
    sdk = ISVAliPay(appid="2021004100000001", app_private_key_string=private, alipay_public_key_string=public, app_auth_code="unused")
    signed = dict(urllib.parse.parse_qsl(sdk.sign_data({k: v for k, v in params.items() if k != "sign"})))
    assert signed["sign"] == params["sign"]
