"""A third-party-mode hospital's Alipay authorisation from its app_auth_code (issue 13, alitoken):
the exchange, the sealed token pair, the refresh (on demand and as the gateway's job), the errors an
operator meets and what they say to do; against the channel sandbox on 127.0.0.1 with real RSA2
signatures, on SQLite and a real PostgreSQL server, and through `gateway-admin`."""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import uuid
import zipfile

import pytest
import requests

from firmware_sim.sandbox.alipay_tenants import REFRESH_GRACE_S
from firmware_sim.sandbox.identity import load_identity
from firmware_sim.sandbox.server import Sandbox
from gateway.admin import main as admin_main
from gateway.alarms import Alarms
from gateway.alipay_authorizations import REFRESH_MARGIN_S, AlipayAuthorizations
from gateway.bills import BillFetcher
from gateway.channel_clients import ChannelFactory
from gateway.channel_work import ChannelWork
from gateway.errors import GatewayCode, GatewayError
from gateway.jobs import JobKind, JobQueue
from gateway.tenancy import Mode
from protocol.messages import PayChannel
from terminal.channels.base import PayState
from tests.gateway.fleet import ACTOR, make_fleet
from tests.gateway.test_alipay_gateway import _inline

FAST = {"query_interval_s": 0.2, "pay_deadline_s": 5.0}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("alipay-authorize"))
    box = Sandbox(path, load_identity(path))
    box.start()
    yield box
    box.stop()


def control(sandbox: Sandbox, method: str, path: str, body: dict | None = None) -> dict:
    reply = requests.request(method, f"{sandbox.url}/sandbox/v1{path}", json=body, timeout=10)
    assert reply.status_code < 300, reply.text
    return reply.json()


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def site(db, sandbox):
    clock = Clock()
    fleet = make_fleet(db, devices=1, mode=Mode.SERVICE_PROVIDER, clock=clock)
    section = dict(sandbox.credentials()["alipay_modes"]["third_party"])
    fleet.directory.set_provider_key(PayChannel.ALIPAY, section["app_id"], _inline(section), actor=ACTOR)
    channels = ChannelFactory(fleet.directory, overrides=FAST)
    return fleet, channels, AlipayAuthorizations(fleet.directory, channels, clock=clock), clock


def new_code(sandbox: Sandbox, **body: object) -> dict:
    return control(sandbox, "POST", "/alipay/app-auth-code", body)


def pays(sandbox: Sandbox, channels: ChannelFactory) -> str:
    """A payment through the hospital's cached client; the seller the money went to."""
    card = control(sandbox, "POST", "/codes", {"channel": "ALIPAY", "balance": "100.00", "behaviour": "success"})["code"]
    out_trade_no = "AUTH" + uuid.uuid4().hex[:16]
    outcome = channels.client("H001", PayChannel.ALIPAY).pay(out_trade_no=out_trade_no, auth_code=card, total_fen=100, subject="门诊")
    assert outcome.state is PayState.SUCCESS, outcome
    return str(control(sandbox, "GET", f"/alipay/trades/{out_trade_no}")["seller_id"])


def test_a_code_becomes_a_sealed_token_pair_the_hospitals_payments_use(site, sandbox, caplog) -> None:
    fleet, channels, auths, clock = site
    caplog.set_level(logging.DEBUG)
    issued = new_code(sandbox)
    auth = auths.authorize("H001", issued["app_auth_code"], actor=ACTOR)
    assert (auth.user_id, auth.auth_app_id, auth.status, auth.key_version) == (issued["user_id"], issued["auth_app_id"], "valid", 1)
    assert auth.token_expires_at == int(clock.now) + 31_536_000 and auth.refresh_expires_at == int(clock.now) + 32_140_800
    assert fleet.directory.merchant_id("H001", PayChannel.ALIPAY) == issued["user_id"]
    assert pays(sandbox, channels) == issued["user_id"]
    key = fleet.directory.merchant_key("H001", PayChannel.ALIPAY)
    secrets = set(key.secrets.values())
    # Neither the code nor the tokens are in the database in the clear, in the audit or in a log.
    with fleet.directory.db.transaction(write=False) as tx:
        dumped = json.dumps([list(map(str, r)) for table in ("merchant_keys", "alipay_authorizations", "audit", "jobs")
                             for r in tx.all(f"SELECT * FROM {table}")])
    for secret in (*secrets, issued["app_auth_code"]):
        assert secret not in dumped and secret not in caplog.text
    assert any(a[2] == "alipay.authorize" for a in fleet.directory.audit_log())
    # The refresh job is there, due a month before the token ends.
    job = JobQueue(fleet.directory.db, owner="t").get(JobKind.ALIPAY_TOKEN, "H001", "refresh")
    assert job is not None and job.due_at_ms == (auth.token_expires_at - REFRESH_MARGIN_S) * 1000
    # Alipay's own view, without the token.
    info = auths.query("H001")
    assert (info.status, info.user_id, info.auth_app_id) == ("valid", issued["user_id"], issued["auth_app_id"])


def test_each_bad_code_has_its_own_code_and_says_what_to_do(site, sandbox) -> None:
    fleet, channels, auths, clock = site
    issued = new_code(sandbox)
    auths.authorize("H001", issued["app_auth_code"], actor=ACTOR)

    def refused(code: str, **kwargs: str) -> GatewayError:
        with pytest.raises(GatewayError) as caught:
            auths.authorize("H001", code, actor=ACTOR, **kwargs)
        return caught.value

    used = refused(issued["app_auth_code"])
    assert used.code is GatewayCode.ALIPAY_AUTH_CODE_USED and "alipay show H001" in used.message
    invalid = refused("0" * 32)
    assert invalid.code is GatewayCode.ALIPAY_AUTH_CODE_INVALID and "authorise our third-party application again" in invalid.message
    old = new_code(sandbox, user_id=issued["user_id"])
    control(sandbox, "POST", "/clock", {"advance_s": 86_400})
    assert refused(old["app_auth_code"]).code is GatewayCode.ALIPAY_AUTH_CODE_INVALID
    other_app = new_code(sandbox, app_id=sandbox.identity.alipay_app_id)
    mismatch = refused(other_app["app_auth_code"])
    assert mismatch.code is GatewayCode.ALIPAY_APP_MISMATCH and "another app" in mismatch.message
    stranger = new_code(sandbox)  # another merchant than the one on file
    wrong = refused(stranger["app_auth_code"])
    assert wrong.code is GatewayCode.ALIPAY_MERCHANT_MISMATCH and f"--merchant-id {stranger['user_id']}" in wrong.message
    assert refused("no spaces allowed").code is GatewayCode.BAD_INPUT
    # None of those changed what is stored.
    assert fleet.directory.merchant_key("H001", PayChannel.ALIPAY).version == 1


def test_a_direct_mode_hospital_is_told_to_switch(db, sandbox) -> None:
    fleet = make_fleet(db, devices=1)
    with pytest.raises(GatewayError) as caught:
        AlipayAuthorizations(fleet.directory, ChannelFactory(fleet.directory)).authorize("H001", new_code(sandbox)["app_auth_code"], actor=ACTOR)
    assert caught.value.code is GatewayCode.BAD_INPUT and "--mode service_provider" in caught.value.message


def test_a_refresh_reaches_the_cached_client_and_the_old_token_ends_after_the_grace(site, sandbox) -> None:
    fleet, channels, auths, clock = site
    issued = new_code(sandbox)
    auths.authorize("H001", issued["app_auth_code"], actor=ACTOR)
    assert pays(sandbox, channels) == issued["user_id"]
    old_client = channels.client("H001", PayChannel.ALIPAY)
    clock.now += 100
    fresh = auths.refresh("H001", actor=ACTOR)
    assert (fresh.key_version, fresh.refreshed_at) == (2, int(clock.now))
    new_client = channels.client("H001", PayChannel.ALIPAY)
    assert new_client is not old_client  # the credentials version moved: the next request uses the new token
    control(sandbox, "POST", "/clock", {"advance_s": REFRESH_GRACE_S})
    assert pays(sandbox, channels) == issued["user_id"]
    card = control(sandbox, "POST", "/codes", {"channel": "ALIPAY", "balance": "100.00", "behaviour": "success"})["code"]
    stale = old_client.pay(out_trade_no="AUTH-OLD-" + uuid.uuid4().hex[:8], auth_code=card, total_fen=100, subject="x")
    assert stale.state is PayState.FAILED and "aop.invalid-app-auth-token" in (stale.message or "")
    assert any(a[2] == "alipay.refresh" for a in fleet.directory.audit_log())


def test_the_job_refreshes_before_the_end_and_an_ended_refresh_token_raises_an_alarm(site, sandbox) -> None:
    fleet, channels, auths, clock = site
    issued = new_code(sandbox, expires_in=600, re_expires_in=1200)
    auth = auths.authorize("H001", issued["app_auth_code"], actor=ACTOR)
    assert auth.refresh_due_at() == int(clock.now) + 300  # a short lifetime: half-way
    queue = JobQueue(fleet.directory.db, owner="gw-test", clock=clock)
    work = ChannelWork(fleet.ledger, channels, queue, clock=clock, alipay_tokens=auths)
    assert work.run_due().ran() == 0  # not due yet
    clock.now += 300
    report = work.run_due()
    assert report.tokens == ["H001"] and report.errors == []
    refreshed = auths.get("H001")
    assert refreshed.key_version == 2 and refreshed.token_expires_at == int(clock.now) + 600
    job = queue.get(JobKind.ALIPAY_TOKEN, "H001", "refresh")
    assert job is not None and job.due_at_ms == refreshed.refresh_due_at() * 1000  # due again, for the next one
    assert pays(sandbox, channels) == issued["user_id"]
    # The merchant's refresh token ends (Alipay's clock), the job finds out: re-authorise.
    control(sandbox, "POST", "/clock", {"advance_s": 1300})
    clock.now = refreshed.refresh_due_at()
    report = work.run_due()
    assert report.errors == ["H001 alipay token: alipay_reauthorize"]
    assert auths.get("H001").status == "reauthorize" and queue.get(JobKind.ALIPAY_TOKEN, "H001", "refresh") is None
    (alarm,) = Alarms(fleet.directory.db).list(hospital_id="H001")
    assert alarm.reason == "alipay_reauthorize" and "gateway-admin alipay authorize" in alarm.what_to_do
    with pytest.raises(GatewayError) as caught:
        auths.refresh("H001", actor=ACTOR)
    assert caught.value.code is GatewayCode.ALIPAY_REAUTHORIZE and "authorise our third-party application again" in caught.value.message
    # The same merchant authorises again: valid, and the job is back.
    again = auths.authorize("H001", new_code(sandbox, user_id=issued["user_id"])["app_auth_code"], actor=ACTOR)
    assert again.status == "valid" and queue.get(JobKind.ALIPAY_TOKEN, "H001", "refresh") is not None


def test_a_second_refresher_takes_the_winners_pair(site, sandbox, monkeypatch) -> None:
    fleet, channels, auths, clock = site
    auths.authorize("H001", new_code(sandbox)["app_auth_code"], actor=ACTOR)
    stale, stale_auth = fleet.directory.merchant_key("H001", PayChannel.ALIPAY), auths.get("H001")
    winner = auths.refresh("H001", actor=ACTOR)
    # Another process read the credentials before the first refresh committed: Alipay refuses its (now
    # dead) refresh token; it finds the new version and keeps it, with no re-authorisation and no alarm.
    other = AlipayAuthorizations(fleet.directory, ChannelFactory(fleet.directory), clock=clock)
    first_reads = iter([stale_auth])  # what it read first; afterwards it reads the database
    real_get = other.get
    monkeypatch.setattr(other, "get", lambda hospital_id, tx=None: next(first_reads, None) or real_get(hospital_id, tx))
    monkeypatch.setattr(fleet.directory, "merchant_key", lambda hospital_id, channel: stale)
    kept = other.refresh("H001", actor=ACTOR)
    monkeypatch.undo()
    assert (kept.key_version, kept.status) == (winner.key_version, "valid")
    assert fleet.directory.merchant_key("H001", PayChannel.ALIPAY).version == winner.key_version
    assert Alarms(fleet.directory.db).list(hospital_id="H001") == []


def test_migration_11_keeps_the_jobs_and_accepts_the_new_kind(raw_db) -> None:
    from gateway import migrations

    migrations.migrate(raw_db, upto=8)
    make_fleet(raw_db, devices=1)
    with raw_db.transaction() as tx:
        tx.execute("INSERT INTO jobs (kind, hospital_id, subject, due_at_ms, attempts, lease_owner, lease_until_ms, created_at_ms) "
                   "VALUES ('payment', 'H001', 'A1', 5, 2, 'gw:1', 9, 1)")
        before = tx.all("SELECT job_id, kind, subject, due_at_ms, attempts, lease_owner, lease_until_ms FROM jobs")
    assert raw_db.migrate() == migrations.LATEST
    queue = JobQueue(raw_db, owner="t")
    with raw_db.transaction(write=False) as tx:
        assert tx.all("SELECT job_id, kind, subject, due_at_ms, attempts, lease_owner, lease_until_ms FROM jobs") == before
    queue.add(JobKind.ALIPAY_TOKEN, "H001", "refresh", due_at_ms=0)
    queue.add(JobKind.PAYMENT, "H001", "A2", due_at_ms=0)  # new ids follow the kept ones
    jobs = {j.subject: j.job_id for j in queue.pending()}
    assert jobs["A1"] == before[0][0] and jobs["A2"] > jobs["A1"] and "refresh" in jobs
    with pytest.raises(Exception):  # noqa: B017 - either driver's CHECK violation
        with raw_db.transaction() as tx:
            tx.execute("INSERT INTO jobs (kind, hospital_id, subject, due_at_ms, created_at_ms) VALUES ('other', 'H001', 'x', 0, 0)")


def test_third_party_bills_are_fetched_with_the_hospitals_token(site, sandbox, tmp_path) -> None:
    fleet, channels, auths, clock = site
    issued = new_code(sandbox)
    auths.authorize("H001", issued["app_auth_code"], actor=ACTOR)
    pays(sandbox, channels)
    paid_day = datetime.date.fromisoformat(control(sandbox, "GET", "/clock")["today"])  # the sandbox's clock (tests advance it)
    control(sandbox, "POST", "/clock", {"today": (paid_day + datetime.timedelta(days=1)).isoformat()})  # T+1: the bill exists
    try:
        saved = BillFetcher(channels, fleet.directory, tmp_path).fetch("H001", paid_day)
    finally:
        control(sandbox, "POST", "/clock", {"today": None})
    path = saved[PayChannel.ALIPAY]
    assert path is not None
    names = zipfile.ZipFile(io.BytesIO(path.read_bytes())).namelist()
    assert names and all(name.startswith(issued["user_id"]) for name in names)  # the hospital's merchant's bill, not the provider's


def test_gateway_admin_authorizes_from_a_file_or_stdin_and_never_prints_the_code(tmp_path, monkeypatch, capsys, sandbox) -> None:
    key = tmp_path / "master.key"
    monkeypatch.setenv("GATEWAY_DB", f"sqlite:{tmp_path}/gw.db")
    monkeypatch.setenv("GATEWAY_MASTER_KEY_FILE", str(key))
    monkeypatch.delenv("GATEWAY_MASTER_KEY", raising=False)
    run = lambda *argv: admin_main(["--actor", "alice", *argv])  # noqa: E731
    assert run("master-key", "new", str(key)) == 0 and run("migrate") == 0
    section = dict(sandbox.credentials()["alipay_modes"]["third_party"])
    (tmp_path / "provider.json").write_text(json.dumps(_inline(section)))
    assert run("hospital", "add", "H002", "--name", "County Hospital", "--mode", "service_provider") == 0
    assert run("provider", "set", "alipay", "--merchant-id", section["app_id"], "--credentials", str(tmp_path / "provider.json")) == 0
    first = new_code(sandbox)
    (tmp_path / "code.txt").write_text(first["app_auth_code"] + "\n")
    capsys.readouterr()
    assert run("alipay", "authorize", "H002", "--app-auth-code", f"@{tmp_path / 'code.txt'}") == 0
    out = capsys.readouterr().out
    assert first["user_id"] in out and "credentials version 1" in out and first["app_auth_code"] not in out
    assert run("alipay", "authorize", "H002", "--app-auth-code", f"@{tmp_path / 'code.txt'}") == 1
    assert "alipay_auth_code_used" in capsys.readouterr().err
    second = new_code(sandbox, user_id=first["user_id"])
    monkeypatch.setattr("sys.stdin", io.StringIO(second["app_auth_code"] + "\n"))
    assert run("alipay", "authorize", "H002", "--app-auth-code", "-") == 0
    assert "credentials version 2" in capsys.readouterr().out
    assert run("alipay", "refresh", "H002") == 0
    assert "credentials version 3" in capsys.readouterr().out
    assert run("alipay", "show", "H002") == 0
    shown = capsys.readouterr().out
    assert "status valid" in shown and first["auth_app_id"] in shown and "alipay.trade.pay" in shown
    assert run("audit") == 0
    audit = capsys.readouterr().out
    assert "alipay.authorize" in audit and "alipay.refresh" in audit
    stored = (tmp_path / "gw.db").read_bytes()
    for secret in (first["app_auth_code"], second["app_auth_code"]):
        assert secret.encode() not in stored and secret not in shown + audit
    assert run("alipay", "show", "H404") == 1
    assert "unknown_hospital" in capsys.readouterr().err
    # A token pasted by hand replaces the authorised pair: show says so; refresh says what to do.
    pasted = control(sandbox, "POST", "/alipay/app-auth")["app_auth_token"]
    assert run("merchant", "rotate", "H002", "alipay", "--app-auth-token", pasted) == 0
    assert run("alipay", "show", "H002", "--offline") == 0
    assert "version 4, set by hand" in capsys.readouterr().out
    assert run("alipay", "refresh", "H002") == 1
    assert "alipay_not_authorized" in capsys.readouterr().err
    os.remove(tmp_path / "code.txt")
