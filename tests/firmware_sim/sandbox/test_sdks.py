"""The sandbox driven by the channels' own SDKs, as a merchant's code would drive WeChat Pay and
Alipay (issue 17, finding 9): wechatpy (XML over POST, MD5 signatures) and python-alipay-sdk (its
default transport is a GET of /gateway.do with the signed parameters in the query string), plus the
answers a tester scripts and the channels' clocks (codes expire, unpaid WeChat orders are revoked),
moved by an injected clock instead of sleeps."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from alipay import AliPay
from wechatpy.pay import WeChatPay
from wechatpy.exceptions import WeChatPayException

from firmware_sim.sandbox.identity import load_identity
from firmware_sim.sandbox.server import Sandbox
from tests.clocks import ManualClock


@pytest.fixture()
def world(tmp_path: Path):
    clock = ManualClock(time.time())
    sandbox = Sandbox(str(tmp_path), load_identity(str(tmp_path)), clock=clock, code_ttl_s=60, unpaid_revoke_s=30)
    sandbox.start()
    try:
        yield sandbox, clock
    finally:
        sandbox.stop()


def control(sandbox: Sandbox, method: str, path: str, body: dict | None = None) -> dict:
    response = requests.request(method, f"{sandbox.url}/sandbox/v1{path}", json=body, timeout=10)
    assert response.status_code < 300, response.text
    return response.json()


def code(sandbox: Sandbox, channel: str, behaviour: str = "success", balance: str = "500.00") -> str:
    return str(control(sandbox, "POST", "/codes", {"channel": channel, "balance": balance, "behaviour": behaviour})["code"])


def wechat(sandbox: Sandbox) -> WeChatPay:
    ids = sandbox.identity
    client = WeChatPay(ids.wechat_appid, ids.wechat_api_key, ids.wechat_mch_id)
    client.API_BASE_URL = sandbox.url + "/"  # the SDK's own base URL setting: everything else as in production
    return client


def alipay(sandbox: Sandbox) -> AliPay:
    ids = sandbox.identity
    assert ids.app_private_key_path is not None
    client = AliPay(appid=ids.alipay_app_id, app_notify_url=None, app_private_key_string=Path(ids.app_private_key_path).read_text(),
                    alipay_public_key_string=Path(ids.alipay_public_key_path).read_text(), sign_type="RSA2")
    client._gateway = sandbox.url + "/gateway.do"  # the SDK has no setting for it but debug=True (Alipay's own sandbox)
    return client


def test_python_alipay_sdk_default_transport_and_the_amounts_alipay_takes(world):
    sandbox, _ = world
    ali = alipay(sandbox)
    for n, amount in enumerate((12, 12.5, "12.5", "12")):
        paid = ali.api_alipay_trade_pay(f"ALI-SDK-{n}", "bar_code", code(sandbox, "ALIPAY"), "门诊缴费", total_amount=amount)
        assert paid["code"] == "10000" and paid["total_amount"] == {12: "12.00", 12.5: "12.50", "12.5": "12.50", "12": "12.00"}[amount]
    assert ali.api_alipay_trade_query(out_trade_no="ALI-SDK-1")["trade_status"] == "TRADE_SUCCESS"
    refund = ali.api_alipay_trade_refund("2.5", out_trade_no="ALI-SDK-1", out_request_no="ALI-SDK-1-R1")
    assert (refund["code"], refund["fund_change"], refund["refund_fee"]) == ("10000", "Y", "2.50")
    status = ali.api_alipay_trade_fastpay_refund_query("ALI-SDK-1-R1", out_trade_no="ALI-SDK-1")
    assert (status["refund_status"], status["refund_amount"]) == ("REFUND_SUCCESS", "2.50")
    assert ali.api_alipay_trade_cancel(out_trade_no="ALI-SDK-2")["action"] == "refund"
    for wrong in ("12.505", "-1", "1e3", True):
        refused = ali.api_alipay_trade_pay(f"ALI-SDK-BAD-{wrong}", "bar_code", code(sandbox, "ALIPAY"), "x", total_amount=wrong)
        assert (refused["code"], refused["sub_code"]) == ("40004", "ACQ.INVALID_PARAMETER")


def test_alipay_as_a_posted_form(world):
    sandbox, _ = world
    ali = alipay(sandbox)
    body = ali.sign_data(ali.build_body("alipay.trade.pay", {"out_trade_no": "ALI-FORM-1", "scene": "bar_code",
                                                              "auth_code": code(sandbox, "ALIPAY"), "subject": "门诊", "total_amount": "8.8"}))
    response = requests.post(sandbox.url + "/gateway.do", data=body, headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
                             timeout=10)
    node = ali._verify_and_return_sync_response(response.text, "alipay_trade_pay_response")
    assert (node["code"], node["total_amount"]) == ("10000", "8.80")


def test_wechatpy_micropay_query_refund_and_reverse(world):
    sandbox, _ = world
    wx = wechat(sandbox)
    paid = wx.micropay.create("门诊缴费", 1250, code(sandbox, "WECHAT"), client_ip="127.0.0.1", out_trade_no="WX-SDK-1", device_info="D-SN-000123")
    assert (paid["result_code"], paid["total_fee"], paid["trade_type"]) == ("SUCCESS", "1250", "MICROPAY")
    assert wx.micropay.query(out_trade_no="WX-SDK-1")["trade_state"] == "SUCCESS"
    refund = wx.refund.apply(1250, 250, "WX-SDK-1-R1", out_trade_no="WX-SDK-1")
    assert refund["refund_fee"] == "250"
    assert wx.refund.query(out_refund_no="WX-SDK-1-R1")["refund_status_0"] == "SUCCESS"
    wx.micropay.create("门诊缴费", 800, code(sandbox, "WECHAT"), client_ip="127.0.0.1", out_trade_no="WX-SDK-2")
    assert wx.order.reverse(out_trade_no="WX-SDK-2")["recall"] == "N"
    assert wx.micropay.query(out_trade_no="WX-SDK-2")["trade_state"] == "REVOKED"


@pytest.mark.parametrize("status", ["PROCESSING", "CHANGE", "REFUNDCLOSE"])
def test_scripted_wechat_refund_statuses(world, status):
    sandbox, _ = world
    wx = wechat(sandbox)
    patient = code(sandbox, "WECHAT")
    control(sandbox, "POST", "/scripts", {"code": patient, "answer": "wechat_refund_status", "value": status, "times": 2})
    wx.micropay.create("门诊缴费", 1000, patient, client_ip="127.0.0.1", out_trade_no="WX-RS-1")
    wx.refund.apply(1000, 400, "WX-RS-1-R1", out_trade_no="WX-RS-1")
    first = wx.refund.query(out_refund_no="WX-RS-1-R1")
    assert first["refund_status_0"] == status and ("refund_success_time_0" in first) is False
    assert wx.refund.query(out_refund_no="WX-RS-1-R1")["refund_status_0"] == status
    assert wx.refund.query(out_refund_no="WX-RS-1-R1")["refund_status_0"] == "SUCCESS"  # the script's two answers are given


def test_scripted_reverse_recall_then_the_reverse_goes_through(world):
    sandbox, _ = world
    wx = wechat(sandbox)
    wx.micropay.create("门诊缴费", 1000, code(sandbox, "WECHAT"), client_ip="127.0.0.1", out_trade_no="WX-RC-1")
    control(sandbox, "POST", "/scripts", {"channel": "WECHAT", "out_trade_no": "WX-RC-1", "answer": "wechat_reverse_recall"})
    assert wx.order.reverse(out_trade_no="WX-RC-1")["recall"] == "Y"
    assert wx.micropay.query(out_trade_no="WX-RC-1")["trade_state"] == "SUCCESS"  # nothing reversed yet
    assert wx.order.reverse(out_trade_no="WX-RC-1")["recall"] == "N"
    assert wx.micropay.query(out_trade_no="WX-RC-1")["trade_state"] == "REVOKED"


def test_scripted_alipay_retry_flag_fund_change_and_a_missing_refund_status(world):
    sandbox, _ = world
    ali = alipay(sandbox)
    patient = code(sandbox, "ALIPAY")
    ali.api_alipay_trade_pay("ALI-SC-1", "bar_code", patient, "门诊", total_amount="30.00")
    for answer in ("alipay_cancel_retry", "alipay_fund_change_n", "alipay_refund_status_missing"):
        control(sandbox, "POST", "/scripts", {"channel": "ALIPAY", "out_trade_no": "ALI-SC-1", "answer": answer})
    refund = ali.api_alipay_trade_refund("10.00", out_trade_no="ALI-SC-1", out_request_no="ALI-SC-1-R1")
    assert (refund["code"], refund["fund_change"]) == ("10000", "N")  # a first refund: accepted, funds not moved yet
    status = ali.api_alipay_trade_fastpay_refund_query("ALI-SC-1-R1", out_trade_no="ALI-SC-1")
    assert status["code"] == "10000" and "refund_status" not in status
    assert ali.api_alipay_trade_fastpay_refund_query("ALI-SC-1-R1", out_trade_no="ALI-SC-1")["refund_status"] == "REFUND_SUCCESS"
    cancel = ali.api_alipay_trade_cancel(out_trade_no="ALI-SC-1")
    assert (cancel["code"], cancel["sub_code"], cancel["retry_flag"]) == ("40004", "ACQ.SYSTEM_ERROR", "Y")
    assert ali.api_alipay_trade_query(out_trade_no="ALI-SC-1")["trade_status"] == "TRADE_SUCCESS"  # nothing cancelled
    assert ali.api_alipay_trade_cancel(out_trade_no="ALI-SC-1")["retry_flag"] == "N"
    assert control(sandbox, "GET", "/scripts")["scripts"] == []  # every scripted answer was given


def test_codes_expire_and_unpaid_wechat_orders_are_revoked(world):
    sandbox, clock = world
    wx, ali = wechat(sandbox), alipay(sandbox)
    stale = code(sandbox, "WECHAT")
    clock.now += 61  # a code lives 60 s here
    with pytest.raises(WeChatPayException) as caught:
        wx.micropay.create("门诊缴费", 1000, stale, client_ip="127.0.0.1", out_trade_no="WX-EXP-1")
    assert caught.value.errcode == "AUTHCODEEXPIRE"
    stale_ali = code(sandbox, "ALIPAY")
    control(sandbox, "POST", "/clock", {"advance_s": 61})  # the same through the control API, for a sandbox in another process
    refused = ali.api_alipay_trade_pay("ALI-EXP-1", "bar_code", stale_ali, "门诊", total_amount="10.00")
    assert refused["sub_code"] == "ACQ.PAYMENT_AUTH_CODE_INVALID" and "过期" in refused["sub_msg"]
    with pytest.raises(WeChatPayException) as caught:
        wx.micropay.create("门诊缴费", 1000, code(sandbox, "WECHAT", "userpaying_forever"), client_ip="127.0.0.1", out_trade_no="WX-UP-1")
    assert caught.value.errcode == "USERPAYING"
    clock.now += 29
    assert wx.micropay.query(out_trade_no="WX-UP-1")["trade_state"] == "USERPAYING"
    clock.now += 2  # 31 s: WeChat revokes what the patient never confirmed (30 s here)
    assert wx.micropay.query(out_trade_no="WX-UP-1")["trade_state"] == "REVOKED"
    waiting = ali.api_alipay_trade_pay("ALI-UP-1", "bar_code", code(sandbox, "ALIPAY", "userpaying_forever"), "门诊", total_amount="10.00")
    assert waiting["code"] == "10003"
    clock.now += 31
    assert ali.api_alipay_trade_query(out_trade_no="ALI-UP-1")["trade_status"] == "WAIT_BUYER_PAY"  # Alipay waits for a cancel


def test_unionpay_and_ecny_codes_are_refused_saying_what_they_are(world):
    sandbox, _ = world
    wx, ali = wechat(sandbox), alipay(sandbox)
    unionpay = control(sandbox, "POST", "/codes", {"channel": "UNIONPAY"})["code"]
    ecny = control(sandbox, "POST", "/codes", {"channel": "ECNY"})["code"]
    assert unionpay.startswith("62") and ecny.startswith("01") and len(unionpay) == len(ecny) == 19
    with pytest.raises(WeChatPayException) as caught:
        wx.micropay.create("门诊缴费", 1000, unionpay, client_ip="127.0.0.1", out_trade_no="WX-UNI-1")
    assert caught.value.errcode == "AUTH_CODE_INVALID" and "银联" in caught.value.errmsg
    refused = ali.api_alipay_trade_pay("ALI-ECNY-1", "bar_code", ecny, "门诊", total_amount="10.00")
    assert refused["sub_code"] == "ACQ.PAYMENT_AUTH_CODE_INVALID" and "数字人民币" in refused["sub_msg"]
