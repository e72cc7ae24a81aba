"""`reconcile` end to end: seeded days through the CLI, outputs, exit statuses, bad input, resolutions."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from reconcile.cli import main

from .conftest import DAY


def args(day: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["--date", DAY.isoformat(), "--his", str(day["his"]), "--journal", str(day["journal"]), "--wechat-bill", str(day["wechat"]),
            "--alipay-bill", str(day["alipay"]), "--out", str(out), *extra]


def read_csv(out: Path) -> list[dict[str, str]]:
    with open(out / f"reconcile-{DAY}.csv", encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def copy_day(day: dict[str, Path], dest: Path) -> dict[str, Path]:
    dest.mkdir()
    return {k: Path(shutil.copy(p, dest / p.name)) for k, p in day.items()}


def test_a_clean_day_exits_0(clean_day, tmp_path, capsys):
    assert main(args(clean_day, tmp_path)) == 0
    assert read_csv(tmp_path) == []
    html = (tmp_path / f"reconcile-{DAY}.html").read_text(encoding="utf-8")
    assert "平账：三方一致" in html and "<svg" in html
    assert "平账 Matched" in capsys.readouterr().out


def test_every_class_is_found_and_reported(every_class_day, tmp_path, capsys):
    assert main(args(every_class_day, tmp_path)) == 1
    rows = read_csv(tmp_path)
    found = {(r["class"], r["reason"], r["order_no"]) for r in rows}
    assert found == {
        ("long", "his_not_paid", "MZ-LONG-WB"),  # the failed write-back: one-sided record
        ("long", "his_missing", "MZ-LONG-NOHIS"),
        ("long", "ours_missed_payment", "MZ-LONG-LOST"),
        ("short", "channel_missing", "MZ-SHORT"),
        ("amount_mismatch", "amount_his_channel", "MZ-AMOUNT"),
        ("status_mismatch", "refund_channel_only", "MZ-INSURED"),  # the later partial refund HIS never heard of
        ("duplicate", "duplicate_his_row", "MZ-DUP-HIS"),
        ("duplicate", "duplicate_order_echo", "MZ-ECHO"),
        ("duplicate", "second_payment", "MZ-TWICE"),
    }
    long_wb = next(r for r in rows if r["order_no"] == "MZ-LONG-WB")
    assert (long_wb["position"], long_wb["his_state"], long_wb["channel_amount"]) == ("125.00", "PENDING", "125.00")
    assert long_wb["command"] == "his-client refund -125.00 --order MZ-LONG-WB --terminal T0001"
    html = (tmp_path / f"reconcile-{DAY}.html").read_text(encoding="utf-8")
    assert "his-client refund -125.00 --order MZ-LONG-WB --terminal T0001" in html and "never directly" in html
    for label in ("长款 Long", "短款 Short", "金额不符 Amount mismatch", "状态不符 Status mismatch", "重复 Duplicate"):
        assert label in html
    # Self-contained: nothing loaded from elsewhere.
    assert "<script" not in html and "<link" not in html and "src=" not in html and "url(" not in html
    assert "9 difference(s) not yet resolved" in capsys.readouterr().out


def test_a_rerun_replaces_the_report_and_resolutions_stick(every_class_day, tmp_path, capsys):
    assert main(args(every_class_day, tmp_path)) == 1
    ids = [r["diff_id"] for r in read_csv(tmp_path)]
    assert main(args(every_class_day, tmp_path)) == 1
    assert [r["diff_id"] for r in read_csv(tmp_path)] == ids  # same day, same ids
    state = ["--state", str(tmp_path / "reconcile-state.db")]
    assert main(["resolve", ids[0], "--note", "HIS refund instruction HIS-0001-000951 sent", "--by", "财务 王", *state]) == 0
    assert main(["resolve", "20261122-nosuchdiff", "--note", "x", *state]) == 2
    assert "no difference" in capsys.readouterr().err
    assert main(args(every_class_day, tmp_path)) == 1
    rows = {r["diff_id"]: r for r in read_csv(tmp_path)}
    assert rows[ids[0]]["resolved"] == "yes" and rows[ids[0]]["resolved_by"] == "财务 王"
    assert "已处理 Resolved" in (tmp_path / f"reconcile-{DAY}.html").read_text(encoding="utf-8")
    for diff_id in ids[1:]:
        assert main(["resolve", diff_id, "--note", "checked with HIS", *state]) == 0
    capsys.readouterr()
    assert main(["list", "--date", DAY.isoformat(), "--open", *state]) == 0
    assert "0 difference(s)" in capsys.readouterr().out
    assert main(args(every_class_day, tmp_path)) == 0  # all resolved: the scheduled job is clean


@pytest.mark.parametrize(("which", "damage", "expect"), [
    ("wechat", lambda b: b[: len(b) * 2 // 3], ["wechat-20261122.csv"]),
    ("his", lambda b: b.replace(b"order_no,msg_id,direction,amount,status", b"order_no,msg_id,direction,amount,state", 1),
     ["his-20261122.csv", "line 1", "'status'", "required column missing"]),
    ("his", lambda b: b.replace(b",+,125.00,", b",+,12O.00,", 1), ["his-20261122.csv", "line 51", "'amount'"]),
    ("alipay", lambda b: b[:-40], ["alipay-20261122.zip", "not a zip"]),
])
def test_bad_input_stops_with_file_line_field_and_leaves_nothing_behind(every_class_day, tmp_path, capsys, which, damage, expect):
    day = copy_day(every_class_day, tmp_path / "in")
    out = tmp_path / "out"
    assert main(args(day, out)) == 1  # a good report of the day first
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    day[which].write_bytes(damage(day[which].read_bytes()))
    assert main(args(day, out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("reconcile: bad_input:") and all(e in err for e in expect), err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after.keys() == before.keys()  # no temporary or half-written file
    for name in (f"reconcile-{DAY}.html", f"reconcile-{DAY}.csv"):
        assert after[name] == before[name]  # the previous report stands


def test_a_first_run_on_bad_input_writes_nothing(every_class_day, tmp_path, capsys):
    day = copy_day(every_class_day, tmp_path / "in")
    day["wechat"].write_bytes(day["wechat"].read_bytes().replace(b"`SUCCESS", b"`PAID", 1))
    out = tmp_path / "out"
    assert main(args(day, out)) == 2
    assert "交易状态" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_every_channel_used_needs_its_bill(every_class_day, tmp_path, capsys):
    argv = [a for a in args(every_class_day, tmp_path)]
    i = argv.index("--alipay-bill")
    del argv[i : i + 2]
    assert main(argv) == 2
    assert "支付宝 Alipay transactions but no bill" in capsys.readouterr().err


def test_a_scheduled_job_runs_from_a_config_file(every_class_day, tmp_path, capsys):
    folder = every_class_day["his"].parent
    config = tmp_path / "reconcile.toml"
    config.write_text(f'''
his = "{folder.as_posix()}/his-{{yyyymmdd}}.csv"
journals = ["{every_class_day["journal"].as_posix()}"]
wechat_bill = "{folder.as_posix()}/wechat-{{yyyymmdd}}.csv"
alipay_bill = "{folder.as_posix()}/alipay-{{yyyymmdd}}.zip"
out = "reports"
''', encoding="utf-8")
    assert main(["--config", str(config), "--date", DAY.isoformat()]) == 1
    assert (tmp_path / "reports" / f"reconcile-{DAY}.csv").exists()
    config.write_text('hiss = "x"\n', encoding="utf-8")
    assert main(["--config", str(config)]) == 2
    assert "unknown key(s) hiss" in capsys.readouterr().err


def test_help_is_worth_reading(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for needle in ("Exit status", "resolve DIFF_ID", "--wechat-bill", "--channel-settings", "Task Scheduler", "{yyyymmdd}"):
        assert needle in text


def test_two_processes_find_exactly_what_one_finds(every_class_day, tmp_path, capsys):
    assert main(args(every_class_day, tmp_path / "one", "--jobs", "1")) == 1
    assert main(args(every_class_day, tmp_path / "two", "--jobs", "2")) == 1
    assert read_csv(tmp_path / "one") == read_csv(tmp_path / "two")
    day = copy_day(every_class_day, tmp_path / "in")
    day["alipay"].write_bytes(day["alipay"].read_bytes()[:-40])
    assert main(args(day, tmp_path / "three", "--jobs", "2")) == 2  # an error in the worker reaches the job
    assert "alipay-20261122.zip" in capsys.readouterr().err


def test_the_demo_writes_a_sample_day_and_reconciles_it(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 1
    assert (tmp_path / "reconcile-2026-11-22.html").exists() and (tmp_path / "inputs" / "bridge-journal.db").exists()
    assert "长款 Long 3" in capsys.readouterr().out


def test_a_report_that_cannot_be_replaced_stops_the_run_and_keeps_the_state(every_class_day, tmp_path, capsys):
    (tmp_path / f"reconcile-{DAY}.csv").mkdir(parents=True)  # as a file held open by Excel on Windows
    assert main(args(every_class_day, tmp_path)) == 2
    assert "cannot replace" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary files left
    assert main(["list", "--date", DAY.isoformat(), "--state", str(tmp_path / "reconcile-state.db")]) == 2
    assert "has not been reconciled" in capsys.readouterr().err


def test_a_large_demo_day_is_written_in_bulk_and_finds_the_same_differences(tmp_path, capsys):
    """`reconcile demo --transactions N` writes the journal in bulk (and forks where it can): the
    day it writes reconciles exactly like the one written through the bridge's Journal API."""
    assert main(["demo", "--out", str(tmp_path / "small")]) == 1
    small = {(r["class"], r["reason"], r["order_no"]) for r in read_csv(tmp_path / "small")}
    capsys.readouterr()
    assert main(["demo", "--out", str(tmp_path / "large"), "--transactions", "3000"]) == 1
    assert {(r["class"], r["reason"], r["order_no"]) for r in read_csv(tmp_path / "large")} == small
    matched = int(capsys.readouterr().out.split("平账 Matched ")[1].split(",")[0])
    assert matched > 3000  # the collections and their refunds, all matched
