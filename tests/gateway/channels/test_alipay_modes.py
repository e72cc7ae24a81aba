"""Alipay third-party application mode (app_auth_token) and certificate mode, against the sandbox over
HTTP on 127.0.0.1, cross-checked with python-alipay-sdk (ISVAliPay, DCAliPay) and with certificates
made by the `openssl` command line."""

from __future__ import annotations

import datetime
import io
import subprocess
import zipfile
from pathlib import Path

import pytest
import requests
from alipay import DCAliPay, ISVAliPay

from firmware_sim.sandbox.identity import load_identity
from firmware_sim.sandbox.server import Sandbox
from gateway.channels import build_clients
from gateway.channels.alipay import AlipayClient
from gateway.channels.alipay_cert import AlipayCertificates, app_cert_sn, root_cert_sn
from gateway.channels.errors import ChannelConfigError
from protocol.messages import PayChannel, ResultCode
from terminal.channels.base import PayState, RefundState


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory):
    path = str(tmp_path_factory.mktemp("alipay-modes"))
    box = Sandbox(path, load_identity(path))
    box.start()
    try:
        yield box
    finally:
        box.stop()


def control(sandbox: Sandbox, method: str, path: str, body: dict | None = None) -> dict:
    response = requests.request(method, f"{sandbox.url}/sandbox/v1{path}", json=body, timeout=10)
    assert response.status_code < 300, response.text
    return response.json()


def new_code(sandbox: Sandbox) -> str:
    return str(control(sandbox, "POST", "/codes", {"channel": "ALIPAY", "balance": "500.00", "behaviour": "success"})["code"])


def client(section: dict) -> AlipayClient:
    built = build_clients({"alipay": section})[PayChannel.ALIPAY]
    assert isinstance(built, AlipayClient)
    return built


def alipay_mode(sandbox: Sandbox, mode: str) -> dict:
    """The sandbox's credentials for one of its Alipay apps ("third_party" or "cert")."""
    modes = sandbox.credentials()["alipay_modes"]
    assert isinstance(modes, dict)
    return dict(modes[mode])


def third_party(sandbox: Sandbox, token: str) -> AlipayClient:
    return client({**alipay_mode(sandbox, "third_party"), "app_auth_token": token})


def cert_section(sandbox: Sandbox) -> dict:
    return alipay_mode(sandbox, "cert")


# -- third-party application mode --------------------------------------------------------------


def test_a_third_party_app_pays_for_the_merchant_that_authorised_it(sandbox):
    first, second = control(sandbox, "POST", "/alipay/app-auth"), control(sandbox, "POST", "/alipay/app-auth")
    isv = third_party(sandbox, first["app_auth_token"])
    paid = isv.pay(out_trade_no="ISV-1", auth_code=new_code(sandbox), total_fen=1250, subject="门诊缴费")
    assert (paid.state, paid.paid_fen) == (PayState.SUCCESS, 1250)
    owner = control(sandbox, "GET", "/alipay/trades/ISV-1")
    assert (owner["seller_id"], owner["auth_app_id"], owner["app_id"]) == (first["user_id"], first["auth_app_id"], first["app_id"])
    assert isv.query("ISV-1").state is PayState.SUCCESS
    refund = isv.refund(out_trade_no="ISV-1", out_refund_no="ISV-1-R1", total_fen=1250, refund_fen=250, reason="退费")
    assert (refund.state, refund.refunded_fen) == (RefundState.SUCCESS, 250)
    # Another hospital's token sees no such trade: its money and its orders are its own.
    other = third_party(sandbox, second["app_auth_token"])
    assert other.query("ISV-1").state is PayState.NOT_FOUND
    assert other.refund_query(out_trade_no="ISV-1", out_refund_no="ISV-1-R1").state is RefundState.NOT_FOUND


def test_two_hospitals_using_the_same_out_trade_no_each_get_their_own_trade(sandbox):
    """Alipay's out_trade_no is each merchant's own: two hospitals authorising our third-party app and
    the sandbox's own merchant all pay "MZ..." and each gets its own trade, refund and notification owner."""
    import uuid

    first, second = control(sandbox, "POST", "/alipay/app-auth"), control(sandbox, "POST", "/alipay/app-auth")
    clients = {"first": third_party(sandbox, first["app_auth_token"]), "second": third_party(sandbox, second["app_auth_token"]),
               "own": client({"gateway": sandbox.url + "/gateway.do", "app_id": sandbox.identity.alipay_app_id,
                              "private_key_pem": sandbox.identity.app_private_key_path,
                              "alipay_public_key_pem": sandbox.identity.alipay_public_key_path})}
    otn, fen = "MZ" + uuid.uuid4().hex[:12], {"first": 1250, "second": 3300, "own": 700}
    codes = {who: new_code(sandbox) for who in clients}
    for who, c in clients.items():
        paid = c.pay(out_trade_no=otn, auth_code=codes[who], total_fen=fen[who], subject="门诊缴费")
        assert (paid.state, paid.paid_fen) == (PayState.SUCCESS, fen[who]), (who, paid)
    refund = clients["second"].refund(out_trade_no=otn, out_refund_no=otn + "-R1", total_fen=3300, refund_fen=300, reason="退费")
    assert (refund.state, refund.refunded_fen) == (RefundState.SUCCESS, 300)
    # the first hospital's trade of that number has no such refund (Alipay answers a bare success: unconfirmed)
    assert clients["first"].refund_query(out_trade_no=otn, out_refund_no=otn + "-R1").state is RefundState.UNCONFIRMED
    balances = {who: control(sandbox, "GET", f"/accounts/{codes[who]}")["balance_fen"] for who in codes}
    assert balances == {"first": 500_00 - 1250, "second": 500_00 - 3000, "own": 500_00 - 700}
    owners = {m: control(sandbox, "GET", f"/orders/ALIPAY/{otn}/{m}")["total_fen"] for m in (first["user_id"], second["user_id"], "-")}
    assert owners == {first["user_id"]: 1250, second["user_id"]: 3300, "-": 700}


@pytest.mark.parametrize("which", ["unknown", "another_app"])
def test_a_token_not_authorised_to_the_app_is_refused_and_nothing_is_charged(sandbox, which):
    token = "202412BBnotatoken" if which == "unknown" else control(sandbox, "POST", "/alipay/app-auth",
                                                                   {"app_id": sandbox.identity.alipay_app_id})["app_auth_token"]
    isv = third_party(sandbox, token)
    code = new_code(sandbox)
    refused = isv.pay(out_trade_no=f"ISV-BAD-{which}", auth_code=code, total_fen=100, subject="x")
    assert (refused.state, refused.result_code) == (PayState.FAILED, ResultCode.MERCHANT_CONFIG)
    assert "aop.invalid-app-auth-token" in (refused.message or "")
    assert control(sandbox, "GET", f"/accounts/{code}")["balance"] == "500.00"


def test_python_alipay_sdk_isv_client_agrees(sandbox):
    grant = control(sandbox, "POST", "/alipay/app-auth")
    ids, section = sandbox.identity, sandbox.credentials()["alipay_modes"]["third_party"]
    sdk = ISVAliPay(appid=ids.alipay_isv_app_id, app_private_key_string=Path(section["private_key_pem"]).read_text(),
                    alipay_public_key_string=Path(ids.alipay_public_key_path).read_text(), app_auth_token=grant["app_auth_token"])
    sdk._gateway = sandbox.url + "/gateway.do"
    paid = sdk.api_alipay_trade_pay("ISV-SDK-1", "bar_code", new_code(sandbox), "门诊", total_amount="3.5")
    assert (paid["code"], paid["total_amount"]) == ("10000", "3.50")
    assert control(sandbox, "GET", "/alipay/trades/ISV-SDK-1")["seller_id"] == grant["user_id"]
    assert third_party(sandbox, grant["app_auth_token"]).query("ISV-SDK-1").paid_fen == 350


def test_a_malformed_token_is_a_configuration_error():
    with pytest.raises(ChannelConfigError, match="app_auth_token"):
        build_clients({"alipay": {"app_id": "2021", "private_key_pem": "x", "alipay_public_key_pem": "y", "app_auth_token": "a b"}})


# -- certificate mode ---------------------------------------------------------------------------


def test_certificate_mode_pays_refunds_and_carries_the_sns(sandbox):
    cert = client(cert_section(sandbox))
    paid = cert.pay(out_trade_no="CERT-1", auth_code=new_code(sandbox), total_fen=880, subject="门诊")
    assert (paid.state, paid.paid_fen) == (PayState.SUCCESS, 880)
    refund = cert.refund(out_trade_no="CERT-1", out_refund_no="CERT-1-R1", total_fen=880, refund_fen=880, reason="退费")
    assert refund.state is RefundState.SUCCESS
    form = cert.signed_params("alipay.trade.query", {"out_trade_no": "CERT-1"})
    assert (form["app_cert_sn"], form["alipay_root_cert_sn"]) == (sandbox.certs.app_cert_sn, sandbox.certs.root_sn)
    assert form["alipay_root_cert_sn"].count("_") == 0  # the EC root of the chain is left out


def test_the_sns_agree_with_python_alipay_sdk(sandbox):
    certs = sandbox.certs
    root, app, alipay_cert = (Path(p).read_text() for p in (certs.root, certs.app_cert, certs.alipay_cert))
    assert DCAliPay.get_cert_sn(app) == app_cert_sn(app) == certs.app_cert_sn
    assert DCAliPay.get_root_cert_sn(root) == root_cert_sn(root) == certs.root_sn
    assert DCAliPay.get_cert_sn(alipay_cert) in AlipayCertificates.from_pem(app, alipay_cert, root).alipay_keys


def test_python_alipay_sdk_certificate_client_agrees(sandbox):
    section = cert_section(sandbox)
    sdk = DCAliPay(appid=section["app_id"], app_private_key_string=Path(section["private_key_pem"]).read_text(),
                   app_public_key_cert_string=Path(section["app_cert_pem"]).read_text(),
                   alipay_public_key_cert_string=Path(section["alipay_cert_pem"]).read_text(),
                   alipay_root_cert_string=Path(section["alipay_root_cert_pem"]).read_text())
    sdk._gateway = sandbox.url + "/gateway.do"
    paid = sdk.api_alipay_trade_pay("CERT-SDK-1", "bar_code", new_code(sandbox), "门诊", total_amount="1.01")
    assert (paid["code"], paid["total_amount"]) == ("10000", "1.01")


def _openssl_chain(tmp: Path) -> tuple[str, str, str]:
    """A root made by openssl (two RSA roots and an EC one in one file) and an RSA leaf it issued."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp)
    subj = "/C=CN/O=Test Org/OU=Test Unit/CN=Test Root {}"
    for n in ("1", "2"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"root{n}.key", "-out", f"root{n}.crt", "-days", "30",
            "-subj", subj.format(n), "-set_serial", f"{n}0001")
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ec.key", "-out", "ec.crt",
        "-days", "30", "-subj", subj.format("EC"))
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/C=CN/O=Test Org/CN=leaf")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "root1.crt", "-CAkey", "root1.key", "-set_serial", "123456789", "-out", "leaf.crt",
        "-days", "30")
    chain = "\n".join((tmp / f).read_text() for f in ("root1.crt", "ec.crt", "root2.crt"))
    return chain, (tmp / "leaf.crt").read_text(), (tmp / "leaf.key").read_text()


def test_sns_of_openssl_certificates_agree_with_python_alipay_sdk(tmp_path):
    chain, leaf, _ = _openssl_chain(tmp_path)
    assert app_cert_sn(leaf) == DCAliPay.get_cert_sn(leaf)
    assert root_cert_sn(chain) == DCAliPay.get_root_cert_sn(chain)
    assert root_cert_sn(chain).count("_") == 1  # two RSA roots; the EC one is not counted


def test_a_reply_signed_by_a_certificate_we_do_not_hold_is_not_believed(sandbox, tmp_path):
    _, foreign, _ = _openssl_chain(tmp_path)
    cert = client({**cert_section(sandbox), "alipay_cert_pem": foreign})
    outcome = cert.pay(out_trade_no="CERT-UNKNOWN-SN", auth_code=new_code(sandbox), total_fen=100, subject="x")
    # The sandbox took the money; the reply cannot be verified: needs a person, never "failed".
    assert (outcome.state, outcome.channel_code) == (PayState.UNVERIFIED, "bad_signature")
    assert "certificate SN" in (outcome.message or "")


def test_a_bad_signature_in_certificate_mode_is_not_believed(sandbox):
    cert = client(cert_section(sandbox))
    control(sandbox, "POST", "/faults", {"channel": "ALIPAY", "reply_signature": "corrupt"})
    try:
        outcome = cert.pay(out_trade_no="CERT-BAD-SIG", auth_code=new_code(sandbox), total_fen=100, subject="x")
    finally:
        control(sandbox, "POST", "/faults", {"channel": "ALIPAY", "reply_signature": "ok"})
    assert outcome.state is PayState.UNVERIFIED


def test_a_wrong_app_certificate_is_refused_by_alipay(sandbox, tmp_path):
    _, foreign, _ = _openssl_chain(tmp_path)
    cert = client({**cert_section(sandbox), "app_cert_pem": foreign})
    refused = cert.pay(out_trade_no="CERT-WRONG-APP", auth_code=new_code(sandbox), total_fen=100, subject="x")
    assert (refused.state, refused.result_code) == (PayState.FAILED, ResultCode.MERCHANT_CONFIG)
    assert "isv.app-cert-not-exist" in (refused.message or "")


def test_certificate_mode_settings_are_all_or_nothing(sandbox):
    section = cert_section(sandbox)
    with pytest.raises(ChannelConfigError, match="certificate mode needs all"):
        build_clients({"alipay": {k: v for k, v in section.items() if k != "alipay_root_cert_pem"}})
    with pytest.raises(ChannelConfigError, match="not both"):
        build_clients({"alipay": {**section, "alipay_public_key_pem": sandbox.identity.alipay_public_key_path}})


def _bill_text(zipped: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        return "".join(archive.read(name).decode("gbk") for name in archive.namelist())


def test_each_merchant_downloads_a_bill_of_its_own_trades(sandbox):
    first, second = control(sandbox, "POST", "/alipay/app-auth"), control(sandbox, "POST", "/alipay/app-auth")
    a, b = third_party(sandbox, first["app_auth_token"]), third_party(sandbox, second["app_auth_token"])
    assert a.pay(out_trade_no="BILL-A-1", auth_code=new_code(sandbox), total_fen=101, subject="x").state is PayState.SUCCESS
    assert b.pay(out_trade_no="BILL-B-1", auth_code=new_code(sandbox), total_fen=202, subject="x").state is PayState.SUCCESS
    today = datetime.date.fromisoformat(control(sandbox, "GET", "/clock")["today"])
    control(sandbox, "POST", "/clock", {"today": (today + datetime.timedelta(days=1)).isoformat()})
    try:
        bill_a, bill_b = _bill_text(a.download_bill(today)), _bill_text(b.download_bill(today))
    finally:
        control(sandbox, "POST", "/clock", {"today": None})
    assert "BILL-A-1" in bill_a and "BILL-B-1" not in bill_a and first["user_id"] in bill_a
    assert "BILL-B-1" in bill_b and "BILL-A-1" not in bill_b and second["user_id"] in bill_b
