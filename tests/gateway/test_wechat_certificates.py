"""An APIv3 hospital onboarded without pasting a platform key: the gateway downloads WeChat Pay's
platform certificates (an operator's `gateway-admin wechat certificates refresh`, or the `wechat_certs`
job), keeps them sealed in its database (SQLite and PostgreSQL), audits them, pays, verifies refund
notifications with them, and follows a rotation. Real sandbox, real database, real signatures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.sandbox.launcher import SandboxProcess
from gateway.admin import main as admin
from gateway.alarms import Alarms
from gateway.api import GatewayHttpServer
from gateway.channel_clients import ChannelFactory
from gateway.channel_work import ChannelWork
from gateway.jobs import JobKind, JobQueue
from gateway.ledger import RefundState
from gateway.service import GatewayService
from gateway.tenancy import Mode
from gateway.errors import GatewayError
from gateway.vault import Vault
from gateway.wechat_certificates import REFRESH_EVERY_S, CertificateRefresher, DatabaseCertificateStore
from protocol.crypto import KeyRing
from protocol.messages import PayChannel
from terminal.channels.base import PayState
from tests.gateway.fleet import ACTOR, make_fleet
from tests.gateway.test_api import FAST, HIS_KEY, Clock, Gw, order, pay_body, refund_body
from tests.gateway.test_two_processes import MASTER_KEY
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    process = SandboxProcess(str(tmp_path_factory.mktemp("wxcert-sandbox"))).start()
    yield process
    process.stop()


def _v3_secrets_without_platform_key(creds: dict) -> dict[str, str]:
    """What an operator pastes for an APIv3 merchant: its own keys only, no platform public key or certificate."""
    return {"api_version": "v3", "base_url": creds["base_url"], "appid": creds["appid"], "merchant_serial_no": creds["merchant_serial_no"],
            "private_key_pem": Path(creds["private_key_pem"]).read_text(), "apiv3_key": creds["apiv3_key"]}


def _onboard(fleet, sandbox: SandboxProcess, who: str) -> str:
    """H001 pays through APIv3 directly or as our sub-merchant; the signing mchid."""
    v3: Any = sandbox.credentials["wechat_v3"]
    creds = v3["direct" if who == "direct" else "service_provider"]
    if who == "direct":
        fleet.directory.set_merchant_key("H001", PayChannel.WECHAT, creds["mchid"], _v3_secrets_without_platform_key(creds), actor=ACTOR)
    else:
        fleet.directory.set_provider_key(PayChannel.WECHAT, creds["mchid"], _v3_secrets_without_platform_key(creds), actor=ACTOR)
        fleet.directory.set_mode("H001", Mode.SERVICE_PROVIDER, actor=ACTOR)
        fleet.directory.set_merchant_key("H001", PayChannel.WECHAT, creds["sub_mchids"][0], {}, actor=ACTOR)
    fleet.directory.add_his_keys("H001", KeyRing([HIS_KEY]), actor=ACTOR)
    return str(creds["mchid"])


def _signer(sandbox: SandboxProcess) -> str:
    import requests

    listed = requests.get(f"{sandbox.url}/sandbox/v1/wechat/platform-certificates", timeout=10).json()["certificates"]
    return next(c["serial_no"] for c in listed if c["signing"])


@pytest.fixture
def sqlite_db(tmp_path):
    """gateway-admin is given the database by URL (the PostgreSQL fixture's is a conninfo string); the
    store's SQL runs on PostgreSQL in the other tests here."""
    from gateway.db import SqliteDatabase

    database = SqliteDatabase(tmp_path / "gateway.db")
    database.migrate()
    yield database
    database.close()


@pytest.mark.parametrize("who", ["direct", "service_provider"])
def test_an_operator_downloads_the_certificates_and_the_hospital_pays(sqlite_db, sandbox, who, capsys, monkeypatch) -> None:
    db = sqlite_db
    fleet = make_fleet(db, devices=1, vault=Vault(MASTER_KEY))
    mchid = _onboard(fleet, sandbox, who)
    monkeypatch.setenv("GATEWAY_MASTER_KEY", MASTER_KEY.hex())
    target = ["H001"] if who == "direct" else ["--provider"]
    signer = _signer(sandbox)
    # A pin that is not what WeChat Pay serves: refused, nothing kept.
    assert admin(["--db", db.url, "--actor", ACTOR, "wechat", "certificates", "refresh", *target, "--expect-serial", "5ABC"]) == 1
    assert "bad_signature" in capsys.readouterr().err
    assert DatabaseCertificateStore(db, fleet.directory.vault, mchid).load() == []
    assert admin(["--db", db.url, "--actor", ACTOR, "wechat", "certificates", "refresh", *target, "--expect-serial", signer]) == 0
    printed = capsys.readouterr().out
    assert f"downloaded 1 platform certificate(s): {signer}" in printed and f"merchant {mchid}" in printed and "valid" in printed
    assert admin(["--db", db.url, "wechat", "certificates", "show", "H001"]) == 0
    assert signer in capsys.readouterr().out
    # Kept sealed (no PEM in the row), audited as a first use by the operator.
    with db.transaction(write=False) as tx:
        (sealed,) = tx.one("SELECT sealed FROM wechat_platform_certs WHERE mchid = ? AND serial_no = ?", (mchid, signer))
        audit = tx.all("SELECT actor, detail FROM audit WHERE action = 'wechat_certs.add' AND subject = ?", (mchid,))
    assert b"BEGIN CERTIFICATE" not in bytes(sealed)
    assert [(a, '"first_use": true' in d and signer in d) for a, d in audit] == [(ACTOR, True)]
    # The hospital pays; its replies verify with the downloaded certificate.
    code = sandbox.issue_code("WECHAT", "100.00")["code"]
    outcome = ChannelFactory(fleet.directory).client("H001", PayChannel.WECHAT).pay(
        out_trade_no="C" + order(), auth_code=code, total_fen=1250, subject="门诊缴费")
    assert outcome.state is PayState.SUCCESS, outcome


def test_a_certificate_altered_in_the_database_is_not_believed(db, sandbox) -> None:
    fleet = make_fleet(db, devices=1)
    mchid = _onboard(fleet, sandbox, "direct")
    ChannelFactory(fleet.directory).wechat_v3_client("H001").refresh_certificates()
    with db.transaction() as tx:  # someone with write access to the database swaps the certificate for another row's
        tx.execute("UPDATE wechat_platform_certs SET serial_no = 'ABCDEF' WHERE mchid = ?", (mchid,))
    with pytest.raises(GatewayError) as refused:
        DatabaseCertificateStore(db, fleet.directory.vault, mchid).load()
    assert refused.value.code.value == "master_key"


def test_the_job_refreshes_each_merchants_list_and_picks_up_a_rotation(db, tmp_path) -> None:
    with SandboxProcess(str(tmp_path / "rotating-sandbox")) as sandbox:  # its own: the rotation is for good
        fleet = make_fleet(db, devices=1)
        mchid = _onboard(fleet, sandbox, "direct")
        clock = [time.time()]  # the jobs' clock; the certificates are stamped with the database host's time
        channels = ChannelFactory(fleet.directory)
        queue = JobQueue(db, owner="w", clock=lambda: clock[0])
        work = ChannelWork(fleet.ledger, channels, queue, clock=lambda: clock[0],
                           certificates=CertificateRefresher(channels, fleet.directory, clock=lambda: clock[0]))
        old = _signer(sandbox)
        report = work.run_due()  # nothing held: due at once
        assert report.certificates == [f"{mchid}: {old}"] and report.errors == []
        store = DatabaseCertificateStore(db, fleet.directory.vault, mchid)
        assert [c.serial_no for c in store.load()] == [old]
        work._last_daily = float("-inf")  # the daily check runs every DAILY_CHECK_S; make it now
        assert work.run_due().certificates == []  # next refresh in REFRESH_EVERY_S
        job = queue.get(JobKind.WECHAT_CERTS, "H001", mchid)
        assert job is not None and job.due_at_ms > (clock[0] + REFRESH_EVERY_S - 120) * 1000
        import requests

        requests.post(f"{sandbox.url}/sandbox/v1/wechat/platform-certificates/rotate", json={"switch": False}, timeout=30).raise_for_status()
        clock[0] += REFRESH_EVERY_S + 1
        report = work.run_due()
        assert len(report.certificates) == 1 and report.errors == []
        new = {c.serial_no for c in store.load()} - {old}
        assert len(new) == 1  # the next certificate, held before it signs
        requests.post(f"{sandbox.url}/sandbox/v1/wechat/platform-certificates/switch", timeout=30).raise_for_status()
        code = sandbox.issue_code("WECHAT", "100.00")["code"]
        outcome = channels.client("H001", PayChannel.WECHAT).pay(out_trade_no="C" + order(), auth_code=code, total_fen=1250, subject="x")
        assert outcome.state is PayState.SUCCESS, outcome
        # A rotation the gateway misses (listed and switched between two refreshes): the next list is signed by a
        # certificate nothing held vouches for. Not believed; a person is told what to check.
        requests.post(f"{sandbox.url}/sandbox/v1/wechat/platform-certificates/rotate", json={"switch": True}, timeout=30).raise_for_status()
        clock[0] += REFRESH_EVERY_S + 1
        report = work.run_due()
        assert report.certificates == [] and len(report.errors) == 1 and "wechat_v3_certificates_unverified" in report.errors[0]
        [alarm] = Alarms(db).list(hospital_id="H001")
        assert alarm.reason == "platform_certificates" and "--expect-serial" in alarm.message
        assert len(store.load()) == 2  # nothing added


def test_a_refund_notification_signed_with_a_downloaded_certificate_settles_the_refund(db, sandbox) -> None:
    fleet = make_fleet(db, devices=1)
    _onboard(fleet, sandbox, "direct")
    factory = ChannelFactory(fleet.directory, overrides=FAST)
    factory.wechat_v3_client("H001").refresh_certificates()
    server = GatewayHttpServer(GatewayService(fleet.directory, fleet.ledger, factory)).start()
    try:
        gw = Gw(server, fleet, sandbox, Clock())
        pos, order_no = gw.pos(), order()
        status, paid = pos.post("/v1/pay", pay_body(order_no, gw.code(), 1250))
        assert (status, paid["state"]) == (200, "success"), paid
        body = refund_body(order_no, 500)
        status, refunded = pos.post("/v1/refund", body)
        assert (status, refunded["state"]) == (200, "processing"), refunded
        wait_until(lambda: fleet.ledger.refund(body["out_refund_no"], hospital_id="H001").state is RefundState.SUCCEEDED,
                   what="the refund notification (signed by the platform certificate) to settle the refund")
        assert server.service.alarms.list(hospital_id="H001") == []
    finally:
        server.stop()
