"""A day matched slice by slice of time (reconcile.slices, what a day of millions gets) reports
exactly what the same day matched in one pass does: the same differences with the same IDs, the
same totals, the same bytes in every report, whatever the slice size; with bill rows whose time
puts them on the other side of a slice edge from their record, HIS rows without a time, a second
payment whose instruction was concluded in its slice, and refunds across midnight."""

from __future__ import annotations

import datetime
import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile import synth
from reconcile.cli import main
from reconcile.match import MatchResult
from reconcile.model import Channel, Reason
from reconcile.run import RunConfig, reconcile_day
from reconcile.slices import slice_edges

from .test_real_days import _midnight_days

DAY = datetime.date(2026, 11, 22)
CHINA = datetime.timezone(datetime.timedelta(hours=8))
NOW = datetime.datetime(2026, 11, 23, 10, 30, tzinfo=CHINA)


@pytest.fixture(scope="module")
def skewed_day(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The every-class day (every kind of difference, the platform leg) with the bills' clocks up
    to 30 s off the POS's, and every other ordinary HIS row without its finished_at."""
    rng = random.Random(17)
    txns = [t._replace(bill=tuple(b._replace(at=b.at + rng.randint(-30, 30)) for b in t.bill)) for t in synth.every_class_day(DAY, 300)]
    files = synth.write_day(tmp_path_factory.mktemp("skewed"), DAY, txns)
    lines = files["his"].read_text(encoding="utf-8").splitlines()
    for k in range(1, len(lines), 2):
        if lines[k].split(",")[1][4:5].isdigit():  # the ordinary ones: a difference's HIS row keeps its time
            lines[k] = lines[k][: lines[k].rindex(",") + 1]
    files["his"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return files


def _run(files: dict[str, Path], out: Path, slice_records: int, platform: bool = True, jobs: int = 1) -> tuple[dict[str, bytes], MatchResult]:
    out.mkdir(parents=True, exist_ok=True)
    cfg = RunConfig(day=DAY, his=files["his"], journals=(files["journal"],), out_dir=out, state_db=out / "state.db",
                    bills={Channel.WECHAT: files["wechat"], Channel.ALIPAY: files["alipay"]}, platform=files["platform"] if platform else None,
                    jobs=jobs, slice_records=slice_records)
    result = reconcile_day(cfg, now=NOW).result
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.suffix in (".csv", ".html")}, result


class OnePass:
    """The day matched in one pass, with and without the platform leg (made once each)."""

    def __init__(self, day: dict[str, Path], folder: Path) -> None:
        self.day, self.folder = day, folder
        self.done: dict[bool, tuple[dict[str, bytes], MatchResult]] = {}

    def __call__(self, platform: bool) -> tuple[dict[str, bytes], MatchResult]:
        if platform not in self.done:
            self.done[platform] = _run(self.day, self.folder / f"platform-{platform}", 0, platform)
        return self.done[platform]

    def __repr__(self) -> str:
        return "OnePass()"


@pytest.fixture(scope="module")
def one_pass(skewed_day: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> OnePass:
    return OnePass(skewed_day, tmp_path_factory.mktemp("one-pass"))


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(min_value=1, max_value=250), platform=st.booleans(), jobs=st.sampled_from([1, 2]))
def test_a_day_in_slices_reports_the_same_bytes_as_in_one_pass(skewed_day: dict[str, Path], one_pass: OnePass, scratch: Path, size: int,
                                                               platform: bool, jobs: int) -> None:
    files, whole = one_pass(platform)
    assert len(slice_edges([skewed_day["journal"]], DAY, CHINA, size)) >= 1  # it really is cut
    # jobs=2: the bills are parsed and spilled by a worker process
    sliced_files, sliced = _run(skewed_day, scratch / f"sliced-{size}-{os.urandom(4).hex()}", size, platform, jobs)
    assert sliced.differences == whole.differences
    assert sliced.totals == whole.totals and sliced.matched == whole.matched
    assert sliced.carried == whole.carried and sliced.others == whole.others
    assert sorted(sliced_files) == sorted(files)
    for name, data in files.items():
        assert _first_difference(sliced_files[name], data) is None, name


def _first_difference(got: bytes, want: bytes) -> tuple[int, bytes, bytes] | None:
    for k, (a, b) in enumerate(zip(got.splitlines(), want.splitlines())):
        if a != b:
            return k, a[:300], b[:300]
    return None if len(got) == len(want) else (-1, got[-100:], want[-100:])


def test_the_day_has_what_the_slices_must_get_right(one_pass: OnePass) -> None:
    _, whole = one_pass(True)
    reasons = {d.reason for d in whole.differences}
    # A second charge is attached by amount and time to a paid instruction (in slices: one concluded
    # in its slice), a duplicate HIS row names an instruction, a lost payment finds its failed attempt.
    assert {Reason.SECOND_PAYMENT, Reason.DUPLICATE_HIS_ROW, Reason.OURS_MISSED_PAYMENT, Reason.PLATFORM_MISSING} <= reasons


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_refunds_across_midnight_reconcile_the_same_in_slices(tmp_path: Path, size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = {}
    for mode in ("whole", "sliced"):
        day, next_day = _midnight_days(tmp_path / mode)
        if mode == "sliced":
            monkeypatch.setenv("RECONCILE_SLICE_RECORDS", str(size))
        assert (main(day), main(next_day)) == (0, 0)
        out = tmp_path / mode / "out"
        outputs[mode] = {p.name: p.read_bytes().replace(str(tmp_path / mode).encode(), b"")
                         for p in sorted(out.iterdir()) if p.suffix == ".csv"}
    assert sorted(outputs["sliced"]) == sorted(outputs["whole"]) and len(outputs["whole"]) == 4
    for name, data in outputs["whole"].items():
        assert _first_difference(outputs["sliced"][name], data) is None, name


@pytest.mark.parametrize("size", [1, 7, 40])
def test_two_cashiers_journals_in_slices_report_as_in_one_pass(skewed_day: dict[str, Path], tmp_path: Path, size: int) -> None:
    """Each cashier PC's journal; a few instructions are in both (a journal copied to the other PC),
    one of the copies hours later, in another slice: a duplicate found for the whole day."""
    txns = synth.every_class_day(DAY, 300)
    twice = [t._replace(at=t.at + 7200) for t in txns[10:18:2]] + txns[200:206:2]  # cashier 1's, in cashier 2's journal too
    synth.write_journal(tmp_path / "cashier1.db", txns[0::2], bulk=True)
    synth.write_journal(tmp_path / "cashier2.db", txns[1::2] + twice, bulk=True)
    outputs = []
    for slice_records in (0, size):
        out = tmp_path / f"out-{slice_records}"
        out.mkdir()
        cfg = RunConfig(day=DAY, his=skewed_day["his"], journals=(tmp_path / "cashier1.db", tmp_path / "cashier2.db"), out_dir=out,
                        state_db=out / "state.db", bills={Channel.WECHAT: skewed_day["wechat"], Channel.ALIPAY: skewed_day["alipay"]},
                        platform=skewed_day["platform"], jobs=1, slice_records=slice_records)
        result = reconcile_day(cfg, now=NOW).result
        outputs.append((result, {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.suffix in (".csv", ".html")}))
    (whole, whole_files), (sliced, sliced_files) = outputs
    assert sum(d.reason is Reason.DUPLICATE_OURS for d in whole.differences) == len(twice)
    assert sliced.differences == whole.differences and sliced.totals == whole.totals
    for name, data in whole_files.items():
        assert _first_difference(sliced_files[name], data) is None, name
