"""WeChat Pay APIv3 platform certificates against the real sandbox: a client with no platform key
downloads them (first use), pays with them, and follows a rotation (planned: the job's refresh during
the overlap; missed: an unknown serial is not believed until an operator pins it). The wechatpayv3
SDK downloads and opens the same list. Each test has a sandbox of its own: rotations are for good."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from firmware_sim.sandbox.launcher import SandboxProcess
from gateway.channels import wechat_v3_certs as certs
from gateway.channels import wechat_v3_codec as v3
from gateway.channels.errors import ChannelConfigError
from gateway.channels.settings import _config
from gateway.channels.wechat_v3 import WeChatPayV3Client, WeChatPayV3Config
from terminal.channels.base import PayState

PLATFORM_FIELDS = ("platform_public_key_pem", "platform_public_key_id", "platform_certificate_pem")


class MemoryStore:
    """The CertificateStore interface in memory (the gateway's database one: tests/gateway/test_wechat_certificates.py)."""

    def __init__(self) -> None:
        self.held: dict[str, certs.PlatformCertificate] = {}
        self.downloads: list[str] = []  # who signed each list saved

    def load(self) -> list[certs.PlatformCertificate]:
        return list(self.held.values())

    def save(self, certificates: Sequence[certs.PlatformCertificate], *, signed_by: str) -> None:
        self.downloads.append(signed_by)
        for cert in certificates:
            self.held.setdefault(cert.serial_no, cert)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    with SandboxProcess(str(tmp_path / "sandbox")) as process:
        yield process


def _config_of(sandbox: SandboxProcess, who: str = "direct") -> WeChatPayV3Config:
    v3: Any = sandbox.credentials["wechat_v3"]
    settings = {k: v for k, v in v3[who].items() if k not in PLATFORM_FIELDS and k != "sub_mchids"}
    if who == "service_provider":
        settings["sub_mchid"] = v3["service_provider"]["sub_mchids"][0]
    return _config(WeChatPayV3Config, "wechat", settings, None)


def _pay(sandbox: SandboxProcess, client: WeChatPayV3Client):
    code = sandbox.issue_code("WECHAT", "100.00")["code"]
    return client.pay(out_trade_no="C" + uuid.uuid4().hex[:20], auth_code=code, total_fen=1250, subject="门诊缴费")


def _platform(sandbox: SandboxProcess, action: str = "", body: dict | None = None) -> list[dict]:
    import requests

    url = f"{sandbox.url}/sandbox/v1/wechat/platform-certificates" + (f"/{action}" if action else "")
    reply = requests.post(url, json=body or {}, timeout=30) if action else requests.get(url, timeout=10)
    reply.raise_for_status()
    return reply.json()["certificates"]


def test_a_client_with_no_platform_key_needs_somewhere_to_keep_what_it_downloads(sandbox) -> None:
    with pytest.raises(ChannelConfigError, match="platform public key .* or the certificates the gateway downloads"):
        WeChatPayV3Client(_config_of(sandbox))


@pytest.mark.parametrize("who", ["direct", "service_provider"])
def test_first_use_downloads_the_list_and_believes_it(sandbox, who) -> None:
    store = MemoryStore()
    client = WeChatPayV3Client(_config_of(sandbox, who), certificates=store)
    assert client.platform_serials() == []
    outcome = _pay(sandbox, client)  # the reply names a certificate not held: one download, then believed
    assert outcome.state is PayState.SUCCESS, outcome
    (signer,) = [c["serial_no"] for c in _platform(sandbox) if c["signing"]]
    assert list(store.held) == [signer] and store.downloads == [signer]
    assert _pay(sandbox, client).state is PayState.SUCCESS and len(store.downloads) == 1  # no more downloads


def test_an_operator_pin_that_does_not_match_is_refused_and_nothing_is_kept(sandbox) -> None:
    store = MemoryStore()
    client = WeChatPayV3Client(_config_of(sandbox), certificates=store)
    with pytest.raises(certs.CertificateTrustError) as refused:
        client.refresh_certificates(expect_serial="5ABCDEF")
    assert refused.value.code == "wechat_v3_certificates_unverified" and store.held == {}
    (signer,) = [c["serial_no"] for c in _platform(sandbox) if c["signing"]]
    assert [c.serial_no for c in client.refresh_certificates(expect_serial=signer)] == [signer]


def test_another_merchants_apiv3_key_does_not_open_the_list(sandbox) -> None:
    config = _config_of(sandbox)
    wrong = WeChatPayV3Config(**{**{f: getattr(config, f) for f in config.__dataclass_fields__}, "apiv3_key": "k" * 32})
    with pytest.raises(v3.WeChatV3Error) as refused:  # the resource's own code, not the list's
        WeChatPayV3Client(wrong, certificates=MemoryStore()).refresh_certificates()
    assert refused.value.code == "wechat_v3_resource"


def test_a_planned_rotation_is_followed_without_a_person(sandbox) -> None:
    store = MemoryStore()
    client = WeChatPayV3Client(_config_of(sandbox), certificates=store)
    (old,) = [c.serial_no for c in client.refresh_certificates()]
    listed = _platform(sandbox, "rotate", {"switch": False})  # WeChat Pay lists the next one; the old one still signs
    new = next(c["serial_no"] for c in listed if c["serial_no"] != old)
    assert _pay(sandbox, client).state is PayState.SUCCESS
    client.refresh_certificates()  # the gateway's periodic refresh (the wechat_certs job) during the overlap
    assert set(store.held) == {old, new} and store.downloads == [old, old]
    _platform(sandbox, "switch")  # the new certificate signs from now on
    assert _pay(sandbox, client).state is PayState.SUCCESS
    assert len(store.downloads) == 2  # it was held already: nothing downloaded


def test_a_rotation_another_gateway_process_downloaded_is_taken_from_the_store(sandbox) -> None:
    store = MemoryStore()
    first = WeChatPayV3Client(_config_of(sandbox), certificates=store)
    first.refresh_certificates()
    second = WeChatPayV3Client(_config_of(sandbox), certificates=store)  # another process, same database
    _platform(sandbox, "rotate", {"switch": False})
    first.refresh_certificates()  # that process's job ran
    _platform(sandbox, "switch")
    assert _pay(sandbox, second).state is PayState.SUCCESS  # second looked in the store first
    assert len(store.downloads) == 2


def test_a_missed_rotation_is_not_believed_until_an_operator_pins_the_new_certificate(sandbox) -> None:
    store = MemoryStore()
    client = WeChatPayV3Client(_config_of(sandbox), certificates=store)
    (old,) = [c.serial_no for c in client.refresh_certificates()]
    listed = _platform(sandbox, "rotate", {"switch": True})  # the gateway never saw the overlap
    new = next(c["serial_no"] for c in listed if c["serial_no"] != old)
    outcome = _pay(sandbox, client)
    # The reply names `new`: one refresh, whose list is signed by `new` too, which nothing held vouches for.
    assert outcome.state is PayState.UNVERIFIED and new in (outcome.message or ""), outcome
    assert set(store.held) == {old}
    client.refresh_certificates(expect_serial=new)  # the operator checked it on the merchant platform
    assert set(store.held) == {old, new}
    assert _pay(sandbox, client).state is PayState.SUCCESS


def test_the_sdk_downloads_and_opens_the_same_list_and_pays_with_it(sandbox) -> None:
    """wechatpayv3 (what merchants' Python code uses) in platform-certificate mode: it downloads
    /v3/certificates, opens each with the APIv3 key, and verifies the replies with them."""
    import json

    from wechatpayv3 import WeChatPay, WeChatPayType

    creds = sandbox.credentials["wechat_v3"]["direct"]
    # Built in public-key mode so that it does not download from the production host while constructed...
    pay = WeChatPay(wechatpay_type=WeChatPayType.CODEPAY, mchid=creds["mchid"], private_key=Path(creds["private_key_pem"]).read_text(),
                    cert_serial_no=creds["merchant_serial_no"], appid=creds["appid"], apiv3_key=creds["apiv3_key"],
                    public_key=Path(creds["platform_public_key_pem"]).read_text(), public_key_id=creds["platform_public_key_id"],
                    timeout=(5, 10))
    pay._core._gate_way = sandbox.url
    pay._core._public_key, pay._core._public_key_id = None, None  # ...then switched to certificates, downloaded from the sandbox
    pay._core._update_certificates()
    ours = WeChatPayV3Client(_config_of(sandbox), certificates=MemoryStore()).refresh_certificates()
    assert [format(c.serial_number, "X") for c in pay._core._certificates] == [c.serial_no for c in ours]
    code = sandbox.issue_code("WECHAT", "100.00")["code"]
    otn = "S" + uuid.uuid4().hex[:20]
    status, body = pay.pay(description="门诊缴费", out_trade_no=otn, amount={"total": 1250, "currency": "CNY"}, payer={"auth_code": code},
                           scene_info={"store_info": {"out_id": "S1"}}, pay_type=WeChatPayType.CODEPAY)
    assert status == 200 and json.loads(body)["trade_state"] == "SUCCESS"  # the SDK raises on a reply that does not verify
    status, body = pay.query(out_trade_no=otn)
    assert status == 200 and json.loads(body)["amount"]["total"] == 1250


def test_a_reply_signed_with_a_certificate_out_of_its_validity_is_not_believed(sandbox) -> None:
    import time

    store = MemoryStore()
    (cert,) = WeChatPayV3Client(_config_of(sandbox), certificates=MemoryStore()).refresh_certificates()
    store.held[cert.serial_no] = certs.PlatformCertificate(cert.serial_no, cert.effective_at, int(time.time()) - 10, cert.pem)  # ended
    outcome = _pay(sandbox, WeChatPayV3Client(_config_of(sandbox), certificates=store))
    assert outcome.state is PayState.UNVERIFIED and "valid only" in (outcome.message or ""), outcome
