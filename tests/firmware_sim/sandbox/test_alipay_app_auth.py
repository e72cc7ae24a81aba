"""The sandbox's Alipay third-party authorisation (alipay.open.auth.token.app and .query) over HTTP on
127.0.0.1 with real RSA2 signatures, driven by python-alipay-sdk's ISVAliPay as a provider's code
would: codes single use and expiring, tokens bound to the merchant and the app, a refresh that ends the
old refresh token at once and the old token after the grace period."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from alipay import ISVAliPay
from alipay.exceptions import AliPayException

from firmware_sim.sandbox.alipay_tenants import CODE_TTL_S, REFRESH_GRACE_S
from firmware_sim.sandbox.identity import load_identity
from firmware_sim.sandbox.server import Sandbox


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory):
    path = str(tmp_path_factory.mktemp("alipay-app-auth"))
    box = Sandbox(path, load_identity(path))
    box.start()
    try:
        yield box
    finally:
        box.stop()


def control(sandbox: Sandbox, method: str, path: str, body: dict | None = None, *, status: int = 200) -> dict:
    response = requests.request(method, f"{sandbox.url}/sandbox/v1{path}", json=body, timeout=10)
    assert response.status_code == status or (status == 200 and response.status_code == 201), response.text
    return response.json()


def sdk(sandbox: Sandbox, *, code: str | None = None, token: str | None = None, app: str = "third_party") -> ISVAliPay:
    """python-alipay-sdk's client for one of the sandbox's apps (its own signing, its own reply verification)."""
    credentials: dict = sandbox.credentials()
    section = credentials["alipay_modes"]["third_party"] if app == "third_party" else credentials["channels"]["alipay"]
    client = ISVAliPay(appid=section["app_id"], app_private_key_string=Path(section["private_key_pem"]).read_text(),
                       alipay_public_key_string=Path(sandbox.identity.alipay_public_key_path).read_text(),
                       app_auth_code=code, app_auth_token=token)
    client._gateway = sandbox.url + "/gateway.do"
    return client


def refused(call) -> str:
    """The sub_code of a refusal: a signed reply whose code is not 10000 (the SDK returns it), or the
    error_response the SDK raises for."""
    try:
        reply = call()
    except AliPayException as exc:
        raw = json.loads(str(exc.message))
        reply = next(v for k, v in raw.items() if k.endswith("_response"))
    assert reply["code"] != "10000", reply
    return str(reply["sub_code"])


def new_code(sandbox: Sandbox, **body: object) -> dict:
    return control(sandbox, "POST", "/alipay/app-auth-code", body)


def test_a_code_is_exchanged_once_for_a_token_that_pays_for_that_merchant(sandbox) -> None:
    issued = new_code(sandbox)
    reply = sdk(sandbox, code=issued["app_auth_code"]).api_alipay_open_auth_token_app()
    (pair,) = reply["tokens"]
    assert (pair["user_id"], pair["auth_app_id"]) == (issued["user_id"], issued["auth_app_id"])
    assert (pair["expires_in"], pair["re_expires_in"]) == (31_536_000, 32_140_800)
    assert pair["app_auth_token"] != pair["app_refresh_token"]
    # The token acts for the merchant that authorised: its trades are that merchant's.
    card = control(sandbox, "POST", "/codes", {"channel": "ALIPAY", "balance": "100.00", "behaviour": "success"})["code"]
    paid = sdk(sandbox, token=pair["app_auth_token"]).api_alipay_trade_pay("AUTH-PAY-1", "bar_code", card, "门诊", total_amount="1.00")
    assert paid["code"] == "10000"
    assert control(sandbox, "GET", "/alipay/trades/AUTH-PAY-1")["seller_id"] == issued["user_id"]
    # The same code again: used.
    assert refused(lambda: sdk(sandbox, code=issued["app_auth_code"]).api_alipay_open_auth_token_app()) == "isv.code-invalid"


def test_unknown_expired_and_other_apps_codes_are_refused(sandbox) -> None:
    assert refused(lambda: sdk(sandbox, code="0" * 32).api_alipay_open_auth_token_app()) == "isv.code-invalid"
    old = new_code(sandbox)
    control(sandbox, "POST", "/clock", {"advance_s": CODE_TTL_S})
    assert refused(lambda: sdk(sandbox, code=old["app_auth_code"]).api_alipay_open_auth_token_app()) == "isv.code-invalid"
    mine = new_code(sandbox)  # for the third-party app; the merchant's own app tries to use it
    assert refused(lambda: sdk(sandbox, code=mine["app_auth_code"], app="own").api_alipay_open_auth_token_app()) == "isv.invalid-app-id"
    # ... and it still works for the app it was issued to (a refused exchange does not use it up).
    assert sdk(sandbox, code=mine["app_auth_code"]).api_alipay_open_auth_token_app()["tokens"][0]["user_id"] == mine["user_id"]


def test_a_refresh_ends_the_old_refresh_token_at_once_and_the_old_token_after_the_grace(sandbox) -> None:
    issued = new_code(sandbox)
    first = sdk(sandbox, code=issued["app_auth_code"]).api_alipay_open_auth_token_app()["tokens"][0]
    client = sdk(sandbox, token=first["app_auth_token"])
    second = client.api_alipay_open_auth_token_app(refresh_token=first["app_refresh_token"])["tokens"][0]
    assert second["app_auth_token"] != first["app_auth_token"] and second["user_id"] == issued["user_id"]
    assert refused(lambda: client.api_alipay_open_auth_token_app(refresh_token=first["app_refresh_token"])) == "isv.refresh-token-invalid"
    assert client.api_alipay_open_auth_token_app_query()["status"] == "valid"  # the old token, within the grace
    control(sandbox, "POST", "/clock", {"advance_s": REFRESH_GRACE_S})
    assert refused(client.api_alipay_open_auth_token_app_query) == "aop.invalid-app-auth-token"
    info = sdk(sandbox, token=second["app_auth_token"]).api_alipay_open_auth_token_app_query()
    assert (info["status"], info["user_id"], info["auth_app_id"]) == ("valid", issued["user_id"], issued["auth_app_id"])
    assert "alipay.trade.pay" in info["auth_methods"]


def test_an_expired_refresh_token_needs_the_merchant_to_authorise_again(sandbox) -> None:
    issued = new_code(sandbox, expires_in=60, re_expires_in=120)
    pair = sdk(sandbox, code=issued["app_auth_code"]).api_alipay_open_auth_token_app()["tokens"][0]
    control(sandbox, "POST", "/clock", {"advance_s": 120})
    assert refused(lambda: sdk(sandbox, code="none").api_alipay_open_auth_token_app(refresh_token=pair["app_refresh_token"])) \
        == "isv.refresh-token-time-out"
    again = new_code(sandbox, user_id=issued["user_id"])  # the same merchant authorises again
    renewed = sdk(sandbox, code=again["app_auth_code"]).api_alipay_open_auth_token_app()["tokens"][0]
    assert (renewed["user_id"], renewed["auth_app_id"]) == (issued["user_id"], issued["auth_app_id"])


def test_the_control_endpoint_refuses_what_it_cannot_issue(sandbox) -> None:
    control(sandbox, "POST", "/alipay/app-auth-code", {"app_id": "2021000000000000"}, status=404)
    control(sandbox, "POST", "/alipay/app-auth-code", {"user_id": "2088000000000000"}, status=404)
    control(sandbox, "POST", "/alipay/app-auth-code", {"expires_in": "soon"}, status=400)
