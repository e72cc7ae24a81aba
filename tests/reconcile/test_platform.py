"""The platform leg: the gateway's ledger (`gateway-admin ledger export`) reconciled beside HIS, the
journals and the bills; differences only the platform has are named, and a bad export is refused."""

from __future__ import annotations

import datetime
import re
import shutil
from pathlib import Path

import pytest

from reconcile import synth
from reconcile.cli import main
from reconcile.errors import BadInput
from reconcile.model import Channel, DiffClass, Reason, State
from reconcile.platform import read_platform
from reconcile.run import RunConfig, reconcile_day

DAY = datetime.date(2026, 11, 22)


def _run(files: dict[str, Path], out: Path, *, platform: bool = True):  # type: ignore[no-untyped-def]
    cfg = RunConfig(day=DAY, his=files["his"], journals=(files["journal"],), out_dir=out, state_db=out / "state.db",
                    bills={Channel.WECHAT: files["wechat"], Channel.ALIPAY: files["alipay"]}, jobs=1,
                    platform=files["platform"] if platform else None)
    return reconcile_day(cfg)


def test_three_legs_name_what_only_the_platform_gets_wrong(every_class_day: dict[str, Path], tmp_path: Path) -> None:
    result = _run(every_class_day, tmp_path).result
    by_msg = {d.msg_id: d for d in result.differences}
    lost, stuck = by_msg["HIS-PLAT-LOST"], by_msg["HIS-PLAT-STUCK"]
    assert (lost.cls, lost.reason, lost.plat, lost.position) == (DiffClass.STATUS, Reason.PLATFORM_MISSING, None, 0)
    assert lost.his_effect == lost.ours_effect == lost.chan_effect == 1800 and lost.plat_effect == 0
    assert (stuck.cls, stuck.reason) == (DiffClass.STATUS, Reason.PLATFORM_IN_FLIGHT)
    assert stuck.plat is not None and stuck.plat.state is State.PENDING
    # The POS believed this one failed; the gateway knew better: its ledger shows it beside the bill.
    lost_by_pos = by_msg["HIS-LONG-LOST"]
    assert lost_by_pos.reason is Reason.OURS_MISSED_PAYMENT and lost_by_pos.plat is not None and lost_by_pos.plat_effect == 4500
    # Nothing else changes: the two-leg classes are what they were, and the platform's totals tie.
    two_legs = _run(every_class_day, tmp_path / "two", platform=False).result
    assert {d.msg_id for d in two_legs.differences} == {d.msg_id for d in result.differences} - {"HIS-PLAT-LOST", "HIS-PLAT-STUCK"}
    wechat = result.totals[Channel.WECHAT]
    # Everything the bill has but the payment the ledger lost and the second charge of HIS-TWICE (the
    # synthetic ledger holds the attempt the POS knows of).
    assert wechat.plat.net == wechat.chan.net - 1800 - 700
    alipay = result.totals[Channel.ALIPAY]
    assert alipay.plat.net == alipay.chan.net and alipay.plat.records == alipay.chan.records


def test_the_report_has_a_platform_column_and_the_cli_takes_the_ledger(every_class_day: dict[str, Path], tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    f = every_class_day
    status = main(["--date", DAY.isoformat(), "--his", str(f["his"]), "--journal", str(f["journal"]), "--wechat-bill", str(f["wechat"]),
                   "--alipay-bill", str(f["alipay"]), "--platform-ledger", str(f["platform"]), "--out", str(tmp_path)])
    assert status == 1
    csv_text = (tmp_path / "reconcile-2026-11-22.csv").read_text(encoding="utf-8-sig")
    assert "platform_amount,platform_state,platform_where" in csv_text.splitlines()[0]
    assert "platform_in_flight" in csv_text and "platform_missing" in csv_text
    html = (tmp_path / "reconcile-2026-11-22.html").read_text(encoding="utf-8")
    assert "支付平台 Platform" in html and f["platform"].name in html


def _broken(src: Path, tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    out = tmp_path / src.name
    out.write_text("".join(edit(lines)), encoding="utf-8")
    return out


@pytest.mark.parametrize("edit, words", [
    (lambda lines: lines[:-1], "no #END trailer"),  # cut short
    (lambda lines: lines[:-2] + lines[-1:], "the trailer says"),  # a row lost
    (lambda lines: ["#something-else\n"] + lines[1:], "not a platform ledger"),
    (lambda lines: lines[:2] + ["#day=2026-11-21\n"] + lines[3:], "not of 2026-11-22"),
    (lambda lines: lines[:5] + [lines[5].replace(",succeeded,", ",settled,")] + lines[6:], "'settled'"),
    (lambda lines: lines[:5] + [re.sub(r",(\d+)\.(\d)0,", r",\1.\2,", lines[5], count=1)] + lines[6:], "field 'amount'"),  # 12.5: yuan have two decimals
])
def test_a_bad_export_is_refused_naming_file_and_line(every_class_day: dict[str, Path], tmp_path: Path, edit, words: str) -> None:
    path = _broken(every_class_day["platform"], tmp_path, edit)
    with pytest.raises(BadInput) as info:
        for _ in read_platform(path, DAY):
            pass
    assert info.value.code == "bad_input" and path.name in str(info.value) and words in str(info.value)


def test_money_only_the_platform_records_is_named(every_class_day: dict[str, Path], tmp_path: Path) -> None:
    files = {k: shutil.copy(v, tmp_path / v.name) for k, v in every_class_day.items()}
    files = {k: Path(v) for k, v in files.items()}
    text = files["platform"].read_text(encoding="utf-8").splitlines(keepends=True)
    n = len(text) - 5
    ghost = "payment,MZ-GHOST,P0000000000000000000000000001,,T0001,D-SN-000123,WECHAT,66.00,succeeded,4200999999,2026-11-22 16:00:00,2026-11-22 16:00:02\n"
    files["platform"].write_text("".join(text[:-1] + [ghost, f"#END,{n + 1}\n"]), encoding="utf-8")
    ghosts = [d for d in _run(files, tmp_path / "out").result.differences if d.order_no == "MZ-GHOST"]
    assert [(d.cls, d.reason, d.plat_effect, d.position) for d in ghosts] == [(DiffClass.STATUS, Reason.PLATFORM_ONLY, 6600, 0)]
