"""One day's reconciliation, end to end: read, match, then write everything or nothing.

Every input is read and checked before anything is written. Then the two report files are written
to temporary files, the day's differences replace the previous run's in one SQLite transaction,
and only then are the temporary files renamed over the day's report: a failed or interrupted run
leaves the previous report and state as they were, and a re-run of the same day replaces them.
"""

from __future__ import annotations

import datetime
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from reconcile.alipay_bill import read_alipay_bill
from reconcile.attribution import POS, Attribution, OtherSink
from reconcile.errors import EXIT_CLEAN, EXIT_DIFFERENCES, ConfigError, SourceUnavailable
from reconcile.fetch import fetch_bills
from reconcile.his import NEUTRAL, HisMapping, load_mapping, read_his
from reconcile.match import ChannelSide, MatchResult, Matcher
from reconcile.model import Carried, Channel, DiffClass
from reconcile.ours import read_ours, terminal_ids, texts_by_seq
from reconcile.platform import read_platform
from reconcile.report import ReportContext, write_csv, write_html, write_others_csv, write_temp
from reconcile.slices import SLICE_RECORDS, match_sliced, slice_edges
from reconcile.store import StateStore, carried_before
from reconcile.wechat_bill import read_wechat_bill

CHINA = datetime.timezone(datetime.timedelta(hours=8))
# Bills this large (bytes, all channels) are parsed in a second process (see match_day)...
PARALLEL_FROM_BYTES = 16 << 20
# ...unless the journals are this large (about 4M instructions): the worker holds its own copy of
# the funds columns, and beyond this, one process keeps the peak memory lower (docs/reconciliation.md §8).
PARALLEL_UP_TO_JOURNAL_BYTES = 1 << 30
JOURNAL_BYTES_PER_RECORD = 64  # fewer bytes than any journal row takes (a day in a smaller file fits in one slice)


@dataclass(frozen=True)
class RunConfig:
    day: datetime.date
    his: Path
    journals: tuple[Path, ...]
    out_dir: Path
    state_db: Path
    his_mapping: Path | None = None
    bills: dict[Channel, Path | None] = field(default_factory=dict)  # None: the channel has no bill that day
    channel_settings: Path | None = None  # download the bills not given in `bills`
    tz: datetime.tzinfo = CHINA
    jobs: int = 0  # processes: 1, 2, or 0 to decide from the size of the bills
    attribution: Attribution = POS  # which bill rows are the POS's trades
    platform: Path | None = None  # the gateway's ledger for the day (`gateway-admin ledger export`): the platform leg
    slice_records: int = 0  # records per slice of a large day (0: slices.SLICE_RECORDS, or $RECONCILE_SLICE_RECORDS)


@dataclass(frozen=True)
class RunSummary:
    day: str
    result: MatchResult
    unresolved: int
    report_html: Path
    report_csv: Path

    @property
    def exit_status(self) -> int:
        return EXIT_DIFFERENCES if self.unresolved else EXIT_CLEAN


def report_paths(out_dir: Path, day: datetime.date) -> tuple[Path, Path]:
    return out_dir / f"reconcile-{day.isoformat()}.html", out_dir / f"reconcile-{day.isoformat()}.csv"


def others_path(out_dir: Path, day: datetime.date) -> Path:
    return out_dir / f"reconcile-{day.isoformat()}-other-trades.csv"


def reconcile_day(cfg: RunConfig, *, now: datetime.datetime | None = None) -> RunSummary:
    if not cfg.journals:
        raise ConfigError("give at least one bridge journal (--journal): our records are one of the three sides")
    bills = dict(cfg.bills)
    if cfg.channel_settings is not None:
        fetched = fetch_bills(cfg.channel_settings, cfg.day, cfg.out_dir / "bills")
        bills.update({c: p for c, p in fetched.items() if c not in bills})
    if not bills:
        raise ConfigError("no channel bill: give --wechat-bill / --alipay-bill, or --channel-settings to download them")
    mapping = load_mapping(cfg.his_mapping) if cfg.his_mapping else NEUTRAL
    carried = carried_before(cfg.state_db, cfg.day.isoformat())  # read only: a run that fails writes nothing
    result = match_day(cfg, bills, mapping, carried)
    missing = [c for c, t in result.totals.items() if c not in bills and c is not Channel.UNKNOWN and (t.ours.records or t.his.records)]
    if missing:
        names = ", ".join(c.label for c in missing)
        raise ConfigError(f"the day has {names} transactions but no bill for that channel was given; every channel used needs its bill")

    day = cfg.day.isoformat()
    moment = (now or datetime.datetime.now(cfg.tz)).astimezone(cfg.tz)
    html_path, csv_path = report_paths(cfg.out_dir, cfg.day)
    inputs = [("HIS", str(cfg.his))] + [("本系统日志 Journal", str(j)) for j in cfg.journals]
    if cfg.platform is not None:
        inputs.append(("支付平台账本 Platform ledger", str(cfg.platform)))
    inputs += [(c.label, str(p) if p else "无账单（当日无交易）No bill: no transactions") for c, p in sorted(bills.items())]
    with StateStore(cfg.state_db) as store:
        resolutions = store.resolutions_with_prefix(result.day_id + "-")
        ctx = ReportContext(day, moment.isoformat(timespec="seconds"), inputs, result, resolutions, _terminals(cfg, result))
        outputs = [(csv_path, lambda f: write_csv(f, ctx), True), (others_path(cfg.out_dir, cfg.day), lambda f: write_others_csv(f, ctx), True),
                   (html_path, lambda f: write_html(f, ctx), False)]
        temps: list[Path] = []
        try:
            for path, write, bom in outputs:
                temps.append(write_temp(path, write, bom=bom))
            # The reports first: on Windows a file open in Excel cannot be replaced, and that is
            # the failure to expect; the state is then left as it was.
            for tmp, (path, _, _) in zip(temps, outputs):
                _replace(tmp, path)
            store.replace_day(day, ctx.generated_at, {role: name for role, name in inputs}, _summary(result), result.differences, result.carried)
        finally:
            for tmp in temps:
                tmp.unlink(missing_ok=True)
    unresolved = sum(1 for d in result.differences if d.diff_id not in resolutions and not d.cls.informational)
    return RunSummary(day, result, unresolved, html_path, csv_path)


def _replace(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise SourceUnavailable(f"cannot replace {path}: {exc.strerror or exc} (is it open in Excel or another program? close it and run again)") from None


def match_day(cfg: RunConfig, bills: dict[Channel, Path | None], mapping: HisMapping = NEUTRAL, carried: list[Carried] | None = None) -> MatchResult:
    """Read and match every source. With two processes, the bills are parsed and joined against
    the journals in a worker while this process reads the journals and joins the HIS ledger: each
    half is mostly dict work on its own index, so the day takes about half the time on two cores."""
    labels = journal_labels(cfg.journals)
    paths = dict(zip(labels, cfg.journals))
    matcher = Matcher(cfg.day.strftime("%Y%m%d"), format_time=lambda at: _format_time(at, cfg.tz), epoch_of=lambda at: _epoch(at, cfg.tz),
                      texts=lambda label, seqs: texts_by_seq(paths[label], seqs), carried=carried or ())
    given = [(c, p) for c, p in sorted(bills.items()) if p is not None]
    edges = _slice_edges(cfg)
    if edges:  # too large a day to hold whole: slice by slice, in bounded memory (reconcile.slices)
        return _match_sliced(cfg, given, mapping, carried or [], edges, labels, paths)
    if _jobs(cfg, given) < 2:
        _load_journals(matcher, cfg)
        matcher.add_his(read_his(cfg.his, mapping), cfg.his.name)
        _add_platform(matcher, cfg)
        _join_bills(matcher, given, cfg.attribution)
        return matcher.finish()
    with ProcessPoolExecutor(max_workers=1) as pool:
        worker = pool.submit(channel_side, cfg.journals, cfg.day, cfg.tz, given, cfg.attribution)
        try:
            _load_journals(matcher, cfg)
            matcher.add_his(read_his(cfg.his, mapping), cfg.his.name)
            _add_platform(matcher, cfg)
        except BaseException:
            worker.cancel()
            raise
        side = worker.result()
    if not matcher.import_channel_side(side):  # a journal changed between the two reads: join here
        _join_bills(matcher, given, cfg.attribution)
    return matcher.finish()


def _slice_edges(cfg: RunConfig) -> list[int]:
    size = cfg.slice_records or int(os.environ.get("RECONCILE_SLICE_RECORDS", "0") or 0) or SLICE_RECORDS
    # A journal row takes well over this many bytes: smaller journals cannot fill a slice.
    if size == SLICE_RECORDS and sum(j.stat().st_size for j in cfg.journals if j.exists()) < size * JOURNAL_BYTES_PER_RECORD:
        return []
    return slice_edges(cfg.journals, cfg.day, cfg.tz, size)


def _match_sliced(cfg: RunConfig, given: list[tuple[Channel, Path]], mapping: HisMapping, carried: list[Carried], edges: list[int],
                  labels: list[str], paths: dict[str, Path]) -> MatchResult:
    def final() -> Matcher:
        return Matcher(cfg.day.strftime("%Y%m%d"), format_time=lambda at: _format_time(at, cfg.tz), epoch_of=lambda at: _epoch(at, cfg.tz),
                       texts=lambda label, seqs: texts_by_seq(paths[label], seqs), carried=carried)

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    # The bills in a second process as for a one-pass day (the journals' size does not matter here:
    # the worker holds no columns, only its parser).
    jobs = cfg.jobs or (2 if (os.cpu_count() or 1) > 1 and sum(p.stat().st_size for _, p in given) >= PARALLEL_FROM_BYTES else 1)
    return match_sliced(cfg.out_dir, edges, day=cfg.day, tz=cfg.tz, journals=list(cfg.journals), labels=labels,
                        his=(cfg.his.name, read_his(cfg.his, mapping)),
                        platform=(cfg.platform.name, read_platform(cfg.platform, cfg.day)) if cfg.platform is not None else None,
                        bills=given, attribution=cfg.attribution, make_final=final, jobs=jobs)


def channel_side(journals: tuple[Path, ...], day: datetime.date, tz: datetime.tzinfo, bills: list[tuple[Channel, Path]],
                 attribution: Attribution = POS) -> ChannelSide:
    """In the worker process: the journals' records joined with the day's bills."""
    matcher = Matcher(day.strftime("%Y%m%d"))
    for journal, label in zip(journals, journal_labels(journals)):
        matcher.add_ours(read_ours(journal, day, tz, funds_only=True), label)
    _join_bills(matcher, bills, attribution)
    return matcher.export_channel_side()


def _add_platform(matcher: Matcher, cfg: RunConfig) -> None:
    """The platform leg, in this process (beside the HIS join, while a worker joins the bills)."""
    if cfg.platform is not None:
        matcher.add_platform(read_platform(cfg.platform, cfg.day), cfg.platform.name)


def _terminals(cfg: RunConfig, result: MatchResult) -> dict[str, str]:
    wanted = sorted({d.msg_id for d in result.differences if d.msg_id and d.position > 0})
    found: dict[str, str] = {}
    for journal in cfg.journals:
        if wanted:
            found.update(terminal_ids(journal, wanted))
    return found


def _load_journals(matcher: Matcher, cfg: RunConfig) -> None:
    for journal, label in zip(cfg.journals, journal_labels(cfg.journals)):
        matcher.add_ours(read_ours(journal, cfg.day, cfg.tz), label)


def journal_labels(journals: tuple[Path, ...]) -> list[str]:
    """How the report names each journal: its file name, or its whole path where two cashier PCs'
    journals have the same name (journal.db on both)."""
    names = [j.name for j in journals]
    return [j.name if names.count(j.name) == 1 else str(j) for j in journals]


def _join_bills(matcher: Matcher, bills: list[tuple[Channel, Path]], attribution: Attribution) -> None:
    for channel, path in bills:
        reader = read_wechat_bill if channel is Channel.WECHAT else read_alipay_bill
        others = OtherSink(path.name, attribution)
        matcher.add_channel(reader(path, others), path.name)
        matcher.add_others(others.trades)


def _jobs(cfg: RunConfig, bills: list[tuple[Channel, Path]]) -> int:
    if cfg.jobs:
        return cfg.jobs
    # A second process pays for itself (~0.2 s to start) from a few hundred thousand rows on. It
    # repeats part of the work (reading the journal), so it needs a second core to gain anything.
    size = sum(p.stat().st_size for _, p in bills if p.exists())
    journals = sum(j.stat().st_size for j in cfg.journals if j.exists())
    return 2 if size >= PARALLEL_FROM_BYTES and journals <= PARALLEL_UP_TO_JOURNAL_BYTES and (os.cpu_count() or 1) > 1 else 1


def _format_time(at: object, tz: datetime.tzinfo) -> str:
    if isinstance(at, int) and at > 0:
        return datetime.datetime.fromtimestamp(at, tz).strftime("%Y-%m-%d %H:%M:%S")
    return str(at) if at else ""


def _epoch(at: object, tz: datetime.tzinfo) -> int | None:
    """Epoch seconds of a record's time: the journal's epoch, or a bill's "YYYY-MM-DD HH:MM:SS"."""
    if isinstance(at, int):
        return at
    try:
        return int(datetime.datetime.strptime(str(at), "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz).timestamp())
    except ValueError:
        return None


def _summary(result: MatchResult) -> dict[str, object]:
    counts = result.class_counts()
    others: dict[str, dict[str, int]] = {}
    for o in result.others:
        t = others.setdefault(o.channel.name, {"trades": 0, "net": 0})
        t["trades"] += 1
        t["net"] += o.effect
    return {
        "counts": {c.value: counts[c] for c in DiffClass},
        "other_trades": others,
        "totals": {
            c.name: {side: {"collected": getattr(t, side).collected, "refunded": getattr(t, side).refunded, "records": getattr(t, side).records}
                     for side in ("his", "ours", "chan") + (("plat",) if result.platform else ())}
            for c, t in result.totals.items()
        },
    }
