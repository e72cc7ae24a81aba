"""The `reconcile` command: a thin layer over reconcile.run, reconcile.store and reconcile.fetch.

Only this module prints and turns errors into exit statuses (0 clean, 1 differences, 2 error).
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import re
import sys
import tomllib
import traceback
from pathlib import Path

from reconcile.attribution import Attribution
from reconcile.errors import EXIT_CLEAN, EXIT_ERROR, ConfigError, ReconcileError
from reconcile.fetch import bills_from_dir, fetch_bills
from reconcile.model import Channel, DiffClass
from reconcile.run import CHINA, RunConfig, reconcile_day
from reconcile.texts import signed_yuan
from reconcile.store import StateStore

DESCRIPTION = """\
T+1 three-way reconciliation (T+1 三方对账): the HIS ledger export, our bridge journal(s) and the
channels' daily bills (WeChat Pay, Alipay), matched in integer fen. Writes
OUT/reconcile-DATE.html (for finance staff) and OUT/reconcile-DATE.csv (every difference), and
keeps each day's differences and their resolutions in the state database.

Exit status (for a scheduled job): 0 nothing unresolved, 1 differences to look at, 2 the run could
not be done (bad input, missing file, bad configuration; the message names file, line and field).
Re-running a day replaces that day's report; resolutions are kept.

Subcommands (reconcile SUBCOMMAND --help):
  reconcile [run] --date ...          reconcile a day (the default when no subcommand is given)
  reconcile resolve DIFF_ID --note .. mark a difference resolved, with what was done
  reconcile list --date ...           the day's differences and whether they are resolved
  reconcile fetch --date ...          only download the day's bills through the channel clients
  reconcile demo --out DIR            write a sample day with every kind of difference, and reconcile it
"""

EPILOG = """\
examples:
  reconcile --date 2026-11-22 --his his-20261122.csv --journal C:\\his-bridge\\journal.db \\
            --wechat-bill wechat-20261122.csv --alipay-bill alipay-20261122.zip --out D:\\reconcile
  reconcile --config reconcile.toml                 # date defaults to yesterday: for Task Scheduler / cron
  reconcile resolve 20261122-3fa9c0e1d2 --note "HIS refund instruction HIS-0001-000951 sent"

A config file (TOML) holds the same settings; {date} and {yyyymmdd} in paths are replaced:
  his = "D:/his-export/ledger-{yyyymmdd}.csv"   his_mapping = "vendor.toml"
  journals = ["C:/his-bridge/journal.db"]       channel_settings = "channels.json"
  out = "D:/reconcile"                          utc_offset = "+08:00"
  platform_ledger = "D:/provider/platform-{yyyymmdd}.csv"
See docs/reconciliation.md.
"""

_CONFIG_KEYS = {"his", "his_mapping", "journals", "wechat_bill", "alipay_bill", "bills_dir", "channel_settings", "out", "state", "utc_offset",
                "pos_devices", "platform_ledger"}


def _date(text: str, tz: datetime.tzinfo = CHINA) -> datetime.date:
    today = datetime.datetime.now(tz).date()
    if text == "yesterday":
        return today - datetime.timedelta(days=1)
    if text == "today":
        return today
    try:
        return datetime.date.fromisoformat(text) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else _bad_date(text)
    except ValueError:
        return _bad_date(text)


def _bad_date(text: str) -> datetime.date:
    raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD, yesterday or today")


def _offset(text: str) -> datetime.timezone:
    m = re.fullmatch(r"([+-])(\d{2}):(\d{2})", text)
    if not m or int(m.group(2)) > 14 or int(m.group(3)) >= 60:
        raise ConfigError(f"utc_offset {text!r}: use the form +08:00")
    delta = datetime.timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
    return datetime.timezone(-delta if m.group(1) == "-" else delta)


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reconcile", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--date", type=_date, default=None, help="business day to reconcile: YYYY-MM-DD, yesterday (default) or today")
    p.add_argument("--config", type=Path, help="TOML file with the settings below (command-line options win)")
    p.add_argument("--his", help="the HIS ledger export for the day (CSV)")
    p.add_argument("--his-mapping", help="mapping file (TOML) for a vendor's own HIS export columns; default: the neutral format")
    p.add_argument("--journal", action="append", dest="journals", help="a bridge journal (SQLite); repeat for each cashier PC")
    p.add_argument("--wechat-bill", help="the day's WeChat Pay bill (downloadbill, bill_type=ALL) as downloaded")
    p.add_argument("--alipay-bill", help="the day's Alipay trade bill zip as downloaded")
    p.add_argument("--bills-dir", help="a folder of bills as the payment gateway downloads them (`gateway-admin bills fetch`, "
                   "`payment-gateway --bills-dir`: DIR/HOSPITAL): the day's wechat-DAY.csv / alipay-DAY.zip, or their .nobill marks, "
                   "for the bills not given above")
    p.add_argument("--channel-settings", help="channel settings JSON: download the bills not given above through the channel clients")
    p.add_argument("--platform-ledger", help="the payment service provider's ledger for the day (`gateway-admin ledger export`): "
                   "the platform leg, reconciled beside HIS, the journals and the bills")
    p.add_argument("--out", help="folder for the reports and downloaded bills (default: ./reconcile-reports)")
    p.add_argument("--state", help="state database (default: OUT/reconcile-state.db)")
    p.add_argument("--utc-offset", help="the hospital's time zone as an offset (default +08:00): where a day begins")
    p.add_argument("--pos-device", action="append", dest="pos_devices", metavar="NUMBER",
                   help="a POS's device number as the bills show it (WeChat 设备号 / Alipay 终端号: the device_info / terminal_id "
                        "of its channel settings); repeat for each POS. Given, bill rows of other devices are listed apart")
    p.add_argument("--jobs", type=int, choices=(0, 1, 2), default=0,
                   help="processes: 2 parses the bills in a second process (about twice as fast for large days), "
                        "1 keeps to one, 0 (default): 2 for large days on a multi-core machine")
    return p


def _load_config(path: Path | None) -> tuple[dict[str, object], Path]:
    if path is None:
        return {}, Path.cwd()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid UTF-8 TOML: {exc}") from None
    unknown = sorted(set(data) - _CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"config file {path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_CONFIG_KEYS))}")
    return data, path.resolve().parent


def _path(value: object, base: Path, day: datetime.date, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a path (a non-empty string)")
    p = Path(value.replace("{date}", day.isoformat()).replace("{yyyymmdd}", day.strftime("%Y%m%d")))
    return p if p.is_absolute() else base / p


def build_run_config(args: argparse.Namespace) -> RunConfig:
    config, base = _load_config(args.config)
    tz = _offset(str(args.utc_offset or config.get("utc_offset", "+08:00")))
    day = args.date or _date("yesterday", tz)  # the hospital's yesterday
    cwd = Path.cwd()

    def pick(key: str) -> Path | None:
        given = getattr(args, key)
        if given is not None:
            return _path(given, cwd, day, "--" + key.replace("_", "-"))
        return _path(config[key], base, day, key) if key in config else None

    his = pick("his")
    if his is None:
        raise ConfigError("no HIS ledger: give --his FILE (or his = ... in the config file)")
    if args.journals:
        journals = tuple(_path(j, cwd, day, "--journal") for j in args.journals)
    else:
        listed = config.get("journals", [])
        if not isinstance(listed, list):
            raise ConfigError("journals must be a list of paths")
        journals = tuple(_path(j, base, day, "journals") for j in listed)
    out = pick("out") or cwd / "reconcile-reports"
    bills: dict[Channel, Path | None] = {}
    for key, channel in (("wechat_bill", Channel.WECHAT), ("alipay_bill", Channel.ALIPAY)):
        path = pick(key)
        if path is not None:
            bills[channel] = path
    bills_dir = pick("bills_dir")
    if bills_dir is not None:
        bills.update({c: p for c, p in bills_from_dir(bills_dir, day).items() if c not in bills})
    devices = args.pos_devices if args.pos_devices is not None else config.get("pos_devices", [])
    if not isinstance(devices, list) or not all(isinstance(d, str) and d for d in devices):
        raise ConfigError("pos_devices must be a list of device numbers (strings), as the bills show them")
    return RunConfig(
        day=day, his=his, journals=journals, out_dir=out, state_db=pick("state") or out / "reconcile-state.db",
        his_mapping=pick("his_mapping"), bills=bills, channel_settings=pick("channel_settings"),
        tz=tz, jobs=args.jobs, attribution=Attribution(frozenset(devices)), platform=pick("platform_ledger"),
    )


def cmd_run(argv: list[str]) -> int:
    args = _run_parser().parse_args(argv)
    summary = reconcile_day(build_run_config(args))
    counts = summary.result.class_counts()
    shown = ", ".join(f"{c.label} {counts[c]}" for c in DiffClass if counts[c])
    print(f"{summary.day}: {shown or 'nothing to reconcile'}")
    if summary.result.others:
        print(f"{len(summary.result.others)} other trade(s) on the merchant account(s), not the POS's: listed apart, not reconciled")
    print(f"report: {summary.report_html}\ndifferences: {summary.report_csv}")
    if summary.unresolved:
        print(f"{summary.unresolved} difference(s) not yet resolved: see the report; `reconcile resolve DIFF_ID --note ...` when done")
    return summary.exit_status


def _state_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", type=Path, help="state database (default: ./reconcile-reports/reconcile-state.db)")
    p.add_argument("--config", type=Path, help="the TOML config file of the scheduled job (for its out/state)")


def _state_path(args: argparse.Namespace) -> Path:
    if args.state:
        return args.state
    config, base = _load_config(args.config)
    if "state" in config:
        return _path(config["state"], base, datetime.date.today(), "state")
    out = _path(config["out"], base, datetime.date.today(), "out") if "out" in config else Path.cwd() / "reconcile-reports"
    return out / "reconcile-state.db"


def cmd_resolve(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="reconcile resolve", description="Mark a difference resolved, with a note saying what was done. "
                                "The next report of that day shows it as resolved (re-run `reconcile --date DAY` to refresh it).")
    p.add_argument("diff_id", help="the difference id from the report or the CSV, e.g. 20261122-3fa9c0e1d2")
    p.add_argument("--note", required=True, help="what was done, e.g. the msg_id of the HIS refund instruction")
    p.add_argument("--by", default=None, help="who resolved it (default: the logged-in user)")
    _state_args(p)
    args = p.parse_args(argv)
    with StateStore(_state_path(args)) as store:
        r = store.resolve(args.diff_id, args.note, args.by or getpass.getuser(), datetime.datetime.now().astimezone())
    print(f"{r.diff_id} resolved at {r.resolved_at} by {r.resolved_by}: {r.note}")
    return EXIT_CLEAN


def cmd_list(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="reconcile list", description="List a reconciled day's differences and whether each is resolved.")
    p.add_argument("--date", type=_date, default=None, help="YYYY-MM-DD, yesterday (default) or today")
    p.add_argument("--open", action="store_true", help="only the differences not yet resolved")
    _state_args(p)
    args = p.parse_args(argv)
    day = (args.date or _date("yesterday")).isoformat()
    with StateStore(_state_path(args)) as store:
        if not store.has_run(day):
            raise ConfigError(f"{day} has not been reconciled (in {store.path}); run `reconcile --date {day}` first")
        rows = [r for r in store.list_day(day) if not (args.open and (r.resolution or DiffClass(r.cls).informational))]
    for r in rows:
        state = (f"resolved {r.resolution.resolved_at} {r.resolution.resolved_by}: {r.resolution.note}" if r.resolution
                 else "no action (cross-midnight)" if DiffClass(r.cls).informational else "OPEN")
        print(f"{r.diff_id}  {r.cls:<16} {r.order_no:<20} {r.msg_id:<24} {signed_yuan(r.position):>12}  {state}")
    print(f"{len(rows)} difference(s)")
    return EXIT_CLEAN


def cmd_fetch(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="reconcile fetch", description="Download the day's bills through the channel clients and save them under OUT/bills.")
    p.add_argument("--date", type=_date, default=None, help="YYYY-MM-DD, yesterday (default) or today")
    p.add_argument("--channel-settings", type=Path, required=True, help="channel settings JSON ({\"wechat\": {...}, \"alipay\": {...}})")
    p.add_argument("--out", type=Path, default=Path("reconcile-reports"), help="output folder (bills go to OUT/bills)")
    args = p.parse_args(argv)
    day = args.date or _date("yesterday")
    for channel, path in fetch_bills(args.channel_settings, day, args.out / "bills").items():
        print(f"{channel.label}: {path if path else 'no bill (no transactions that day)'}")
    return EXIT_CLEAN


def cmd_demo(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="reconcile demo", description="Write a sample business day (HIS ledger, bridge journal, WeChat Pay "
                                "bill, Alipay bill, the platform's ledger) with one case of every kind of difference, then reconcile it: for training and rehearsal.")
    p.add_argument("--out", type=Path, default=Path("reconcile-demo"), help="folder for the sample inputs and the report")
    p.add_argument("--transactions", type=int, default=40, metavar="N",
                   help="collections in the sample day (default 40; a million take about 45 s on two idle cores to write)")
    args = p.parse_args(argv)
    if not 1 <= args.transactions <= 20_000_000:
        raise ConfigError("--transactions must be between 1 and 20000000")
    from reconcile import synth

    day = datetime.date(2026, 11, 22)
    n = args.transactions
    files = synth.write_day(args.out / "inputs", day, lambda: synth.every_class_day_iter(day, n), bulk=n > 1000)  # never the whole day in memory
    print(f"sample inputs in {args.out / 'inputs'}")
    return cmd_run(["--date", day.isoformat(), "--his", str(files["his"]), "--journal", str(files["journal"]),
                    "--wechat-bill", str(files["wechat"]), "--alipay-bill", str(files["alipay"]), "--platform-ledger", str(files["platform"]),
                    "--out", str(args.out)])


COMMANDS = {"run": cmd_run, "resolve": cmd_resolve, "list": cmd_list, "fetch": cmd_fetch, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = COMMANDS.get(argv[0]) if argv else None
    try:
        return command(argv[1:]) if command else cmd_run(argv)
    except ReconcileError as exc:
        print(f"reconcile: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("reconcile: interrupted; nothing was written", file=sys.stderr)
        return EXIT_ERROR
    except Exception:  # a bug: still exit 2 (never 1, which a scheduled job reads as "differences")
        traceback.print_exc()
        print("reconcile: internal error (the traceback above is for support); the run did not complete", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
