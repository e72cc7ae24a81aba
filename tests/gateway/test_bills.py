"""T+1 bills downloaded by the gateway (it holds the merchant keys) from the real channel sandbox into
a directory `reconcile --bills-dir` reads: by an operator (`gateway-admin bills fetch`) and by the
daily job, due 10:00 Asia/Shanghai for the day before."""

from __future__ import annotations

import datetime
import os
import uuid
import zipfile

import pytest

from bridge.journal import Journal
from firmware_sim.sandbox.launcher import SandboxProcess
from gateway.admin import main as admin
from gateway.bills import BillFetcher
from gateway.channel_clients import ChannelFactory
from gateway.channel_work import ChannelWork
from gateway.jobs import JobKind, JobQueue
from gateway.ledger import BUSINESS_TZ
from gateway.vault import Vault
from protocol.messages import PayChannel
from reconcile.cli import main as reconcile
from reconcile.fetch import bills_from_dir
from reconcile.model import Channel
from tests.gateway.fleet import make_fleet
from tests.gateway.test_api import onboard
from tests.gateway.test_two_processes import MASTER_KEY

DAY = datetime.date(2026, 11, 30)


@pytest.fixture
def db(tmp_path):
    """SQLite only: fetching bills reads the credentials and writes files; the engines' SQL is tested elsewhere."""
    from gateway.db import SqliteDatabase

    database = SqliteDatabase(tmp_path / "gateway.db")
    database.migrate()
    yield database
    database.close()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    process = SandboxProcess(str(tmp_path_factory.mktemp("bills-sandbox"))).start()
    yield process
    process.stop()


@pytest.fixture
def paid_day(db, sandbox):
    """A hospital that took one WeChat Pay and one Alipay payment on DAY; the sandbox is the next morning."""
    fleet = make_fleet(db, devices=1, vault=Vault(MASTER_KEY))
    onboard(fleet, sandbox)
    channels = ChannelFactory(fleet.directory)
    sandbox.control("POST", "/clock", {"today": DAY.isoformat()})
    numbers = {}
    for channel in (PayChannel.WECHAT, PayChannel.ALIPAY):
        code = sandbox.issue_code(channel.value, "100.00")["code"]
        numbers[channel] = "P" + uuid.uuid4().hex[:20]
        outcome = channels.client("H001", channel).pay(out_trade_no=numbers[channel], auth_code=code, total_fen=1250, subject="门诊缴费")
        assert outcome.state.value == "success"
    sandbox.control("POST", "/clock", {"today": (DAY + datetime.timedelta(days=1)).isoformat()})
    yield fleet, channels, numbers
    sandbox.control("POST", "/clock", {"today": None})


def _alipay_rows(path) -> str:
    with zipfile.ZipFile(path, metadata_encoding="gbk") as z:
        return "".join(z.read(n).decode("gbk") for n in z.namelist())


def test_gateway_admin_bills_fetch_writes_what_reconcile_reads(db, paid_day, tmp_path, capsys, monkeypatch) -> None:
    _, _, numbers = paid_day
    monkeypatch.setenv("GATEWAY_MASTER_KEY", MASTER_KEY.hex())
    out = tmp_path / "bills"
    assert admin(["--db", db.url, "bills", "fetch", "--hospital", "H001", "--day", DAY.isoformat(), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"--bills-dir {out / 'H001'}" in printed
    wechat, alipay = out / "H001" / f"wechat-{DAY}.csv", out / "H001" / f"alipay-{DAY}.zip"
    assert numbers[PayChannel.WECHAT] in wechat.read_text(encoding="utf-8")
    assert numbers[PayChannel.ALIPAY] in _alipay_rows(alipay)
    assert oct(os.stat(out / "H001").st_mode & 0o777) == "0o700"
    assert bills_from_dir(out / "H001", DAY) == {Channel.WECHAT: wechat, Channel.ALIPAY: alipay}
    # reconcile takes the channel leg from there: it reads both bills (no journal or HIS row has these
    # payments, made straight at the channel, so they are listed apart as the account's other trades).
    (tmp_path / "his.csv").write_text("order_no,msg_id,direction,amount,status,pay_channel,pay_order_no,finished_at\n", encoding="utf-8")
    Journal(tmp_path / "journal.db", synchronous="NORMAL").close()  # the bridge's journal: nothing through it either
    status = reconcile(["--date", DAY.isoformat(), "--his", str(tmp_path / "his.csv"), "--journal", str(tmp_path / "journal.db"),
                        "--bills-dir", str(out / "H001"), "--out", str(tmp_path / "reports")])
    printed = capsys.readouterr().out
    assert status == 0 and "2 other trade(s) on the merchant account(s)" in printed, printed
    # A day without trades: the channels say "no bill", and reconcile is told so, not left guessing.
    before = DAY - datetime.timedelta(days=3)
    assert admin(["--db", db.url, "bills", "fetch", "--hospital", "H001", "--day", before.isoformat(), "--out", str(out)]) == 0
    assert bills_from_dir(out / "H001", before) == {Channel.WECHAT: None, Channel.ALIPAY: None}


def test_bills_fetch_refuses_today_and_an_unknown_hospital(db, tmp_path, capsys, monkeypatch) -> None:
    make_fleet(db, devices=1, vault=Vault(MASTER_KEY))
    monkeypatch.setenv("GATEWAY_MASTER_KEY", MASTER_KEY.hex())
    today = datetime.datetime.now(BUSINESS_TZ).date().isoformat()
    assert admin(["--db", db.url, "bills", "fetch", "--hospital", "H001", "--day", today, "--out", str(tmp_path)]) == 1
    assert "bad_input" in capsys.readouterr().err
    assert admin(["--db", db.url, "bills", "fetch", "--hospital", "H404", "--day", DAY.isoformat(), "--out", str(tmp_path)]) == 1
    assert "unknown_hospital" in capsys.readouterr().err


def test_the_daily_job_fetches_yesterdays_bills_at_ten_once(db, paid_day, tmp_path) -> None:
    fleet, channels, numbers = paid_day
    morning = datetime.datetime.combine(DAY + datetime.timedelta(days=1), datetime.time(9, 30), BUSINESS_TZ).timestamp()
    clock = [morning]
    fetcher = BillFetcher(channels, fleet.directory, tmp_path / "bills")
    queue = JobQueue(db, owner="w", clock=lambda: clock[0])
    work = ChannelWork(fleet.ledger, channels, queue, clock=lambda: clock[0], bills=fetcher)
    assert work.run_due().bills == []  # scheduled, due at 10:00
    assert [(j.kind, j.subject) for j in queue.pending()] == [(JobKind.BILLS, DAY.isoformat())]
    clock[0] += 31 * 60
    work._last_daily = float("-inf")  # noqa: SLF001 - as if the process's daily check came round again
    assert work.run_due().bills == [f"H001 {DAY}"]
    assert numbers[PayChannel.WECHAT] in (tmp_path / "bills" / "H001" / f"wechat-{DAY}.csv").read_text(encoding="utf-8")
    assert queue.pending() == []
    work._last_daily = float("-inf")  # noqa: SLF001
    assert work.run_due().ran() == 0 and queue.pending() == []  # the day's files are there: not fetched again


@pytest.mark.parametrize("api", ["v2", "v3"])
def test_service_provider_hospitals_each_fetch_only_their_sub_merchants_bill(db, sandbox, api, tmp_path, capsys, monkeypatch) -> None:
    """Two hospitals that are sub-merchants of our provider: `bills fetch` downloads each one's own bill
    (downloadbill with sub_mch_id / tradebill with sub_mchid), never the provider's whole account, so
    each hospital's reconciliation sees its own money only."""
    from gateway.tenancy import Mode
    from tests.gateway.fleet import ACTOR
    from tests.gateway.test_wechat_certificates import _v3_secrets_without_platform_key

    creds = sandbox.credentials
    fleets = {h: make_fleet(db, hospital_id=h, devices=1, vault=Vault(MASTER_KEY), mode=Mode.SERVICE_PROVIDER) for h in ("H001", "H002")}
    directory = fleets["H001"].directory
    if api == "v2":
        sp = creds["wechat_service_provider"]
        directory.set_provider_key(PayChannel.WECHAT, sp["mch_id"], {"appid": sp["appid"], "api_key": sp["api_key"], "base_url": sp["base_url"]},
                                   actor=ACTOR)
        provider_mch_id, subs = sp["mch_id"], sp["sub_mch_ids"]
    else:
        sp = creds["wechat_v3"]["service_provider"]
        directory.set_provider_key(PayChannel.WECHAT, sp["mchid"], _v3_secrets_without_platform_key(sp), actor=ACTOR)
        provider_mch_id, subs = sp["mchid"], sp["sub_mchids"]
    channels = ChannelFactory(directory)
    sandbox.control("POST", "/clock", {"today": DAY.isoformat()})
    numbers = {}
    try:
        for hospital, sub in zip(("H001", "H002"), subs):
            directory.set_merchant_key(hospital, PayChannel.WECHAT, sub, {}, actor=ACTOR)
            numbers[hospital] = "SP" + uuid.uuid4().hex[:20]
            code = sandbox.issue_code("WECHAT", "100.00")["code"]
            outcome = channels.client(hospital, PayChannel.WECHAT).pay(out_trade_no=numbers[hospital], auth_code=code, total_fen=880,
                                                                       subject="门诊缴费")
            assert outcome.state.value == "success", outcome
        sandbox.control("POST", "/clock", {"today": (DAY + datetime.timedelta(days=1)).isoformat()})
        monkeypatch.setenv("GATEWAY_MASTER_KEY", MASTER_KEY.hex())
        out = tmp_path / "bills"
        for hospital in ("H001", "H002"):
            assert admin(["--db", db.url, "bills", "fetch", "--hospital", hospital, "--day", DAY.isoformat(), "--out", str(out)]) == 0
    finally:
        sandbox.control("POST", "/clock", {"today": None})
    capsys.readouterr()
    for hospital, sub, other in (("H001", subs[0], "H002"), ("H002", subs[1], "H001")):
        bill = (out / hospital / f"wechat-{DAY}.csv").read_text(encoding="utf-8")
        assert numbers[hospital] in bill and numbers[other] not in bill
        row = next(line for line in bill.splitlines() if numbers[hospital] in line).split(",")
        assert row[2:4] == ["`" + provider_mch_id, "`" + sub]  # 商户号 (ours), 特约商户号 (the hospital's)
    # The hospital's reconciliation reads its own bill: the trades of its sub-merchant (this day's, of
    # every test on this sandbox), none of the other hospital's.
    own = sum("`MICROPAY" in line for line in (out / "H001" / f"wechat-{DAY}.csv").read_text(encoding="utf-8").splitlines())
    (tmp_path / "his.csv").write_text("order_no,msg_id,direction,amount,status,pay_channel,pay_order_no,finished_at\n", encoding="utf-8")
    Journal(tmp_path / "journal.db", synchronous="NORMAL").close()
    status = reconcile(["--date", DAY.isoformat(), "--his", str(tmp_path / "his.csv"), "--journal", str(tmp_path / "journal.db"),
                        "--bills-dir", str(out / "H001"), "--out", str(tmp_path / "reports")])
    printed = capsys.readouterr().out
    assert status == 0 and f"{own} other trade(s) on the merchant account(s)" in printed, printed
